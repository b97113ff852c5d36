"""The images closest to a query vector among every vector a model has (a whole collection's too),
each said for what it is to the store: reviewed or not, known to the store (and so pushable) or
only a whole-collection vector, a near-duplicate of the query or not.

The search reads the model's matrix memory-mapped (:func:`hitl.store.vector_file.matrix`) and
takes the best in one pass of chunked products (:func:`hitl.analyse.neighbours.top_k`).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np
import sqlite_utils

from hitl.analyse.neighbours import near_duplicate, top_k
from hitl.errors import HitlError
from hitl.store import in_chunks
from hitl.store.embeddings import newest_model, vectors
from hitl.store.heroes import select_heroes
from hitl.store.near_duplicates import calibration, subjects
from hitl.store.vector_file import matrix

COLUMNS = ("image_id", "similarity", "reviewed", "in_store", "near_duplicate_of")


@dataclass
class Match:
    image_id: str
    similarity: float
    reviewed: bool  # a curator decided on it (a live rating)
    in_store: bool  # in the images table, with its detector record: it can be pushed
    near_duplicate_of: str | None = None  # the query image (or hero) it is a near-duplicate of

    def row(self) -> dict:
        """The CSV row of `similar --out`."""
        return {"image_id": self.image_id, "similarity": round(self.similarity, 4),
                "reviewed": "yes" if self.reviewed else "no", "in_store": "yes" if self.in_store else "no",
                "near_duplicate_of": self.near_duplicate_of or ""}


@dataclass
class Similar:
    model: str
    query: str  # what was searched for, in words
    matches: list[Match]
    searched: int  # vectors compared
    seconds: float
    source: dict[str, str] = field(default_factory=dict)  # where the model's whole-collection vectors came from


def find_similar(db: sqlite_utils.Database, image_id: str | None = None, *, heroes: bool = False, n: int = 50,
                 model: str | None = None, policy: str = "majority", threshold: float = 0.3) -> Similar:
    """The ``n`` images closest to ``image_id``'s vector (or, with ``heroes``, to the centre of the hero
    set's by ``policy``), the query images left out: unreviewed first, then reviewed, each closest first."""
    model = model or newest_model(db)
    if model is None:
        raise HitlError("no image vectors yet: run `python -m hitl embed --model baseline` (the candidates), or with "
                        "--md FILE --images ROOT (a whole collection) first")
    if heroes:
        query_ids = [h["image_id"] for h in select_heroes(db, policy)]
        if not query_ids:
            raise HitlError(f"the hero set ({policy}) is empty: review and mark heroes first, or name an image")
    elif image_id:
        query_ids = [image_id]
    else:
        raise HitlError("name an image (IMAGE_ID) or search around the hero set (--heroes)")
    found_ids, found = vectors(db, model, query_ids)
    if not found_ids:
        raise HitlError(f"{'no hero image has a' if heroes else image_id + ' has no'} {model} vector: run `python -m "
                        f"hitl embed --model {model}` on {'the candidates' if heroes else 'its collection or folder'} "
                        f"first (or check the image's name)")
    centre = found.mean(axis=0)
    centre /= max(float(np.linalg.norm(centre)), 1e-12)
    started = time.perf_counter()
    ids, all_vectors = matrix(db, model)
    rows, sims = top_k(all_vectors, centre, n + len(query_ids))
    seconds = time.perf_counter() - started
    skip = set(query_ids)
    best = [(ids[r], float(s)) for r, s in zip(rows[0].tolist(), sims[0].tolist()) if r >= 0 and ids[r] not in skip][:n]
    matches = _described(db, best, dict(zip(found_ids, found)), model, threshold)
    matches.sort(key=lambda m: (m.reviewed, -m.similarity))
    query = (f"the centre of the hero set ({policy}: {len(found_ids)} of {len(query_ids)} heroes have a vector)"
             if heroes else image_id)
    return Similar(model, query, matches, len(ids), seconds, _source(db, model))


def _described(db: sqlite_utils.Database, best: list[tuple[str, float]], queries: dict[str, np.ndarray], model: str,
               threshold: float) -> list[Match]:
    """Each match with what the store knows of it, and the query image it is a near-duplicate of."""
    names = [image_id for image_id, _ in best]
    reviewed, known = set(), set()
    for marks, part in in_chunks(names):
        reviewed.update(r[0] for r in db.execute(
            f"SELECT DISTINCT image_id FROM ratings WHERE deleted = 0 AND image_id IN ({marks})", part))
        known.update(r[0] for r in db.execute(f"SELECT image_id FROM images WHERE image_id IN ({marks})", part))
    cut = calibration(db, model).threshold
    query_ids = list(queries)
    subject = dict(zip(query_ids + names, subjects(db, query_ids + names, threshold, model)))
    found = dict(zip(*vectors(db, model, names)))
    matches = []
    for image_id, similarity in best:
        twin = next((q for q in query_ids if image_id in found and near_duplicate(
            float(found[image_id] @ queries[q]), subject[image_id], subject[q], cut)), None)
        matches.append(Match(image_id, similarity, image_id in reviewed, image_id in known, twin))
    return matches


def _source(db: sqlite_utils.Database, model: str) -> dict[str, str]:
    """The detector file (and image root) of the model's newest whole-collection run, if any."""
    for (parameters,) in db.execute("SELECT parameters FROM embed_runs WHERE model = ? ORDER BY id DESC", [model]):
        found = json.loads(parameters or "{}")
        if found.get("md") or found.get("camtrap_dp"):
            return {k: found[k] for k in ("md", "images", "camtrap_dp", "speciesnet") if found.get(k)}
    return {}
