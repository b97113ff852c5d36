"""End to end with a real Label Studio: annotations made through its API reach SQLite through the
webhook (a real `hitl serve`), and what the webhook missed while it was down comes back by `hitl sync`."""
from __future__ import annotations

import json
import urllib.request
import uuid

from hitl import store
from hitl.review import studio

from .helpers import wait_for
from .helpers.labelstudio import SECRET, Review, Service, rating_result


def ls_state(client, project_id) -> dict[str, tuple]:
    """annotation id -> (stars, hero, skipped) as Label Studio has it."""
    out = {}
    for task in client.tasks.list(project=project_id, fields="all"):
        # tasks.get lists skipped annotations too (annotations.list leaves them out)
        for annotation in client.tasks.get(id=task.id).annotations or []:
            stars = hero = None
            for item in annotation.get("result") or []:
                if item["type"] == "rating":
                    stars = item["value"]["rating"]
                if item["type"] == "choices":
                    hero = item["value"]["choices"] == ["hero"]
            cancelled = bool(annotation.get("was_cancelled"))
            out[str(annotation["id"])] = (stars, None if cancelled else hero, cancelled)
    return out


def db_state(db_path, project_id) -> dict[str, tuple]:
    db = store.connect(db_path)
    return {r["annotation_id"]: (r["stars"], None if r["hero"] is None else bool(r["hero"]), bool(r["skipped"]))
            for r in db["ratings"].rows_where("project = ? AND deleted = 0", [str(project_id)])}


def test_webhook_then_outage_then_sync(tmp_path, label_studio):
    review = Review(tmp_path, label_studio, n=6)
    review.env["HITL_WEBHOOK_SECRET"] = SECRET
    port = studio.free_port()
    service = Service(review.db_path, port)
    try:
        title = f"e2e {uuid.uuid4().hex[:6]}"
        review.push(title, "--webhook-url", f"http://127.0.0.1:{port}/webhooks/label-studio")
        project = review.project(title)
        client = review.client
        tasks = review.tasks(project.id)
        assert len(tasks) == 6

        # a curator at work: rate, change their mind, skip, rate and delete
        first = client.annotations.create(id=tasks[0].id, result=rating_result(4, False, "tail cut off"), lead_time=9.5)
        client.annotations.update(id=first.id, result=rating_result(8, True))
        client.annotations.create(id=tasks[1].id, result=[], was_cancelled=True)
        doomed = client.annotations.create(id=tasks[2].id, result=rating_result(2, False))
        client.annotations.delete(id=doomed.id)
        client.annotations.create(id=tasks[3].id, result=rating_result(6, False))

        expected = ls_state(client, project.id)
        assert len(expected) == 3
        assert wait_for(lambda: db_state(review.db_path, project.id) == expected), (
            db_state(review.db_path, project.id), expected)
        db = store.connect(review.db_path)
        row = db["ratings"].get(("labelstudio", str(project.id), str(first.id)))
        assert (row["image_id"], row["mode"], row["annotator_email"]) == (
            tasks[0].data["image_id"], "assisted", "curator@example.org")
        assert db["ratings"].get(("labelstudio", str(project.id), str(doomed.id)))["deleted"] == 1
        assert db.execute("SELECT COUNT(*) FROM events WHERE outcome = 'failed'").fetchone()[0] == 0
    finally:
        service.stop()

    # the service is down: these deliveries fail, and Label Studio never retries them
    client.annotations.create(id=tasks[4].id, result=rating_result(9, True))
    client.annotations.update(id=first.id, result=rating_result(3, False))
    late = client.annotations.create(id=tasks[5].id, result=rating_result(5, False))
    client.annotations.delete(id=late.id)
    skipped = client.tasks.get(id=tasks[1].id).annotations[0]
    client.annotations.delete(id=skipped["id"])
    expected = ls_state(client, project.id)
    assert db_state(review.db_path, project.id) != expected  # the webhook missed them

    hook = next(h for h in client.webhooks.list(project=str(project.id)))
    client.webhooks.update(id=hook.id, url=hook.url, is_active=False)  # as Label Studio does after failures

    service = Service(review.db_path, port)
    try:
        result = review.run("sync", "--url", label_studio.url)
        assert "1 new" in result.output and "webhook: re-enabled" in result.output, result.output
        got = db_state(review.db_path, project.id)
        assert set(got) == set(expected)  # zero missing, zero extra
        assert got == expected
        assert client.webhooks.get(id=hook.id).is_active
        again = review.run("sync", "--url", label_studio.url)
        assert "0 new, 0 updated, 0 deleted" in again.output
        # and the webhook works again
        client.annotations.create(id=tasks[5].id, result=rating_result(7, True))
        assert wait_for(lambda: db_state(review.db_path, project.id) == ls_state(client, project.id))
    finally:
        service.stop()


def test_sync_from_an_export_file(tmp_path, label_studio):
    review = Review(tmp_path, label_studio, n=3)
    title = f"export {uuid.uuid4().hex[:6]}"
    review.push(title)
    project = review.project(title)
    client = review.client
    tasks = review.tasks(project.id)
    client.annotations.create(id=tasks[0].id, result=rating_result(7, True))
    client.annotations.create(id=tasks[1].id, result=rating_result(3, False))
    request = urllib.request.Request(f"{label_studio.url}/api/projects/{project.id}/export?exportType=JSON",
                                     headers={"Authorization": f"Token {label_studio.token}"})
    export = tmp_path / "export.json"
    export.write_bytes(urllib.request.urlopen(request, timeout=60).read())
    result = review.run("sync", "--from-export", str(export))
    assert f"(project {project.id}): 2 new" in result.output
    assert db_state(review.db_path, project.id) == ls_state(client, project.id)
    assert json.loads(review.run("ratings", "--json").output)[0]["mode"] == "assisted"
