"""What the tool writes: never through a link (planted under a temporary name, or a linked folder),
never into the image collection, never half a file, and no CSV cell a spreadsheet would run."""
from __future__ import annotations

import csv
import json
import os
import re
import stat
from pathlib import Path

import pytest
from PIL import Image

from hitl import store
from hitl.tables import FORMULA_START, csv_cell

from .conftest import REPO, CliProject

HOSTILE_NAMES = ("=1+2.jpg", "@cmd.jpg", "+SUM(A1).jpg", "-x.jpg", "cam/ok.jpg")
HOSTILE_SPECIES = "=cmd|' /C calc'!A0"


def hostile_project(tmp_path: Path, names=HOSTILE_NAMES) -> CliProject:
    """Photos whose names, species, curator comments and box labels are formulas, selected from a detector file
    (one animal each), scored by the baseline, each rated hero with a comment, with a learned rater's
    predictions (copied from the baseline: fitting one takes minutes)."""
    photos = tmp_path / "photos"
    for name in names:
        (photos / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (320, 240), (90, 120, 60)).save(photos / name, "JPEG")
    md = {"info": {"format_version": "1.4"}, "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
          "classification_categories": {"1": HOSTILE_SPECIES},
          "images": [{"file": name, "detections": [{"category": "1", "conf": 0.9, "bbox": [0.1, 0.1, 0.5, 0.6],
                                                    "classifications": [["1", 0.9]]}]} for name in names]}
    (tmp_path / "md.json").write_text(json.dumps(md))
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(tmp_path / "md.json"), "--images", str(photos), "-n", str(len(names)),
                "--out", str(tmp_path / "written" / "candidates.csv"))
    project.run("score", "--model", "baseline")
    db = project.db
    with store.transaction(db):
        for name in names:
            store.insert_row(db, "ratings", {
                "source": "labelstudio", "project": "1", "annotation_id": name, "image_id": name,
                "annotator_email": "a@example.org", "stars": 9, "hero": 1, "skipped": 0, "deleted": 0,
                "boxes": json.dumps([{"x": 0.2, "y": 0.2, "w": 0.5, "h": 0.5, "label": "@fox"}]), "mode": "blind",
                "comment": "@SUM(1)", "updated_at": "2026-01-01T00:00:00+00:00"})
        db.execute("DELETE FROM ratings WHERE image_id = ?", [names[0]])  # one left unreviewed, for `next`
        db.execute("INSERT INTO scores (image_id, model, prompt_version, status, score, hero, raw_response, "
                   "created_at) SELECT image_id, 'learned', 'v1', status, score, hero, '{\"p_hero\": 0.4}', "
                   "created_at FROM scores WHERE model = 'baseline'")
    return project


