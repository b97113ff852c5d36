"""A photo with a person, or with no detector record, never leaves in an export, a comparison or a
report thumbnail unless asked for (issue 22), wherever it came into the store from: the people flag
and the detector record of every image a detector file names are kept at selection, selected or not.

The reproduction is the issue's: `select` leaves human.jpg out, `score --images` then puts it in the
store anyway, a curator rates it hero, and every export format, the report and the comparison pairs
must still leave it out, and say so by name.
"""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from hitl import store
from hitl.compare.push import CompareSummary, hero_urls
from hitl.store.detector import (
    NAMED,
    left_out_line,
    pack_ids,
    people_images,
    publishable,
    record_detector_file,
    recorded_images,
    unpack_ids,
)

from .conftest import SHARED, CliProject

PERSON, FAILED = "human.jpg", "african_elephants_truncated_file.jpg"  # person 0.912; the detector failed on it
LOOSE = "ocelot_again.jpg"  # only ever scored from a folder: no detector file names it
HEROES = ("african_elephants.jpg", "ocelot.jpg", "domestic_dog.jpg", PERSON, LOOSE)
NAMED_PERSON = f"left out 1 image with a person detected: {PERSON} (--include-people to include it)"
NAMED_LOOSE = f"left out 1 image with no detector record: {LOOSE} (--include-undetected to include it)"


@pytest.fixture(scope="module")
def traps(tmp_path_factory) -> CliProject:
    """The issue's steps on the real camera-trap images, and one more image scored from another folder."""
    tmp = tmp_path_factory.mktemp("people")
    source = SHARED / "camera_traps"
    if not (source / "md_results.json").exists():
        pytest.fail(f"{source} is missing: put shared/ beside the repo or set HITL_SHARED_DIR")
    project = CliProject(tmp / "h.db", {"HITL_DB": str(tmp / "h.db")})
    project.tmp = tmp
    project.run("select", "--md", str(source / "md_results.json"), "--images", str(source / "images"), "-n", "14")
    project.run("score", "--model", "baseline", "--images", str(source / "images"))
    (tmp / "loose").mkdir()
    shutil.copy(source / "images" / "ocelot.jpg", tmp / "loose" / LOOSE)
    project.run("score", "--model", "baseline", "--images", str(tmp / "loose"))
    (tmp / "sheet.csv").write_text("image_id,curator,stars,hero\n" + "".join(
        f"{image_id},ana@example.org,{9 - k},yes\n" for k, image_id in enumerate(HEROES)))
    assert f"{len(HEROES)} new" in project.run("ratings", "--import", str(tmp / "sheet.csv")).output
    return project


def manifest_ids(folder: Path) -> set[str]:
    return {row["image_id"] for row in json.loads((folder / "manifest.json").read_text())["images"]}


def card_ids(html: str) -> set[str]:
    return {image_id for image_id in (*HEROES, FAILED) if f'data-id="{image_id}"' in html}


def test_select_records_every_person_and_every_detector_record(traps):
    db = traps.db
    assert PERSON not in {r[0] for r in db.execute("SELECT image_id FROM candidates")}
    assert db.execute("SELECT image_id, said_by FROM detector_people").fetchall() == [(PERSON, "megadetector")]
    assert PERSON in people_images(db, 0.3)  # not selected, yet flagged
    assert recorded_images(db, [PERSON, "blank.jpg", "ocelot.jpg", FAILED, LOOSE]) == {PERSON, "blank.jpg", "ocelot.jpg"}


def test_the_hero_set_leaves_out_the_person_and_the_unrecorded_and_names_them(traps):
    out = traps.tmp / "heroes"
    result = traps.run("export", "--out", str(out))
    assert NAMED_PERSON in result.output and NAMED_LOOSE in result.output
    assert manifest_ids(out) == {"african_elephants.jpg", "ocelot.jpg", "domestic_dog.jpg"}
    assert PERSON not in (out / "manifest.csv").read_text() and not (out / PERSON).exists()
    sheet = (out / "index.html").read_text()
    assert card_ids(sheet) == {"african_elephants.jpg", "ocelot.jpg", "domestic_dog.jpg"} and NAMED_PERSON in sheet
    header = json.loads((out / "manifest.json").read_text())["header"]["counts"]
    assert header["left_out_people"] == 1 and header["left_out_undetected"] == 1

    asked = traps.tmp / "heroes-asked"
    result = traps.run("export", "--out", str(asked), "--include-people", "--include-undetected")
    assert "left out" not in result.output
    assert manifest_ids(asked) == set(HEROES) and (asked / PERSON).is_file() and (asked / LOOSE).is_file()
    assert card_ids((asked / "index.html").read_text()) == set(HEROES)


