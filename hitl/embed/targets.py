"""What to embed: images (from the store, a folder or a whole collection) not yet done for a model."""
from __future__ import annotations

import sqlite_utils

from hitl.embed.backends.base import Box, EmbedTarget
from hitl.remote import is_transient
from hitl.store import queries
from hitl.store.embeddings import states


def stored_targets(db: sqlite_utils.Database, image_ids: list[str], threshold: float) -> list[EmbedTarget]:
    """The images of the store's ``images`` table named by ``image_ids``, with their animal boxes."""
    rows = queries.images(db, image_ids)
    boxes = queries.animal_boxes(db, threshold, [r["image_id"] for r in rows])
    return [EmbedTarget(r["image_id"], r["root"], [(b["x"], b["y"], b["w"], b["h"]) for b in boxes.get(r["image_id"], [])])
            for r in rows]


def collection_targets(root: str, image_ids: list[str], boxes: dict[str, list[Box]]) -> list[EmbedTarget]:
    """A whole collection's eligible images (read from its detector file), with their animal boxes."""
    return [EmbedTarget(image_id, root, boxes.get(image_id, [])) for image_id in image_ids]


def pending(db: sqlite_utils.Database, model: str, targets: list[EmbedTarget], retry_failed: bool
            ) -> tuple[list[EmbedTarget], int]:
    """The targets to embed now, and how many are skipped as done: by default those with no result for
    ``model`` or whose last try failed on the way there (a server, a limit, the network); with
    ``retry_failed`` every failure too. One image is embedded once, however often it is listed."""
    known = states(db, model)
    wanted, seen = [], set()
    for target in targets:
        if target.image_id in seen:
            continue
        seen.add(target.image_id)
        status, kind = known.get(target.image_id, (None, None))
        if status is None or (status == "failed" and (retry_failed or is_transient(kind))):
            wanted.append(target)
    return wanted, len(seen) - len(wanted)
