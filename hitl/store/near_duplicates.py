"""Near-duplicates among images of the store, by the rule of :mod:`hitl.analyse.neighbours` with
each image's vector (the newest model's, unless one is named), camera, sequence and animal boxes,
and the model's calibrated threshold (`hitl embed` calibrates it; :func:`calibration`).

A rule over the store like :mod:`hitl.store.heroes`, so every stage reads the same groups:
`select` takes one image of a group, `next` puts no two in a round, `export` keeps the best of
each, `compare` never pairs two, and the report counts the hero set's.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlite_utils

from hitl.analyse.neighbours import (
    DEFAULT_THRESHOLD,
    Box,
    Subject,
    groups,
    near_duplicate_pairs,
)
from hitl.store.db import in_chunks, upsert_many, utc_now
from hitl.store.embeddings import newest_model, vectors


@dataclass(frozen=True)
class Calibration:
    """A model's near-duplicate threshold and what it rests on (None fields: never calibrated)."""

    model: str
    threshold: float
    n_photos: int = 0
    n_copies: int = 0
    copies: dict[str, float] = field(default_factory=dict)  # per kind of copy: its lowest similarity
    distinct_share: float | None = None  # of the photos sampled, the share with another camera's this close
    distinct_n: int = 0
    n_vectors: int = 0

    @property
    def calibrated(self) -> bool:
        return self.n_copies > 0

    def words(self) -> str:
        """The threshold in a sentence a curator reads."""
        if not self.calibrated:
            return (f"Near-duplicate threshold {self.threshold:.3f} for {self.model} (a default: run `hitl embed "
                    f"--model {self.model}` again to calibrate it on this collection)")
        lowest = ", ".join(f"{kind} {value:.3f}" for kind, value in sorted(self.copies.items()))
        text = (f"Near-duplicate threshold {self.threshold:.3f} for {self.model}, from {self.n_copies} planted copies "
                f"of {self.n_photos} of this collection's photos (the lowest similarity of each kind: {lowest}; "
                f"lowered by each kind's spread)")
        if self.distinct_share is not None and self.distinct_n:
            text += (f"; {self.distinct_share:.0%} of {self.distinct_n} photos have one of another camera as close "
                     f"(the camera and box rules keep those apart)")
        return text


def calibration(db: sqlite_utils.Database, model: str) -> Calibration:
    """The model's stored calibration, or the default threshold when it has none."""
    row = db.execute("SELECT threshold, n_photos, n_copies, copies, distinct_share, distinct_n, n_vectors "
                     "FROM embedding_calibrations WHERE model = ?", [model]).fetchone()
    if row is None:
        return Calibration(model, DEFAULT_THRESHOLD)
    return Calibration(model, row[0], row[1], row[2], json.loads(row[3] or "{}"), row[4], row[5] or 0, row[6] or 0)


def save_calibration(db: sqlite_utils.Database, found: Calibration) -> None:
    """Store a calibration, replacing the model's earlier one. The caller owns the transaction."""
    upsert_many(db, "embedding_calibrations", [{
        "model": found.model, "threshold": found.threshold, "n_photos": found.n_photos, "n_copies": found.n_copies,
        "copies": json.dumps(found.copies, sort_keys=True), "distinct_share": found.distinct_share,
        "distinct_n": found.distinct_n, "n_vectors": found.n_vectors, "computed_at": utc_now()}], "model")


def camera_of(root: str | None, location: str | None, image_id: str) -> str:
    """An image's camera for the near-duplicate rule: its location where known, else its folder (as
    `select` names a camera without metadata), within its collection root."""
    return f"{root or ''}\0{location or image_id.rpartition('/')[0] or '.'}"


