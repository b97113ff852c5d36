"""Camtrap DP in (select --camtrap-dp) and out (export --format camtrap-dp, --update), on the
standard's own example package; validated offline with frictionless against its 1.0.2 schemas."""
from __future__ import annotations

import csv
import json
import shutil
import uuid

import pytest

from .camtrap_validate import camtrap_dp_errors
from .conftest import CliProject
from .helpers.camtrapdp import EXAMPLE, HERON_MEDIA, copy_example, table
from .helpers.labelstudio import rating_result, studio_api

REMOTE_MEDIA = 413


@pytest.fixture
def project(tmp_path) -> CliProject:
    return CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})


def test_the_example_package_is_one_heron_sequence(project):
    result = project.run("select", "--camtrap-dp", str(EXAMPLE / "datapackage.json"), "-n", "5", "--json")
    counts = json.loads(result.stdout)
    assert counts["images_read"] == HERON_MEDIA and counts["eligible"] == HERON_MEDIA and counts["selected"] == 1
    assert counts["excluded"]["remote media (a URL): not downloaded, or not found under --media-root"] == REMOTE_MEDIA
    (image,) = project.db["images"].rows
    assert image["image_id"].startswith("media/") and image["image_id"].endswith(".JPG")
    assert (image["species"], image["species_source"], image["night"]) == ("Ardea", "camtrap-dp", 1)
    assert image["location"] == "B_DM_val 4_'t WAD" and image["datetime"].startswith("2021-04-11T20:43")
    (box,) = project.db["detections"].rows
    media_id = next(m["mediaID"] for m in table(EXAMPLE / "media.csv") if m["filePath"] == image["image_id"])
    obs = next(o for o in table(EXAMPLE / "observations.csv") if o["mediaID"] == media_id)
    assert (box["x"], box["y"], box["w"], box["h"]) == pytest.approx(
        tuple(float(obs[k]) for k in ("bboxX", "bboxY", "bboxWidth", "bboxHeight")), abs=1e-5)
    assert box["conf"] == pytest.approx(float(obs["classificationProbability"]))
    assert project.db["camtrap_media"].get(image["image_id"])["media_id"] == media_id


def test_remote_media_are_read_from_the_media_root(project, tmp_path):
    package = copy_example(tmp_path / "pkg")
    remote = next(m for m in table(package / "media.csv") if m["filePath"].startswith("https://"))
    (package / "downloads").mkdir()
    shutil.copy(package / "media" / "20210531082538-RCNX0031.JPG", package / "downloads" / remote["fileName"])
    counts = json.loads(project.run("select", "--camtrap-dp", str(package), "--media-root", str(package / "downloads"),
                                    "-n", "5", "--json").stdout)
    assert counts["images_read"] == HERON_MEDIA + 1
    assert counts["excluded"]["remote media (a URL): not downloaded, or not found under --media-root"] == REMOTE_MEDIA - 1
    # that media's mallard was classified by a person, without a box: its size is unknown
    assert counts["excluded"]["animal observed without a box (its size is unknown)"] == 1
    outside = project.run("select", "--camtrap-dp", str(package), "--media-root", str(tmp_path), "-n", "5", ok=False)
    assert outside.exit_code == 1 and "outside the package folder" in outside.output
    elsewhere = project.run("select", "--camtrap-dp", str(package), "--images", str(tmp_path), "-n", "5", ok=False)
    assert elsewhere.exit_code == 1 and "relative to its own folder" in elsewhere.output


