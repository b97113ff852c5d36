"""Push candidates into Label Studio for review (label-studio-sdk 2.x).

Idempotent: the project is found by title, images already pushed (image_id ↔ task id ↔
project in SQLite, rebuilt from Label Studio itself when SQLite is behind) are skipped, and
the webhook is created once, or re-enabled when Label Studio switched it off.
"""
from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import sqlite_utils
from tqdm import tqdm

from converters.labelstudio import DETECTOR_VERSION, MODES, build_task, local_files_url, model_version

from .errors import HitlError
from .store import transaction, utc_now

LABEL_CONFIG_DIR = Path(__file__).resolve().parent.parent / "label_config"
WEBHOOK_ACTIONS = ["TASKS_CREATED", "TASKS_DELETED", "ANNOTATION_CREATED", "ANNOTATIONS_CREATED",
                   "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED"]
DESCRIPTION = "hero-hitl review ({mode} mode): rate each camera-trap image 1-10 stars and decide hero or not."


def label_config(mode: str, labels: list[str]) -> str:
    """The review config of ``mode`` with one rectangle label per species."""
    if mode not in MODES:
        raise HitlError(f"--mode must be assisted or blind, not {mode!r}")
    xml = (LABEL_CONFIG_DIR / f"{mode}.xml").read_text(encoding="utf-8")
    extra = "".join(f'\n        <Label value={quoteattr(label)}/>' for label in sorted(set(labels) - {"animal"}))
    anchor = '<Label value="animal" background="#F5A623"/>'
    return xml.replace(anchor, anchor + extra)


def config_labels(xml: str) -> list[str]:
    """The rectangle labels a project's config already has."""
    block = re.search(r"<RectangleLabels[^>]*>(.*?)</RectangleLabels>", xml, re.DOTALL)
    return re.findall(r'<Label value="([^"]*)"', block.group(1)) if block else []


def api_error_text(exc: Exception) -> str:
    """What Label Studio said, without the response headers the SDK puts in str(exc)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("validation_errors") or body.get("detail") or body)
    return str(exc)


def connect(url: str, api_key: str | None):
    """A Label Studio client whose token has been checked, or a HitlError that says what to do."""
    from label_studio_sdk import LabelStudio

    if not api_key:
        raise HitlError("no Label Studio token: set LABEL_STUDIO_API_KEY (shown by `hitl studio`, or in "
                        "Label Studio under Account & Settings)")
    client = LabelStudio(base_url=url.rstrip("/"), api_key=api_key, timeout=120)
    try:
        client.users.whoami()
    except Exception as exc:  # the SDK raises httpx or ApiError; both mean the same to a user
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            raise HitlError(f"Label Studio at {url} refused the token (HTTP {status}); check LABEL_STUDIO_API_KEY "
                            f"(legacy tokens need LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true)") from None
        raise HitlError(f"cannot reach Label Studio at {url} ({type(exc).__name__}: {exc}); "
                        f"is it running? `python -m hitl studio` starts one") from None
    return client


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
    """Candidates (or the given images) with their boxes and every model's ok scores."""
    if image_ids is None:
        rows = [dict(r) for r in db.query(
            "SELECT c.image_id, c.category, c.rank, i.root, i.width, i.height, i.species, i.seq_id, i.frame_num "
            "FROM candidates c JOIN images i USING (image_id) ORDER BY c.rank")]
    else:
        wanted = set(image_ids)
        rows = [dict(r) for r in db.query("SELECT image_id, NULL AS category, 0 AS rank, root, width, height, "
                                          "species, seq_id, frame_num FROM images") if r["image_id"] in wanted]
    detections: dict[str, list] = {}
    for d in db.query("SELECT * FROM detections WHERE kind = 'animal' AND conf >= ? ORDER BY image_id, det_index",
                      [threshold]):
        detections.setdefault(d["image_id"], []).append(dict(d))
    scores: dict[str, list] = {}
    for s in db.query("SELECT image_id, model, prompt_version, score, hero, reasoning FROM scores "
                      "WHERE status = 'ok' ORDER BY model, prompt_version"):
        scores.setdefault(s["image_id"], []).append(dict(s))
    for row in rows:
        row["detections"] = detections.get(row["image_id"], [])
        row["scores"] = scores.get(row["image_id"], [])
    return rows


