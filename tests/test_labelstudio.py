"""Review in Label Studio: the converter (checked with label-studio-sdk's LabelInterface) and
`hitl push` against a real Label Studio started by the session fixture."""
from __future__ import annotations

import json
import math
import re
import subprocess
import urllib.request
import uuid

import httpx
import pytest
from packaging.utils import canonicalize_name

from converters.labelstudio import (
    DETECTOR_VERSION,
    build_task,
    image_id_of,
    local_files_url,
    rating_from_annotation,
    stars,
)
from hitl.review import studio
from hitl.review.configs import config_labels, label_config
from hitl.store import transaction

from .conftest import SHARED
from .helpers import constraints
from .helpers.labelstudio import Review, label_interface

DETECTION = {"det_index": 0, "x": 0.25, "y": 0.5, "w": 0.1, "h": 0.2, "species": "red deer"}
SCORES = [{"model": "gemini-2.5-flash", "prompt_version": "hero-v1", "score": 7.6, "hero": 1, "reasoning": "Sharp."},
          {"model": "baseline", "prompt_version": "hero-v1", "score": 0.2, "hero": 0, "reasoning": "Dark."}]
CANDIDATE = {"image_id": "cam_a/IMG_0001.JPG", "species": "red deer", "seq_id": "cct:s1", "frame_num": 1,
             "category": "group"}


# ---- the converter ----------------------------------------------------------------------------------

@pytest.mark.parametrize("score, expected", [(0.0, 1), (0.4, 1), (1.5, 2), (7.49, 7), (7.5, 8), (10.0, 10)])
def test_stars_rounded_and_clamped(score, expected):
    assert stars(score) == expected


def test_assisted_task_predictions_validate_against_the_config():
    task = build_task(CANDIDATE, "/data/local-files/?d=x.jpg", 1920, 1080, [DETECTION], SCORES, "assisted")
    interface = label_interface(label_config("assisted", ["animal", "red deer"]))
    assert len(task["predictions"]) == 2
    for prediction in task["predictions"]:
        assert interface.validate_prediction(prediction), prediction
    first = task["predictions"][0]
    assert first["model_version"] == "gemini-2.5-flash@hero-v1" and first["score"] == 0.76
    rating = next(r for r in first["result"] if r["type"] == "rating")
    assert rating["value"]["rating"] == 8
    box = next(r for r in first["result"] if r["type"] == "rectanglelabels")
    assert box["value"]["x"] == 25 and box["value"]["height"] == 20
    assert (box["original_width"], box["original_height"]) == (1920, 1080)
    assert task["data"]["model_scores"] == {"gemini-2.5-flash@hero-v1": 7.6, "baseline@hero-v1": 0.2}
    assert "Sharp." in task["data"]["model_opinions"]


def test_blind_task_shows_no_model_output():
    task = build_task(CANDIDATE, "/x.jpg", 1920, 1080, [DETECTION], SCORES, "blind")
    text = json.dumps(task)
    assert "7.6" not in text and "Sharp." not in text and "rating" not in text and "hero-v1" not in text
    assert [p["model_version"] for p in task["predictions"]] == [DETECTOR_VERSION]
    assert label_interface(label_config("blind", ["red deer"])).validate_prediction(task["predictions"][0])


@pytest.mark.parametrize("bad", [float("nan"), None, 11.0, "7"])
def test_bad_score_is_refused_by_name(bad):
    with pytest.raises(ValueError, match="cam_a/IMG_0001.JPG"):
        build_task(CANDIDATE, "/x.jpg", 1920, 1080, [], [{**SCORES[0], "score": bad}], "assisted")


def test_local_files_url(tmp_path):
    assert local_files_url(tmp_path / "a b" / "c.jpg", tmp_path) == "/data/local-files/?d=a%20b/c.jpg"
    with pytest.raises(ValueError, match="outside the document root"):
        local_files_url("/etc/passwd", tmp_path)


