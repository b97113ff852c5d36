"""The Labelme review path, checked against labelme's own loader and writer."""
from __future__ import annotations

import io
import json
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from converters.labelme import LabelmeFormatError, labelme_document, rating_from_labelme
from hitl import store
from hitl.cli import cli
from hitl.review.labelme import KEPT_HINT, export_labelme, read_labelme_folder

from .helpers import labelme_file
from .helpers.copies import copy_project

GEMINI = "gemini-2.5-flash"
GEMINI_REASONING = "Crisp, well-lit animal filling the frame; a clear hero shot."
EXIF_IMAGE = "african_elephants_with_exif_orientation.jpg"  # stored 1536x2048, Orientation=6


@pytest.fixture(scope="module")
def built(tmp_path_factory, sample_data: Path) -> tuple[Path, list[str]]:
    """A selected and scored project over a copy of sample_data/images, built once for the module."""
    tmp_path = tmp_path_factory.mktemp("labelme")
    images = tmp_path / "images"
    shutil.copytree(sample_data / "images", images)
    db_path = tmp_path / "h.db"
    db = store.connect(db_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["--db", str(db_path), "select", "--md", str(sample_data / "md_results.json"),
                                 "--cct", str(sample_data / "cct.json"),
                                 "--speciesnet", str(sample_data / "speciesnet_predictions.json"),
                                 "--images", str(images), "-n", "6"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(cli, ["--db", str(db_path), "score", "--model", "baseline"])
    assert result.exit_code == 0, result.output
    ids = [row[0] for row in db.execute("SELECT image_id FROM candidates ORDER BY rank")]
    assert len(ids) == 6
    now = store.utc_now()
    db["scores"].insert_all([{"image_id": i, "model": GEMINI, "prompt_version": "hero-v1", "status": "ok",
                              "score": 8.2, "hero": 1, "reasoning": GEMINI_REASONING, "created_at": now,
                              "updated_at": now} for i in ids])
    db.conn.close()
    return tmp_path, ids


@pytest.fixture
def project(built, tmp_path: Path):
    """``built``, copied for the test (so exports beside images stay in its tmp, and edits in its database)."""
    root, ids = built
    return copy_project(root, tmp_path, "h.db", ("images",)), tmp_path / "images", ids


def _scores(db, image_id: str) -> dict[str, dict]:
    return {row[0]: {"score": row[1], "hero": bool(row[2]), "reasoning": row[3]} for row in db.execute(
        "SELECT model, score, hero, reasoning FROM scores WHERE image_id = ? AND status = 'ok'", [image_id])}


def _expected_points(db, image_id: str, width: int, height: int) -> list[list[list[float]]]:
    rows = db.execute("SELECT x, y, w, h FROM detections WHERE image_id = ? AND kind = 'animal' AND conf >= 0.3 "
                      "ORDER BY conf DESC, det_index", [image_id]).fetchall()
    return [[[x * width, y * height], [(x + w) * width, (y + h) * height]] for x, y, w, h in rows]


def _json_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.json"))


def test_assisted_export_opens_in_labelme(project, tmp_path):
    db, images, ids = project
    out = tmp_path / "review"
    counts = export_labelme(db, out, mode="assisted", prefill_model=GEMINI)
    assert counts["written"] == 6 and counts["prefill_model"] == GEMINI
    files = _json_files(out)
    assert [f.relative_to(out).with_suffix("").as_posix() for f in files] == sorted(
        str(Path(i).with_suffix("")) for i in ids)  # the image_id tree, mirrored
    for path in files:
        raw = json.loads(path.read_text())
        image_id = raw["hero_hitl"]["image_id"]
        label = labelme_file(path)  # labelme's own loader: reads the image and checks its size
        assert (path.parent / label.image_path).resolve() == (images / image_id).resolve()
        loaded = Image.open(io.BytesIO(label.image_data))
        assert loaded.size == (raw["imageWidth"], raw["imageHeight"])
        assert label.flags == {"hero": True, "not_hero": False, "reviewed": False}  # GEMINI says hero for all
        assert all(isinstance(k, str) and isinstance(v, bool) for k, v in label.flags.items())
        expected = _expected_points(db, image_id, *loaded.size)
        assert expected, image_id
        assert len(label.shapes) == len(expected)
        for shape, want in zip(label.shapes, expected):
            assert shape["shape_type"] == "rectangle"
            assert shape["label"] and shape["label"] != "animal"  # the species, known for every sample image
            for (x, y), (wx, wy) in zip(shape["points"], want):
                assert 0 <= x <= loaded.size[0] and 0 <= y <= loaded.size[1]
                assert x == pytest.approx(wx, abs=0.01) and y == pytest.approx(wy, abs=0.01)
        meta = label.other_data["hero_hitl"]
        assert meta["mode"] == "assisted" and meta["prefill_model"] == GEMINI
        got = {m["model"]: {"score": m["score"], "hero": m["hero"], "reasoning": m["reasoning"]}
               for m in meta["models"]}
        assert got == _scores(db, image_id) and set(got) == {"baseline", GEMINI}


def test_default_prefill_and_unknown_model(project, tmp_path):
    db, _, ids = project
    # both models scored all six: the tie goes to the alphabetically first, baseline
    counts = export_labelme(db, tmp_path / "a")
    assert counts["prefill_model"] == "baseline"
    for path in _json_files(tmp_path / "a"):
        raw = json.loads(path.read_text())
        hero = _scores(db, raw["hero_hitl"]["image_id"])["baseline"]["hero"]
        assert raw["flags"] == {"hero": hero, "not_hero": not hero, "reviewed": False}
    with pytest.raises(ValueError, match=r"'gpt-9'.*baseline, gemini-2.5-flash"):
        export_labelme(db, tmp_path / "b", prefill_model="gpt-9")
    assert not (tmp_path / "b").exists()


def test_blind_export_has_no_model_opinion(project, tmp_path):
    db, _, _ = project
    out = tmp_path / "blind"
    counts = export_labelme(db, out, mode="blind")
    assert counts["written"] == 6 and counts["prefill_model"] is None
    score_values = {row[0] for row in db.execute("SELECT score FROM scores")}
    reasonings = {row[0] for row in db.execute("SELECT reasoning FROM scores")}
    assert len(score_values) > 2 and GEMINI_REASONING in reasonings
    for path in _json_files(out):
        text = path.read_text()
        raw = json.loads(text)
        assert raw["flags"] == {"hero": False, "not_hero": False, "reviewed": False}
        assert set(raw["hero_hitl"]) == {"image_id", "mode", "species", "sequence", "export_digest"}
        assert '"score"' not in text and '"reasoning"' not in text
        for text_value in (*reasonings, "baseline", GEMINI):
            assert text_value not in text
        keys, numbers = set(), []

        def walk(node, key=None):
            if key in ("points", "imageWidth", "imageHeight"):
                return  # pixels, not opinions
            if isinstance(node, dict):
                keys.update(node)
                for k, v in node.items():
                    walk(v, k)
            elif isinstance(node, list):
                for v in node:
                    walk(v)
            elif isinstance(node, int | float) and not isinstance(node, bool):
                numbers.append(node)

        walk(raw)
        assert not keys & {"score", "reasoning", "models", "prefill_model", "prefill_hero", "hero_score"}
        assert not set(numbers) & score_values
        labelme_file(path)  # still a file labelme opens


def test_round_trip_through_labelme_save(project, tmp_path):
    db, _, _ = project
    out = tmp_path / "review"
    export_labelme(db, out, prefill_model="baseline")
    # a file the baseline did not call a hero, with a box to move
    target = next(p for p in _json_files(out) if json.loads(p.read_text())["flags"]["not_hero"])
    label = labelme_file(target)
    width, height = Image.open(io.BytesIO(label.image_data)).size
    (x1, y1), (x2, y2) = label.shapes[0]["points"]
    moved = [[x2 + 40, y2 + 25], [x1 + 40, y1 + 25]]  # dragged the other way round: corners swapped
    shapes = [{"label": s["label"], "points": moved if i == 0 else s["points"], "group_id": s["group_id"],
               "description": s["description"], "shape_type": s["shape_type"], "flags": s["flags"], "mask": None}
              for i, s in enumerate(label.shapes)]
    label.save(str(target), shapes=shapes, image_path=label.image_path, image_height=height, image_width=width,
               other_data=label.other_data, flags={"hero": True, "not_hero": False, "reviewed": False})
    saved = json.loads(target.read_text())
    assert saved["hero_hitl"]["image_id"] and saved["version"]  # the extra key survived labelme's writer
    when = datetime(2025, 6, 1, 12, 0, 0, 123000, tzinfo=timezone.utc)
    os.utime(target, (when.timestamp(), when.timestamp()))

    ratings, problems = read_labelme_folder(out)
    assert len(ratings) == 1  # the five files nobody touched are no decision
    rating = next(r for r in ratings if r.annotation_id == target.relative_to(out).as_posix())
    assert rating.hero is True and rating.mode == "assisted" and rating.source == "labelme"
    assert rating.image_id == saved["hero_hitl"]["image_id"]
    assert rating.project == out.resolve().as_posix()
    assert rating.stars is None and rating.comment is None and rating.annotator_email is None
    assert rating.updated_at == rating.created_at == "2025-06-01T12:00:00.123+00:00"
    box = rating.boxes[0]
    assert box["x"] == pytest.approx((x1 + 40) / width, abs=1e-5)
    assert box["y"] == pytest.approx((y1 + 25) / height, abs=1e-5)
    assert box["w"] == pytest.approx((x2 - x1) / width, abs=1e-5)
    assert box["h"] == pytest.approx((y2 - y1) / height, abs=1e-5)
    assert box["label"] == shapes[0]["label"]
    untouched = {p.source for p in problems if p.reason == "not reviewed yet"}
    assert len(untouched) == 5 and rating.annotation_id not in untouched
    # a curator who agrees with the pre-ticked choice ticks "reviewed": now it is a decision
    other = next(p for p in _json_files(out) if p.relative_to(out).as_posix() in untouched)
    doc = json.loads(other.read_text())
    doc["flags"]["reviewed"] = True
    other.write_text(json.dumps(doc))
    ratings, _ = read_labelme_folder(out)
    confirmed = next(r for r in ratings if r.annotation_id == other.relative_to(out).as_posix())
    assert confirmed.hero == doc["flags"]["hero"] and len(ratings) == 2


def test_beside_the_image_with_exif_rotation(project, camera_traps):
    db, images, ids = project
    shared_image = camera_traps / "images" / EXIF_IMAGE
    assert Image.open(shared_image).size == (1536, 2048)  # stored sideways
    (images / "exif").mkdir()
    shutil.copy(shared_image, images / "exif" / EXIF_IMAGE)
    md = json.loads((camera_traps / "md_results.json").read_text())
    md_boxes = [d["bbox"] for im in md["images"] if im["file"] == EXIF_IMAGE for d in im["detections"]
                if d["category"] == "1" and d["conf"] >= 0.3]
    assert len(md_boxes) == 4
    image_id = f"exif/{EXIF_IMAGE}"
    run_id = db.execute("SELECT max(id) FROM selection_runs").fetchone()[0]
    db["images"].insert({"image_id": image_id, "root": str(images), "width": None, "height": None,
                         "species": "african elephant"})
    db["detections"].insert_all([{"image_id": image_id, "det_index": k, "kind": "animal", "conf": 0.9 - k / 100,
                                  "x": b[0], "y": b[1], "w": b[2], "h": b[3]} for k, b in enumerate(md_boxes)])
    db["candidates"].insert({"image_id": image_id, "run_id": run_id, "rank": 7, "category": "group",
                             "score": 0.9, "reason": "test"})

    counts = export_labelme(db, None)
    assert counts["written"] == 7 and counts["size_from_file"] == 0
    for i in ids:  # beside each image, where labelme looks: <image folder>/<stem>.json
        path = images / Path(i).with_suffix(".json")
        assert json.loads(path.read_text())["imagePath"] == Path(i).name
    path = images / "exif" / "african_elephants_with_exif_orientation.json"
    raw = json.loads(path.read_text())
    assert raw["imagePath"] == EXIF_IMAGE
    assert (raw["imageWidth"], raw["imageHeight"]) == (2048, 1536)  # upright, as labelme shows it
    label = labelme_file(path)  # would raise "imageWidth mismatch" if the size were the stored one
    shown = Image.open(io.BytesIO(label.image_data))
    assert shown.size == (2048, 1536)
    shown_px = np.asarray(shown.convert("RGB"), dtype=float)
    # the same photograph stored upright: the box must cover the same animal in both
    upright_px = np.asarray(Image.open(camera_traps / "images" / "african_elephants.jpg").convert("RGB"), dtype=float)
    for shape, (bx, by, bw, bh) in zip(label.shapes, md_boxes):
        (x1, y1), (x2, y2) = shape["points"]
        assert (x1, y1) == pytest.approx((bx * 2048, by * 1536), abs=0.01)
        assert (x2, y2) == pytest.approx(((bx + bw) * 2048, (by + bh) * 1536), abs=0.01)
        a = shown_px[round(y1):round(y2), round(x1):round(x2)]
        b = upright_px[round(y1):round(y2), round(x1):round(x2)]
        assert a.size and a.std() > 5  # a real patch, not flat
        assert np.abs(a - b).mean() < 6  # JPEG noise only
    confirmed = json.loads(path.read_text())
    confirmed["flags"]["reviewed"] = True  # the curator looked and agrees with the boxes
    path.write_text(json.dumps(confirmed))
    ratings, _ = read_labelme_folder(images)
    back = next(r for r in ratings if r.image_id == image_id)
    for box, (bx, by, bw, bh) in zip(back.boxes, md_boxes):
        assert (box["x"], box["y"], box["w"], box["h"]) == pytest.approx((bx, by, bw, bh), abs=1e-5)


def test_stored_size_in_database_is_corrected(project, camera_traps, tmp_path):
    db, images, _ = project
    shutil.copy(camera_traps / "images" / EXIF_IMAGE, images / EXIF_IMAGE)
    run_id = db.execute("SELECT max(id) FROM selection_runs").fetchone()[0]
    # a size taken from the file without EXIF: labelme would refuse a JSON that says so
    db["images"].insert({"image_id": EXIF_IMAGE, "root": str(images), "width": 1536, "height": 2048})
    db["candidates"].insert({"image_id": EXIF_IMAGE, "run_id": run_id, "rank": 7, "category": "group",
                             "score": 0.9, "reason": "test"})
    counts = export_labelme(db, tmp_path / "out", mode="blind")
    assert counts["size_from_file"] == 1 and "1536x2048" in " ".join(counts["notes"])
    path = tmp_path / "out" / "african_elephants_with_exif_orientation.json"
    raw = json.loads(path.read_text())
    assert (raw["imageWidth"], raw["imageHeight"]) == (2048, 1536) and raw["shapes"] == []
    assert labelme_file(path).image_path == os.path.relpath(images / EXIF_IMAGE, path.parent)


def test_missing_image_is_skipped(project, tmp_path):
    db, images, ids = project
    (images / ids[0]).unlink()
    counts = export_labelme(db, tmp_path / "out")
    assert counts["skipped_missing_image"] == 1 and counts["written"] == 5
    assert not (tmp_path / "out" / Path(ids[0]).with_suffix(".json")).exists()


def test_bad_files_become_problems(project, tmp_path):
    db, _, _ = project
    out = tmp_path / "review"
    export_labelme(db, out)
    good = json.loads(_json_files(out)[0].read_text())
    (out / "broken.json").write_text('{"flags": {"hero": tru')
    (out / "bad_flags.json").write_text(json.dumps({**good, "flags": {"hero": "yes"}}))
    (out / "nested").mkdir()
    (out / "nested" / "no_image.json").write_text(json.dumps({k: v for k, v in good.items() if k != "imagePath"}))
    (out / "settings.json").write_text(json.dumps({"theme": "dark"}))
    (out / ".git").mkdir()
    (out / ".git" / "junk.json").write_text("not json")  # hidden folders are not searched

    ratings, problems = read_labelme_folder(out)
    assert ratings == []  # the exported files are untouched: no decision yet; the bad ones are problems
    by_file = {p.source: p.reason for p in problems if p.reason != "not reviewed yet"}
    assert by_file == {
        "broken.json": "not valid JSON",
        "bad_flags.json": "flags must map names to true/false",
        "nested/no_image.json": "missing imagePath (the path from the JSON to its image)",
        "settings.json": "not a Labelme file",
    }
    assert all(str(p).startswith(p.source) for p in problems)  # each message names its file


def test_reexport_keeps_curator_edits(project, tmp_path):
    db, _, _ = project
    out = tmp_path / "review"
    assert export_labelme(db, out)["written"] == 6
    edited = _json_files(out)[2]
    doc = json.loads(edited.read_text())
    doc["flags"] = {"hero": True, "not_hero": False}
    doc["shapes"] = doc["shapes"][:1]
    edited.write_text(json.dumps(doc))
    before = edited.read_bytes()

    counts = export_labelme(db, out)
    assert counts["unchanged"] == 5 and counts["kept_existing"] == 1 and counts["written"] == 0
    assert edited.read_bytes() == before
    assert counts["notes"] == [f"{edited}: {KEPT_HINT}"]

    counts = export_labelme(db, out, overwrite=True)
    assert counts["replaced"] == 1 and counts["unchanged"] == 5
    assert edited.read_bytes() != before


def _doc(**flags) -> dict:
    return {"version": "6.3.1", "flags": flags, "imagePath": "../img/a.jpg", "imageData": None,
            "imageWidth": 200, "imageHeight": 100,
            "shapes": [{"label": "fox", "points": [[150, 80], [50, 20]], "shape_type": "rectangle"},
                       {"label": "tail", "points": [[1, 1], [2, 2], [3, 1]], "shape_type": "polygon"},
                       {"label": "off", "points": [[-40, -10], [250, 130]], "shape_type": "rectangle"}]}


def test_rating_rules():
    problems = []
    rating = rating_from_labelme(_doc(hero=True, not_hero=True), "cams/a.json", "/f", "2025-01-01T00:00:00+00:00",
                                 problems)
    assert rating.hero is None
    assert {p.reason for p in problems} == {"both hero and not_hero ticked", "shape is not a rectangle"}
    assert rating.image_id == "img/a.jpg"  # no hero_hitl: resolved from imagePath and the file's folder
    assert rating.boxes == [{"x": 0.25, "y": 0.2, "w": 0.5, "h": 0.6, "label": "fox"},
                            {"x": 0.0, "y": 0.0, "w": 1.0, "h": 1.0, "label": "off"}]  # clipped to the image
    assert rating_from_labelme(_doc(not_hero=True), "a.json", "/f", "2025-01-01T00:00:00+00:00").hero is False
    assert rating_from_labelme(_doc(hero=True, not_hero=False), "a.json", "/f", "2025-01-01T00:00:00+00:00").hero is True
    assert rating_from_labelme(_doc(), "a.json", "/f", "2025-01-01T00:00:00+00:00").hero is None
    with pytest.raises(LabelmeFormatError, match="a.json: imageWidth"):
        rating_from_labelme({**_doc(), "imageWidth": None}, "a.json", "/f", "2025-01-01T00:00:00+00:00")


def test_document_rules():
    det = {"kind": "animal", "conf": 0.9, "x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4, "species": None}
    scores = [{"model": "m", "prompt_version": "v1", "score": 3.0, "hero": 0, "reasoning": "old",
               "updated_at": "2025-01-01"},
              {"model": "m", "prompt_version": "v2", "score": 9.0, "hero": 1, "reasoning": "new",
               "updated_at": "2025-02-01"}]
    doc = labelme_document("a/b.jpg", "b.jpg", 1000, 500, [det, {**det, "w": 0.0}], scores, "assisted", "m",
                           species="wild boar")
    assert doc["flags"] == {"hero": True, "not_hero": False, "reviewed": False}  # the newest verdict of the model
    assert [s["label"] for s in doc["shapes"]] == ["wild boar"]  # the empty box is dropped
    assert doc["shapes"][0]["points"] == [[100.0, 100.0], [400.0, 300.0]]
    assert len(doc["hero_hitl"]["models"]) == 2
    assert labelme_document("a", "a", 10, 10, [det], [], "assisted", "m")["shapes"][0]["label"] == "animal"
    with pytest.raises(ValueError, match="blind"):
        labelme_document("a", "a", 10, 10, [], scores, "blind", "m")
    with pytest.raises(ValueError, match="mode"):
        labelme_document("a", "a", 10, 10, [], scores, "peek", None)


def test_cli_export_edit_import_round_trip(project, tmp_path):
    db, _, ids = project
    db_path = str(tmp_path / "h.db")
    runner = CliRunner()
    out = tmp_path / "review"
    result = runner.invoke(cli, ["--db", db_path, "labelme", "export", "--out", str(out), "--prefill", GEMINI])
    assert result.exit_code == 0 and "6 written" in result.output, result.output
    first = _json_files(out)[0]
    doc = json.loads(first.read_text())
    doc["flags"] = {"hero": False, "not_hero": True, "reviewed": True}  # the curator disagrees with Gemini
    first.write_text(json.dumps(doc))
    result = runner.invoke(cli, ["--db", db_path, "labelme", "import", str(out)])
    assert result.exit_code == 0 and "1 decisions read: 1 new" in result.output, result.output
    assert "5  not reviewed yet" in result.output
    rows = list(store.connect(db_path)["ratings"].rows)
    assert len(rows) == 1
    row = rows[0]
    assert (row["source"], row["image_id"], row["hero"], row["mode"], row["via"]) == (
        "labelme", doc["hero_hitl"]["image_id"], 0, "assisted", "labelme")
    again = runner.invoke(cli, ["--db", db_path, "labelme", "import", str(out)])
    assert "0 new, 0 updated, 1 unchanged" in again.output
    assert store.connect(db_path)["rating_history"].count == 1


def test_import_and_sync_read_a_folder_alike(project, tmp_path):
    """`labelme import` and `sync --labelme` are one reader: the same folder, curator named, gives
    the same ratings in either database."""
    db, _, _ = project
    db_path = tmp_path / "h.db"
    db.conn.close()
    other = tmp_path / "h2.db"
    shutil.copy(db_path, other)
    runner = CliRunner()
    out = tmp_path / "review"
    assert runner.invoke(cli, ["--db", str(db_path), "labelme", "export", "--out", str(out)]).exit_code == 0
    for k, path in enumerate(_json_files(out)[:3]):
        doc = json.loads(path.read_text())
        doc["flags"] = {"hero": k != 1, "not_hero": k == 1, "reviewed": True}
        path.write_text(json.dumps(doc))
    imported = runner.invoke(cli, ["--db", str(db_path), "labelme", "import", str(out), "--curator", "ana@example.org"])
    synced = runner.invoke(cli, ["--db", str(other), "sync", "--labelme", str(out), "--curator", "ana@example.org"])
    assert imported.exit_code == 0 and "3 decisions read: 3 new" in imported.output, imported.output
    assert synced.exit_code == 0 and "3 new" in synced.output, synced.output

    def ratings(path):
        return sorted(store.connect(path).execute(
            "SELECT source, project, annotation_id, image_id, annotator_id, annotator_email, stars, hero, mode, "
            "created_at, updated_at, deleted FROM ratings").fetchall())
    assert ratings(db_path) == ratings(other)
    assert {r[5] for r in ratings(db_path)} == {"ana@example.org"}
    alone = runner.invoke(cli, ["--db", str(other), "sync", "--curator", "ana@example.org"])
    assert alone.exit_code == 2 and "use it with --labelme" in alone.output
