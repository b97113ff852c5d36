"""The queries every stage shares, written once: candidates, animal boxes, scores, tasks, users.

Each returns plain dicts (or writes inside the caller's transaction), so the stages format
them as they need without a second copy of the SQL.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import sqlite_utils

from hitl.store.db import utc_now

IMAGE_FIELDS = ("image_id", "root", "width", "height", "datetime", "location", "seq_id", "frame_num",
                "seq_num_frames", "species", "night", "rarity")


def candidates(db: sqlite_utils.Database) -> list[dict]:
    """The current candidates in rank order, each with its image's facts and rank, category, reason."""
    columns = ", ".join(f"i.{c}" for c in IMAGE_FIELDS)
    return [dict(r) for r in db.query(
        f"SELECT {columns}, c.rank, c.category, c.reason FROM candidates c JOIN images i USING (image_id) "
        f"ORDER BY c.rank, c.image_id")]


def images(db: sqlite_utils.Database, image_ids: Iterable[str] | None = None) -> list[dict]:
    """Images by id (every image when None), in image_id order, with rank/category/reason None."""
    wanted = None if image_ids is None else set(image_ids)
    rows = [dict(r, rank=None, category=None, reason=None) for r in db.query(
        f"SELECT {', '.join(IMAGE_FIELDS)} FROM images ORDER BY image_id")]
    return rows if wanted is None else [r for r in rows if r["image_id"] in wanted]


def animal_boxes(db: sqlite_utils.Database, threshold: float, image_ids: Iterable[str] | None = None
                 ) -> dict[str, list[dict]]:
    """Per image, the animal detections at or above ``threshold``, in detector order.

    Each box: det_index, x, y, w, h (normalised, upright), conf, species (the detection's,
    else the image's), species_conf.
    """
    wanted = None if image_ids is None else set(image_ids)
    boxes: dict[str, list[dict]] = defaultdict(list)
    for r in db.query(
            "SELECT d.image_id, d.det_index, d.x, d.y, d.w, d.h, d.conf, COALESCE(d.species, i.species) AS species, "
            "d.species_conf FROM detections d LEFT JOIN images i USING (image_id) "
            "WHERE d.kind = 'animal' AND d.conf >= ? ORDER BY d.image_id, d.det_index", [threshold]):
        if wanted is None or r["image_id"] in wanted:
            boxes[r["image_id"]].append(dict(r))
    return boxes


def scores_by_image(db: sqlite_utils.Database, ok_only: bool = True, raw: bool = False) -> dict[str, list[dict]]:
    """Per image, every model's result (ok ones only by default), ordered by model and prompt version.

    Each: model, prompt_version, rater (``model@prompt_version``), status, score, hero (bool
    or None), reasoning, tags (JSON text), error_kind, updated_at; with ``raw`` the raw answer too.
    """
    by_image: dict[str, list[dict]] = defaultdict(list)
    extra = ", raw_response" if raw else ""
    for r in db.query(f"SELECT image_id, model, prompt_version, status, score, hero, reasoning, tags, error_kind, "
                      f"updated_at{extra} FROM scores " + ("WHERE status = 'ok' " if ok_only else "")
                      + "ORDER BY image_id, model, prompt_version"):
        row = dict(r)
        row["rater"] = f"{row['model']}@{row['prompt_version']}"
        row["hero"] = None if row["hero"] is None else bool(row["hero"])
        by_image[row.pop("image_id")].append(row)
    return by_image


def raters(db: sqlite_utils.Database) -> list[str]:
    """Every model rater ``model@prompt_version`` with any result, sorted."""
    return [f"{m}@{pv}" for m, pv in db.execute(
        "SELECT DISTINCT model, prompt_version FROM scores ORDER BY model, prompt_version")]


def image_roots(db: sqlite_utils.Database) -> dict[str, str]:
    return dict(db.execute("SELECT image_id, root FROM images").fetchall())


def package_images(db: sqlite_utils.Database) -> set[str]:
    """The images selected from a Camtrap DP package: their files must stay inside it."""
    return {row[0] for row in db.execute("SELECT image_id FROM camtrap_media")}


# ---- Label Studio: tasks and users --------------------------------------------------------------

def map_task(db: sqlite_utils.Database, project_id: int, task_id: int, image_id: str | None,
             pushed_at: str | None = None, other_image_id: str | None = None) -> int:
    """Record that ``task_id`` of ``project_id`` shows ``image_id`` (and, a comparison, ``other_image_id``
    on the right); an image once known is kept, whatever the task's data says later.

    Inside the caller's transaction; returns the number of rows written (0 or 1).
    """
    return db.execute(
        "INSERT INTO ls_tasks (project_id, task_id, image_id, pushed_at, other_image_id) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (project_id, task_id) DO UPDATE SET image_id = COALESCE(image_id, excluded.image_id), "
        "other_image_id = COALESCE(other_image_id, excluded.other_image_id)",
        [int(project_id), task_id, image_id, pushed_at or utc_now(), other_image_id]).rowcount


def mapped_image_ids(db: sqlite_utils.Database, project_id: int) -> set[str]:
    """Images with a live task in the project."""
    return {r[0] for r in db.execute("SELECT image_id FROM ls_tasks WHERE project_id = ? AND deleted_at IS NULL "
                                     "AND image_id IS NOT NULL", [project_id])}


def project_mode(db: sqlite_utils.Database, project_id: int | str) -> str | None:
    """The review mode (assisted or blind) a project was pushed with, or None when unknown."""
    row = db.execute("SELECT mode FROM ls_projects WHERE id = ?", [int(project_id)]).fetchone()
    return row[0] if row else None


def last_review_title(db: sqlite_utils.Database) -> str | None:
    """The title of the review project (one image a task, not a burst or comparison project) pushed
    most recently that is not itself an adjudication queue."""
    row = db.execute("SELECT title FROM ls_projects WHERE title NOT LIKE '%(adjudication)' "
                     "AND COALESCE(kind, 'review') = 'review' ORDER BY updated_at DESC, id DESC LIMIT 1").fetchone()
    return row[0] if row else None


def user_emails(db: sqlite_utils.Database) -> dict[int, str]:
    """Label Studio's users as cached (id → email): deliveries name annotators by id only."""
    return dict(db.execute("SELECT id, email FROM ls_users").fetchall())


def save_users(db: sqlite_utils.Database, users: dict[int, str]) -> None:
    now = utc_now()
    db.conn.executemany("INSERT INTO ls_users (id, email, updated_at) VALUES (?, ?, ?) "
                        "ON CONFLICT (id) DO UPDATE SET email = excluded.email, updated_at = excluded.updated_at",
                        [(k, v, now) for k, v in users.items()])


def email_of(completed_by: Any, emails: dict[int, str]) -> str | None:
    """The email of an annotation's ``completed_by`` (a user id, or an object with one)."""
    if isinstance(completed_by, dict):
        return completed_by.get("email") if isinstance(completed_by.get("email"), str) else \
            email_of(completed_by.get("id"), emails)
    if isinstance(completed_by, int) and not isinstance(completed_by, bool):
        return emails.get(completed_by)
    return None


def latest_run(db: sqlite_utils.Database) -> dict | None:
    """The newest finished `hitl learn` run (its figures, curve and importance decoded), None before one."""
    row = db.execute("SELECT * FROM learn_runs WHERE status = 'finished' ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    run = dict(zip([c[0] for c in db.execute("SELECT * FROM learn_runs LIMIT 0").description], row))
    for key in ("parameters", "features", "figures", "curve", "importance"):
        run[key] = json.loads(run[key]) if run[key] else None
    return run
