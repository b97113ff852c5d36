"""One bad record never stops a run (issue 22): a number out of range (``1e999``, 5,000 digits), a
lone surrogate, bytes that are not UTF-8, a 200 KB string, put anywhere in one record of any reader's
file, make that record a counted bad record (or a kept one, if it is still good), never a traceback,
and never text that SQLite or a file cannot hold."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from converters.camtrapdp import read_package
from converters.cct import parse_cct
from converters.common import InputFormatError, image_key
from converters.megadetector import parse_megadetector
from converters.speciesnet import load_speciesnet
from hitl import store
from hitl.errors import HitlError
from hitl.review.labelme import read_labelme_folder
from hitl.review.reconcile import sync_export_file
from hitl.store.ratings import record_ratings

from .conftest import SHARED, CliProject
from .helpers import examples
from .helpers.camtrapdp import EXAMPLE, copy_example, table
from .helpers.records import annotation, export_of, labelme_doc
from .helpers.webhook import leaf_paths, mutate

# JSON as no tool writes it, each a token put in place of a value (or of a whole record)
HOSTILE = [b"1e999", b"-1e999", b"1" + b"0" * 5000, b"-" + b"9" * 5000, b"18446744073709551616",
           b"-9223372036854775809", b"2147483648", b"1e308", b"-1e308", b"5e-324", b"-0.0",
           b'"\\ud800"', b'"x\\udfffy"', b'"\\ud83d"', b'"\xff\xfe"', b'"\xed\xa0\x80"', b'"' + b"x" * 200_000 + b'"',
           b'"\\u0000"', b'"a\\u0000b.jpg"', b'"\xc2\xb2"', b'"2024-01-01 \xc2\xb2\xc2\xb2:00:00"', b'""', b"null",
           b"true", b"[]", b"{}", b"[1e999]", b'{"a": "\\udc00"}', b'["\\ud800", 1e999]']
NOT_UTF8 = (b'"\xff\xfe"', b'"\xed\xa0\x80"')
MARK = "\x01hostile\x01"
SETTINGS = settings(max_examples=examples(80), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def hostile(doc: object, path: list, token: bytes) -> bytes:
    """``doc`` as JSON with ``token`` (raw JSON text) in place of the value at ``path``."""
    return json.dumps(mutate(doc, path, MARK)).encode().replace(json.dumps(MARK).encode(), token)


def record_paths(doc: dict, key: str, i: int) -> list[list]:
    """Every place in record ``i`` of ``doc[key]``, the record itself included."""
    return [list(p) for p in leaf_paths(doc) if len(p) >= 2 and p[0] == key and p[1] == i]


def storable(*texts: object) -> None:
    """What a reader keeps is text SQLite and UTF-8 files can hold."""
    for text in texts:
        if isinstance(text, str):
            text.encode("utf-8")


def accounted(names: list[str], kept: set[str], problems: list, key: str, i: int) -> None:
    """Every record but the mutated one ``i`` is kept; that one is kept (perhaps by another name, if
    the name was what changed) or named by a problem."""
    assert {n for k, n in enumerate(names) if k != i} <= kept, (kept, problems)
    assert len(kept) == len(names) or any(p.record.startswith(f"{key}[{i}]") for p in problems), problems


# ---- MegaDetector and COCO Camera Traps: msgspec, a chunk at a time ------------------------------------

MD = {"info": {"format_version": "1.4"}, "detection_categories": {"1": "animal", "2": "person"},
      "classification_categories": {"1": "fox"},
      "images": [{"file": f"cam/r{k}.jpg", "detections": [
          {"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.3, 0.3], "classifications": [["1", 0.8]]}]}
          for k in range(4)] + [{"file": "cam/r4.jpg", "failure": "Failure image access"}]}


@SETTINGS
@given(i=st.integers(0, 4), pick=st.integers(0, 10_000), token=st.sampled_from(HOSTILE))
@example(i=1, pick=2, token=b"1e999")  # the conf, and a 5,000-digit number in a bbox
@example(i=1, pick=3, token=b"1" + b"0" * 5000)
@example(i=1, pick=0, token=b'"\\ud800"')
@example(i=1, pick=0, token=b'"\xff\xfe"')
def test_megadetector_counts_a_hostile_record_and_reads_the_rest(i, pick, token):
    places = record_paths(MD, "images", i)
    md = parse_megadetector(hostile(MD, places[pick % len(places)], token), "md.json")
    names = [r["file"] for r in MD["images"]]
    accounted(names, set(md.image_ids), md.problems, "images", i)
    storable(*md.image_ids, *md.species_names, *(str(p) for p in md.problems))
    assert ((md.detections.conf >= 0) & (md.detections.conf <= 1)).all()
    assert ((md.detections.bbox >= 0) & (md.detections.bbox <= 1)).all()
    assert ((md.detections.species_conf >= 0) & (md.detections.species_conf <= 1)).all()


CCT = {"info": {"version": "1.0"}, "images": [
    {"id": f"r{k}", "file_name": f"cam/r{k}.jpg", "seq_id": "s1", "frame_num": k, "seq_num_frames": 4,
     "datetime": f"2024-01-01 10:00:0{k}", "location": "cam", "width": 640, "height": 480} for k in range(4)],
    "annotations": [], "categories": [{"id": 1, "name": "fox"}]}


@SETTINGS
@given(i=st.integers(0, 3), pick=st.integers(0, 10_000), token=st.sampled_from(HOSTILE))
@example(i=1, pick=3, token=b"1e999")  # frame_num, then width
@example(i=1, pick=7, token=b"2147483648")
@example(i=1, pick=1, token=b'"x\\udfffy"')
def test_cct_counts_a_hostile_record_and_reads_the_rest(i, pick, token):
    places = record_paths(CCT, "images", i)
    cct = parse_cct(hostile(CCT, places[pick % len(places)], token), "cct.json")
    accounted([r["file_name"] for r in CCT["images"]], set(cct.image_ids), cct.problems, "images", i)
    storable(*cct.image_ids, *cct.seq_id, *cct.location, *cct.datetime)


# ---- SpeciesNet: any JSON, a record at a time where the whole will not decode -----------------------

SN = {"predictions": [{"filepath": f"cam/r{k}.jpg", "prediction": "uuid;mammalia;carnivora;canidae;vulpes;vulpes;red fox",
                       "prediction_score": 0.9, "classifications": {"classes": ["uuid;;;;;;red fox"], "scores": [0.9]},
                       "detections": [{"category": "1", "label": "animal", "conf": 0.9, "bbox": [0.1, 0.1, 0.2, 0.2]}]}
                      for k in range(4)]}


@SETTINGS
@given(i=st.integers(0, 3), pick=st.integers(0, 10_000), token=st.sampled_from(HOSTILE))
@example(i=1, pick=2, token=b"1e999")  # the scores
@example(i=1, pick=5, token=b"1" + b"0" * 5000)
@example(i=1, pick=0, token=b'"\\ud800"')
def test_speciesnet_counts_a_hostile_record_and_reads_the_rest(tmp_path_factory, i, pick, token):
    places = record_paths(SN, "predictions", i)
    path = tmp_path_factory.mktemp("sn") / "sn.json"
    path.write_bytes(hostile(SN, places[pick % len(places)], token))
    sn = load_speciesnet(path)
    accounted([r["filepath"] for r in SN["predictions"]], set(sn.predictions), sn.problems, "predictions", i)
    storable(*sn.predictions, *(p.species for p in sn.predictions.values()))


def test_a_number_out_of_range_outside_the_records_is_one_line(tmp_path):
    path = tmp_path / "sn.json"
    path.write_bytes(hostile({**SN, "info": {}}, ["info"], b"[1e999]"))
    for read in (lambda: parse_megadetector(hostile(MD, ["info", "x"], b"1e999"), "md.json"),
                 lambda: load_speciesnet(path)):
        with pytest.raises(InputFormatError, match="number out of range") as refused:
            read()
        assert "\n" not in str(refused.value)
    assert parse_cct(hostile(CCT, ["info", "x"], b"1e999"), "cct.json").problems == []  # a part never read


# ---- Camtrap DP: CSV cells ------------------------------------------------------------------------------

CELLS = ["1e999", "-1e999", "1" + "0" * 5000, "nan", "inf", "-0", "x" * 200_000, "\x00", "a\x00b", "\ufffd", "²",
         "2024-01-01T²²:00:00Z", '"', "a,b\nc", "", " ", "media/../../etc/passwd", "/etc/passwd", "https://x/y"]


def write_rows(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


@SETTINGS
@given(which=st.sampled_from(["media", "observations", "deployments"]), row=st.integers(0, 10_000),
       column=st.integers(0, 100), cell=st.sampled_from(CELLS) | st.text(max_size=30))
@example(which="media", row=400, column=10, cell="x" * 200_000)  # mediaComments over 128 KiB
@example(which="observations", row=0, column=0, cell="x" * 200_000)
def test_camtrap_dp_counts_a_hostile_cell_and_reads_the_rest(tmp_path_factory, which, row, column, cell):
    package = tmp_path_factory.mktemp("dp") / "pkg"
    copy_example(package)
    rows = table(package / f"{which}.csv")
    target = rows[row % len(rows)]
    name = list(target)[column % len(target)]
    target[name] = cell
    write_rows(package / f"{which}.csv", rows)
    read = read_package(package)  # never raises for a cell
    counted = {int(p.record.split()[1]) for p in read.problems if p.source.endswith("/media.csv")}
    for n, m in enumerate(rows if which == "media" else table(EXAMPLE / "media.csv"), start=2):
        path = m["filePath"].strip()
        if not path.startswith(("http://", "https://")):  # a local media: read, or a counted row
            try:
                assert image_key(path) in read.media or n in counted, (n, path, read.problems)
            except ValueError:
                assert n in counted, (n, path, read.problems)
    storable(*read.media, *read.metadata.location, *read.metadata.datetime, *read.metadata.seq_id)
    det = read.detector.detections
    assert ((det.conf >= 0) & (det.conf <= 1)).all() and ((det.bbox >= 0) & (det.bbox <= 1)).all()


# ---- Labelme and Label Studio: Python's JSON reader, then the one validator ------------------------------

@SETTINGS
@given(pick=st.integers(0, 10_000), token=st.sampled_from(HOSTILE))
@example(pick=20, token=b'"\\ud800"')  # hero_hitl.image_id
def test_labelme_counts_a_hostile_file_and_stores_the_rest(tmp_path_factory, pick, token):
    folder = tmp_path_factory.mktemp("labelme")
    doc = labelme_doc(hero_hitl={"image_id": "a.jpg", "mode": "blind"})
    places = [list(p) for p in leaf_paths(doc) if p]
    (folder / "a.json").write_bytes(hostile(doc, places[pick % len(places)], token))
    (folder / "b.json").write_text(json.dumps(labelme_doc(imagePath="b.jpg")))
    ratings, problems = read_labelme_folder(folder)
    assert "b.json" in {r.annotation_id for r in ratings}
    assert "a.json" in {r.annotation_id for r in ratings} | {p.source for p in problems}
    db = store.connect(folder / "h.db")
    with store.transaction(db):
        record_ratings(db, ratings, via="sync")  # SQLite holds whatever was kept
    assert db["ratings"].count == len(ratings)


TASKS = export_of(annotation(1, 5, "2026-11-21T12:00:00Z"), annotation(2, 8, "2026-11-21T12:01:00Z"))
TASKS[0]["annotations"][0]["result"].append(
    {"from_name": "comment", "to_name": "image", "type": "textarea", "value": {"text": ["fine"]}})


@SETTINGS
@given(pick=st.integers(0, 10_000), token=st.sampled_from(HOSTILE))
@example(pick=16, token=b'"\\ud800"')  # in a comment, then in the task's image_id
@example(pick=2, token=b'"\\ud800"')
@example(pick=2, token=b"18446744073709551616")
@example(pick=40, token=b"[]")  # the task's annotations emptied
def test_label_studio_export_counts_a_hostile_value_and_stores_the_rest(tmp_path_factory, pick, token):
    tmp = tmp_path_factory.mktemp("export")
    places = [list(p) for p in leaf_paths(TASKS) if p]
    place = places[pick % len(places)]
    path = tmp / "export.json"
    path.write_bytes(hostile(TASKS, place, token))
    try:
        _, result = sync_export_file(store.connect(tmp / "h.db"), path, 4)
    except HitlError as exc:  # only a file that is not UTF-8 (or names no project) is refused whole, in one line
        assert token in NOT_UTF8 or place[1:] == ["project"], (place, exc)
        return
    stored = {r["annotation_id"] for r in store.connect(tmp / "h.db")["ratings"].rows}
    assert len(stored) == sum(result.counts[k] for k in ("new", "updated", "unchanged", "older"))
    if place[1:] == ["annotations"] and token == b"[]":  # not hostile: a task nobody has rated yet
        assert not stored and not result.problems, result
        return
    if len(place) >= 3 and place[1] == "annotations":  # one annotation spoilt: the other one is stored
        assert str(2 - place[2]) in stored, (place, result)
    assert len(stored) + sum(result.problems.values()) >= 1


# ---- the issue's own cases, end to end ---------------------------------------------------------------

def test_select_counts_a_conf_of_1e999_and_a_5000_digit_number(tmp_path):
    camera_traps = SHARED / "camera_traps"
    doc = json.loads((camera_traps / "md_results.json").read_text())
    first, second = doc["images"][0]["file"], doc["images"][1]["file"]
    doc["images"][0]["detections"][0]["conf"] = MARK
    doc["images"][1]["detections"][0]["bbox"][0] = MARK + "2"
    data = json.dumps(doc).encode().replace(json.dumps(MARK).encode(), b"1e999")
    data = data.replace(json.dumps(MARK + "2").encode(), b"1" + b"0" * 5000)
    (tmp_path / "md.json").write_bytes(data)
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    result = project.run("select", "--md", str(tmp_path / "md.json"), "--images", str(camera_traps / "images"),
                         "-n", "5", "--json")
    counts = json.loads(result.stdout)
    assert counts["problems"] == {f"{tmp_path / 'md.json'}: number out of range": 2}
    assert counts["images_read"] == len(doc["images"]) - 2 and counts["selected"] == 5
    assert not {first, second} & {r["image_id"] for r in project.db["candidates"].rows}


def test_sync_counts_a_lone_surrogate_in_a_comment_or_an_image_id(tmp_path):
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    path = tmp_path / "export.json"
    path.write_bytes(hostile(TASKS, [0, "annotations", 0, "result", 1, "value", "text", 0], b'"\\ud800 sharp"'))
    result = project.run("sync", "--from-export", str(path), "--project-id", "4")
    assert "1 new" in result.output and "bad comment" in result.output and "surrogate" in result.output
    assert [r["annotation_id"] for r in project.db["ratings"].rows] == ["2"]
    folder = tmp_path / "review"
    folder.mkdir()
    (folder / "a.json").write_bytes(hostile(labelme_doc(hero_hitl={"image_id": "a.jpg"}), ["hero_hitl", "image_id"],
                                            b'"cam/\\udc80.jpg"'))
    (folder / "b.json").write_text(json.dumps(labelme_doc(imagePath="b.jpg")))
    result = project.run("sync", "--labelme", str(folder))
    assert "bad image_id" in result.output and "1 new" in result.output
    assert "b.json" in {r["annotation_id"] for r in project.db["ratings"].rows}


def test_a_descriptor_number_out_of_range_is_one_line(tmp_path):
    package = copy_example(tmp_path / "pkg")
    descriptor = json.loads((package / "datapackage.json").read_text())
    (package / "datapackage.json").write_bytes(hostile(descriptor, ["spatial", "coordinates", 0, 0, 0], b"1e999"))
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    result = project.run("select", "--camtrap-dp", str(package), "-n", "2", ok=False)
    (error,) = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert result.exit_code == 1 and "number out of range" in error and "datapackage.json" in error
