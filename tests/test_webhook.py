"""The webhook service: real Label Studio deliveries, bad input of every kind, and fuzzing."""
from __future__ import annotations

import itertools
import json
import random
import sqlite3
import threading

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hitl import store
from hitl.cli import cli
from hitl.errors import ConfigError
from hitl.review import events
from hitl.review.webhook import create_app

from .helpers import examples
from .helpers.webhook import (
    CREATED,
    DELIVERIES,
    JSON,
    SECRET,
    delivery,
    empty_db,  # noqa: F401  (a fixture)
    fingerprint,
    leaf_paths,
    mutate,
    new_db,
    post,
)

pytestmark = pytest.mark.usefixtures("no_threads_left")  # every app a test makes is closed by it
RATING_FIELDS = ("source", "project", "annotation_id", "task_id", "image_id", "annotator_id", "stars", "hero",
                 "comment", "boxes", "lead_time", "skipped", "deleted", "mode", "created_at", "updated_at")


@pytest.fixture
def app(tmp_path, camera_traps, empty_db):  # camera_traps: fail, never skip, when shared/ is missing
    path = new_db(empty_db, tmp_path)
    with create_app({"DATABASE": str(path), "WEBHOOK_SECRET": SECRET, "TESTING": True}) as app:
        yield app


@pytest.fixture
def client(app):
    return app.test_client()


def state(db_path) -> dict:
    """Everything a delivery may change, minus arrival times."""
    db = store.connect(db_path)
    ratings = sorted(tuple(row[k] for k in RATING_FIELDS) for row in db["ratings"].rows)
    tasks = sorted((r["project_id"], r["task_id"], r["image_id"], r["deleted_at"] is not None) for r in db["ls_tasks"].rows)
    return {"ratings": ratings, "tasks": tasks}


def test_shared_deliveries_in_order_give_the_right_state(client, app):
    for path in DELIVERIES:
        response = post(client, json.loads(path.read_text())["body"])
        assert response.status_code == 200 and response.json["outcome"] == "ok", (path.name, response.json)
    db = store.connect(app.config["DATABASE"])
    rows = {r["annotation_id"]: r for r in db["ratings"].rows}
    assert set(rows) == {"3", "4", "5"}
    ocelot, dog, blank = rows["3"], rows["4"], rows["5"]
    assert (ocelot["image_id"], ocelot["stars"], ocelot["hero"], ocelot["comment"], ocelot["deleted"]) == (
        "ocelot.jpg", 8, 1, None, 0)  # the update replaced 4 stars, not_hero, "tail cut off"
    assert (ocelot["annotator_id"], ocelot["lead_time"], ocelot["project"]) == ("1", ocelot["lead_time"], "4")
    assert (dog["image_id"], dog["skipped"], dog["stars"], dog["hero"], dog["deleted"]) == (
        "domestic_dog.jpg", 1, None, None, 0)  # a skip is a skip, not a rating
    assert (blank["image_id"], blank["stars"], blank["deleted"]) == ("blank.jpg", 2, 1)  # deleted, kept
    history = [r["change"] for r in db["rating_history"].rows_where("annotation_id = '3' ORDER BY id")]
    assert history == ["created", "updated"]  # the 4-star version is kept in the history
    tasks = {r["task_id"]: r for r in db["ls_tasks"].rows}
    assert tasks[5]["deleted_at"] and not tasks[3]["deleted_at"] and tasks[4]["image_id"] == "domestic_dog.jpg"
    assert db["events"].count == len(DELIVERIES)


def test_any_order_gives_the_same_state(tmp_path, camera_traps, empty_db):
    bodies = [json.loads(p.read_text())["body"] for p in DELIVERIES]
    orders = [list(range(len(bodies))), list(reversed(range(len(bodies))))]
    rng = random.Random(7)
    orders += [rng.sample(range(len(bodies)), len(bodies)) for _ in range(8)]
    states = []
    for k, order in enumerate(orders):
        path = new_db(empty_db, tmp_path, f"{k}.db")
        with create_app({"DATABASE": str(path), "WEBHOOK_SECRET": SECRET}) as app:
            client = app.test_client()
            for i in order:
                assert post(client, bodies[i]).status_code == 200
        states.append(state(path))
    assert all(s == states[0] for s in states[1:])