def choose_prefill(rows: list[dict], prefill: str | None) -> tuple[str, str] | None:
    """(model, prompt_version) to prefill in assisted mode: the one asked for, else the most complete."""
    counts = Counter((s["model"], s["prompt_version"]) for row in rows for s in row["scores"])
    if not counts:
        return None
    if prefill:
        for key in counts:
            if prefill in (key[0], model_version(*key)):
                return key
        raise HitlError(f"--prefill {prefill!r} has no scores; scored so far: "
                        f"{', '.join(sorted(model_version(*k) for k in counts))}")
    return max(counts, key=lambda key: (counts[key], key[0] != "baseline", key))


def push(db: sqlite_utils.Database, client, *, url: str, title: str, mode: str = "assisted",
         prefill: str | None = None, document_root: str | Path | None = None,
         url_template: str | None = None, webhook_url: str | None = None, secret: str | None = None,
         batch_size: int = 500, threshold: float = 0.3, image_ids: list[str] | None = None,
         progress: bool | None = None, echo: Callable[[str], None] = lambda _m: None) -> PushSummary:
    """Create or reuse the project ``title`` and import the candidates not yet in it."""
    if mode not in MODES:
        raise HitlError(f"--mode must be assisted or blind, not {mode!r}")
    rows = review_rows(db, threshold, image_ids)
    if not rows:
        raise HitlError("no candidates to push: run `python -m hitl select` (and `score`) first")
    if mode == "assisted":
        chosen = choose_prefill(rows, prefill)
        version = model_version(*chosen) if chosen else DETECTOR_VERSION
    else:
        if prefill:
            raise HitlError("--prefill makes no sense in blind mode: no model output is shown there")
        version = DETECTOR_VERSION
    labels = sorted({"animal"} | {r["species"] for r in rows if r["species"]}
                    | {d["species"] for r in rows for d in r["detections"] if d.get("species")})
    project, created = ensure_project(db, client, url, title, mode, labels, version)
    summary = PushSummary(project.id, created, mode, version)

    if url_template is None:
        roots = sorted({r["root"] for r in rows})
        root = Path(document_root or os.path.dirname(os.path.commonpath(roots)))
        summary.storage = ensure_local_storage(client, project.id, roots, root)

    done = mapped_images(db, client, project.id)
    tasks, images = [], []
    for row in rows:
        if row["image_id"] in done:
            summary.already += 1
            continue
        path = Path(row["root"]) / row["image_id"]
        if url_template is None and not path.is_file():
            summary.skip("image file missing", f"{path}: missing; not pushed")
            continue
        try:
            image_url = (url_template.format(image_id=row["image_id"]) if url_template
                         else local_files_url(path, root))
        except ValueError as exc:
            summary.skip("image outside the document root", f"{exc}; or start Label Studio with a document root "
                                                            f"covering it (`hitl studio --document-root`)")
            continue
        except (KeyError, IndexError) as exc:
            raise HitlError(f"--image-url-template {url_template!r} may only use {{image_id}} ({exc})") from None
        if mode == "assisted":
            shown = row["scores"]
            if chosen:  # the prefilled model first: Label Studio lists predictions in order
                shown = sorted(shown, key=lambda s: (s["model"], s["prompt_version"]) != chosen)
        else:
            shown = []
        try:
            task = build_task(row, image_url, row["width"], row["height"], row["detections"], shown, mode)
        except ValueError as exc:
            summary.skip("bad score or size", str(exc))
            continue
        tasks.append(task)
        images.append(row["image_id"])
    with tqdm(total=len(tasks), desc=f"Pushing to {title}", unit="task",
              disable=None if progress is None else not progress) as bar:
        for start in range(0, len(tasks), batch_size):
            batch, batch_images = tasks[start:start + batch_size], images[start:start + batch_size]
            response = client.projects.import_tasks(id=project.id, request=batch, return_task_ids=True)
            task_ids = list(response.task_ids or [])
            if len(task_ids) != len(batch):
                raise HitlError(f"Label Studio created {len(task_ids)} tasks for {len(batch)} sent; "
                                f"run `python -m hitl sync` to reconcile")
            now = utc_now()
            with transaction(db):  # the mapping is saved batch by batch: a rerun never imports twice
                db["ls_tasks"].insert_all([{"project_id": project.id, "task_id": t, "image_id": i, "pushed_at": now}
                                           for t, i in zip(task_ids, batch_images)], pk=("project_id", "task_id"))
            summary.pushed += len(batch)
            bar.update(len(batch))
    if webhook_url:
        summary.webhook = ensure_webhook(client, project.id, webhook_url, secret)
        with transaction(db):
            db.execute("UPDATE ls_projects SET webhook_url = ? WHERE id = ?", [webhook_url, project.id])
    from .sync import cache_users

    cache_users(db, client)  # deliveries name annotators by id; keep their emails at hand
    return summary


