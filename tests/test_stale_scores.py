"""A score follows its inputs: scored from a folder before selection, an image's baseline score is
recomputed once select writes its detections; a model that sees only the image is not made stale by
them; a score computed from other detections and not recomputed (imported) is marked stale in the report
and the gallery, with the command that rescores it, and `score --refresh-stale` rescores only those."""
from __future__ import annotations

import json

from hitl.store.inputs import NO_DETECTIONS, detection_digests, stale_scores

from .fakes import FakeOpenAI
from .helpers.scoring import QWEN, Project

REFRESH = "python -m hitl score --model baseline --prompt-version hero-v1 --refresh-stale"


def select(project: Project, sample_data, *extra: str):
    return project.run("select", "--md", str(sample_data / "md_results.json"), "--cct",
                       str(sample_data / "cct.json"), "--images", str(sample_data / "images"), "-n", "5", *extra)


def candidates(project: Project) -> list[str]:
    return [r["image_id"] for r in project.db.query("SELECT image_id FROM candidates ORDER BY image_id")]


def test_select_recomputes_the_baseline_scores_of_a_folder_scored_before_it(tmp_path, sample_data):
    project = Project(tmp_path / "folder-first")
    project.run("score", "--model", "baseline", "--images", str(sample_data / "images"))
    before = project.scores("baseline")
    assert all(r["inputs"] == NO_DETECTIONS for r in before.values())
    assert all(r["reasoning"].startswith("No animal box") for r in before.values() if r["status"] == "ok")

    result = select(project, sample_data, "--add")
    chosen = candidates(project)
    assert f"Rescored {len(chosen)} baseline scores: their images' detections changed" in result.output
    # the same verdicts as scoring after selection gives
    reference = Project(tmp_path / "select-first")
    select(reference, sample_data)
    reference.run("score", "--model", "baseline")
    assert candidates(reference) == chosen
    after, expected = project.scores("baseline"), reference.scores("baseline")
    digests = detection_digests(project.db, chosen)
    for image_id in chosen:
        row = after[image_id]
        assert (row["score"], row["reasoning"]) == (expected[image_id]["score"], expected[image_id]["reasoning"])
        assert not row["reasoning"].startswith("No animal box") and row["inputs"] == digests[image_id] != "none"
    others = set(before) - set(chosen)  # the images select did not touch keep their scores
    assert all(after[i]["updated_at"] == before[i]["updated_at"] for i in others)

    again = json.loads(select(project, sample_data, "--json").stdout)  # the same detections: nothing to redo
    assert again["baseline_rescored"] == 0 and stale_scores(project.db, unrecorded=True, image_ids=chosen) == []


def test_a_model_that_sees_only_the_image_is_not_made_stale_by_new_detections(tmp_path, sample_data):
    with FakeOpenAI() as server:
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        project.run("score", "--model", QWEN, "--images", str(sample_data / "images"))
        calls = server.count_generate()
        select(project, sample_data)
        assert server.count_generate() == calls  # nothing paid for behind the curator's back
        assert all(r["inputs"] is None for r in project.scores(QWEN).values())  # it never saw the boxes
        assert stale_scores(project.db, model=QWEN) == []
        assert "No stale" in project.run("score", "--model", QWEN, "--refresh-stale").output
        assert server.count_generate() == calls


def test_imported_stale_scores_are_marked_and_refreshed_on_request(tmp_path, sample_data):
    elsewhere = Project(tmp_path / "elsewhere")  # a folder scored with no detections, exported as a label file
    elsewhere.run("score", "--model", "baseline", "--images", str(sample_data / "images"))
    labels = tmp_path / "labels.json"
    elsewhere.run("score", "--model", "baseline", "--export", str(labels))

    project = Project(tmp_path / "here")
    select(project, sample_data)
    chosen = candidates(project)
    project.run("score", "--import", str(labels))  # stored as they were computed: without the boxes
    stale = stale_scores(project.db)
    assert {(r["image_id"], r["model"]) for r in stale} == {(i, "baseline") for i in chosen}

    project.run("gallery", "--out", str(tmp_path / "gallery"))
    page = (tmp_path / "gallery" / "index.html").read_text()
    assert f"baseline@hero-v1: {len(chosen)} images; refresh with <code>{REFRESH}</code>" in page
    assert page.count('title="computed before this image\'s detections changed">stale</span>') == len(chosen)
    project.run("report", "--out", str(tmp_path / "report"), "--resamples", "0")
    assert f"refresh with <code>{REFRESH}</code>" in (tmp_path / "report" / "report.html").read_text()

    refreshed = project.run("score", "--model", "baseline", "--refresh-stale")
    assert f"{len(chosen)} scored, 0 failed of {len(chosen)}" in refreshed.output
    digests = detection_digests(project.db, chosen)
    assert all(project.scores("baseline")[i]["inputs"] == digests[i] for i in chosen)
    assert all(not project.scores("baseline")[i]["reasoning"].startswith("No animal box") for i in chosen)
    assert stale_scores(project.db) == []
    assert "No stale" in project.run("score", "--model", "baseline", "--refresh-stale").output
    project.run("gallery", "--out", str(tmp_path / "gallery"))
    assert "stale" not in (tmp_path / "gallery" / "index.html").read_text().split("<main", 1)[1]
    clash = project.run("score", "--model", "baseline", "--refresh-stale", "--retry-failed", ok=False)
    assert clash.exit_code == 2 and "cannot be combined with --retry-failed" in clash.output