def test_a_repeated_delivery_changes_nothing(client, app):
    for path in DELIVERIES:
        post(client, json.loads(path.read_text())["body"])
    before = state(app.config["DATABASE"])
    history = store.connect(app.config["DATABASE"])["rating_history"].count
    for path in DELIVERIES:
        assert post(client, json.loads(path.read_text())["body"]).status_code == 200
    assert state(app.config["DATABASE"]) == before
    assert store.connect(app.config["DATABASE"])["rating_history"].count == history


@pytest.mark.parametrize("secret, status", [(None, 401), ("wrong", 401), ("", 401), (SECRET + "x", 401), (SECRET, 200)])
def test_authentication(client, app, secret, status):
    before = fingerprint(app.config["DATABASE"])
    response = post(client, delivery("01_annotation_created.json"), secret=secret)
    assert response.status_code == status and response.is_json
    if status != 200:
        assert "Authorization" in response.json["error"]
        assert fingerprint(app.config["DATABASE"]) == before




@pytest.mark.parametrize("raw, content_type, expected", [
    (json.dumps(CREATED)[:300], "application/json", "not valid JSON"),
    (b"\xff\xfe garbage", "application/json", "not valid JSON"),
    (json.dumps(CREATED).encode("utf-16"), "application/json", "not valid JSON"),
    ("[1, 2, 3]", "application/json", "must be a JSON object"),
    ('"just a string"', "application/json", "must be a JSON object"),
    (json.dumps(CREATED), "text/plain", "Content-Type must be application/json"),
    (json.dumps(CREATED), "application/x-www-form-urlencoded", "Content-Type"),
    ("[" * 100000 + "]" * 100000, "application/json", "not valid JSON"),
])
def test_malformed_bodies_are_400(client, app, raw, content_type, expected):
    before = fingerprint(app.config["DATABASE"])
    response = post(client, None, raw=raw, content_type=content_type)
    assert response.status_code == 400 and expected in response.json["error"]
    assert fingerprint(app.config["DATABASE"]) == before


@pytest.mark.parametrize("path, value, expected", [
    (["action"], 7, "'action'"),
    (["action"], KeyError, "'action'"),
    (["project"], KeyError, "'project'"),
    (["project", "id"], "four", "'project'"),
    (["annotation", "id"], "3", "'id' must be int"),
    (["annotation", "result"], "stars", "'result' must be array"),
    (["annotation", "result", 0, "value", "rating"], "four", "'rating' must be float"),
    (["annotation", "result", 1, "value", "choices"], "hero", "'choices' must be array"),
    (["annotation", "lead_time"], "slow", "'lead_time' must be float"),
    (["annotation", "task"], 99, "its task is missing"),
    (["task"], KeyError, "'task'"),
    (["task", "data"], KeyError, "'data' is required"),
    (["task", "data"], {}, "no image"),
    (["task", "data", "image_id"], 5, "'data.image_id' must be str"),
])
def test_wrong_types_and_missing_fields_are_400(client, app, path, value, expected):
    before = fingerprint(app.config["DATABASE"])
    response = post(client, mutate(CREATED, path, value))
    assert response.status_code == 400, response.json
    assert expected in response.json["error"]
    assert fingerprint(app.config["DATABASE"]) == before


def test_huge_body_is_413(tmp_path, camera_traps, webhook_app):
    app = webhook_app({"DATABASE": str(tmp_path / "h.db"), "WEBHOOK_SECRET": SECRET})
    client = app.test_client()
    before = fingerprint(app.config["DATABASE"])
    body = mutate(CREATED, ["annotation", "result", 2, "value", "text"], ["x" * (11 * 1024 * 1024)])
    response = post(client, body)
    assert response.status_code == 413 and response.is_json
    assert fingerprint(app.config["DATABASE"]) == before


