"""The best frame of a burst: a multi-image task in a real Label Studio, the pick as a decision
(webhook, sync, validator, history), the picked frame as the sequence's candidate, in the store
and in the export."""
from __future__ import annotations

import csv
import json
import urllib.request
import uuid

import pytest
from label_studio_sdk import LabelStudio

from converters.common import HumanRating
from converters.decisions import DecisionError
from converters.labelstudio import build_burst_task, rating_from_annotation
from hitl import store
from hitl.review.events import BadEvent, store_event, validate
from hitl.score.targets import candidate_targets
from hitl.store.ratings import mark_deleted, record_ratings

from .conftest import CliProject
from .test_camtrapdp import copy_example
from .test_sync_e2e import rating_result

FRAMES = [f"cam/seq1/IMG_{k:02d}.JPG" for k in range(1, 9)]


def burst_data(marked: int = 3, frames: list[str] = FRAMES) -> dict:
    return {"image": f"/data/local-files/?d={frames[marked - 1]}", "image_id": frames[marked - 1],
            "frames": [f"/data/local-files/?d={f}" for f in frames], "frame_ids": frames, "marked": marked,
            "mode": "assisted"}


def pick_result(frame: int | None, stars: int = 8, hero: bool = True) -> list[dict]:
    result = [{**r, "to_name": "frames"} for r in rating_result(stars, hero)]
    if frame is not None:
        result.append({"from_name": "best_frame", "to_name": "frames", "type": "choices",
                       "value": {"choices": [str(frame)]}})
    return result


@pytest.fixture
def burst_db(tmp_path):
    """A store with one candidate (frame 3 of 8 of seq1) and its burst frames kept."""
    db = store.connect(tmp_path / "h.db")
    with store.transaction(db):
        db["selection_runs"].insert({"id": 1, "status": "finished"})
        for k, image_id in enumerate(FRAMES, start=1):
            db["images"].insert({"image_id": image_id, "root": str(tmp_path), "seq_id": "seq1", "frame_num": k,
                                 "width": 100, "height": 80})
            db["burst_members"].insert({"seq_id": "seq1", "image_id": image_id, "position": k,
                                        "quality": 0.5, "selected": int(k == 3), "run_id": 1})
        db["candidates"].insert({"image_id": FRAMES[2], "run_id": 1, "rank": 4, "category": "close_up",
                                 "score": 0.7, "reason": "close-up: a heron"})
    return db


def candidate(db) -> tuple[str, str]:
    (row,) = db.execute("SELECT image_id, reason FROM candidates").fetchall()
    return row


def pick(annotation_id: int, frame: int | None, when: str, email: str = "ana@example.org", **kw) -> HumanRating:
    annotation = {"id": annotation_id, "result": pick_result(frame, **kw), "task": 11, "updated_at": when}
    return rating_from_annotation(annotation, {"id": 11, "data": burst_data()}, "5", annotator_email=email)


def test_a_pick_is_a_rating_of_the_frame_picked():
    rating = pick(1, 7, "2026-12-01T10:00:00Z")
    assert (rating.image_id, rating.burst_of, rating.stars, rating.hero) == (FRAMES[6], FRAMES[2], 8, True)
    kept = pick(2, None, "2026-12-01T10:00:00Z")  # no pick: the marked frame is kept
    assert (kept.image_id, kept.burst_of) == (FRAMES[2], FRAMES[2])


@pytest.mark.parametrize("frame", [0, 9, "7.5", "seven"])
def test_a_pick_outside_the_burst_is_refused(frame):
    annotation = {"id": 1, "task": 11, "result": [{"from_name": "best_frame", "type": "choices",
                                                   "value": {"choices": [str(frame)]}}]}
    with pytest.raises(DecisionError, match="bad frame pick"):
        rating_from_annotation(annotation, {"id": 11, "data": burst_data()}, "5")


