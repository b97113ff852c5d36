"""The best frame of a burst: a multi-image task in a real Label Studio, the pick as a decision
(webhook, sync, validator, history), the picked frame as the sequence's candidate, in the store
and in the export."""
from __future__ import annotations

import csv
import json
import urllib.request
import uuid

import pytest

from converters.common import HumanRating
from converters.decisions import DecisionError
from converters.labelstudio import build_burst_task, rating_from_annotation
from hitl import store
from hitl.review.events import BadEvent, store_event, validate
from hitl.score.targets import candidate_targets
from hitl.store.ratings import mark_deleted, record_ratings

from .conftest import CliProject
from .fakes import FakeOpenAI
from .fakes import behaviours as B
from .helpers import wait_for
from .helpers.camtrapdp import copy_example
from .helpers.labelstudio import rating_result, studio_api
from .helpers.scoring import QWEN, Project, sent_hash

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
    return make_burst_db(tmp_path / "h.db", tmp_path)


def make_burst_db(path, root):
    """A store with one candidate (frame 3 of 8 of seq1) and its burst frames kept, under ``root``."""
    db = store.connect(path)
    with store.transaction(db):
        db["selection_runs"].insert({"id": 1, "status": "finished"})
        for k, image_id in enumerate(FRAMES, start=1):
            db["images"].insert({"image_id": image_id, "root": str(root), "seq_id": "seq1", "frame_num": k,
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


@pytest.mark.parametrize("frame", [0, 9, "7.5", "seven", "²", "-1", " 7"])
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
    assert data["frame_choices"] == [{"value": str(k)} for k in range(1, 9)]  # the config's choices: 1-8 only
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


def push_heron_burst(tmp_path, label_studio, frames_per_burst: int):
    """The Camtrap DP example's heron burst selected with ``frames_per_burst`` and pushed as one
    burst task into a real Label Studio: (the CLI project, its ``title`` set; the client; the task;
    the kept frames; selection's frame)."""
    package = copy_example(label_studio.document_root / f"bursts-{uuid.uuid4().hex[:6]}")
    review = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db"), "LABEL_STUDIO_API_KEY": label_studio.token,
                                            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": None})
    review.run("select", "--camtrap-dp", str(package), "-n", "5", "--frames-per-burst", str(frames_per_burst))
    db = review.db
    (selected,) = [r["image_id"] for r in db["candidates"].rows]
    kept = [r["image_id"] for r in db.query("SELECT image_id FROM burst_members ORDER BY position")]
    assert len(kept) == min(frames_per_burst, 10) and selected in kept
    review.title = f"bursts {uuid.uuid4().hex[:6]}"
    result = review.run("push", "--bursts", "--url", label_studio.url, "--project", review.title, "--document-root",
                        str(label_studio.document_root), "--no-webhook")
    assert "1 tasks pushed" in result.output
    client = studio_api(label_studio.url, label_studio.token)
    project = next(p for p in client.projects.list(title=review.title) if p.title == review.title)
    (task,) = client.tasks.list(project=project.id, fields="all")
    assert task.data["frame_ids"] == kept and len(task.data["frames"]) == len(kept)
    assert task.data["frame_ids"][task.data["marked"] - 1] == selected
    for url, image_id in zip(task.data["frames"], kept):  # every frame is there to be seen
        assert fetch(label_studio.url + url, label_studio.token) == (package / image_id).read_bytes()
    assert project.model_version == "burst"
    # every frame has a baseline score already: the one picked has a score at once
    assert db.execute("SELECT COUNT(*) FROM scores WHERE model = 'baseline' AND status = 'ok'").fetchone()[0] == len(kept)
    return review, client, task, kept, selected


def test_picking_frame_7_in_label_studio_makes_it_the_candidate_and_the_export(tmp_path, label_studio):
    """The acceptance: the Camtrap DP example's heron burst as one task in a real Label Studio;
    every frame is served; a curator picks frame 7 and rates it hero; after sync frame 7 is the
    sequence's candidate with a baseline score, and the export holds frame 7."""
    review, client, task, kept, selected = push_heron_burst(tmp_path, label_studio, 10)
    title = review.title
    client.annotations.create(id=task.id, result=pick_result(7, stars=9, hero=True))
    review.run("sync", "--url", label_studio.url, "--project", title)
    (now,) = [r["image_id"] for r in review.db["candidates"].rows]
    assert now == kept[6] != selected
    (stored,) = review.db["ratings"].rows
    assert (stored["image_id"], stored["burst_of"], stored["stars"], stored["hero"]) == (kept[6], selected, 9, 1)
    again = review.run("push", "--bursts", "--url", label_studio.url, "--project", title, "--document-root",
                       str(label_studio.document_root), "--no-webhook")
    assert "0 tasks pushed, 1 already there" in again.output, again.output  # the burst, under its new candidate
    out = tmp_path / "heroes"
    review.run("export", "--out", str(out), "--layout", "flat")
    with (out / "manifest.csv").open(newline="") as f:
        assert [r["image_id"] for r in csv.DictReader(f)] == [kept[6]]
    # the next `hitl score` of any model scores the picked frame: it is a candidate now
    targets, _ = candidate_targets(review.db, "gemini-2.5-flash", "hero-v1", retry_failed=False, threshold=0.3)
    assert [t.image_id for t in targets] == [kept[6]]


def draw_frames(root) -> list:
    """A JPEG for each of FRAMES under ``root``, each its own colour (so each its own hash)."""
    from PIL import Image

    paths = []
    for k, image_id in enumerate(FRAMES):
        path = root / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (100, 80), (10 * k, 90, 40)).save(path)
        paths.append(path)
    return paths


def test_labelme_bursts_pick_frame_7(burst_db, tmp_path):
    """`labelme export --bursts` writes every frame's file with best_frame ticked on the candidate's;
    ticking it on frame 7 (and hero) in Labelme's way makes frame 7 the candidate on import."""
    draw_frames(tmp_path)
    with store.transaction(burst_db):  # a candidate whose sequence kept no frames: left out, and said so
        burst_db["images"].insert({"image_id": "cam/seq2/solo.JPG", "root": str(tmp_path), "seq_id": "seq2"})
        burst_db["candidates"].insert({"image_id": "cam/seq2/solo.JPG", "run_id": 1, "rank": 5})
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    out = tmp_path / "bursts"
    result = project.run("labelme", "export", "--bursts", "--out", str(out))
    assert "Bursts: 8 frame files for 1 candidates" in result.output and "best_frame" in result.output
    assert "left out     1  no burst frames" in result.output, result.output
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
    assert dict(project.db.execute("SELECT image_id, 1 FROM candidates").fetchall()) == {
        FRAMES[6]: 1, "cam/seq2/solo.JPG": 1}
    (stored,) = [r for r in project.db["ratings"].rows if r["deleted"] == 0]
    assert (stored["image_id"], stored["burst_of"], stored["hero"]) == (FRAMES[6], FRAMES[2], 1)


def test_score_bursts_scores_every_frame_and_push_proposes_the_models_best(tmp_path, label_studio):
    """`score --bursts` spends the model on every frame a burst shows (plain `score`: on the
    candidate only); `push --bursts` then prefills the frame that model scores best, and the task
    says it is the model's proposal, not selection's frame."""
    root = label_studio.document_root / f"score-bursts-{uuid.uuid4().hex[:6]}"
    paths = draw_frames(root)
    (tmp_path / "p").mkdir()
    make_burst_db(tmp_path / "p" / "h.db", root)
    with FakeOpenAI() as server:
        for k, path in enumerate(paths):
            server.on_image(sent_hash(path), B.answer(9.0 if k == 5 else 4.0 + k / 10, k == 5, f"frame {k + 1}"))
        project = Project(tmp_path / "p", {"HITL_OPENAI_BASE_URL": server.url,
                                           "LABEL_STUDIO_API_KEY": label_studio.token,
                                           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": None})
        assert "1 scored, 0 failed of 1" in project.run("score", "--model", QWEN).output
        assert set(project.scores(QWEN)) == {FRAMES[2]}
        result = project.run("score", "--model", QWEN, "--bursts")
        assert "7 scored, 0 failed of 7" in result.output, result.output  # the candidate was scored already
        assert server.count_generate() == 8
    rows = project.scores(QWEN)
    assert set(rows) == set(FRAMES) and rows[FRAMES[5]]["score"] == 9.0

    title = f"score bursts {uuid.uuid4().hex[:6]}"
    result = project.run("push", "--bursts", "--url", label_studio.url, "--project", title, "--document-root",
                         str(label_studio.document_root), "--no-webhook")
    assert "1 tasks pushed" in result.output, result.output
    client = studio_api(label_studio.url, label_studio.token)
    project_id = next(p.id for p in client.projects.list(title=title) if p.title == title)
    (task,) = client.tasks.list(project=project_id, fields="all")
    assert task.data["marked"] == 3 and f"{QWEN} proposes frame 6 (9.0/10)" in task.data["burst"], task.data["burst"]
    (prediction,) = task.predictions
    assert prediction.model_version == "burst"
    best = next(r for r in prediction.result if r["from_name"] == "best_frame")
    assert best["value"] == {"choices": ["6"]}


def test_a_curator_picks_a_frame_in_the_browser(chromium, tmp_path, label_studio):
    """Label Studio's own page, in Chromium: a burst of 4 shows 4 frames in one multi-image view
    (its pager pages through all of them, each image loaded) and offers the frames 1-4 only; the
    curator clicks frame 3 (or 2, if 3 is selection's), 9 stars and hero, and submits; after
    `hitl sync` that frame is the sequence's candidate."""
    from .helpers.browser import bottom_button, curator_page

    review, client, task, kept, selected = push_heron_burst(tmp_path, label_studio, 4)
    frame = 3 if kept[2] != selected else 2
    with curator_page(chromium, label_studio.url, label_studio.username, label_studio.password, tmp_path) as page:
        page.goto(f"{label_studio.url}/projects/{task.project}/data?task={task.id}")
        bottom_button(page, "Submit").wait_for(timeout=60000)
        indicator = page.locator(".lsf-pagination__page-indicator").first
        shown = []  # each page's image, loaded (Label Studio shows it from a blob: URL)
        for k in range(1, len(kept) + 1):
            assert indicator.inner_text().split() == [str(k), "of", str(len(kept))], indicator.inner_text()
            image = page.locator(".lsf-image img:visible").first
            image.wait_for(timeout=30000)
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle(),
                                   timeout=30000)
            shown.append(image.get_attribute("src"))
            if k < len(kept):
                page.locator(".lsf-pagination__btn_arrow-right:not(.lsf-pagination__btn_arrow-right-double)").click()
        assert len(set(shown)) == len(kept), shown
        choices = page.locator(".lsf-choices input[type=checkbox]")
        assert [choices.nth(k).get_attribute("name") for k in range(choices.count())] == ["1", "2", "3", "4"]
        page.locator(f".lsf-choices input[type=checkbox][name='{frame}']").check()
        page.locator("li.ant-rate-star").nth(8).click()
        page.locator("input[type=radio][name=hero]").check()
        bottom_button(page, "Submit").click()
        page.wait_for_load_state("networkidle", timeout=30000)
    assert wait_for(lambda: client.annotations.list(id=task.id)), "the annotation did not reach Label Studio"
    assert "1 new" in review.run("sync", "--url", label_studio.url, "--project", review.title).output
    (now,) = [r["image_id"] for r in review.db["candidates"].rows]
    assert now == kept[frame - 1] != selected
    (stored,) = review.db["ratings"].rows
    assert (stored["image_id"], stored["burst_of"], stored["stars"], stored["hero"]) == (kept[frame - 1], selected, 9, 1)


def test_next_and_queue_push_into_the_last_review_project_not_a_burst_or_comparison(burst_db):
    """`hitl next` and `hitl queue` name "the project pushed last": a burst or comparison project
    pushed since is not it (their tasks are not single-image reviews)."""
    from hitl.store import queries

    with store.transaction(burst_db):
        for k, (title, kind) in enumerate([("old review", None), ("Hero review", "review"), ("Hero bursts", "burst"),
                                           ("Hero comparison", "pairwise"), ("Hero review (adjudication)", "review")]):
            burst_db["ls_projects"].insert({"id": k + 1, "url": "http://ls", "title": title, "mode": "blind",
                                            "kind": kind, "created_at": f"2026-12-01T10:0{k}:00Z",
                                            "updated_at": f"2026-12-01T10:0{k}:00Z"})
    assert queries.last_review_title(burst_db) == "Hero review"
    with store.transaction(burst_db):
        burst_db.execute("UPDATE ls_projects SET kind = NULL, updated_at = '2026-12-02T00:00:00Z' WHERE id = 1")
    assert queries.last_review_title(burst_db) == "old review"  # a project from before kinds were kept