def cells(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


# Every module that writes a CSV, and the file of it the test below checks: a new CSV writer
# fails test_every_csv_writer_is_in_the_table until it is added here, and so checked.
CSV_WRITERS = {"hitl/select/output.py": "candidates.csv", "hitl/cli/learn.py": "next.csv",
               "hitl/publish/report.py": "disagreements.csv", "hitl/publish/heroset.py": "manifest.csv",
               "hitl/publish/training.py": "crops.csv", "hitl/cli/similar.py": "similar.csv"}
# the only places a csv writer is made: the safe one, and Camtrap DP's tables (exchange data for R and
# Python, whose values stay as the standard defines them; the README says so)
RAW_CSV_WRITERS = {"hitl/tables.py", "converters/camtrapdp.py"}


def test_every_csv_writer_is_in_the_table():
    raw, safe = set(), set()
    for path in sorted([*(REPO / "hitl").rglob("*.py"), *(REPO / "converters").rglob("*.py")]):
        text, rel = path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix()
        if re.search(r"\bcsv\.(writer|DictWriter)\(|\bclass \w+\(csv\.", text):
            raw.add(rel)
        if rel != "hitl/tables.py" and re.search(r"\b(SafeDictWriter|safe_csv_text)\b", text):
            safe.add(rel)
    assert raw == RAW_CSV_WRITERS, "write CSV through hitl.tables.safe_csv_text"
    assert safe == set(CSV_WRITERS), "add the module and the CSV it writes to CSV_WRITERS (and to the test below)"


def test_every_csv_the_tool_writes_runs_no_formula(tmp_path):
    project = hostile_project(tmp_path)
    written = tmp_path / "written"
    project.run("next", "-n", "2", "--dry-run", "--out", str(written / "next.csv"))
    project.run("embed", "--model", "baseline")
    project.run("similar", "cam/ok.jpg", "-n", "4", "--out", str(written / "similar.csv"))
    project.run("report", "--out", str(written / "report"), "--resamples", "0")
    project.run("export", "--out", str(written / "heroes"))
    project.run("export", "--format", "crops", "--out", str(written / "crops"))
    found = {path.name: path for path in written.rglob("*.csv")}
    assert set(found) == set(CSV_WRITERS.values()), sorted(found)
    for name, path in found.items():
        text = cells(path)
        assert not [c for c in text if c.startswith(FORMULA_START) and csv_cell(c) != c], (name, text)
        assert [c for c in text if c[:1] == "'" and c[1:2] in FORMULA_START], (name, text)  # kept, neutralised
    crops = cells(found["crops.csv"])
    assert {f"'{HOSTILE_SPECIES}", "'@cmd.jpg", "'@fox"} <= set(crops)  # writerows too (61 raw cells once)
    assert "'-x.jpg" in cells(found["manifest.csv"]) and csv_cell("-3.5") == "-3.5"


# ---- never through a link -------------------------------------------------------------------------

def test_a_link_planted_under_a_temporary_name_is_never_followed(tmp_path):
    """The temporary names were once predictable (.NAME.PID.part, .NAME.json.tmp): a link planted
    there made an export overwrite a file anywhere. The CLI runs in this process: the PID is ours."""
    project = hostile_project(tmp_path, names=("cam/two.jpg", "cam/ok.jpg"))  # the first: no hero
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    heroes, review = tmp_path / "heroes", tmp_path / "review"
    (heroes / "cam").mkdir(parents=True)
    (review / "cam").mkdir(parents=True)
    for name in ("manifest.csv", "manifest.json", "index.html", ".hero-hitl-export.json", "cam/ok.jpg"):
        target = heroes / name
        target.with_name(f".{target.name}.{os.getpid()}.part").symlink_to(victim)
    (review / "cam" / ".ok.json.tmp").symlink_to(victim)
    project.run("export", "--out", str(heroes))
    project.run("labelme", "export", "--out", str(review))
    assert victim.read_text() == "precious"
    assert (heroes / "cam" / "ok.jpg").read_bytes()[:2] == b"\xff\xd8" and (heroes / "manifest.csv").is_file()
    assert json.loads((review / "cam" / "ok.json").read_text())["imagePath"].endswith("ok.jpg")
    assert not [p for p in tmp_path.rglob("*.part") if not p.is_symlink()]  # no temporary file left behind


def test_labelme_export_never_writes_through_a_linked_folder(tmp_path):
    project = hostile_project(tmp_path, names=("cam/ok.jpg", "cam/two.jpg", "other/three.jpg"))
    elsewhere, review = tmp_path / "elsewhere", tmp_path / "review"
    elsewhere.mkdir()
    review.mkdir()
    (review / "cam").symlink_to(elsewhere, target_is_directory=True)
    result = project.run("labelme", "export", "--out", str(review))
    assert list(elsewhere.iterdir()) == []
    assert "skipped link: 2" in result.output and "1 written" in result.output, result.output
    assert (review / "other" / "three.json").is_file()


def test_a_yolo_export_never_writes_through_its_linked_images_folder(tmp_path):
    project = hostile_project(tmp_path, names=("cam/ok.jpg", "cam/two.jpg"))
    out, elsewhere = tmp_path / "yolo", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "images").symlink_to(elsewhere, target_is_directory=True)
    result = project.run("export", "--format", "yolo", "--out", str(out))
    assert list(elsewhere.rglob("*")) == [] and "conflict (left untouched)" in result.output


def test_write_atomic_refuses_links_and_leaves_a_whole_file(tmp_path):
    from hitl.files import OutputError, atomic_output, write_atomic

    root = tmp_path / "out"
    (root / "a").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "linked").symlink_to(elsewhere, target_is_directory=True)
    (root / "a" / "file.txt").symlink_to(elsewhere / "victim.txt")
    for path in (root / "linked" / "x.txt", root / "linked" / "deeper" / "x.txt", root / "a" / "file.txt"):
        with pytest.raises(OutputError, match="is a link"):
            write_atomic(path, "text", root)
    assert list(elsewhere.iterdir()) == []
    write_atomic(root / "new" / "deeper" / "x.txt", "text", root)  # folders between are made
    previous = os.umask(0o022)
    try:
        write_atomic(root / "b.bin", b"\x00\x01", root)
    finally:
        os.umask(previous)
    assert (root / "new" / "deeper" / "x.txt").read_text() == "text" and (root / "b.bin").read_bytes() == b"\x00\x01"
    assert stat.S_IMODE((root / "b.bin").stat().st_mode) == 0o644  # as any new file: readable by a web server

    class Crash(Exception):
        pass

    with pytest.raises(Crash):
        with atomic_output(root / "b.bin", root, binary=True) as fh:
            fh.write(b"half")
            raise Crash
    assert (root / "b.bin").read_bytes() == b"\x00\x01"  # the old file, whole
    assert not list(root.rglob("*.part"))


# ---- never into the collection ----------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["heroes", "crops", "yolo", "coco"])
@pytest.mark.parametrize("inside", [".", "cam"])
def test_an_export_into_the_image_collection_is_refused(tmp_path, fmt, inside):
    project = hostile_project(tmp_path, names=("cam/ok.jpg", "cam/two.jpg"))
    photos = tmp_path / "photos"
    before = sorted(p.relative_to(photos) for p in photos.rglob("*"))
    result = project.run("export", "--format", fmt, "--out", str(photos / inside), ok=False)
    assert result.exit_code == 1 and "inside the image collection" in result.output, result.output
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(photos) for p in photos.rglob("*")) == before
