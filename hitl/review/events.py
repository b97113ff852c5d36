"""Label Studio deliveries: checked, stored raw, then applied to the ratings.

Used by the webhook service (each delivery as it arrives), by `hitl replay` (deliveries
whose processing failed) and by tests. Applying a delivery twice, or deliveries out of
order, gives the same final state: ratings are keyed by annotation id, older versions never
overwrite newer ones, and deletes of things not seen yet leave tombstones.
"""
from __future__ import annotations

import json
from collections import Counter
from typing import Annotated, Any

import msgspec
import sqlite_utils

from converters.decisions import MODES, DecisionError, describe_invalid
from converters.labelstudio import image_id_of, rating_from_annotation, task_data
from hitl.store import queries, transaction, utc_now
from hitl.store.ratings import check_pushed_pair, mark_deleted, record_ratings

ANNOTATION_ACTIONS = {"ANNOTATION_CREATED", "ANNOTATIONS_CREATED", "ANNOTATION_UPDATED"}
HANDLED = ANNOTATION_ACTIONS | {"ANNOTATIONS_DELETED", "TASKS_CREATED", "TASKS_DELETED"}
SOURCE = "labelstudio"
_Id = Annotated[int, msgspec.Meta(ge=0)]


class BadEvent(ValueError):
    """A delivery that is not a well-formed Label Studio event; the message says what is wrong."""


def parse_body(raw: bytes) -> dict:
    """Decode a delivery body: strict JSON in UTF-8 (no NaN or Infinity, no lone surrogates, no
    nesting deeper than a real delivery has); anything else, or anything but an object, is a BadEvent."""
    try:
        body = msgspec.json.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError, UnicodeError) as exc:
        raise BadEvent(f"body is not valid JSON ({type(exc).__name__}: {str(exc)[:120]})") from None
    if not isinstance(body, dict):
        raise BadEvent(f"body must be a JSON object, not {type(body).__name__}")
    return body


class _ProjectRef(msgspec.Struct):
    id: _Id


class _IdRef(msgspec.Struct):
    id: _Id


class _TaskData(msgspec.Struct):
    image_id: str | None = None
    image: str | None = None
    mode: str | None = None


class _Task(msgspec.Struct):
    id: _Id
    data: _TaskData


def _typed(data: Any, kind: type, what: str):
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise BadEvent(f"{what}: {describe_invalid(str(exc))}") from None


def validate(body: dict) -> str:
    """Check everything this service reads (the decisions with the one validator); return the
    action. Unknown actions are accepted and logged."""
    action = body.get("action")
    if not isinstance(action, str) or not action:
        raise BadEvent("'action' must be a non-empty string")
    if action not in HANDLED:
        return action
    if not isinstance(body.get("project"), dict):
        raise BadEvent(f"{action}: 'project' must be an object with an integer 'id'")
    project = _typed(body["project"], _ProjectRef, f"{action}: 'project'").id
    if action in ANNOTATION_ACTIONS:
        for annotation, task in annotations_with_tasks(action, body):
            try:
                rating_from_annotation(annotation, task, project)
            except DecisionError as exc:
                raise BadEvent(f"{action}: annotation {annotation.get('id')}: {exc}") from None
    else:
        key = "annotations" if action == "ANNOTATIONS_DELETED" else "tasks"
        if not isinstance(body.get(key), list):
            raise BadEvent(f"{action}: '{key}' must be a list of objects with an integer 'id'")
        kind = _IdRef if action != "TASKS_CREATED" else _Task
        for item in body[key]:
            _check_task(action, item) if kind is _Task else _typed(item, _IdRef, f"{action}: '{key}'")
    return action


def annotations_with_tasks(action: str, body: dict) -> list[tuple[dict, dict]]:
    """Each annotation of an annotation delivery with its task (checked), in delivery order."""
    annotations, tasks = body.get("annotation"), body.get("task")
    if annotations is None or tasks is None:
        raise BadEvent(f"{action}: 'annotation' and 'task' are both required (send_payload must be on)")
    many = action == "ANNOTATIONS_CREATED"
    annotations = annotations if many else [annotations]
    tasks = tasks if many else [tasks]
    if not isinstance(annotations, list) or not isinstance(tasks, list):
        raise BadEvent(f"{action}: 'annotation' and 'task' must be lists")
    by_id = {_check_task(action, task): task for task in tasks}
    pairs = []
    for annotation in annotations:
        if not isinstance(annotation, dict):
            raise BadEvent(f"{action}: each annotation must be an object")
        ref = annotation.get("task")
        task_id = ref.get("id") if isinstance(ref, dict) else ref
        # a task id is an integer: anything else (a list, an object) names no task, and a bool is no id
        if not isinstance(task_id, int) or isinstance(task_id, bool) or task_id not in by_id:
            raise BadEvent(f"{action}: annotation {annotation.get('id')}: its task is missing from the delivery")
        pairs.append((annotation, by_id[task_id]))
    return pairs


