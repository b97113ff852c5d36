"""Push candidates into Label Studio for review (label-studio-sdk 2.x).

Idempotent: the project is found by title, images already pushed (image_id ↔ task id ↔
project in SQLite, rebuilt from Label Studio itself when SQLite is behind) are skipped, and
the webhook is created once, or re-enabled when Label Studio switched it off.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from converters.labelstudio import (
    BURST_VERSION,
    DETECTOR_VERSION,
    MODES,
    build_burst_task,
    build_task,
    default_document_root,
    local_files_url,
    model_version,
)
from hitl.config import Settings
from hitl.errors import HitlError, StudioError
from hitl.learn import LEARNED
from hitl.progress import progress_bar
from hitl.review import bursts
from hitl.review.client import fetch_users
from hitl.review.configs import burst_config, config_labels, label_config, with_labels
from hitl.store import queries, transaction, utc_now

DESCRIPTION = "hero-hitl review ({mode} mode): rate each camera-trap image 1-10 stars and decide hero or not."
BURST_DESCRIPTION = ("hero-hitl burst review ({mode} mode): pick the best frame of each burst, rate it 1-10 stars "
                     "and decide hero or not.")


@dataclass
class PushSummary:
    project_id: int
    project_created: bool
    mode: str
    model_version: str
    pushed: int = 0
    already: int = 0
    skipped: Counter = field(default_factory=Counter)
    skipped_examples: list[str] = field(default_factory=list)
    webhook: str = "not requested"
    storage: str = "not needed"

    def skip(self, reason: str, example: str) -> None:
        self.skipped[reason] += 1
        if len(self.skipped_examples) < 10:
            self.skipped_examples.append(example)


def review_rows(db: sqlite_utils.Database, threshold: float, image_ids: list[str] | None = None) -> list[dict]:
    """Candidates (or the given images) with their animal boxes and every model's ok scores."""
    rows = queries.candidates(db) if image_ids is None else queries.images(db, image_ids)
    boxes = queries.animal_boxes(db, threshold, [r["image_id"] for r in rows])
    scores = queries.scores_by_image(db)
    for row in rows:
        row["detections"] = boxes.get(row["image_id"], [])
        row["scores"] = scores.get(row["image_id"], [])
    return rows


def choose_prefill(rows: list[dict], prefill: str | None, current: str | None = None) -> tuple[str, str] | None:
    """(model, prompt_version) to prefill in assisted mode: the one asked for, else the one the
    project prefills already (``current``) where these rows have it, else the most complete."""
    counts = Counter((s["model"], s["prompt_version"]) for row in rows for s in row["scores"])
    if not counts:
        return None
    if not prefill and current:
        kept = next((key for key in counts if model_version(*key) == current), None)
        if kept is not None:  # a second push into a project must not change what its first tasks show
            return kept
    if prefill:
        for key in counts:
            if prefill in (key[0], model_version(*key)):
                return key
        raise HitlError(f"--prefill {prefill!r} has no scores; scored so far: "
                        f"{', '.join(sorted(model_version(*k) for k in counts))}")
    # never the learned rater unless asked: curators shown a model of their own past decisions
    # would be anchored on it, and agreement with them would measure that
    return max(counts, key=lambda key: (key[0] != LEARNED, counts[key], key[0] != "baseline", key))


def push(db: sqlite_utils.Database, client, *, url: str, title: str, mode: str = "assisted",
         prefill: str | None = None, document_root: str | Path | None = None,
         url_template: str | None = None, webhook_url: str | None = None, secret: str | None = None,
         batch_size: int = 500, threshold: float = 0.3, image_ids: list[str] | None = None,
         progress: bool | None = None, echo: Callable[[str], None] = lambda _m: None,
         with_bursts: bool = False, settings: Settings | None = None) -> PushSummary:
    """Create or reuse the project ``title`` and import the candidates not yet in it.

    With ``with_bursts``, each candidate whose sequence has kept frames is one multi-image task of
    those frames (see :mod:`hitl.review.bursts`; ``settings`` lets their baseline scores be made).
    """
    if mode not in MODES:
        raise HitlError(f"--mode must be assisted or blind, not {mode!r}")
    rows = review_rows(db, threshold, image_ids)
    if not rows:
        raise HitlError("no candidates to push: run `python -m hitl select` (and `score`) first")
    if mode == "blind" and prefill:
        raise HitlError("--prefill makes no sense in blind mode: no model output is shown there")
    left_out = Counter()
    if with_bursts:
        rows, left_out = bursts.burst_rows(db, rows, settings, echo)
        if not rows:
            raise HitlError(f"no candidate has burst frames to show: {bursts.NO_BURST}")
    current = db.execute("SELECT model_version FROM ls_projects WHERE url = ? AND title = ? ORDER BY id DESC",
                         [url, title]).fetchone()
    scored = [f for r in rows for f in r["frames"]] if with_bursts else rows
    chosen = choose_prefill(scored, prefill, None if with_bursts or not current else current[0]) \
        if mode == "assisted" else None
    version = BURST_VERSION if with_bursts else model_version(*chosen) if chosen else DETECTOR_VERSION
    labels = sorted({"animal"} | {r["species"] for r in rows if r["species"]}
                    | {d["species"] for r in rows for d in r["detections"] if d.get("species")})
    project, created = ensure_project(db, client, url, title, mode, labels, version,
                                      kind="burst" if with_bursts else "review")
    summary = PushSummary(project.id, created, mode, version)
    for reason, count in left_out.items():
        summary.skipped[reason] += count
    root = None
    if url_template is None:
        roots = sorted({r["root"] for r in rows} | {f["root"] for r in rows for f in r.get("frames", [])})
        root = Path(document_root or default_document_root(roots))
        summary.storage = ensure_local_storage(client, project.id, roots, root)
    tasks, images = _new_tasks(rows, mapped_images(db, client, project.id), summary, mode, chosen, root,
                               url_template)
    import_tasks(db, client, project.id, title, tasks, images, batch_size, summary, progress)
    if project.model_version != version and summary.pushed:
        # only now: Label Studio refuses a model_version that no prediction of the project has yet
        project = client.projects.update(id=project.id, model_version=version)
    if webhook_url:
        summary.webhook = ensure_webhook(client, project.id, webhook_url, secret)
        with transaction(db):
            db.execute("UPDATE ls_projects SET webhook_url = ? WHERE id = ?", [webhook_url, project.id])
    cache_users(db, client)  # deliveries name annotators by id; keep their emails at hand
    return summary