def test_training_formats_leave_them_out_and_name_them(traps):
    # every image in the store is training data: the one the detector failed on has no record either
    named_loose = (f"left out 2 images with no detector record: {FAILED}, {LOOSE} (--include-undetected to "
                   f"include them)")
    for fmt in ("coco", "yolo", "crops"):
        out = traps.tmp / fmt
        result = traps.run("export", "--format", fmt, "--out", str(out))
        assert NAMED_PERSON in result.output and named_loose in result.output, (fmt, result.output)
        written = [p.name for p in out.rglob("*")]
        assert not [name for name in written if name.startswith(("human", "ocelot_again"))], (fmt, written)
    coco = json.loads((traps.tmp / "coco" / "coco_camera_traps.json").read_text())
    assert {PERSON, LOOSE}.isdisjoint(i["file_name"] for i in coco["images"])
    with (traps.tmp / "crops" / "crops.csv").open(newline="") as fh:
        assert {PERSON, LOOSE}.isdisjoint(row["image_id"] for row in csv.DictReader(fh))

    asked = traps.tmp / "coco-asked"
    result = traps.run("export", "--format", "coco", "--out", str(asked), "--include-people", "--include-undetected")
    coco = json.loads((asked / "coco_camera_traps.json").read_text())
    assert {PERSON, LOOSE} <= {i["file_name"] for i in coco["images"]} and "left out" not in result.output
    yolo = traps.tmp / "yolo-asked"
    traps.run("export", "--format", "yolo", "--out", str(yolo), "--include-people")
    assert [p.name for p in yolo.glob("images/*/human.jpg")] == [PERSON]


def test_report_thumbnails_leave_them_out_and_name_them(traps):
    out = traps.tmp / "report"
    traps.run("report", "--out", str(out), "--resamples", "0")
    with (out / "disagreements.csv").open(newline="") as fh:
        ranked = {row["image_id"] for row in csv.DictReader(fh)}
    assert {PERSON, LOOSE} <= ranked  # among the top disagreements: each has a card
    html = (out / "report.html").read_text()
    assert f"Thumbnails: {NAMED_PERSON}" in html and f"Thumbnails: {NAMED_LOOSE}" in html
    assert html.count("no preview: left out, a person detected") == 1
    assert html.count("no preview: left out, no detector record") == 1
    assert f'alt="{PERSON}"' not in html and f'alt="{LOOSE}"' not in html  # no picture of either
    asked = traps.tmp / "report-asked"
    traps.run("report", "--out", str(asked), "--resamples", "0", "--include-people", "--include-undetected")
    html = (asked / "report.html").read_text()
    assert f'alt="{PERSON}"' in html and f'alt="{LOOSE}"' in html and "left out" not in html


def test_compare_pairs_leave_them_out_and_name_them(traps):
    summary = CompareSummary(0, False, "blind", "")
    urls, _, _ = hero_urls(traps.db, summary, "majority", None, None, "https://example.org/{image_id}", threshold=0.3)
    assert set(urls) == {"african_elephants.jpg", "ocelot.jpg", "domestic_dog.jpg"}
    assert summary.left_out == [NAMED_PERSON, NAMED_LOOSE] and summary.heroes == 3
    asked = CompareSummary(0, False, "blind", "")
    urls, _, _ = hero_urls(traps.db, asked, "majority", None, None, "https://example.org/{image_id}", threshold=0.3,
                           include_people=True, include_undetected=True)
    assert set(urls) == set(HEROES) and asked.left_out == []
    help_text = traps.run("compare", "--help").output
    assert "--include-people" in help_text and "--include-undetected" in help_text


