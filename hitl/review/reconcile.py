"""Reconcile: whatever the webhook missed comes back from Label Studio itself.

Reads the project's full JSON export (every task with its annotations) through the API, or
an export file, or a Labelme folder; upserts every decision; marks what is no longer there
as deleted. Safe while the webhook is receiving: WAL, the busy timeout, short transactions,
and nothing that arrived after the export was taken is ever marked deleted.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import sqlite_utils

from converters.common import HumanRating
from converters.labelstudio import image_id_of, rating_from_annotation
from hitl.errors import HitlError
from hitl.review.client import export_tasks, studio_errors
from hitl.review.events import SOURCE, delete_task
from hitl.review.push import cache_users
from hitl.store import queries, transaction, utc_now
from hitl.store.ratings import mark_deleted, record_ratings

CHUNK = 200  # ratings per transaction: the webhook never waits long for the lock


def reconcile_tasks(db: sqlite_utils.Database, tasks: Iterable[dict], project: str, started: str,
                    emails: dict[int, str] | None = None, via: str = "sync") -> Counter:
    """Upsert every annotation of ``tasks`` and mark deleted what the project no longer has.

    ``started`` is when the export was taken: ratings and tasks received after it are kept
    even if the export does not have them (they are newer than the export).
    """
    emails = emails if emails is not None else queries.user_emails(db)
    mode = queries.project_mode(db, project)
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
            queries.map_task(db, int(project), task["id"], image_id_of(task), now)
            for annotation in task.get("annotations") or []:
                email = queries.email_of(annotation.get("completed_by"), emails)
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


def sync_project(db: sqlite_utils.Database, client, url: str, project_id: int) -> tuple[Counter, str]:
    """Reconcile one project through the API; re-enable its webhook if Label Studio disabled it."""
    started = utc_now()
    emails = cache_users(db, client, url)
    tasks = export_tasks(client, url, project_id)
    counts = reconcile_tasks(db, tasks, str(project_id), started, emails)
    with studio_errors(url, f"checking the webhook of project {project_id}"):
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
    from hitl.review.labelme import read_labelme_folder

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


def sync_export_file(db: sqlite_utils.Database, path: str | Path, project_id: int | None) -> tuple[int, Counter]:
    """Reconcile from an export file; the project is ``project_id`` or the one its tasks name."""
    from datetime import datetime, timezone

    tasks = read_export_file(path)
    pid = project_id or next((t.get("project") for t in tasks if isinstance(t, dict) and t.get("project")), None)
    if pid is None:
        raise HitlError(f"{path}: the export does not say its project; pass --project-id")
    # the file is a snapshot taken when it was written: nothing that arrived later is marked deleted
    started = datetime.fromtimestamp(Path(path).stat().st_mtime, timezone.utc).isoformat(timespec="milliseconds")
    return pid, reconcile_tasks(db, tasks, str(pid), started)


def projects_to_sync(db: sqlite_utils.Database, client, url: str, titles: list[str]) -> list[dict]:
    """The projects pushed from this database (or those titled ``titles``, looked up in Label Studio)."""
    projects = [dict(r) for r in db.query("SELECT id, title FROM ls_projects ORDER BY id")]
    if titles:
        projects = [p for p in projects if p["title"] in titles]
        for title in sorted(set(titles) - {p["title"] for p in projects}):
            with studio_errors(url, f"looking up project {title!r}"):
                found = [p for p in client.projects.list(title=title) if p.title == title]
            if not found:
                raise HitlError(f"no project titled {title!r} at {url}")
            projects.append({"id": found[0].id, "title": title})
    if not projects:
        raise HitlError("no Label Studio project pushed from this database; pass --project TITLE")
    return projects