def test_other_actions_are_accepted_and_logged(client, app):
    response = post(client, {"action": "PROJECT_UPDATED", "project": {"id": 4}})
    assert response.status_code == 200 and response.json["outcome"] == "ignored"
    event = next(store.connect(app.config["DATABASE"])["events"].rows)
    assert event["action"] == "PROJECT_UPDATED" and event["outcome"] == "ignored"


def test_bulk_annotations_created(client, app):
    first, second = delivery("01_annotation_created.json"), delivery("04_annotation_created.json")
    body = {"action": "ANNOTATIONS_CREATED", "project": first["project"],
            "annotation": [second["annotation"], first["annotation"]], "task": [first["task"], second["task"]]}
    assert post(client, body).json["outcome"] == "ok"
    rows = {r["annotation_id"]: r["image_id"] for r in store.connect(app.config["DATABASE"])["ratings"].rows}
    assert rows == {"3": "ocelot.jpg", "5": "blank.jpg"}  # matched by task id, not by order


def test_processing_failure_keeps_the_event_and_replay_applies_it(client, app, monkeypatch):
    real = events.apply_event
    monkeypatch.setattr(events, "apply_event", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk hiccup")))
    response = post(client, delivery("01_annotation_created.json"))
    assert response.status_code == 200 and response.json["outcome"] == "failed"
    db = store.connect(app.config["DATABASE"])
    assert db["ratings"].count == 0
    event = next(db["events"].rows)
    assert event["outcome"] == "failed" and "disk hiccup" in event["detail"] and event["body"]
    monkeypatch.setattr(events, "apply_event", real)
    result = CliRunner().invoke(cli, ["--db", app.config["DATABASE"], "replay"])
    assert "1 ok" in result.output
    assert next(db["ratings"].rows)["stars"] == 4
    assert next(db["events"].rows)["outcome"] == "ok"


def test_healthz_and_ratings_json(client, app):
    for path in DELIVERIES:
        post(client, json.loads(path.read_text())["body"])
    anonymous = client.get("/healthz")
    assert anonymous.status_code == 200 and anonymous.json == {"status": "ok"}  # no path, no counts
    health = client.get("/healthz", headers={"Authorization": f"Bearer {SECRET}"})
    assert health.status_code == 200 and health.json["ratings"] == 2 and health.json["events"] == len(DELIVERIES)
    assert app.config["DATABASE"] not in json.dumps(health.json)
    out = CliRunner().invoke(cli, ["--db", app.config["DATABASE"], "ratings", "--json"])
    rows = json.loads(out.output)
    assert {"image_id", "annotation_id", "annotator", "stars", "hero", "skipped", "deleted", "mode",
            "updated_at"} <= set(rows[0])
    by_id = {r["annotation_id"]: r for r in rows}
    assert by_id["3"]["hero"] is True and by_id["3"]["stars"] == 8 and by_id["4"]["skipped"] is True
    assert "5" not in by_id  # deleted: shown only with --all
    everything = json.loads(CliRunner().invoke(cli, ["--db", app.config["DATABASE"], "ratings", "--json", "--all"]).output)
    assert next(r for r in everything if r["annotation_id"] == "5")["deleted"] is True


def test_no_secret_no_service(tmp_path):
    with pytest.raises(ConfigError, match="HITL_WEBHOOK_SECRET"):
        create_app({"DATABASE": str(tmp_path / "h.db"), "WEBHOOK_SECRET": None})
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "h.db"), "serve"], env={"HITL_WEBHOOK_SECRET": None})
    assert result.exit_code == 1 and "HITL_WEBHOOK_SECRET" in result.output
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "h.db"), "serve", "--insecure", "--host", "0.0.0.0"],
                                env={"HITL_WEBHOOK_SECRET": None})
    assert result.exit_code == 1 and "loopback" in result.output