def test_the_sample_person_frame_stays_out_of_training_data_and_the_report(tmp_path, sample_data):
    """The README's steps: select, score a whole folder, import the curators' sheet; the person frame
    the sheet rates must not reach COCO, YOLO or the report's thumbnails."""
    person = "cam_a/IMG_0011.JPG"
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                "--speciesnet", str(sample_data / "speciesnet_predictions.json"), "--images",
                str(sample_data / "images"), "-n", "12")
    project.run("score", "--model", "baseline", "--images", str(sample_data / "images"))
    project.run("ratings", "--import", str(sample_data / "decisions.csv"))
    named = f"left out 1 image with a person detected: {person} (--include-people to include it)"
    coco = project.run("export", "--format", "coco", "--out", str(tmp_path / "coco"))
    assert named in coco.output
    images = json.loads((tmp_path / "coco" / "coco_camera_traps.json").read_text())["images"]
    assert person not in {i["file_name"] for i in images} and len(images) > 12
    yolo = project.run("export", "--format", "yolo", "--out", str(tmp_path / "yolo"))
    assert named in yolo.output and not list((tmp_path / "yolo").glob("images/*/cam_a__IMG_0011*"))
    report = project.run("report", "--out", str(tmp_path / "report"), "--resamples", "0", "--top", "200")
    html = (tmp_path / "report" / "report.html").read_text()
    assert f'alt="{person}"' not in html and f"Thumbnails: {named}" in html, report.output


# ---- a Camtrap DP package: people observed per media or per event; media nobody classified ----

EXAMPLE = SHARED / "camtrap_dp" / "example"
HUMAN_MEDIA, EVENT_MEDIA, UNCLASSIFIED_MEDIA = "3b185b03", "ad03acb4", "c40a4854"


