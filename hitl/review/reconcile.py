"""Reconcile: whatever the webhook missed comes back from Label Studio itself.

Reads the project's full JSON export (every task with its annotations) through the API, or
an export file, or a Labelme folder; upserts every decision; marks what is no longer there
as deleted. Safe while the webhook is receiving: WAL, the busy timeout, short transactions,
and nothing that arrived after the export was taken is ever marked deleted.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlite_utils

from converters.common import HumanRating, text_problem
from converters.decisions import DecisionError
from converters.labelstudio import image_id_of, is_id, rating_from_annotation
from converters.sniff import check_kind
from hitl.errors import HitlError, StudioError
from hitl.review.client import export_tasks
from hitl.review.events import SOURCE, delete_task
from hitl.review.push import cache_users
from hitl.store import in_chunks, queries, transaction, utc_now, write_in_parts
from hitl.store.curators import EARLIEST, parse_time
from hitl.store.ratings import check_pushed_pair, mark_deleted, record_ratings


@dataclass
class SyncResult:
    """What a sync did (new, updated, restored, deleted, unchanged, older) and what it refused."""

    counts: Counter = field(default_factory=Counter)
    problems: Counter = field(default_factory=Counter)  # bad records by reason: counted, reported, skipped
    examples: list[str] = field(default_factory=list)
    webhook: str = ""

    def bad(self, reason: str, example: str) -> None:
        self.problems[reason] += 1
        if len(self.examples) < 10:
            self.examples.append(example)


@dataclass
class Snapshot:
    """What an export is evidence of: when it was taken, and by whose clock.

    ``ours``: the time (our clock) the API export was asked for; a rating received before it
    and missing from it is gone. ``content``: the newest time written inside an export file
    (Label Studio's clock), compared with the ratings' own times; a file's modification time
    says nothing (a copy is newer than its content).
    """

    taken_at: datetime
    clock: str  # "ours" or "content"
    verify_task: Callable[[int], bool] | None = None  # does the source prove this task deleted?

    def older(self, row: dict) -> bool:
        stamp = row["received_at"] if self.clock == "ours" else (row["updated_at"] or row["created_at"])
        when = parse_time(stamp)
        return when is not None and when < self.taken_at


def reconcile_tasks(db: sqlite_utils.Database, tasks: Iterable[Any], project: str, snapshot: Snapshot,
                    emails: dict[int, str] | None = None, via: str = "sync") -> SyncResult:
    """Upsert every decision of ``tasks`` and mark deleted what the export proves gone.

    Only annotations of tasks the export holds, older than the snapshot and missing from it,
    are marked deleted, and not for good: one seen again by a later source comes back (never
    by an older one). A task is deleted only when ``snapshot.verify_task`` proves it (never
    because an export lacks it). A comparison must name the pair its task was pushed with. Bad
    records are counted by reason, with examples; the rest goes on. Everything is written in
    short transactions, so the webhook never waits long for the lock.
    """
    emails = emails if emails is not None else queries.user_emails(db)
    mode = queries.project_mode(db, project)
    result = SyncResult()
    ratings: list[HumanRating] = []
    task_images: dict[int, str | None] = {}
    for position, task in enumerate(tasks):
        if not isinstance(task, dict) or not is_id(task.get("id")):
            result.bad("malformed task", f"tasks[{position}] is not a task with an integer id")
            continue
        image_id = image_id_of(task)
        if image_id is not None and (problem := text_problem(image_id)):
            result.bad("malformed task", f"task {task['id']}: its image id holds {problem}")
            continue
        task_images[task["id"]] = image_id
        # Label Studio's export always has a list here: anything else (null, 0 and "" too, which must not
        # pass for "no annotations") is counted below as a bad annotation
        annotations = task.get("annotations", [])
        for annotation in annotations if isinstance(annotations, list) else [annotations]:
            try:
                email = queries.email_of(annotation.get("completed_by"), emails) if isinstance(annotation, dict) \
                    else None
                rating = rating_from_annotation(annotation, task, project, annotator_email=email)
                if rating.other_image_id is not None:
                    check_pushed_pair(db, rating)
            except DecisionError as exc:
                who = annotation.get("id") if isinstance(annotation, dict) else repr(annotation)[:40]
                result.bad(exc.reason, f"task {task['id']}, annotation {who}: {exc}")
                continue
            rating.mode = rating.mode or mode
            ratings.append(rating)
    now = utc_now()
    write_in_parts(db, list(task_images.items()), lambda part: Counter(
        mapped=sum(queries.map_task(db, int(project), task_id, image_id, now) for task_id, image_id in part)))
    seen_at = None if snapshot.taken_at == EARLIEST else snapshot.taken_at
    result.counts = write_in_parts(db, ratings, lambda part: record_ratings(db, part, via=via, seen_at=seen_at))
    present = {r.annotation_id for r in ratings}
    stale = [r["annotation_id"] for r in db.query(
        "SELECT annotation_id, task_id, received_at, created_at, updated_at FROM ratings "
        "WHERE source = ? AND project = ? AND deleted = 0", [SOURCE, project])
        if r["annotation_id"] not in present and r["task_id"] in task_images and snapshot.older(r)]
    result.counts.update(write_in_parts(db, stale, lambda part: mark_deleted(
        db, SOURCE, project, part, via=via, explicit=False, proven_at=snapshot.taken_at)))
    if snapshot.verify_task is not None:
        for task_id in [r[0] for r in db.execute("SELECT task_id FROM ls_tasks WHERE project_id = ? AND "
                                                 "deleted_at IS NULL", [int(project)]) if r[0] not in task_images]:
            if snapshot.verify_task(task_id):
                with transaction(db):
                    result.counts.update(delete_task(db, project, task_id, via=via))
    return result


def sync_project(db: sqlite_utils.Database, client, project_id: int) -> SyncResult:
    """Reconcile one project through the API (a :class:`hitl.review.client.StudioClient`); re-enable
    its webhook if Label Studio disabled it."""
    started = datetime.now(timezone.utc)
    emails = cache_users(db, client)
    tasks = export_tasks(client, project_id)
    snapshot = Snapshot(started, "ours", verify_task=lambda task_id: task_gone(client, task_id))
    result = reconcile_tasks(db, tasks, str(project_id), snapshot, emails)
    result.webhook = reenable_webhooks(db, client, project_id)
    return result


def task_gone(client, task_id: int) -> bool:
    """Does Label Studio say this task no longer exists (404)? Any other answer proves nothing."""
    try:
        client.tasks.get(id=task_id)
    except StudioError as exc:
        if exc.status == 404:
            return True
        raise
    return False


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


def sync_labelme(db: sqlite_utils.Database, folder: str | Path, curator: str | None = None) -> SyncResult:
    """Reconcile from a Labelme folder (read as `labelme import` reads it): changed files upserted,
    deleted files' ratings marked (until the file is back)."""
    from hitl.review.labelme import record_labelme_folder

    read_at = datetime.now(timezone.utc)  # the folder is the source, as it is now
    _, problems, counts = record_labelme_folder(db, folder, curator, via="sync", read_at=read_at)
    project = Path(folder).resolve().as_posix()
    result = SyncResult(counts=counts)
    for problem in problems:
        if problem.reason != "not reviewed yet":
            result.bad(problem.reason, str(problem))
    gone = [row[0] for row in db.execute(
        "SELECT annotation_id FROM ratings WHERE source = 'labelme' AND project = ? AND deleted = 0", [project])
        if not (Path(project) / row[0]).exists()]
    result.counts.update(write_in_parts(db, gone, lambda part: mark_deleted(
        db, "labelme", project, part, via="sync", explicit=False, proven_at=read_at)))
    return result


def read_export_file(path: str | Path) -> list[Any]:
    """A Label Studio JSON export file (a list of tasks with annotations)."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise HitlError(f"{path}: cannot read the export ({exc.strerror})") from None
    check_kind(raw, str(path), "labelstudio export")
    try:  # an integer too long for int() is read as the float it rounds to (inf), which every check refuses
        data = json.loads(raw, parse_int=lambda digits: int(digits) if len(digits) <= 4000 else float(digits))
    except (ValueError, RecursionError) as exc:
        raise HitlError(f"{path}: not a JSON file ({type(exc).__name__}: {str(exc)[:120]}); export the project "
                        f"as JSON from Label Studio") from None
    if not isinstance(data, list):
        raise HitlError(f"{path}: not a Label Studio JSON export (expected a list of tasks)")
    return data


def export_project(tasks: list[Any], path: str | Path, project_id: int | None) -> int:
    """The project an export file is of: the one its tasks name, which ``project_id`` must agree with."""
    if project_id is not None and not is_id(project_id):
        raise HitlError(f"--project-id {project_id} is not a Label Studio project id; pass the number in the "
                        f"project's address (/projects/<id>)")
    given = [t.get("project") for t in tasks if isinstance(t, dict) and t.get("project") is not None]
    odd = next((v for v in given if not is_id(v)), None)
    if odd is not None:
        raise HitlError(f"{path}: a task names project {odd!r}, which is not a project id; export the project "
                        f"again from Label Studio")
    named = set(given)
    if len(named) > 1:
        raise HitlError(f"{path}: its tasks name several projects ({', '.join(map(str, sorted(named, key=str)))}); "
                        f"export one project at a time")
    if named:
        found = next(iter(named))
        if project_id is not None and project_id != found:
            raise HitlError(f"{path}: its tasks are of project {found}, not --project-id {project_id}; "
                            f"pass --project-id {found} or leave it out")
        return found
    if project_id is None:
        raise HitlError(f"{path}: the export does not say its project; pass --project-id")
    return project_id


def check_task_map(db: sqlite_utils.Database, tasks: list[Any], path: str | Path, project_id: int) -> None:
    """An export whose tasks do not name their project must be of ``project_id`` by the task map:
    Label Studio's task ids are unique across projects, so a task the map places in another
    project proves the export is not this project's, and an export none of whose tasks the map
    places in it proves nothing. Else a HitlError (a wrong id would copy one project's decisions
    into another)."""
    ids = [t["id"] for t in tasks if isinstance(t, dict) and is_id(t.get("id"))]  # the others: malformed tasks
    placed: dict[int, set[int]] = {}
    for marks, part in in_chunks(ids):
        for task_id, project in db.execute(f"SELECT task_id, project_id FROM ls_tasks WHERE task_id IN ({marks})",
                                           part):
            placed.setdefault(project, set()).add(task_id)
    others = {p: t for p, t in placed.items() if p != project_id}
    if others:
        other, their = min(others.items())
        raise HitlError(f"{path}: its tasks do not name their project, and task {min(their)} is project {other}'s, "
                        f"not project {project_id}'s; pass --project-id {other}, or export with project ids")
    if ids and project_id not in placed:
        raise HitlError(f"{path}: its tasks do not name their project, and none of them is a task of project "
                        f"{project_id} in this database; check --project-id, or export with project ids")


def content_time(tasks: list[Any]) -> datetime | None:
    """The newest time written in an export: no annotation in it can be newer than this."""
    stamps = []
    for task in tasks:
        if not isinstance(task, dict):
            continue
        stamps += [task.get("updated_at"), task.get("created_at")]
        annotations = task.get("annotations")
        for a in annotations if isinstance(annotations, list) else []:
            if isinstance(a, dict):
                stamps += [a.get("updated_at"), a.get("created_at")]
    times = [t for t in (parse_time(s) if isinstance(s, str) else None for s in stamps) if t is not None]
    return max(times, default=None)


def sync_export_file(db: sqlite_utils.Database, path: str | Path, project_id: int | None,
                     taken_at: datetime | None = None) -> tuple[int, SyncResult]:
    """Reconcile from an export file; nothing newer than the export's own content is marked deleted."""
    tasks = read_export_file(path)
    pid = export_project(tasks, path, project_id)
    if not any(isinstance(t, dict) and t.get("project") is not None for t in tasks):
        check_task_map(db, tasks, path, pid)
    when = taken_at or content_time(tasks)
    snapshot = Snapshot(when or EARLIEST, "content")
    return pid, reconcile_tasks(db, tasks, str(pid), snapshot)


def projects_to_sync(db: sqlite_utils.Database, client, url: str, titles: list[str]) -> list[dict]:
    """The projects pushed from this database (or those titled ``titles``, looked up in Label Studio)."""
    projects = [dict(r) for r in db.query("SELECT id, title FROM ls_projects ORDER BY id")]
    if titles:
        projects = [p for p in projects if p["title"] in titles]
        for title in sorted(set(titles) - {p["title"] for p in projects}):
            found = [p for p in client.projects.list(title=title) if p.title == title]
            if not found:
                raise HitlError(f"no project titled {title!r} at {url}")
            projects.append({"id": found[0].id, "title": title})
    if not projects:
        raise HitlError("no Label Studio project pushed from this database; pass --project TITLE")
    return projects
