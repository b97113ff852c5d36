"""What to score: the candidates (or a folder's images) not yet done for a model and prompt."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import sqlite_utils

from converters.common import RecordProblem
from hitl.errors import HitlError, NothingToDo
from hitl.files import walk_files
from hitl.imageprep import read_upright_size
from hitl.remote import is_transient
from hitl.store import queries, transaction, utc_now
from hitl.store.inputs import detection_digests, stale_scores

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}


@dataclass
class Target:
    image_id: str
    path: Path
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    inputs: str | None = None  # the digest of the image's detections (hitl.store.inputs), stored with its score


def candidate_targets(db: sqlite_utils.Database, model: str, prompt_version: str, retry_failed: bool,
                      threshold: float, image_ids: list[str] | None = None) -> tuple[list[Target], int]:
    """The images to score now, and how many are skipped because they are already done.

    By default: every candidate with no result for (model, prompt_version), or whose call
    failed for a transient reason (the network, the server, a rate limit: see
    :func:`is_transient`). With ``retry_failed``: every failure. ``image_ids`` narrows the set
    (the images of a folder scored without a selection step).
    """
    rows = queries.candidates(db) if image_ids is None else queries.images(db, image_ids)
    status = {image_id: ("transient" if state == "failed" and is_transient(kind) else state)
              for image_id, state, kind in db.execute(
                  "SELECT image_id, status, error_kind FROM scores WHERE model = ? AND prompt_version = ?",
                  [model, prompt_version])}
    wanted = [r for r in rows if ((status.get(r["image_id"]) in ("failed", "transient")) if retry_failed
                                  else (status.get(r["image_id"]) in (None, "transient")))]
    return targets_of(db, wanted, threshold), len(rows) - len(wanted)


def stale_targets(db: sqlite_utils.Database, model: str, prompt_version: str, threshold: float, *,
                  image_ids: list[str] | None = None, unrecorded: bool = False) -> list[Target]:
    """The images whose ``model`` score was computed from other detections than they have now
    (:func:`hitl.store.inputs.stale_scores`; ``unrecorded``: and those with no record of it)."""
    stale = {r["image_id"] for r in stale_scores(db, model=model, prompt_version=prompt_version,
                                                 image_ids=image_ids, unrecorded=unrecorded)}
    return targets_of(db, queries.images(db, stale), threshold) if stale else []


def targets_of(db: sqlite_utils.Database, rows: list[dict], threshold: float) -> list[Target]:
    """Image rows (image_id, root) as targets: each with its animal boxes at ``threshold`` and the digest of
    its detections."""
    ids = [r["image_id"] for r in rows]
    boxes, digests = queries.animal_boxes(db, threshold, ids), detection_digests(db, ids)
    return [Target(r["image_id"], Path(r["root"]) / r["image_id"],
                   [(b["x"], b["y"], b["w"], b["h"]) for b in boxes.get(r["image_id"], [])], digests[r["image_id"]])
            for r in rows]


def register_folder(db: sqlite_utils.Database, folder: str | Path) -> tuple[list[str], list[RecordProblem]]:
    """Record every image file under ``folder`` (recursively) in the images table; return their
    ids, and the files skipped (not regular files, links out of the folder, names not UTF-8).

    This is the hero-images way: score a folder as it is, with no selection step.
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise HitlError(f"{folder} is not a folder; pass --images with a folder of images")
    walk = walk_files(root, IMAGE_SUFFIXES)
    if not walk.files:
        raise NothingToDo(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}"
                          + (f"; {len(walk.problems)} skipped, e.g. {walk.problems[0]}" if walk.problems else ""))
    now = utc_now()
    rows = []
    for path, rel in walk.files:
        _, size = read_upright_size(path)  # an unreadable file is recorded as failed when it is scored
        rows.append((rel, str(root), size[0] if size else None, size[1] if size else None, now))
    with transaction(db):
        db.conn.executemany(
            "INSERT INTO images (image_id, root, width, height, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (image_id) DO UPDATE SET root = excluded.root, width = COALESCE(excluded.width, width), "
            "height = COALESCE(excluded.height, height), updated_at = excluded.updated_at", rows)
    return [r[0] for r in rows], walk.problems