def test_bad_packages_are_one_line_or_counted(project, tmp_path):
    package = copy_example(tmp_path / "pkg")
    descriptor = json.loads((package / "datapackage.json").read_text())
    rows = table(package / "media.csv")
    heron = [r for r in rows if r["filePath"].startswith("media/")]
    heron[0]["filePath"] = ""
    with (package / "media.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    obs = table(package / "observations.csv")
    next(o for o in obs if o["mediaID"] == heron[1]["mediaID"])["bboxX"] = "0.95"  # x + width > 1
    with (package / "observations.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(obs[0]))
        writer.writeheader()
        writer.writerows(obs)
    counts = json.loads(project.run("select", "--camtrap-dp", str(package), "-n", "5", "--json").stdout)
    assert counts["problems"] == {"pkg/media.csv: missing filePath": 1, "pkg/observations.csv: bbox outside [0,1]": 1}
    assert counts["images_read"] == HERON_MEDIA - 1

    descriptor["resources"] = [r for r in descriptor["resources"] if r["name"] != "observations"]
    (package / "datapackage.json").write_text(json.dumps(descriptor))
    missing = project.run("select", "--camtrap-dp", str(package), "-n", "5", ok=False)
    assert missing.exit_code == 1
    assert missing.output.strip().splitlines()[-1].startswith("Error: ") and "no 'observations' resource" in missing.output
    (package / "datapackage.json").write_text("{not json")
    broken = project.run("select", "--camtrap-dp", str(package), "-n", "5", ok=False)
    assert broken.exit_code == 1 and "not valid JSON" in broken.output and "Traceback" not in broken.output


def test_example_to_label_studio_and_back_as_a_valid_package(tmp_path, label_studio):
    """The acceptance: select, score, push to a real Label Studio, a rating through its API,
    sync, export as Camtrap DP: valid, and the rated hero is the one favorite media row."""
    package = copy_example(label_studio.document_root / f"camtrap-{uuid.uuid4().hex[:6]}")
    review = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db"), "LABEL_STUDIO_API_KEY": label_studio.token,
                                            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": None})
    client = studio_api(label_studio.url, label_studio.token)
    review.run("select", "--camtrap-dp", str(package), "-n", "5")
    review.run("score", "--model", "baseline")
    title = f"camtrap {uuid.uuid4().hex[:6]}"
    review.run("push", "--url", label_studio.url, "--project", title, "--document-root", str(label_studio.document_root),
               "--no-webhook")
    project = next(p for p in client.projects.list(title=title) if p.title == title)
    (task,) = client.tasks.list(project=project.id, fields="all")
    client.annotations.create(id=task.id, result=rating_result(9, True, "the heron's eye catches the IR"))
    review.run("sync", "--url", label_studio.url, "--project", title)
    out = tmp_path / "out"
    result = review.run("export", "--format", "camtrap-dp", "--out", str(out))
    assert "1 reviewed media, 1 favorite" in result.output
    assert camtrap_dp_errors(out) == []
    media = table(out / "media.csv")
    (hero,) = [m for m in media if m["favorite"] == "true"]
    assert hero["filePath"] == task.data["image_id"] and (out / hero["filePath"]).is_file()
    assert "the heron's eye catches the IR" in hero["mediaComments"]
    observations = table(out / "observations.csv")
    assert [o["scientificName"] for o in observations] == ["Ardea"]
    assert observations[0]["classificationMethod"] == "machine" and observations[0]["mediaID"] == hero["mediaID"]


def test_update_changes_favorite_and_comments_only(project, tmp_path):
    package = copy_example(tmp_path / "pkg")
    before = {name: (package / name).read_bytes() for name in ("deployments.csv", "observations.csv",
                                                               "datapackage.json")}
    media_before = table(package / "media.csv")
    project.run("select", "--camtrap-dp", str(package), "-n", "5")
    (image_id,) = [r["image_id"] for r in project.db["candidates"].rows]
    (tmp_path / "d.csv").write_text(f"image_id,curator,stars,hero,comment\n{image_id},ana@example.org,9,yes,"
                                    f"\"sharp, and the eye shines\"\n{image_id},ben@example.org,8,yes,\n")
    project.run("ratings", "--import", str(tmp_path / "d.csv"))
    result = project.run("export", "--format", "camtrap-dp", "--update")
    assert "1 favorite, 0 reviewed and not, 1 with curator comments" in result.output
    media_after = table(package / "media.csv")
    assert len(media_after) == len(media_before)
    changed = [(b, a) for b, a in zip(media_before, media_after) if b != a]
    (row_before, row_after) = changed[0]
    assert len(changed) == 1 and row_after["filePath"] == image_id
    assert {k for k in row_after if row_after[k] != row_before[k]} == {"favorite", "mediaComments"}
    assert row_after["favorite"] == "true" and row_after["mediaComments"] == "ana@example.org: sharp, and the eye shines"
    assert {name: (package / name).read_bytes() for name in before} == before
    assert (package / "media.csv.before-hero-hitl").read_bytes() == (EXAMPLE / "media.csv").read_bytes()
    assert camtrap_dp_errors(package) == []
    again = project.run("export", "--format", "camtrap-dp", "--update")  # the same verdicts: the same file
    assert table(package / "media.csv") == media_after and "1 favorite" in again.output


def test_detector_images_need_deployments_then_export_valid(tmp_path, sample_data):
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                "--images", str(sample_data / "images"), "-n", "40", "--include-people")
    candidates = list(project.db.query("SELECT image_id, location FROM candidates JOIN images USING (image_id)"))
    lines = ["image_id,curator,stars,hero"] + [f"{c['image_id']},ana@example.org,{8 if k == 0 else 4},"
                                               f"{'yes' if k == 0 else 'no'}" for k, c in enumerate(candidates)]
    # an image scored from a folder (`score --images`) has neither capture time nor location
    project.db["images"].insert({"image_id": "loose/IMG_0001.JPG", "root": str(sample_data / "images")})
    lines.append("loose/IMG_0001.JPG,ana@example.org,9,yes")
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    project.run("ratings", "--import", str(tmp_path / "d.csv"))
    # the sample's candidates have no person in them: one walks through the second one's frame
    project.db["detections"].insert({"image_id": candidates[1]["image_id"], "det_index": 99, "kind": "person",
                                     "category": "2", "conf": 0.9, "x": 0.1, "y": 0.1, "w": 0.2, "h": 0.5})
    refused = project.run("export", "--format", "camtrap-dp", "--out", str(tmp_path / "out"), ok=False)
    assert refused.exit_code == 1 and "--deployments" in refused.output and "cam_a" in refused.output
    locations = sorted({c["location"] for c in candidates})
    (tmp_path / "deployments.csv").write_text(
        "deploymentID,locationName,latitude,longitude,deploymentStart,deploymentEnd\n" + "".join(
            f"dep-{k},{loc},{50 + k / 10},{4 + k / 10},2024-01-01T00:00:00+01:00,2024-12-31T00:00:00+01:00\n"
            for k, loc in enumerate(locations)))
    left_out = project.run("export", "--format", "camtrap-dp", "--out", str(tmp_path / "default"), "--deployments",
                           str(tmp_path / "deployments.csv"))
    assert (f"left out 1 image with a person detected: {candidates[1]['image_id']} (--include-people to include it)"
            in left_out.output and "left out 1 image with no detector record: loose/IMG_0001.JPG" in left_out.output)
    assert sorted(m["filePath"] for m in table(tmp_path / "default" / "media.csv")) == sorted(
        f"media/{c['image_id']}" for c in candidates[:1] + candidates[2:])
    # asked for: the person's image (not public) and the image no detector file names
    result = project.run("export", "--format", "camtrap-dp", "--out", str(tmp_path / "out"), "--deployments",
                         str(tmp_path / "deployments.csv"), "--include-people", "--include-undetected")
    assert camtrap_dp_errors(tmp_path / "out") == []
    assert "1 reviewed images have no capture time or location and are left out" in result.output
    media = table(tmp_path / "out" / "media.csv")
    assert len(media) == len(candidates) and [m["favorite"] for m in media].count("true") == 1
    assert next(m for m in media if m["favorite"] == "true")["filePath"] == f"media/{candidates[0]['image_id']}"
    assert [m["filePath"] for m in media if m["filePublic"] == "false"] == [f"media/{candidates[1]['image_id']}"]
    observations = table(tmp_path / "out" / "observations.csv")
    person = [o for o in observations if o["observationType"] == "human"]
    assert len(person) == 1 and person[0]["classificationMethod"] == "machine" and person[0]["bboxHeight"] == "0.5"
    assert "reviewed media" in result.output
