"""Label Studio deliveries: checked, stored raw, then applied to the ratings.

Used by the webhook service (each delivery as it arrives), by `hitl replay` (deliveries
whose processing failed) and by tests. Applying a delivery twice, or deliveries out of
order, gives the same final state: ratings are keyed by annotation id, older versions never
overwrite newer ones, and deletes of things not seen yet leave tombstones.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Any

import sqlite_utils

from converters.labelstudio import image_id_of, rating_from_annotation
from hitl.store import queries, transaction, utc_now
from hitl.store.ratings import mark_deleted, record_ratings

ANNOTATION_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED"}
HANDLED = ANNOTATION_ACTIONS | {"ANNOTATIONS_DELETED", "TASKS_CREATED", "TASKS_DELETED"}
SOURCE = "labelstudio"


class BadEvent(ValueError):
    """A delivery that is not a well-formed Label Studio event; the message says what is wrong."""


def parse_body(raw: bytes) -> dict:
    """Decode a delivery body; anything but a JSON object is a BadEvent."""
    try:
        # UTF-8 only, as Label Studio sends; json.loads would also take UTF-16/32 bytes that
        # could then not be stored as text
        body = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # ValueError covers bad UTF-8 and bad JSON
        raise BadEvent(f"body is not valid JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(body, dict):
        raise BadEvent(f"body must be a JSON object, not {type(body).__name__}")
    return body


def validate(body: dict) -> str:
    """Check the parts this service reads; return the action. Unknown actions are accepted."""
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadEvent("'action' must be a non-empty string")
    if action not in HANDLED:
        return action
    project = body.get("project")
    if not isinstance(project, dict) or not _is_id(project.get("id")):
        raise BadEvent(f"{action}: 'project' must be an object with an integer 'id'")
    if action in ANNOTATION_ACTIONS:
        annotations, tasks = body.get("annotation"), body.get("task")
        if annotations is None or tasks is None:
            raise BadEvent(f"{action}: 'annotation' and 'task' are both required (send_payload must be on)")
        many = action == "ANNOTATIONS_CREATED"
        annotations = annotations if many else [annotations]
        tasks = tasks if many else [tasks]
        if not isinstance(annotations, list) or not isinstance(tasks, list):
            raise BadEvent(f"{action}: 'annotation' and 'task' must be lists")
        by_id = {}
        for task in tasks:
            _check_task(action, task)
            by_id[task["id"]] = task
        for annotation in annotations:
            if not isinstance(annotation, dict) or not _is_id(annotation.get("id")):
                raise BadEvent(f"{action}: each annotation needs an integer 'id'")
            if not isinstance(annotation.get("result", []), list):
                raise BadEvent(f"{action}: annotation {annotation['id']}: 'result' must be a list")
            for item in annotation.get("result", []):
                _check_result(action, annotation["id"], item)
            if annotation.get("lead_time") is not None and not _is_number(annotation["lead_time"]):
                raise BadEvent(f"{action}: annotation {annotation['id']}: 'lead_time' must be a number")
            completed_by = annotation.get("completed_by")
            if completed_by is not None and not (_is_id(completed_by) or isinstance(completed_by, dict)):
                raise BadEvent(f"{action}: annotation {annotation['id']}: 'completed_by' must be a user id")
            for key in ("created_at", "updated_at"):
                if annotation.get(key) is not None and not isinstance(annotation[key], str):
                    raise BadEvent(f"{action}: annotation {annotation['id']}: '{key}' must be a string")
            task_id = annotation.get("task")
            task_id = task_id.get("id") if isinstance(task_id, dict) else task_id
            if not _is_id(task_id) or task_id not in by_id:
                raise BadEvent(f"{action}: annotation {annotation['id']}: its task is missing from the delivery")
    else:
        key = "annotations" if action == "ANNOTATIONS_DELETED" else "tasks"
        items = body.get(key)
        if not isinstance(items, list) or not all(isinstance(i, dict) and _is_id(i.get("id")) for i in items):
            raise BadEvent(f"{action}: '{key}' must be a list of objects with an integer 'id'")
        if action == "TASKS_CREATED":
            for task in items:
                _check_task(action, task)
    return action


def _check_result(action: str, annotation_id: int, item: Any) -> None:
    """The result types the rating is read from must carry values of the right type."""
    where = f"{action}: annotation {annotation_id}"
    if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
        raise BadEvent(f"{where}: each result needs a 'value' object")
    value, kind = item["value"], item.get("type")
    if kind == "rating" and not _is_number(value.get("rating")):
        raise BadEvent(f"{where}: a rating needs a number 'rating'")
    if kind == "choices" and not (isinstance(value.get("choices"), list)
                                  and all(isinstance(c, str) for c in value["choices"])):
        raise BadEvent(f"{where}: 'choices' must be a list of strings")
    if kind == "textarea":
        text = value.get("text")
        if not (isinstance(text, str) or (isinstance(text, list) and all(isinstance(t, str) for t in text))):
            raise BadEvent(f"{where}: a textarea 'text' must be a string or a list of strings")
    if kind == "rectanglelabels":
        if not all(_is_number(value.get(k, 0)) for k in ("x", "y", "width", "height")):
            raise BadEvent(f"{where}: a rectangle needs numbers x, y, width, height")
        labels = value.get("rectanglelabels", [])
        if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise BadEvent(f"{where}: 'rectanglelabels' must be a list of strings")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value  # not NaN


def _check_task(action: str, task: Any) -> None:
    if not isinstance(task, dict) or not _is_id(task.get("id")):
        raise BadEvent(f"{action}: each task needs an integer 'id'")
    data = task.get("data")
    if not isinstance(data, dict):
        raise BadEvent(f"{action}: task {task['id']}: 'data' must be an object")
    if not image_id_of(task):
        raise BadEvent(f"{action}: task {task['id']}: no image (data.image_id or data.image)")
    for key in ("image_id", "image", "mode"):
        if key in data and data[key] is not None and not isinstance(data[key], str):
            raise BadEvent(f"{action}: task {task['id']}: data.{key} must be a string")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def apply_event(db: sqlite_utils.Database, body: dict, via: str) -> tuple[str, str]:
    """Apply one validated delivery inside the caller's transaction; returns (outcome, detail)."""
    action = body["action"]
    if action not in HANDLED:
        return "ignored", f"{action} is not used by hero-hitl"
    project = str(body["project"]["id"])
    counts: Counter = Counter()
    if action in ANNOTATION_ACTIONS:
        many = action == "ANNOTATIONS_CREATED"
        annotations = body["annotation"] if many else [body["annotation"]]
        tasks = {t["id"]: t for t in (body["task"] if many else [body["task"]])}
        mode = queries.project_mode(db, project)
        emails = queries.user_emails(db)
        ratings = []
        for annotation in annotations:
            task_id = annotation.get("task")
            task_id = task_id.get("id") if isinstance(task_id, dict) else task_id
            task = tasks[task_id]
            queries.map_task(db, int(project), task["id"], image_id_of(task))
            email = queries.email_of(annotation.get("completed_by"), emails)
            ratings.append(rating_from_annotation(annotation, task, project, mode=None, annotator_email=email))
            if ratings[-1].mode is None:
                ratings[-1].mode = mode
        counts.update(record_ratings(db, ratings, via=via))
        # an annotation of a task deleted earlier (deliveries out of order) is deleted too
        for rating in ratings:
            if _task_deleted(db, project, rating.task_id):
                counts.update(mark_deleted(db, SOURCE, project, [rating.annotation_id], via=via))
    elif action == "ANNOTATIONS_DELETED":
        counts.update(mark_deleted(db, SOURCE, project, [a["id"] for a in body["annotations"]], via=via,
                                   tombstone=True))
    elif action == "TASKS_CREATED":
        for task in body["tasks"]:
            counts["tasks mapped"] += queries.map_task(db, int(project), task["id"], image_id_of(task))
    elif action == "TASKS_DELETED":
        for task in body["tasks"]:
            counts.update(delete_task(db, project, task["id"], via=via))
    return "ok", ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "nothing to change"