def test_the_app_stops_what_it_starts(tmp_path, camera_traps):
    """close() ends the writer and checkpoint threads and closes every connection the app opened,
    as flaskr's close_db closes what get_db opened: SQLite then folds its log in and removes it."""
    path = tmp_path / "h.db"
    before = set(threading.enumerate())
    app = create_app({"DATABASE": str(path), "WEBHOOK_SECRET": SECRET})
    started = [t for t in threading.enumerate() if t not in before]
    assert sorted(t.name for t in started) == ["wal-checkpoint", "webhook-writer"]
    client = app.test_client()
    assert post(client, delivery("01_annotation_created.json")).status_code == 200  # this thread's connection
    assert client.get("/healthz", headers={"Authorization": f"Bearer {SECRET}"}).json["ratings"] == 1
    worker = app.extensions["hitl_connections"].opened
    assert len(worker) == 1 and path.with_name("h.db-wal").exists()
    app.close()
    assert not any(t.is_alive() for t in started)
    with pytest.raises(sqlite3.ProgrammingError, match="closed"):
        worker[0].execute("SELECT 1")
    assert not path.with_name("h.db-wal").exists()  # no connection left open anywhere
    late = post(client, delivery("02_annotation_updated.json"))
    assert late.status_code == 503 and late.is_json  # a closed service stores nothing, and says so
    assert store.connect(path)["events"].count == 1



# ---- fuzzing: never a 500, and a rejected request changes nothing ------------------------------------

def _fuzz_app(tmp_path_factory, empty_db):
    path = new_db(empty_db, tmp_path_factory.mktemp("fuzz"))
    return create_app({"DATABASE": str(path), "WEBHOOK_SECRET": SECRET}), path


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=JSON, action=st.sampled_from(sorted(events.HANDLED) + ["PROJECT_UPDATED", ""]))
def test_fuzz_random_bodies(tmp_path_factory, empty_db, body, action):
    app, path = _fuzz_app(tmp_path_factory, empty_db)
    if isinstance(body, dict) and body and random.Random(len(str(body))).random() < 0.7:
        body["action"] = action
    before = fingerprint(path)
    with app:
        response = post(app.test_client(), body)
    assert response.status_code in (200, 400), response.data
    assert response.is_json
    if response.status_code != 200:
        assert fingerprint(path) == before


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(DELIVERIES) - 1), pick=st.integers(0, 10_000), value=JSON | st.just(KeyError))
@example(which=4, pick=4096, value=[])  # an annotation's task given as a list: 503 (a lost delivery), now 400
def test_fuzz_mutated_real_deliveries(tmp_path_factory, empty_db, which, pick, value):
    app, path = _fuzz_app(tmp_path_factory, empty_db)
    body = json.loads(DELIVERIES[which].read_text())["body"]
    paths = [p for p in leaf_paths(body) if p]
    target = list(paths[pick % len(paths)])
    mutated = mutate(body, target, value)
    before = fingerprint(path)
    with app:
        response = post(app.test_client(), mutated)
    assert response.status_code in (200, 400), (target, value, response.data)
    if response.status_code != 200:
        assert fingerprint(path) == before


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=2000), content_type=st.sampled_from(["application/json", "text/plain", ""]),
       secret=st.sampled_from([SECRET, None, "nope"]))
def test_fuzz_raw_bytes(tmp_path_factory, empty_db, raw, content_type, secret):
    app, path = _fuzz_app(tmp_path_factory, empty_db)
    before = fingerprint(path)
    with app:
        response = post(app.test_client(), None, raw=raw, content_type=content_type, secret=secret)
    assert response.status_code in (200, 400, 401)
    if response.status_code != 200:
        assert fingerprint(path) == before


def test_every_pair_order_of_update_and_create(tmp_path, camera_traps, empty_db):
    created, updated = delivery("01_annotation_created.json"), delivery("02_annotation_updated.json")
    for order in itertools.permutations([created, updated, updated]):
        path = new_db(empty_db, tmp_path, f"{id(order)}.db")
        with create_app({"DATABASE": str(path), "WEBHOOK_SECRET": SECRET}) as app:
            for body in order:
                post(app.test_client(), body)
        row = next(store.connect(path)["ratings"].rows)
        assert (row["stars"], row["hero"]) == (8, 1)  # the newer version wins whatever the order