def check_comparisons(db: sqlite_utils.Database, body: dict) -> None:
    """A validated delivery's comparison answers against the pairs the task map says were pushed;
    BadEvent naming the first that is not (see :func:`hitl.store.ratings.check_pushed_pair`)."""
    action = body["action"]
    if action not in ANNOTATION_ACTIONS:
        return
    project = str(body["project"]["id"])
    for annotation, task in annotations_with_tasks(action, body):
        if "right_id" in task_data(task):  # only comparison tasks pay for the look-up
            try:
                check_pushed_pair(db, rating_from_annotation(annotation, task, project))
            except DecisionError as exc:
                raise BadEvent(f"{action}: annotation {annotation.get('id')}: {exc}") from None


def _check_task(action: str, task: Any) -> int:
    """A task's id, once its id, data and image are known good."""
    checked = _typed(task, _Task, f"{action}: task")
    if not image_id_of(task):
        raise BadEvent(f"{action}: task {checked.id}: no image (data.image_id or data.image)")
    if checked.data.mode is not None and checked.data.mode not in MODES:
        raise BadEvent(f"{action}: task {checked.id}: data.mode {checked.data.mode!r} is not one of {', '.join(MODES)}")
    return checked.id


def apply_event(db: sqlite_utils.Database, body: dict, via: str) -> tuple[str, str]:
    """Apply one validated delivery inside the caller's transaction; returns (outcome, detail)."""
    action = body["action"]
    if action not in HANDLED:
        return "ignored", f"{action} is not used by hero-hitl"
    project = str(body["project"]["id"])
    counts: Counter = Counter()
    if action in ANNOTATION_ACTIONS:
        mode = queries.project_mode(db, project)
        emails = queries.user_emails(db)
        ratings = []
        for annotation, task in annotations_with_tasks(action, body):
            email = queries.email_of(annotation.get("completed_by"), emails)
            rating = rating_from_annotation(annotation, task, project, mode=None, annotator_email=email)
            if rating.other_image_id is not None:
                try:  # checked on arrival too (400); here for replays and a map changed meanwhile
                    check_pushed_pair(db, rating)
                except DecisionError as exc:
                    counts[f"refused ({exc.reason})"] += 1
                    continue
            queries.map_task(db, int(project), task["id"], image_id_of(task))
            rating.mode = rating.mode or mode
            ratings.append(rating)
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


# Keys whose values are credentials: never kept in the events table (Label Studio puts the
# project's token, and task_data_login/password when set, into every delivery).
CREDENTIAL_WORDS = ("token", "password", "secret", "login", "api_key", "apikey", "authorization")


def without_credentials(value: Any) -> Any:
    """``value`` with every entry whose key names a credential removed, at any depth."""
    if isinstance(value, dict):
        return {k: without_credentials(v) for k, v in value.items()
                if not (isinstance(k, str) and any(word in k.lower() for word in CREDENTIAL_WORDS))}
    if isinstance(value, list):
        return [without_credentials(v) for v in value]
    return value


def store_event(db: sqlite_utils.Database, body: dict, via: str) -> tuple[int, str, str]:
    """Append the delivery to ``events`` and apply it, in one transaction."""
    with transaction(db):
        return record_event(db, body, via)


def record_event(db: sqlite_utils.Database, body: dict, via: str) -> tuple[int, str, str]:
    """Append the delivery (credentials stripped) and apply it, inside the caller's transaction.

    The event row is written first; processing runs in a savepoint, so a failure rolls back
    only the processing and the event stays, marked failed, for `hitl replay`.
    """
    project = body.get("project", {}).get("id") if isinstance(body.get("project"), dict) else None
    stored = json.dumps(without_credentials(body), ensure_ascii=False, allow_nan=False)
    event_id = db.execute(
        "INSERT INTO events (received_at, action, project, body, outcome, attempts) VALUES (?, ?, ?, ?, ?, 1)",
        [utc_now(), body["action"], None if project is None else str(project), stored, "received"],
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