def _new_tasks(rows: list[dict], done: set[str], summary: PushSummary, mode: str, chosen: tuple[str, str] | None,
               root: Path | None, url_template: str | None) -> tuple[list[dict], list[str]]:
    """The tasks of the images not yet in the project (and their image ids); the rest counted.

    A burst is in the project when any of its frames is: after a pick its candidate is another
    frame than the one its task marked, and the curator has seen that burst already.
    """
    tasks, images = [], []
    for row in rows:
        shown_images = row.get("frames") or [row]
        if any(f["image_id"] in done for f in shown_images):
            summary.already += 1
            continue
        urls = [image_url(f, root, url_template, summary) for f in shown_images]
        if None in urls:
            continue
        shown = []
        if mode == "assisted":  # the prefilled model first: Label Studio lists predictions in order
            shown = sorted(row["scores"], key=lambda s: (s["model"], s["prompt_version"]) != chosen)
        try:
            if "frames" in row:
                frames = [{**f, "url": u} for f, u in zip(row["frames"], urls)]
                task = build_burst_task(row, frames, mode, bursts.proposal(frames, chosen))
            else:
                task = build_task(row, urls[0], row["width"], row["height"], row["detections"], shown, mode)
        except ValueError as exc:
            summary.skip("bad score or size", str(exc))
            continue
        tasks.append(task)
        images.append(row["image_id"])
    return tasks, images


def image_url(row: dict, root: Path | None, url_template: str | None, summary: PushSummary) -> str | None:
    """Where Label Studio finds an image: under the document root, or by the URL template; None
    (counted, with the fix) when it cannot."""
    path = Path(row["root"]) / row["image_id"]
    if url_template is None and not path.is_file():
        summary.skip("image file missing", f"{path}: missing; not pushed")
        return None
    try:
        return url_template.format(image_id=row["image_id"]) if url_template else local_files_url(path, root)
    except ValueError as exc:
        summary.skip("image outside the document root", f"{exc}; or start Label Studio with a document root "
                                                        f"covering it (`hitl studio --document-root`)")
        return None
    except (KeyError, IndexError) as exc:
        raise HitlError(f"--image-url-template {url_template!r} may only use {{image_id}} ({exc})") from None


def import_tasks(db: sqlite_utils.Database, client, project_id: int, title: str, tasks: list[dict], images: list[str],
                 batch_size: int, summary: PushSummary, progress: bool | None, others: list[str] | None = None) -> None:
    """Import the tasks batch by batch, saving the task ↔ image map after each: a rerun never imports twice.
    ``others``: each comparison task's right image, kept in the map beside its left one (``images``)."""
    with progress_bar(progress, total=len(tasks), desc=f"Pushing to {title}", unit="task") as bar:
        for start in range(0, len(tasks), batch_size):
            batch, batch_images = tasks[start:start + batch_size], images[start:start + batch_size]
            batch_others = others[start:start + batch_size] if others else [None] * len(batch)
            response = client.projects.import_tasks(id=project_id, request=batch, return_task_ids=True)
            task_ids = list(response.task_ids or [])
            if len(task_ids) != len(batch):
                raise HitlError(f"Label Studio created {len(task_ids)} tasks for {len(batch)} sent; "
                                f"run `python -m hitl sync` to reconcile")
            now = utc_now()
            with transaction(db):
                for task_id, image_id, other in zip(task_ids, batch_images, batch_others):
                    queries.map_task(db, project_id, task_id, image_id, now, other)
            summary.pushed += len(batch)
            bar.update(len(batch))