def delete_task(db: sqlite_utils.Database, project: str, task_id: int, via: str) -> Counter:
    """Mark a task deleted (remembered even if unknown, for deliveries still on their way) and
    its annotations with it: Label Studio deletes them silently."""
    now = utc_now()
    db.execute("INSERT INTO ls_tasks (project_id, task_id, pushed_at, deleted_at) VALUES (?, ?, NULL, ?) "
               "ON CONFLICT (project_id, task_id) DO UPDATE SET deleted_at = COALESCE(deleted_at, excluded.deleted_at)",
               [int(project), task_id, now])
    ids = [r[0] for r in db.execute("SELECT annotation_id FROM ratings WHERE source = ? AND project = ? AND task_id = ?",
                                    [SOURCE, project, task_id])]
    counts = mark_deleted(db, SOURCE, project, ids, via=via)
    counts["tasks deleted"] += 1
    return counts


def _task_deleted(db: sqlite_utils.Database, project: str, task_id: int | None) -> bool:
    if task_id is None:
        return False
    row = db.execute("SELECT deleted_at FROM ls_tasks WHERE project_id = ? AND task_id = ?",
                     [int(project), task_id]).fetchone()
    return bool(row and row[0])


def store_event(db: sqlite_utils.Database, raw: bytes, body: dict, via: str) -> tuple[int, str, str]:
    """Append the delivery to ``events`` and apply it, in one transaction.

    The event row is written first; processing runs in a savepoint, so a failure rolls back
    only the processing and the event stays, marked failed, for `hitl replay`.
    """
    now = utc_now()
    project = body.get("project", {}).get("id") if isinstance(body.get("project"), dict) else None
    with transaction(db):
        event_id = db.execute(
            "INSERT INTO events (received_at, action, project, body, outcome, attempts) VALUES (?, ?, ?, ?, ?, 1)",
            [now, body["action"], None if project is None else str(project), raw.decode("utf-8"), "received"],
        ).lastrowid
        outcome, detail = _apply_in_savepoint(db, body, via)
        db.execute("UPDATE events SET outcome = ?, detail = ?, processed_at = ? WHERE id = ?",
                   [outcome, detail, utc_now(), event_id])
    return event_id, outcome, detail


def _apply_in_savepoint(db: sqlite_utils.Database, body: dict, via: str) -> tuple[str, str]:
    db.execute("SAVEPOINT apply_event")
    try:
        outcome, detail = apply_event(db, body, via)
    except Exception as exc:  # noqa: BLE001 - any processing failure is recorded, never lost
        db.execute("ROLLBACK TO SAVEPOINT apply_event")
        db.execute("RELEASE SAVEPOINT apply_event")
        return "failed", f"{type(exc).__name__}: {exc}"
    db.execute("RELEASE SAVEPOINT apply_event")
    return outcome, detail


def replay_failed(db: sqlite_utils.Database) -> Counter:
    """Reprocess every event whose processing failed, oldest first."""
    counts: Counter = Counter()
    for event_id, raw in db.execute("SELECT id, body FROM events WHERE outcome = 'failed' ORDER BY id").fetchall():
        body = json.loads(raw)
        with transaction(db):
            outcome, detail = _apply_in_savepoint(db, body, "replay")
            db.execute("UPDATE events SET outcome = ?, detail = ?, processed_at = ?, attempts = attempts + 1 "
                       "WHERE id = ?", [outcome, detail, utc_now(), event_id])
        counts[outcome] += 1
    return counts
