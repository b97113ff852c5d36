"""Trusting the inputs (issue 22): a run under the wrong --images stops before it replaces anything,
a file given as another kind is named for what it is, a Camtrap DP package's links never lead out of
it (at selection, nor at export), and a CSV cell over 128 KiB is one counted bad row."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from .conftest import REPO, SHARED, CliProject
from .helpers.camtrapdp import EXAMPLE, copy_example, table

SAMPLE = REPO / "sample_data"
CAMERA_TRAPS = SHARED / "camera_traps"
HERO_LABELS = {"labeling_info": {"model_used": "gemini-2.5-flash"},
               "results": [{"image_path": "/x/a.jpg", "image_filename": "a.jpg", "aesthetic_score": 7.5,
                            "reasoning": "sharp", "success": True, "error": None}]}
LS_EXPORT = [{"id": 3, "project": 4, "data": {"image_id": "a.jpg"}, "annotations": [{"id": 1, "result": []}]}]
LABELME = {"version": "6.3.1", "flags": {}, "shapes": [], "imagePath": "a.jpg", "imageWidth": 10, "imageHeight": 10}


@pytest.fixture
def project(tmp_path) -> CliProject:
    return CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})


def files(tmp_path: Path) -> dict[str, Path]:
    """One real file of each kind of input."""
    made = {"hero-images labels": tmp_path / "labels.json", "labelstudio export": tmp_path / "export.json",
            "labelme": tmp_path / "IMG_0001.json"}
    for kind, content in (("hero-images labels", HERO_LABELS), ("labelstudio export", LS_EXPORT), ("labelme", LABELME)):
        made[kind].write_text(json.dumps(content))
    return {"megadetector": CAMERA_TRAPS / "md_results.json", "speciesnet": CAMERA_TRAPS / "speciesnet_predictions.json",
            "cct": SAMPLE / "cct.json", "camtrap-dp": EXAMPLE / "datapackage.json", "camtrap-dp media": EXAMPLE / "media.csv",
            "camtrap-dp observations": EXAMPLE / "observations.csv",
            "camtrap-dp deployments": EXAMPLE / "deployments.csv", "decisions sheet": SAMPLE / "decisions.csv", **made}


def test_each_kind_of_input_is_recognised_as_itself_only(tmp_path):
    from converters.sniff import sniff

    for kind, path in files(tmp_path).items():
        assert sniff(path.read_bytes()[:65536]) == [kind], path
    assert sniff(b'{"images": [], "info": {}}') == [] and sniff(b"\x00\xff garbage") == []


OPTIONS = {"megadetector": "--md", "cct": "--cct", "speciesnet": "--speciesnet", "camtrap-dp": "--camtrap-dp"}
# what the refusal of a file of each kind says it is, and where it goes
SAID = {"megadetector": ("MegaDetector", "pass it as --md"), "cct": ("COCO Camera Traps", "pass it as --cct"),
        "speciesnet": ("SpeciesNet", "pass it as --speciesnet"),
        "camtrap-dp": ("Camtrap DP datapackage.json", "pass it (or its folder) as --camtrap-dp"),
        "camtrap-dp media": ("media table", "pass the package's datapackage.json (or its folder) as --camtrap-dp"),
        "camtrap-dp observations": ("observations table", "datapackage.json (or its folder) as --camtrap-dp"),
        "camtrap-dp deployments": ("deployments table", "export --format camtrap-dp --deployments"),
        "hero-images labels": ("hero-images label file", "score --import"),
        "labelstudio export": ("Label Studio JSON export", "sync --from-export"),
        "labelme": ("Labelme file", "labelme import"), "decisions sheet": ("decisions sheet", "ratings --import")}


@pytest.mark.parametrize("option_kind", sorted(OPTIONS))
def test_a_file_of_another_kind_is_refused_in_one_line_naming_it(tmp_path, project, option_kind):
    """--cct md_results.json read as a CCT file of 14 bad records, and --camtrap-dp media.csv said
    "JSON is malformed": each file given as another kind is now named for what it is."""
    for kind, path in files(tmp_path).items():
        if kind == option_kind:
            continue
        if option_kind == "megadetector":
            args = ["--md", str(path), "--images", str(CAMERA_TRAPS / "images")]
        elif option_kind == "camtrap-dp":
            args = ["--camtrap-dp", str(path)]
        else:
            args = ["--md", str(CAMERA_TRAPS / "md_results.json"), "--images", str(CAMERA_TRAPS / "images"),
                    OPTIONS[option_kind], str(path)]
        result = project.run("select", *args, "-n", "3", ok=False)
        errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert result.exit_code == 1 and len(errors) == 1, (kind, result.output)
        what, where = SAID[kind]
        assert errors[0].startswith(f"Error: {path} looks like ") and what in errors[0] and where in errors[0], errors
        assert SAID[option_kind][0] in errors[0].split("; ")[0].split(", not ")[1], errors[0]
    assert project.db["candidates"].count == 0


def test_each_reader_still_reads_its_own_kind(tmp_path, project):
    project.run("select", "--md", str(CAMERA_TRAPS / "md_results.json"), "--speciesnet",
                str(CAMERA_TRAPS / "speciesnet_predictions.json"), "--images", str(CAMERA_TRAPS / "images"), "-n", "2")
    project.run("select", "--md", str(SAMPLE / "md_results.json"), "--cct", str(SAMPLE / "cct.json"),
                "--images", str(SAMPLE / "images"), "-n", "2")
    project.run("select", "--camtrap-dp", str(EXAMPLE), "-n", "2")
    assert project.db["selection_runs"].count == 3 and project.db["candidates"].count == 1


# ---- the wrong --images ------------------------------------------------------------------------------

def test_the_wrong_images_folder_stops_before_it_replaces_the_candidates(project):
    md = ["--md", str(CAMERA_TRAPS / "md_results.json")]
    project.run("select", *md, "--images", str(CAMERA_TRAPS / "images"), "-n", "7")
    before = sorted(r["image_id"] for r in project.db["candidates"].rows)
    assert len(before) == 7
    for extra in ([], ["--add"]):
        result = project.run("select", *md, "--images", str(SAMPLE / "images"), "-n", "7", *extra, ok=False)
        (error,) = [line for line in result.output.splitlines() if line.startswith("Error: ")]
        assert result.exit_code == 1 and f"under --images {SAMPLE / 'images'} (e.g. {SAMPLE / 'images'}/" in error
        assert "image file missing" in error and "nothing was written" in error and "--no-check-files" in error
        assert sorted(r["image_id"] for r in project.db["candidates"].rows) == before
        assert "Writing" not in result.output
    runs = [r["status"] for r in project.db["selection_runs"].rows]
    assert runs == ["finished", "failed", "failed"]
    # --no-check-files keeps its meaning: the files are not opened, so nothing is known missing
    project.run("select", *md, "--images", str(SAMPLE / "images"), "-n", "7", "--no-check-files")
    assert project.db["candidates"].count == 7


def test_a_few_missing_files_are_replaced_not_refused(tmp_path, project):
    images = tmp_path / "images"
    shutil.copytree(CAMERA_TRAPS / "images", images)
    (images / "ocelot.jpg").unlink()
    (images / "domestic_dog.jpg").unlink()
    result = project.run("select", "--md", str(CAMERA_TRAPS / "md_results.json"), "--images", str(images), "-n", "5")
    assert "image file missing" in result.output and project.db["candidates"].count == 5


# ---- Camtrap DP: nothing from outside the package --------------------------------------------------

def linked_package(tmp_path: Path) -> tuple[Path, Path, str]:
    """The example package with one media file moved out of it (to ``secret``) and linked back:
    (the package, secret, that media's filePath)."""
    package = copy_example(tmp_path / "pkg")
    secret = tmp_path / "secret"
    secret.mkdir()
    name = sorted(p.name for p in (package / "media").iterdir())[0]
    shutil.move(package / "media" / name, secret / "private.jpg")
    (package / "media" / name).symlink_to(secret / "private.jpg")
    return package, secret, f"media/{name}"


def test_media_that_lead_out_of_the_package_are_counted_never_selected(tmp_path, project):
    package, secret, linked = linked_package(tmp_path)
    result = project.run("select", "--camtrap-dp", str(package), "-n", "5", "--json")
    counts = json.loads(result.stdout)
    assert counts["problems"] == {"pkg/media.csv: file outside the package": 1}
    assert counts["images_read"] == 9 and project.db["candidates"].count == 1
    assert linked not in {r["image_id"] for r in project.db["images"].rows}
    # the media folder itself a link out of the package: none of its files is read
    shutil.move(package / "media", secret / "media")
    (package / "media").symlink_to(secret / "media", target_is_directory=True)
    refused = project.run("select", "--camtrap-dp", str(package), "-n", "5", ok=False)
    assert refused.exit_code == 1 and "is eligible" in refused.output
    counts = json.loads(project.db.execute("SELECT counts FROM selection_runs ORDER BY id DESC").fetchone()[0])
    assert "error" in counts and project.db["candidates"].count == 1


def rate_every_candidate(project: CliProject, tmp_path: Path) -> list[str]:
    ids = sorted(r["image_id"] for r in project.db["candidates"].rows)
    (tmp_path / "d.csv").write_text("image_id,curator,stars,hero\n" + "".join(f"{i},ana@example.org,9,yes\n" for i in ids))
    project.run("ratings", "--import", str(tmp_path / "d.csv"))
    return ids


def test_an_export_never_copies_a_file_that_now_leads_out_of_its_package(tmp_path, project):
    package = copy_example(tmp_path / "pkg")
    project.run("select", "--camtrap-dp", str(package), "-n", "5")
    (image_id,) = rate_every_candidate(project, tmp_path)
    secret = tmp_path / "secret.jpg"  # after selection, the file becomes a link to something else
    shutil.move(package / image_id, secret)
    (package / image_id).symlink_to(secret)
    heroes = project.run("export", "--out", str(tmp_path / "heroes"))
    assert "0 exported" in heroes.output and "a link out of" in heroes.output
    assert not (tmp_path / "heroes" / image_id).exists()
    dp = project.run("export", "--format", "camtrap-dp", "--out", str(tmp_path / "dp"))
    assert "0 files exported" in dp.output and "a link out of" in dp.output
    assert not (tmp_path / "dp" / image_id).exists() and table(tmp_path / "dp" / "media.csv") == []
    yolo = project.run("export", "--format", "yolo", "--out", str(tmp_path / "yolo"))
    assert "0 images exported" in yolo.output and not list((tmp_path / "yolo").rglob("*.JPG"))
    crops = project.run("export", "--format", "crops", "--out", str(tmp_path / "crops"))
    assert "0 crops" in crops.output and "a link out of" in crops.output


def test_with_no_check_files_a_file_that_is_no_image_is_never_exported(tmp_path, project):
    package = copy_example(tmp_path / "pkg")
    heron = sorted((package / "media").iterdir())
    for path in heron:
        path.write_text("root:x:0:0:root:/root:/bin/bash\n")  # text where the images were
    project.run("select", "--camtrap-dp", str(package), "-n", "5", "--no-check-files")
    (image_id,) = rate_every_candidate(project, tmp_path)
    result = project.run("export", "--out", str(tmp_path / "heroes"))
    assert "0 exported" in result.output and "unreadable image" in result.output
    assert not (tmp_path / "heroes" / image_id).exists()


# ---- CSV cells over 128 KiB ------------------------------------------------------------------------------

def rewrite(path: Path, change) -> None:
    rows = table(path)
    change(rows)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_a_cell_over_128_kib_is_one_counted_bad_row(tmp_path, project):
    package = copy_example(tmp_path / "pkg")
    long = "x" * 200_000

    def comment(rows):
        next(r for r in rows if r["filePath"].startswith("media/"))["mediaComments"] = long
    rewrite(package / "media.csv", comment)
    counts = json.loads(project.run("select", "--camtrap-dp", str(package), "-n", "5", "--json").stdout)
    assert counts["problems"] == {"pkg/media.csv: cell longer than 131,072 characters": 1}
    assert counts["images_read"] == 9
    # writing the verdicts back keeps that row as it was, long cell and all
    rate_every_candidate(project, tmp_path)
    project.run("export", "--format", "camtrap-dp", "--update")
    limit = csv.field_size_limit(len(long) + 1)  # the test's own reading lifts the limit too
    try:
        rows = table(package / "media.csv")
    finally:
        csv.field_size_limit(limit)
    assert [r["mediaComments"] for r in rows].count(long) == 1 and len(rows) == len(table(EXAMPLE / "media.csv"))