def ensure_project(db: sqlite_utils.Database, client, url: str, title: str, mode: str, labels: list[str],
                   version: str, kind: str = "review"):
    """Find the project by title (creating it if missing) with the right config and model_version.

    ``kind``: "review" (one image a task) or "burst" (the frames of a sequence); the two are
    never mixed in one project."""
    existing = [p for p in client.projects.list(title=title) if p.title == title]
    now = utc_now()
    burst = kind == "burst"
    if not existing:
        project = client.projects.create(
            title=title, label_config=burst_config() if burst else label_config(mode, labels),
            description=(BURST_DESCRIPTION if burst else DESCRIPTION).format(mode=mode), model_version=version,
            show_skip_button=True, maximum_annotations=1)
        created = True
    else:
        project = existing[0]
        project_mode = queries.project_mode(db, project.id) or _mode_in(project.description or "")
        if project_mode and project_mode != mode:
            raise HitlError(f"project {title!r} is a {project_mode} review; push {mode} review to another title "
                            f"(agreement needs the two kept apart)")
        if ("burst review" in (project.description or "")) != burst:
            raise HitlError(f"project {title!r} is {'not ' if burst else ''}a burst review; push "
                            f"{'bursts' if burst else 'single images'} to another title")
        changes: dict[str, Any] = {}
        config = project.label_config or label_config(mode, [])
        if not burst and not set(labels) <= set(config_labels(config)):
            changes["label_config"] = with_labels(config, labels)
        if changes:
            project = client.projects.update(id=project.id, **changes)
        created = False
    with transaction(db):
        db["ls_projects"].upsert({"id": project.id, "url": url, "title": title, "mode": mode, "model_version": version,
                                  "kind": kind, "created_at": now, "updated_at": now}, pk="id")
    return project, created


def _mode_in(description: str) -> str | None:
    """The mode a project's description (written by push) names, for a project this database never saw."""
    return next((m for m in MODES if f"({m} mode)" in description), None)


def ensure_local_storage(client, project_id: int, roots: list[str], document_root: Path) -> str:
    """A local-files storage per image root, so Label Studio will serve those files."""
    have = {s.path for s in client.import_storage.local.list(project=project_id)}
    made = []
    for root in roots:
        if root in have or any(root.startswith(h.rstrip("/") + "/") for h in have):
            continue
        if not Path(root).is_dir() or not Path(root).resolve().is_relative_to(document_root.resolve()):
            continue  # its images are counted as skipped, one by one, with the reason and the fix
        try:
            # regex "^$" matches no file: a click on "Sync storage" must not import every image as a task
            client.import_storage.local.create(project=project_id, path=root, title=f"hero-hitl images {root}",
                                               use_blob_urls=False, regex_filter="^$")
        except StudioError as exc:
            if exc.status is None:  # not refused: lost on the way, said as such
                raise
            raise StudioError(f"Label Studio refused a local storage for {root} ({exc.detail}); it needs "
                              f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and a document root above {root}",
                              exc.status, exc.detail) from None
        made.append(root)
    return f"created for {', '.join(made)}" if made else "already there"


def mapped_images(db: sqlite_utils.Database, client, project_id: int) -> set[str]:
    """Images already in the project. SQLite knows; when Label Studio has more tasks than SQLite
    maps (a push that died between import and save, a new database), they are read back."""
    known = queries.mapped_image_ids(db, project_id)
    count = client.projects.get(id=project_id).task_number or 0
    if count <= len(known):
        return known
    found = {}
    for task in client.tasks.list(project=project_id, fields="all", page_size=500):
        image_id = (task.data or {}).get("image_id")
        if isinstance(image_id, str) and image_id:
            found[task.id] = image_id
    now = utc_now()
    with transaction(db):
        for task_id, image_id in found.items():
            queries.map_task(db, project_id, task_id, image_id, now)
    return known | set(found.values())


def ensure_webhook(client, project_id: int, url: str, secret: str | None) -> str:
    """Register the webhook with the shared secret, or re-enable it if Label Studio switched it off."""
    if not secret:
        raise HitlError("a webhook needs a shared secret: set HITL_WEBHOOK_SECRET (the same for `hitl serve`)")
    headers = {"Authorization": f"Bearer {secret}"}
    for hook in client.webhooks.list(project=str(project_id)):
        if hook.url != url:
            continue
        changes: dict[str, Any] = {}
        if not hook.is_active:
            changes["is_active"] = True
        if (hook.headers or {}) != headers:
            changes["headers"] = headers
        if not hook.send_payload or not hook.send_for_all_actions:
            changes.update(send_payload=True, send_for_all_actions=True)
        if changes:
            client.webhooks.update(id=hook.id, url=url, **changes)
            return "re-enabled" if "is_active" in changes else "updated"
        return "already active"
    client.webhooks.create(url=url, project=project_id, headers=headers, send_payload=True,
                           send_for_all_actions=True, is_active=True)
    return "created"


def cache_users(db: sqlite_utils.Database, client) -> dict[int, str]:
    """Label Studio's users (id → email) saved in the store: webhook deliveries name annotators by id only."""
    users = fetch_users(client)
    with transaction(db):
        queries.save_users(db, users)
    return users