def test_annotation_back_to_a_rating_record():
    annotation = {"id": 9, "task": 3, "completed_by": {"id": 1, "email": "c@example.org"}, "lead_time": 4.5,
                  "was_cancelled": False, "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-02T00:00:00Z",
                  "result": [{"from_name": "aesthetic", "type": "rating", "value": {"rating": 9}},
                             {"from_name": "hero", "type": "choices", "value": {"choices": ["hero"]}},
                             {"from_name": "comment", "type": "textarea", "value": {"text": ["lovely", "light"]}},
                             {"from_name": "boxes", "type": "rectanglelabels",
                              "value": {"x": 10, "y": 20, "width": 30, "height": 40, "rectanglelabels": ["red deer"]}}]}
    task = {"id": 3, "data": {"image": "/data/local-files/?d=sample/cam_a/IMG_0001.JPG", "image_id": "cam_a/IMG_0001.JPG",
                              "mode": "blind"}}
    rating = rating_from_annotation(annotation, task, 4)
    assert (rating.image_id, rating.stars, rating.hero, rating.comment) == ("cam_a/IMG_0001.JPG", 9, True, "lovely\nlight")
    assert rating.boxes == [{"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4, "label": "red deer"}]
    assert (rating.annotator_id, rating.annotator_email, rating.mode, rating.lead_time) == ("1", "c@example.org", "blind", 4.5)
    skipped = rating_from_annotation({"id": 10, "task": 3, "was_cancelled": True, "result": []}, task, 4)
    assert skipped.skipped and skipped.stars is None and skipped.hero is None
    assert image_id_of({"data": {"image": "/data/local-files/?d=x/y.jpg"}}) == "x/y.jpg"


def test_the_shared_webhook_annotation_converts(camera_traps):
    body = json.loads((SHARED / "labelstudio_webhooks" / "01_annotation_created.json").read_text())["body"]
    rating = rating_from_annotation(body["annotation"], body["task"], body["project"]["id"])
    assert (rating.image_id, rating.stars, rating.hero, rating.comment) == ("ocelot.jpg", 4, False, "tail cut off")


def test_label_studio_is_started_with_its_telemetry_off_unless_the_user_turned_it_on(tmp_path, monkeypatch):
    config = studio.StudioConfig(data_dir=tmp_path / "data", document_root=tmp_path, username="curator@example.org",
                                 password="pw", token=studio.new_token())
    for name in studio.TELEMETRY_OFF:
        monkeypatch.delenv(name, raising=False)
    env = studio.environment(config)
    assert {name: env[name] for name in ("SENTRY_DSN", "FRONTEND_SENTRY_DSN", "COLLECT_ANALYTICS")} == {
        "SENTRY_DSN": "", "FRONTEND_SENTRY_DSN": "", "COLLECT_ANALYTICS": "false"}
    monkeypatch.setenv("COLLECT_ANALYTICS", "true")  # the user's own choice is kept
    monkeypatch.setenv("SENTRY_DSN", "https://key@sentry.example.org/1")
    env = studio.environment(config)
    assert (env["COLLECT_ANALYTICS"], env["SENTRY_DSN"], env["FRONTEND_SENTRY_DSN"]) == (
        "true", "https://key@sentry.example.org/1", "")


# ---- against a real Label Studio -------------------------------------------------------------------

def test_a_curators_browser_is_sent_no_error_reporting_to_label_studios_makers(label_studio):
    """Label Studio's own default puts its makers' Sentry (a script from Sentry's CDN and their key)
    in every page a curator opens; the one `hitl studio` starts has none."""
    with httpx.Client(base_url=label_studio.url, follow_redirects=True, timeout=30) as browser:
        login = browser.get("/user/login/").text
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login).group(1)
        browser.post("/user/login/", data={"csrfmiddlewaretoken": csrf, "email": label_studio.username,
                                           "password": label_studio.password},
                     headers={"Referer": f"{label_studio.url}/user/login/"})
        page = browser.get("/projects/").text
    assert "sentry_dsn: null," in page  # the logged-in page, whose settings name no Sentry
    assert "sentry-cdn.com" not in page and "ingest.sentry.io" not in page


def test_label_studio_starts_without_asking_pypi_for_a_newer_version(label_studio):
    log = (label_studio.data_dir.parent / "label-studio.log").read_text()
    assert "Starting development server" in log  # the start is logged, the version check would be too
    assert "pypi.org" not in log


def test_the_label_studio_tested_is_installed_at_the_pinned_versions(label_studio):
    """What `hitl studio` installs is what this suite ran against: each installed distribution at
    its pin for this Python (hitl/review/label_studio_constraints.txt), and nothing unpinned."""
    python = studio.find_binary().parent / "python"
    # -I: the working directory's hero_hitl.egg-info is not on its path
    listed = subprocess.run([str(python), "-I", "-c", INSTALLED], capture_output=True, text=True, check=True)
    installed = json.loads(listed.stdout)
    where = {"python_version": installed.pop("python_version")}
    pins = {canonicalize_name(r.name): str(r.specifier).removeprefix("==")
            for r in constraints(studio.CONSTRAINTS) if r.marker and r.marker.evaluate(where)}
    installed = {canonicalize_name(name): version for name, version in installed.items()}
    installed = {name: v for name, v in installed.items() if name != "pip"}  # pip came with the venv
    assert installed == pins


INSTALLED = """
import importlib.metadata, json, sys
found = {d.metadata["Name"]: d.version for d in importlib.metadata.distributions()}
print(json.dumps({**found, "python_version": "%d.%d" % sys.version_info[:2]}))
"""


def test_push_assisted_reads_back_right(tmp_path, label_studio):
    review = Review(tmp_path, label_studio)
    title = f"assisted {uuid.uuid4().hex[:6]}"
    result = review.push(title, "--prefill", "gemini-2.5-flash")
    assert "8 tasks pushed, 0 already there" in result.output
    project = review.project(title)
    assert project.model_version == "gemini-2.5-flash@hero-v1"
    tasks = review.tasks(project.id)
    assert len(tasks) == 8
    db = review.db
    mapped = {r["task_id"]: r["image_id"] for r in db["ls_tasks"].rows_where("project_id = ?", [project.id])}
    assert {t.id: t.data["image_id"] for t in tasks} == mapped
    interface = label_interface(project.label_config)
    for task in tasks:
        predictions = review.client.predictions.list(task=task.id)
        assert sorted(p.model_version for p in predictions) == ["baseline@hero-v1", "gemini-2.5-flash@hero-v1"]
        gemini = next(p for p in predictions if p.model_version == project.model_version)
        expected = db.execute("SELECT score, hero FROM scores WHERE image_id = ? AND model = 'gemini-2.5-flash'",
                              [task.data["image_id"]]).fetchone()
        rating = next(r for r in gemini.result if r["type"] == "rating")["value"]["rating"]
        assert 1 <= rating <= 10 and rating == stars(expected[0])
        assert next(r for r in gemini.result if r["type"] == "choices")["value"]["choices"] == (
            ["hero"] if expected[1] else ["not_hero"])
        assert task.data["model_scores"]["gemini-2.5-flash@hero-v1"] == pytest.approx(expected[0])
        assert interface.validate_prediction({"model_version": gemini.model_version, "result": gemini.result})
        boxes = sorted((r["value"]["x"], r["value"]["y"], r["value"]["width"], r["value"]["height"])
                       for r in gemini.result if r["type"] == "rectanglelabels")
        detector = sorted((d["x"] * 100, d["y"] * 100, d["w"] * 100, d["h"] * 100) for d in db.query(
            "SELECT * FROM detections WHERE image_id = ? AND kind = 'animal' AND conf >= 0.3", [task.data["image_id"]]))
        assert len(boxes) == len(detector) >= 1
        for got, want in zip(boxes, detector):
            assert got == pytest.approx(want, abs=1e-6)
        assert all(0 <= v <= 100 for box in boxes for v in box)
    # the image is served by Label Studio to the logged-in user: status 200 and the file's bytes
    task = tasks[0]
    request = urllib.request.Request(label_studio.url + task.data["image"],
                                     headers={"Authorization": f"Token {label_studio.token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 200
        assert response.read() == (review.images / task.data["image_id"]).read_bytes()
    # a rerun pushes nothing twice
    again = review.push(title, "--prefill", "gemini-2.5-flash")
    assert "0 tasks pushed, 8 already there" in again.output and len(review.tasks(project.id)) == 8


def test_push_blind_exposes_no_score(tmp_path, label_studio):
    review = Review(tmp_path, label_studio, n=4)
    title = f"blind {uuid.uuid4().hex[:6]}"
    review.push(title, "--mode", "blind")
    project = review.project(title)
    assert project.model_version == DETECTOR_VERSION
    for task in review.tasks(project.id):
        assert set(task.data) == {"image", "image_id", "species", "sequence", "mode"}
        for prediction in review.client.predictions.list(task=task.id):
            assert prediction.model_version == DETECTOR_VERSION
            assert {r["type"] for r in prediction.result} == {"rectanglelabels"}
            assert prediction.score is None
    # an assisted push to a blind project is refused: the two reviews must stay apart
    refused = review.push(title, "--mode", "assisted", ok=False)
    assert "is a blind review" in refused.output


def test_push_counts_bad_images_and_scores_and_reenables_the_webhook(tmp_path, label_studio):
    review = Review(tmp_path, label_studio, n=6)
    db = review.db
    ids = [r["image_id"] for r in db.query("SELECT image_id FROM candidates ORDER BY rank")]
    missing = label_studio.document_root / "moved"  # inside the document root, but the file is not there
    with transaction(db):
        db.execute("UPDATE images SET root = ? WHERE image_id = ?", [str(missing), ids[0]])  # file not there
        db.execute("UPDATE scores SET score = ? WHERE image_id = ? AND model = 'baseline'", [math.nan, ids[1]])
    title = f"errors {uuid.uuid4().hex[:6]}"
    result = review.push(title, "--webhook-url", "http://127.0.0.1:9/webhooks/label-studio")
    assert "4 tasks pushed" in result.output
    assert "image file missing" in result.output and "bad score or size" in result.output
    assert "webhook: created" in result.output
    project = review.project(title)
    hooks = [h for h in review.client.webhooks.list(project=str(project.id))]
    assert len(hooks) == 1 and hooks[0].headers == {"Authorization": "Bearer test-secret"} and hooks[0].is_active
    review.client.webhooks.update(id=hooks[0].id, url=hooks[0].url, is_active=False)  # as Label Studio does after failures
    again = review.push(title, "--webhook-url", "http://127.0.0.1:9/webhooks/label-studio")
    assert "webhook: re-enabled" in again.output
    assert review.client.webhooks.get(id=hooks[0].id).is_active


def test_image_outside_the_document_root_is_a_counted_skip(tmp_path, label_studio):
    review = Review(tmp_path, label_studio, n=3)
    outside = tmp_path / "elsewhere"
    first = next(review.db.query("SELECT image_id FROM candidates ORDER BY rank"))["image_id"]
    (outside / first).parent.mkdir(parents=True)
    (outside / first).write_bytes((review.images / first).read_bytes())
    db = review.db
    with transaction(db):
        db.execute("UPDATE images SET root = ? WHERE image_id = ?", [str(outside), first])
    result = review.push(f"outside {uuid.uuid4().hex[:6]}")
    assert "2 tasks pushed" in result.output
    assert "1  image outside the document root" in result.output and "hitl studio --document-root" in result.output


def test_labels_include_every_species(tmp_path, label_studio):
    review = Review(tmp_path, label_studio, n=8)
    title = f"labels {uuid.uuid4().hex[:6]}"
    review.push(title)
    species = {r[0] for r in review.db.execute("SELECT DISTINCT species FROM images")}
    assert species <= set(config_labels(review.project(title).label_config))


def test_next_and_queue_take_the_image_options_push_takes(tmp_path, label_studio):
    """`next` and `queue` push through the same Label Studio options as `push` (one declaration): a
    URL template for images served from a bucket, a document root for local-files serving."""
    review = Review(tmp_path, label_studio)
    db = review.db
    with transaction(db):  # a learned rater's predictions, as `hitl learn` stores them (it takes minutes)
        db.execute("INSERT INTO scores (image_id, model, prompt_version, status, score, hero, raw_response) "
                   "SELECT image_id, 'learned', 'v1', status, score, hero, '{\"p_hero\": 0.6}' FROM scores "
                   "WHERE model = 'baseline'")
    template = "https://example.org/traps/{image_id}"
    title = f"next from a bucket {uuid.uuid4().hex[:6]}"
    pushed = review.run("next", "-n", "2", "--url", label_studio.url, "--project", title, "--no-webhook",
                        "--image-url-template", template)
    assert "2 pushed" in pushed.output, pushed.output
    tasks = review.tasks(review.project(title).id)
    assert len(tasks) == 2 and all(t.data["image"] == template.format(image_id=t.data["image_id"]) for t in tasks)
    title = f"queue {uuid.uuid4().hex[:6]}"
    queued = review.run("queue", "-n", "2", "--url", label_studio.url, "--project", title, "--no-webhook",
                        "--document-root", str(label_studio.document_root))
    assert "2 queued" in queued.output, queued.output
    tasks = review.tasks(review.project(title).id)
    assert len(tasks) == 2 and all(t.data["image"] == f"/data/local-files/?d=sample_data/images/{t.data['image_id']}"
                                   for t in tasks)  # under the root given, not the folder above the images