def test_a_burst_task_with_bad_frames_is_refused():
    annotation = {"id": 1, "task": 11, "result": pick_result(2)}
    for data in ({**burst_data(), "frame_ids": FRAMES[:1], "frames": FRAMES[:1], "marked": 1},
                 {**burst_data(), "marked": 12}, {**burst_data(), "frame_ids": "IMG_01.JPG"}):
        with pytest.raises(DecisionError, match="burst task"):
            rating_from_annotation(annotation, {"id": 11, "data": data}, "5")
    boxed = {"from_name": "boxes", "type": "rectanglelabels",
             "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["animal"]}}
    with pytest.raises(DecisionError, match="no boxes"):
        rating_from_annotation({**annotation, "result": [*pick_result(2), boxed]}, {"id": 11, "data": burst_data()}, "5")


def test_the_latest_pick_moves_the_candidate_and_a_delete_moves_it_back(burst_db):
    counts = record_ratings(burst_db, [pick(1, 7, "2026-12-01T10:00:00Z")], via="webhook")
    assert counts["candidates moved to the frame picked"] == 1
    image_id, reason = candidate(burst_db)
    assert image_id == FRAMES[6]
    assert reason == "close-up: a heron | picked from its burst by ana@example.org: frame 7 of 8 (selection chose frame 3)"
    rank = burst_db.execute("SELECT rank, category FROM candidates").fetchone()
    assert tuple(rank) == (4, "close_up")
    # an older pick by another curator arrives later: the newer one still wins
    record_ratings(burst_db, [pick(2, 5, "2026-12-01T09:00:00Z", email="ben@example.org")], via="sync")
    assert candidate(burst_db)[0] == FRAMES[6]
    mark_deleted(burst_db, "labelstudio", "5", ["1"], via="webhook")
    assert candidate(burst_db) == (FRAMES[4], "close-up: a heron | picked from its burst by ben@example.org: "
                                              "frame 5 of 8 (selection chose frame 3)")
    mark_deleted(burst_db, "labelstudio", "5", ["2"], via="webhook")
    assert candidate(burst_db) == (FRAMES[2], "close-up: a heron")  # no live pick: selection's own frame
    history = [r["change"] for r in burst_db["rating_history"].rows_where("annotation_id = '1'")]
    assert history == ["created", "deleted"]


def test_a_skipped_burst_moves_nothing(burst_db):
    annotation = {"id": 3, "task": 11, "was_cancelled": True, "result": []}
    rating = rating_from_annotation(annotation, {"id": 11, "data": burst_data()}, "5")
    record_ratings(burst_db, [rating], via="webhook")
    assert candidate(burst_db)[0] == FRAMES[2]


def test_a_webhook_delivery_of_a_pick_moves_the_candidate(burst_db):
    task = {"id": 11, "data": burst_data()}
    body = {"action": "ANNOTATION_CREATED", "project": {"id": 5}, "task": task,
            "annotation": {"id": 9, "task": 11, "result": pick_result(6), "completed_by": 1,
                           "updated_at": "2026-12-01T10:00:00Z"}}
    assert validate(body) == "ANNOTATION_CREATED"
    _, outcome, detail = store_event(burst_db, body, via="webhook")
    assert outcome == "ok" and "1 candidates moved to the frame picked" in detail
    assert candidate(burst_db)[0] == FRAMES[5]
    bad = json.loads(json.dumps(body))
    bad["annotation"]["result"][-1]["value"]["choices"] = ["11"]
    with pytest.raises(BadEvent, match="bad frame pick"):
        validate(bad)


def test_burst_task_marks_the_candidate_and_prefills_a_proposal():
    frames = [{"image_id": f, "url": f"/u/{f}", "scores": [{"model": "baseline", "prompt_version": "hero-v1",
                                                           "score": 4.0 + (k == 5)}]} for k, f in enumerate(FRAMES)]
    task = build_burst_task({"image_id": FRAMES[2], "species": "Ardea"}, frames, "assisted",
                            {"image_id": FRAMES[5], "model": "baseline", "score": 5.0})
    data = task["data"]
    assert data["frames"] == [f"/u/{f}" for f in FRAMES] and data["frame_ids"] == FRAMES and data["marked"] == 3
    assert "frame 3 is the one selection chose" in data["burst"] and "baseline proposes frame 6 (5.0/10)" in data["burst"]
    assert "frame 6: baseline 5.0" in data["model_opinions"]
    (prediction,) = task["predictions"]
    assert prediction["result"][0]["value"] == {"choices": ["6"]}
    blind = build_burst_task({"image_id": FRAMES[2]}, frames, "blind")
    assert blind["predictions"][0]["result"][0]["value"] == {"choices": ["3"]}
    assert "baseline" not in json.dumps(blind["data"])
    with pytest.raises(ValueError, match="2-10 frames"):
        build_burst_task({"image_id": "other.jpg"}, frames, "assisted")


def fetch(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Token {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def test_picking_frame_7_in_label_studio_makes_it_the_candidate_and_the_export(tmp_path, label_studio):
    """The acceptance: the Camtrap DP example's heron burst as one task in a real Label Studio;
    every frame is served; a curator picks frame 7 and rates it hero; after sync frame 7 is the
    sequence's candidate with a baseline score, and the export holds frame 7."""
    package = copy_example(label_studio.document_root / f"bursts-{uuid.uuid4().hex[:6]}")
    review = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db"), "LABEL_STUDIO_API_KEY": label_studio.token,
                                            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": None})
    review.run("select", "--camtrap-dp", str(package), "-n", "5", "--frames-per-burst", "10")
    db = review.db
    (selected,) = [r["image_id"] for r in db["candidates"].rows]
    kept = [r["image_id"] for r in db.query("SELECT image_id FROM burst_members ORDER BY position")]
    assert len(kept) >= 7 and selected in kept
    title = f"bursts {uuid.uuid4().hex[:6]}"
    result = review.run("push", "--bursts", "--url", label_studio.url, "--project", title, "--document-root",
                        str(label_studio.document_root), "--no-webhook")
    assert "1 tasks pushed" in result.output
    client = LabelStudio(base_url=label_studio.url, api_key=label_studio.token)
    project = next(p for p in client.projects.list(title=title) if p.title == title)
    (task,) = client.tasks.list(project=project.id, fields="all")
    assert task.data["frame_ids"] == kept and len(task.data["frames"]) == len(kept)
    assert task.data["frame_ids"][task.data["marked"] - 1] == selected
    for url, image_id in zip(task.data["frames"], kept):  # every frame is there to be seen
        assert fetch(label_studio.url + url, label_studio.token) == (package / image_id).read_bytes()
    assert project.model_version == "burst"
    # every frame has a baseline score already: the one picked has a score at once
    assert db.execute("SELECT COUNT(*) FROM scores WHERE model = 'baseline' AND status = 'ok'").fetchone()[0] == len(kept)

    client.annotations.create(id=task.id, result=pick_result(7, stars=9, hero=True))
    review.run("sync", "--url", label_studio.url, "--project", title)
    (now,) = [r["image_id"] for r in review.db["candidates"].rows]
    assert now == kept[6] != selected
    (stored,) = review.db["ratings"].rows
    assert (stored["image_id"], stored["burst_of"], stored["stars"], stored["hero"]) == (kept[6], selected, 9, 1)
    out = tmp_path / "heroes"
    review.run("export", "--out", str(out), "--layout", "flat")
    with (out / "manifest.csv").open(newline="") as f:
        assert [r["image_id"] for r in csv.DictReader(f)] == [kept[6]]
    # the next `hitl score` of any model scores the picked frame: it is a candidate now
    targets, _ = candidate_targets(review.db, "gemini-2.5-flash", "hero-v1", retry_failed=False, threshold=0.3)
    assert [t.image_id for t in targets] == [kept[6]]


def test_labelme_bursts_pick_frame_7(burst_db, tmp_path):
    """`labelme export --bursts` writes every frame's file with best_frame ticked on the candidate's;
    ticking it on frame 7 (and hero) in Labelme's way makes frame 7 the candidate on import."""
    from PIL import Image

    for k, image_id in enumerate(FRAMES):
        path = tmp_path / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (100, 80), (10 * k, 90, 40)).save(path)
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    out = tmp_path / "bursts"
    result = project.run("labelme", "export", "--bursts", "--out", str(out))
    assert "Bursts: 8 frame files for 1 candidates" in result.output and "best_frame" in result.output
    docs = {f: json.loads((out / f).with_suffix(".json").read_text()) for f in FRAMES}
    assert [d["flags"]["best_frame"] for d in docs.values()] == [k == 2 for k in range(8)]
    assert {d["hero_hitl"]["burst_of"] for d in docs.values()} == {FRAMES[2]}
    assert [d["hero_hitl"]["burst_frame"] for d in docs.values()] == list(range(1, 9))
    # every frame has a baseline score now, the one to be picked included
    assert project.db.execute("SELECT COUNT(*) FROM scores WHERE model = 'baseline'").fetchone()[0] == 8
    seventh = docs[FRAMES[6]]
    seventh["flags"].update(best_frame=True, hero=True, not_hero=False)
    (out / FRAMES[6]).with_suffix(".json").write_text(json.dumps(seventh))
    result = project.run("labelme", "import", str(out), "--curator", "ana@example.org")
    assert candidate(project.db)[0] == FRAMES[6]
    (stored,) = [r for r in project.db["ratings"].rows if r["deleted"] == 0]
    assert (stored["image_id"], stored["burst_of"], stored["hero"]) == (FRAMES[6], FRAMES[2], 1)