def package_with_people(tmp_path: Path) -> Path:
    """The example package with one media's heron made a human, an event-level human observation
    spanning another media's time (19:43:14Z) and a third media with no observation at all (its
    event's own observation says ``unclassified``)."""
    package = tmp_path / "package"
    shutil.copytree(EXAMPLE, package, ignore=shutil.ignore_patterns("*.before-hero-hitl"))
    with (package / "observations.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    rows = [r for r in rows if r["mediaID"] != UNCLASSIFIED_MEDIA]
    for r in rows:
        if r["mediaID"] == HUMAN_MEDIA:
            r.update(observationType="human", scientificName="")
        if r["observationLevel"] == "event" and r["eventID"] == "7245a2aa":  # the heron's event, as a whole
            r.update(observationType="unclassified", scientificName="")
    rows.append({**{f: "" for f in fields}, "observationID": "people-event", "deploymentID": "62c200a9",
                 "eventID": "walker", "eventStart": "2021-04-11T19:43:14Z", "eventEnd": "2021-04-11T19:43:14Z",
                 "observationLevel": "event", "observationType": "human"})
    with (package / "observations.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return package


def media_file(package: Path, media_id: str) -> str:
    with (package / "media.csv").open(newline="", encoding="utf-8") as fh:
        return next(r["filePath"] for r in csv.DictReader(fh) if r["mediaID"] == media_id)


def test_camtrap_dp_people_by_media_or_event_and_unclassified_media(tmp_path):
    package = package_with_people(tmp_path)
    human, walker, unclassified = (media_file(package, m) for m in (HUMAN_MEDIA, EVENT_MEDIA, UNCLASSIFIED_MEDIA))
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    selected = project.run("select", "--camtrap-dp", str(package), "-n", "5")
    assert "person (Camtrap DP event)" in selected.output
    db = project.db
    flagged = dict(db.execute("SELECT image_id, said_by FROM detector_people").fetchall())
    assert flagged == {human: "camtrap-dp", walker: "camtrap-dp event"}
    (candidate,) = [r[0] for r in db.execute("SELECT image_id FROM candidates")]
    assert candidate not in {human, walker, unclassified}
    project.run("score", "--model", "baseline", "--images", str(package))  # every media in the store now
    assert recorded_images(db, [human, walker, unclassified]) == {human, walker}

    # a curator calls the candidate hero; then a person is found on it (a later detector run, say)
    (tmp_path / "sheet.csv").write_text("image_id,curator,stars,hero\n"
                                        + "".join(f"{i},ana@example.org,9,yes\n" for i in (candidate, human)))
    project.run("ratings", "--import", str(tmp_path / "sheet.csv"))
    with store.transaction(db):
        record_detector_file(db, 0, "later-run.json", str(package.resolve()), 1, pack_ids([candidate]),
                             [(candidate, 0.8, "megadetector")])
    before = (package / "media.csv").read_text()
    refused = project.run("export", "--format", "camtrap-dp", "--update", ok=False)  # nothing else to write
    assert refused.exit_code == 1 and f"left out 1 image with a person detected: {candidate} (--include-people " \
                                      f"to include it)" in refused.output
    assert (package / "media.csv").read_text() == before  # no favorite written for a person's photo
    project.run("export", "--format", "camtrap-dp", "--update", "--include-people")
    with (package / "media.csv").open(newline="", encoding="utf-8") as fh:
        favorite = {r["filePath"]: r["favorite"] for r in csv.DictReader(fh)}
    assert favorite[candidate] == "true"


# ---- the store's records and the rule, piece by piece ------------------------------------------------

def test_ids_round_trip_and_a_later_reading_replaces_the_earlier(tmp_path):
    ids = ["a/IMG 1.JPG", "b/ünï.jpg", "c/x\ny.jpg"]
    assert unpack_ids(pack_ids(ids)) == set(ids) and unpack_ids(pack_ids([])) == set()
    db = store.connect(tmp_path / "h.db")
    root = str(tmp_path / "photos")
    db["images"].insert_all([{"image_id": i, "root": root} for i in ("a.jpg", "b.jpg", "c.jpg")])
    with store.transaction(db):
        record_detector_file(db, 1, "md.json", root, 2, pack_ids(["a.jpg", "b.jpg"]), [("b.jpg", 0.9, "megadetector")])
    assert recorded_images(db, ["a.jpg", "b.jpg", "c.jpg"]) == {"a.jpg", "b.jpg"}
    assert people_images(db, 0.3) == {"b.jpg"}
    with store.transaction(db):  # the same file read again: its record now, not both
        record_detector_file(db, 2, "md.json", root, 1, pack_ids(["c.jpg"]), [])
    assert recorded_images(db, ["a.jpg", "b.jpg", "c.jpg"]) == {"c.jpg"} and people_images(db, 0.3) == set()
    with store.transaction(db):  # another collection's file names a.jpg too: not this a.jpg's record
        record_detector_file(db, 3, "other.json", str(tmp_path / "elsewhere"), 1, pack_ids(["a.jpg"]), [])
    assert recorded_images(db, ["a.jpg"]) == set()


def test_a_database_from_before_keeps_its_selected_images_publishable(tmp_path):
    """Selected before detector_files existed: the stored detections are the record."""
    db = store.connect(tmp_path / "h.db")
    root = str(tmp_path / "photos")
    db["selection_runs"].insert({"id": 1, "status": "finished", "images_root": root})
    db["images"].insert_all([{"image_id": i, "root": r} for i, r in
                             (("fox.jpg", root), ("walker.jpg", root), ("moved.jpg", "/elsewhere"))])
    db["detections"].insert_all([
        {"image_id": "fox.jpg", "det_index": 0, "kind": "animal", "conf": 0.9},
        {"image_id": "walker.jpg", "det_index": 0, "kind": "person", "conf": 0.8},
        {"image_id": "moved.jpg", "det_index": 0, "kind": "animal", "conf": 0.9}])
    rule = publishable(db, ["fox.jpg", "walker.jpg", "moved.jpg", "unknown.jpg"], threshold=0.3)
    assert [i for i in rule.asked if rule.allows(i)] == ["fox.jpg"]
    assert (rule.left_out_people, rule.left_out_undetected) == (["walker.jpg"], ["moved.jpg", "unknown.jpg"])
    assert publishable(db, ["walker.jpg"], threshold=0.85).left_out == 0  # below the threshold: no person


def test_a_long_list_is_named_in_part_and_counted():
    ids = [f"cam/IMG_{k:02d}.JPG" for k in range(NAMED + 3)]
    line = left_out_line(ids, "with a person detected", "--include-people")
    assert line.startswith(f"left out {NAMED + 3} images with a person detected: cam/IMG_00.JPG, ")
    assert line.endswith(f"cam/IMG_{NAMED - 1:02d}.JPG and 3 more (--include-people to include them)")
    assert left_out_line([], "with a person detected", "--include-people") is None


def test_speciesnet_people_are_its_own_record_and_outlive_a_run_without_it(tmp_path, camera_traps):
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    md, images = str(camera_traps / "md_results.json"), str(camera_traps / "images")
    project.run("select", "--md", md, "--images", images, "-n", "5",
                "--speciesnet", str(camera_traps / "speciesnet_predictions.json"))
    said = "SELECT f.source, p.image_id, p.said_by FROM detector_people p JOIN detector_files f ON f.id = p.file_id"
    flags = sorted(project.db.execute(said).fetchall())
    assert flags == [(str(camera_traps / "md_results.json"), PERSON, "megadetector"),
                     (str(camera_traps / "speciesnet_predictions.json"), PERSON, "speciesnet")]
    project.run("select", "--md", md, "--images", images, "-n", "5")  # the detector file read again, alone
    assert sorted(project.db.execute(said).fetchall()) == flags
    assert project.db.execute("SELECT count(*) FROM detector_files").fetchone()[0] == 2