def ensure_project(db: sqlite_utils.Database, client, url: str, title: str, mode: str, labels: list[str],
                   version: str):
    """Find the project by title (creating it if missing) with the right config and model_version."""
    existing = [p for p in client.projects.list(title=title) if p.title == title]
    now = utc_now()
    if not existing:
        project = client.projects.create(title=title, label_config=label_config(mode, labels),
                                         description=DESCRIPTION.format(mode=mode), model_version=version,
                                         show_skip_button=True, maximum_annotations=1)
        created = True
    else:
        project = existing[0]
        known = db["ls_projects"].get(project.id) if db["ls_projects"].count_where("id = ?", [project.id]) else None
        project_mode = known["mode"] if known else ("blind" if "(blind mode)" in (project.description or "") else
                                                    "assisted" if "(assisted mode)" in (project.description or "")
                                                    else None)
        if project_mode and project_mode != mode:
            raise HitlError(f"project {title!r} is a {project_mode} review; push {mode} review to another title "
                            f"(agreement needs the two kept apart)")
        have = config_labels(project.label_config or "")
        changes: dict[str, Any] = {}
        if not set(labels) <= set(have):
            changes["label_config"] = label_config(mode, sorted(set(labels) | set(have)))
        if project.model_version != version:
            changes["model_version"] = version
        if changes:
            project = client.projects.update(id=project.id, **changes)
        created = False
    with transaction(db):
        db["ls_projects"].upsert({"id": project.id, "url": url, "title": title, "mode": mode, "model_version": version,
                                  "created_at": now, "updated_at": now}, pk="id")
    return project, created


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
        except Exception as exc:
            raise HitlError(f"Label Studio refused a local storage for {root} ({api_error_text(exc)}); it needs "
                            f"LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true and a document root above {root}") from None
        made.append(root)
    return f"created for {', '.join(made)}" if made else "already there"


def mapped_images(db: sqlite_utils.Database, client, project_id: int) -> set[str]:
    """Images already in the project. SQLite knows; when Label Studio has more tasks than SQLite
    maps (a push that died between import and save, a new database), they are read back."""
    known = {r[0] for r in db.execute("SELECT image_id FROM ls_tasks WHERE project_id = ? AND deleted_at IS NULL",
                                      [project_id])}
    count = client.projects.get(id=project_id).task_number or 0
    if count <= len(known):
        return known
    rows = []
    now = utc_now()
    for task in client.tasks.list(project=project_id, fields="all", page_size=500):
        image_id = (task.data or {}).get("image_id")
        if image_id:
            rows.append({"project_id": project_id, "task_id": task.id, "image_id": image_id, "pushed_at": now})
    with transaction(db):
        db["ls_tasks"].upsert_all(rows, pk=("project_id", "task_id"))
    return known | {r["image_id"] for r in rows}


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

