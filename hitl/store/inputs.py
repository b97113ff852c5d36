"""What a score was computed from, and which scores are stale: their image's detections changed since.

A score's ``inputs`` is a digest of its image's detection record when it was computed
(:data:`NO_DETECTIONS` when the image had none, e.g. a folder scored before selection; NULL
when not recorded, as for scores older than the column). Selection rewrites an image's
detections; a score whose digest differs from the image's current one was computed from
something else.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from itertools import groupby

import sqlite_utils

from hitl.store.db import in_chunks

NO_DETECTIONS = "none"
_FIELDS = "det_index, kind, category, conf, x, y, w, h"  # what a scorer can use; not the species


def detection_digests(db: sqlite_utils.Database, image_ids: Iterable[str]) -> dict[str, str]:
    """Per image, a short digest of its detection record (NO_DETECTIONS when it has none)."""
    wanted = list(dict.fromkeys(image_ids))
    digests = dict.fromkeys(wanted, NO_DETECTIONS)
    for marks, part in in_chunks(wanted):
        rows = db.execute(f"SELECT image_id, {_FIELDS} FROM detections WHERE image_id IN ({marks}) "
                          f"ORDER BY image_id, det_index", part).fetchall()
        for image_id, detections in groupby(rows, key=lambda r: r[0]):
            text = json.dumps([list(d[1:]) for d in detections])
            digests[image_id] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return digests


def stale_scores(db: sqlite_utils.Database, *, model: str | None = None, prompt_version: str | None = None,
                 image_ids: Iterable[str] | None = None, unrecorded: bool = False) -> list[dict]:
    """The scores whose image's detections changed since they were computed, each as image_id, model,
    prompt_version, status, inputs (recorded) and current (now). ``unrecorded``: those with no record too.

    ``model``, ``prompt_version`` and ``image_ids`` narrow the search.
    """
    sql = "SELECT image_id, model, prompt_version, status, inputs FROM scores WHERE 1 = 1"
    params: list = []
    for column, value in (("model", model), ("prompt_version", prompt_version)):
        if value is not None:
            sql += f" AND {column} = ?"
            params.append(value)
    if not unrecorded:
        sql += " AND inputs IS NOT NULL"
    rows = [dict(r) for r in db.query(sql + " ORDER BY model, prompt_version, image_id", params)]
    if image_ids is not None:
        wanted = set(image_ids)
        rows = [r for r in rows if r["image_id"] in wanted]
    current = detection_digests(db, (r["image_id"] for r in rows))
    return [{**r, "current": current[r["image_id"]]} for r in rows if r["inputs"] != current[r["image_id"]]]
