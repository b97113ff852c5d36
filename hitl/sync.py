"""Reconcile: whatever the webhook missed comes back from Label Studio itself.

Reads the project's full JSON export (every task with its annotations) through the API, or
an export file, or a Labelme folder; upserts every decision; marks what is no longer there
as deleted. Safe while the webhook is receiving: WAL, the busy timeout, short transactions,
and nothing that arrived after the export was taken is ever marked deleted.
"""
from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import sqlite_utils

from converters.common import HumanRating
from converters.labelstudio import image_id_of, rating_from_annotation

from .errors import HitlError
from .events import SOURCE, delete_task
from .reviews import mark_deleted, record_ratings
from .store import transaction, utc_now

CHUNK = 200  # ratings per transaction: the webhook never waits long for the lock


def fetch_export(url: str, token: str, project_id: int, timeout: float = 300) -> list[dict]:
    """Every task of a project with its annotations (Label Studio's JSON export)."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/api/projects/{project_id}/export?exportType=JSON&download_all_tasks=true",
        headers={"Authorization": f"Token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = json.load(response)
    except Exception as exc:  # urllib and JSON errors alike: one clear line
        raise HitlError(f"cannot export project {project_id} from {url}: {exc}") from None
    if not isinstance(data, list):
        raise HitlError(f"project {project_id}: the export is not a list of tasks")
    return data


def cache_users(db: sqlite_utils.Database, client) -> dict[int, str]:
    """Label Studio's users (id → email): webhook deliveries name annotators by id only."""
    users = {u.id: u.email for u in client.users.list() if u.email}
    now = utc_now()
    with transaction(db):
        db["ls_users"].upsert_all([{"id": k, "email": v, "updated_at": now} for k, v in users.items()], pk="id")
    return users


def reconcile_tasks(db: sqlite_utils.Database, tasks: Iterable[dict], project: str, started: str,
                    emails: dict[int, str] | None = None, via: str = "sync") -> Counter:
    """Upsert every annotation of ``tasks`` and mark deleted what the project no longer has.

    ``started`` is when the export was taken: ratings and tasks received after it are kept
    even if the export does not have them (they are newer than the export).
    """
    emails = emails if emails is not None else dict(db.execute("SELECT id, email FROM ls_users").fetchall())
    mode_row = db.execute("SELECT mode FROM ls_projects WHERE id = ?", [int(project)]).fetchone()
    mode = mode_row[0] if mode_row else None
    counts: Counter = Counter()
    ratings: list[HumanRating] = []
    task_ids: set[int] = set()
    now = utc_now()
    with transaction(db):
        for task in tasks:
            if not isinstance(task, dict) or not isinstance(task.get("id"), int):
                counts["malformed task skipped"] += 1
                continue
            task_ids.add(task["id"])
            db.execute("INSERT INTO ls_tasks (project_id, task_id, image_id, pushed_at) VALUES (?, ?, ?, ?) "
                       "ON CONFLICT (project_id, task_id) DO UPDATE SET image_id = COALESCE(image_id, excluded.image_id)",
                       [int(project), task["id"], image_id_of(task), now])
            for annotation in task.get("annotations") or []:
                completed_by = annotation.get("completed_by")
                email = emails.get(completed_by) if isinstance(completed_by, int) else None
                rating = rating_from_annotation(annotation, task, project, annotator_email=email)
                rating.mode = rating.mode or mode
                ratings.append(rating)
    for start in range(0, len(ratings), CHUNK):
        with transaction(db):
            counts.update(record_ratings(db, ratings[start:start + CHUNK], via=via))
    present = {r.annotation_id for r in ratings}
    stale = [row[0] for row in db.execute(
        "SELECT annotation_id FROM ratings WHERE source = ? AND project = ? AND deleted = 0 AND received_at < ?",
        [SOURCE, project, started]) if row[0] not in present]
    for start in range(0, len(stale), CHUNK):
        with transaction(db):
            counts.update(mark_deleted(db, SOURCE, project, stale[start:start + CHUNK], via=via))
    gone = [row[0] for row in db.execute(
        "SELECT task_id FROM ls_tasks WHERE project_id = ? AND deleted_at IS NULL AND pushed_at < ?",
        [int(project), started]) if row[0] not in task_ids]
    for task_id in gone:
        with transaction(db):
            counts.update(delete_task(db, project, task_id, via=via))
    return counts


def sync_project(db: sqlite_utils.Database, client, url: str, token: str, project_id: int) -> tuple[Counter, str]:
    """Reconcile one project through the API; re-enable its webhook if Label Studio disabled it."""
    started = utc_now()
    emails = cache_users(db, client)
    tasks = fetch_export(url, token, project_id)
    counts = reconcile_tasks(db, tasks, str(project_id), started, emails)
    return counts, reenable_webhooks(db, client, project_id)


def reenable_webhooks(db: sqlite_utils.Database, client, project_id: int) -> str:
    """Label Studio switches a webhook off after repeated failed deliveries; switch ours back on."""
    row = db.execute("SELECT webhook_url FROM ls_projects WHERE id = ?", [project_id]).fetchone()
    ours = row[0] if row else None
    states = []
    for hook in client.webhooks.list(project=str(project_id)):
        if hook.url != ours and not hook.url.rstrip("/").endswith("/webhooks/label-studio"):
            continue
        if hook.is_active:
            states.append("active")
        else:
            client.webhooks.update(id=hook.id, url=hook.url, is_active=True)
            states.append("re-enabled (Label Studio had disabled it)")
    return ", ".join(states) or "none registered"


def sync_labelme(db: sqlite_utils.Database, folder: str | Path) -> tuple[Counter, list]:
    """Reconcile from a Labelme folder: changed files upserted, deleted files' ratings marked."""
    from .labelme_io import read_labelme_folder

    ratings, problems = read_labelme_folder(folder)
    project = Path(folder).resolve().as_posix()
    counts: Counter = Counter()
    for start in range(0, len(ratings), CHUNK):
        with transaction(db):
            counts.update(record_ratings(db, ratings[start:start + CHUNK], via="sync"))
    gone = [row[0] for row in db.execute(
        "SELECT annotation_id FROM ratings WHERE source = 'labelme' AND project = ? AND deleted = 0", [project])
        if not (Path(project) / row[0]).exists()]
    with transaction(db):
        counts.update(mark_deleted(db, "labelme", project, gone, via="sync"))
    return counts, problems


def read_export_file(path: str | Path) -> list[dict]:
    """A Label Studio JSON export file (a list of tasks with annotations)."""
    try:
        data = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise HitlError(f"{path}: cannot read the export ({exc.strerror})") from None
    except ValueError as exc:
        raise HitlError(f"{path}: not a JSON file ({exc}); export the project as JSON from Label Studio") from None
    if not isinstance(data, list):
        raise HitlError(f"{path}: not a Label Studio JSON export (expected a list of tasks)")
    return data