def subjects(db: sqlite_utils.Database, image_ids: list[str], threshold: float, model: str | None = None
             ) -> list[Subject]:
    """Each image's camera, sequence and animal boxes at ``threshold``: the stored detections', else those it
    was embedded with (a whole collection's image), else None (unknown)."""
    known: dict[str, tuple[Any, Any, Any]] = {}
    when_embedded: dict[str, list[Box]] = {}  # the boxes stored with a vector (a whole collection's images)
    detected: set[str] = set()
    boxes: dict[str, list[Box]] = {}
    for marks, part in in_chunks(list(dict.fromkeys(image_ids))):
        for image_id, root, location, seq_id in db.execute(
                f"SELECT image_id, root, location, seq_id FROM images WHERE image_id IN ({marks})", part):
            known[image_id] = (root, location, seq_id)
        if model is not None:
            for image_id, root, embedded_boxes in db.execute(
                    f"SELECT image_id, root, boxes FROM embeddings WHERE model = ? AND image_id IN ({marks})",
                    [model, *part]):
                known.setdefault(image_id, (root, None, None))
                if embedded_boxes:
                    when_embedded[image_id] = [tuple(b) for b in json.loads(embedded_boxes)]
        for image_id, kind, conf, x, y, w, h in db.execute(
                f"SELECT image_id, kind, conf, x, y, w, h FROM detections WHERE image_id IN ({marks})", part):
            detected.add(image_id)
            if kind == "animal" and conf is not None and conf >= threshold:
                boxes.setdefault(image_id, []).append((x, y, w, h))
    out = []
    for image_id in image_ids:
        root, location, seq_id = known.get(image_id, (None, None, None))
        found = (tuple(boxes.get(image_id, ())) if image_id in detected else
                 tuple(when_embedded[image_id]) if image_id in when_embedded else None)
        out.append(Subject(camera_of(root, location, image_id), seq_id, found))
    return out


@dataclass
class NearDuplicates:
    """The near-duplicate groups among some images: ``labels[k]`` is image k's group (the index of its
    first member); an image alone, or without a vector, is a group of one."""

    image_ids: list[str]
    calibration: Calibration
    pairs: list[tuple[int, int, float]]
    labels: np.ndarray
    with_vectors: int

    def groups(self) -> list[list[str]]:
        """The groups of two or more images, each in the order of ``image_ids``."""
        members: dict[int, list[str]] = {}
        for k, label in enumerate(self.labels.tolist()):
            members.setdefault(label, []).append(self.image_ids[k])
        return [m for m in members.values() if len(m) > 1]

    def counts(self) -> dict[str, Any]:
        found = self.groups()
        return {"model": self.calibration.model, "threshold": round(self.calibration.threshold, 4),
                "calibrated": self.calibration.calibrated, "images": len(self.image_ids),
                "with_vectors": self.with_vectors, "groups": len(found), "images_in_groups": sum(map(len, found)),
                "examples": [g[:5] for g in found[:5]]}


Aligned = tuple[np.ndarray, list[Subject], Calibration]  # vectors (NaN: none), subjects, calibration


def aligned(db: sqlite_utils.Database, image_ids: list[str], threshold: float = 0.3, model: str | None = None
            ) -> Aligned | None:
    """What the rule needs of ``image_ids``: their vectors by ``model`` (default: the newest model's), one
    row each in their order (NaN: no vector), their subjects (animal boxes at the detection
    ``threshold``) and the model's calibration; None when the store has no vectors."""
    model = model or newest_model(db)
    if model is None:
        return None
    found_ids, found = vectors(db, model, image_ids)
    matrix = np.full((len(image_ids), found.shape[1] if found.size else 1), np.nan, np.float32)
    row = {image_id: k for k, image_id in enumerate(found_ids)}
    for k, image_id in enumerate(image_ids):
        if image_id in row:
            matrix[k] = found[row[image_id]]
    return matrix, subjects(db, image_ids, threshold, model), calibration(db, model)


def near_duplicates(db: sqlite_utils.Database, image_ids: list[str], threshold: float = 0.3,
                    model: str | None = None) -> NearDuplicates | None:
    """The near-duplicate groups among ``image_ids`` by ``model``'s vectors (default: the newest model's),
    with animal boxes at the detection ``threshold``; None when the store has no vectors."""
    found = aligned(db, image_ids, threshold, model)
    if found is None:
        return None
    matrix, subjects_, cal = found
    pairs = near_duplicate_pairs(matrix, subjects_, cal.threshold)
    return NearDuplicates(list(image_ids), cal, pairs, groups(len(image_ids), pairs),
                          int(np.isfinite(matrix).all(axis=1).sum()))
