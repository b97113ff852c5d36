"""Image vectors in the store (`hitl embed` writes them; the near-duplicate and similarity steps read
them): one per image and model, float16, little-endian, L2-normalised, so a cosine similarity is
a dot product and a million 768-dimensional vectors take 1.5 GB.

A whole collection's matrix is read back in chunks of many rows per query and decoded with one
``np.frombuffer`` per chunk, never a row at a time.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlite_utils

from hitl.store.db import in_chunks, upsert_many, utc_now

EMBED_KEY = ("image_id", "model")
STORED = np.dtype("<f2")  # what a vector is stored as
CHUNK_ROWS = 8192  # rows read per query: a 768-d chunk is 12 MB


@dataclass(frozen=True)
class ModelVectors:
    """What the store holds of one model: its dimension, how many vectors, when the newest was made."""

    model: str
    dim: int
    n: int
    newest: str


def unit_float16(vector: np.ndarray) -> np.ndarray:
    """``vector`` L2-normalised and as stored (float16). Raises ValueError for an empty, zero or
    non-finite vector, which no image should have."""
    v = np.asarray(vector, dtype=np.float64).ravel()
    if v.size == 0:
        raise ValueError("an empty vector")
    if not np.isfinite(v).all():
        raise ValueError("a vector with NaN or infinite values")
    norm = float(np.linalg.norm(v))
    if norm == 0.0:
        raise ValueError("a vector of zeros")
    return (v / norm).astype(STORED)


def embedding_row(image_id: str, model: str, root: str, *, vector: np.ndarray | None = None,
                  error: str | None = None, error_kind: str | None = None, attempts: int = 0,
                  latency_ms: float | None = None, run_id: int | None = None,
                  boxes: list | None = None) -> dict[str, Any]:
    """One row of the embeddings table: a vector (made by :func:`unit_float16`), or a failure with its reason;
    ``boxes``: the image's animal boxes when it was embedded (none given: not known), which the
    near-duplicate rule reads for an image that is only a whole-collection vector."""
    return {"image_id": image_id, "model": model, "root": root,
            "boxes": json.dumps([[round(float(v), 6) for v in box] for box in boxes]) if boxes else None,
            "dim": None if vector is None else int(vector.size),
            "vector": None if vector is None else vector.astype(STORED).tobytes(),
            "status": "failed" if vector is None else "ok", "error": error, "error_kind": error_kind,
            "attempts": attempts, "latency_ms": latency_ms, "run_id": run_id, "created_at": utc_now()}


def write_embeddings(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> None:
    """Insert or replace rows made by :func:`embedding_row`. The caller owns the transaction."""
    upsert_many(db, "embeddings", rows, EMBED_KEY)


def states(db: sqlite_utils.Database, model: str) -> dict[str, tuple[str, str | None]]:
    """image_id -> (status, error_kind) of every result ``model`` has."""
    return {image_id: (status, kind) for image_id, status, kind in db.execute(
        "SELECT image_id, status, error_kind FROM embeddings WHERE model = ?", [model])}


def vectors(db: sqlite_utils.Database, model: str, ids: list[str] | None = None, chunk: int = CHUNK_ROWS,
            root: str | None = None) -> tuple[list[str], np.ndarray]:
    """The image ids and float32 vectors (one row each, unit length) ``model`` has, in image_id order;
    only those of ``ids`` when given (ids without a vector are left out), and of the collection at
    ``root`` when given (the same relative path under another root is another image).

    Read ``chunk`` rows per query; each chunk's blobs are joined and decoded at once.
    """
    out_ids: list[str] = []
    parts = []
    for part_ids, part in vector_chunks(db, model, ids, chunk, root):
        out_ids.extend(part_ids)
        parts.append(part)
    if not parts:  # the dimension is looked up again only here: vector_chunks has read it once already
        return out_ids, np.zeros((0, model_dim(db, model) or 0), np.float32)
    return out_ids, np.concatenate(parts).astype(np.float32)


def vector_chunks(db: sqlite_utils.Database, model: str, ids: list[str] | None = None, chunk: int = CHUNK_ROWS,
                  root: str | None = None, ordered: bool = True) -> Iterator[tuple[list[str], np.ndarray]]:
    """:func:`vectors` a chunk at a time, as stored (float16), so a million of them never need to be
    in memory at once. ``ordered=False`` (every vector of the model): in the order stored, not by
    image id (sorting a million vectors costs SQLite a temporary B-tree: 17 s against 5)."""
    dim = model_dim(db, model)
    if dim is None:
        return
    # with ids, "+model" has SQLite look each id up by the primary key; else it walks the model's index,
    # every vector of the model per query (1.2 s against 0.01 for 900 ids among a million)
    by_key = "" if ids is None else "+"
    sql = f"SELECT image_id, vector FROM embeddings WHERE {by_key}model = ? AND {by_key}status = 'ok'"
    head = [model]
    if root is not None:
        sql, head = sql + " AND root = ?", [model, root]

    def decoded(rows: list[tuple[str, bytes]]) -> tuple[list[str], np.ndarray]:
        return [r[0] for r in rows], np.frombuffer(b"".join(r[1] for r in rows), STORED).reshape(len(rows), dim)

    if ids is None:
        cursor = db.conn.execute(sql + (" ORDER BY image_id" if ordered else ""), head)
        while rows := cursor.fetchmany(chunk):
            yield decoded(rows)
        return
    wanted = sorted(set(ids))
    for start in range(0, len(wanted), chunk):
        rows = []
        for marks, part in in_chunks(wanted[start:start + chunk], 900):
            rows += db.conn.execute(sql + f" AND image_id IN ({marks}) ORDER BY image_id", [*head, *part]).fetchall()
        if rows:
            yield decoded(rows)


def model_dim(db: sqlite_utils.Database, model: str) -> int | None:
    """The dimension of ``model``'s vectors, or None when it has none."""
    row = db.execute("SELECT dim FROM embeddings WHERE model = ? AND status = 'ok' LIMIT 1", [model]).fetchone()
    return row[0] if row else None


def models(db: sqlite_utils.Database) -> list[ModelVectors]:
    """Every model with vectors, the newest first."""
    return [ModelVectors(*row) for row in db.execute(
        "SELECT model, MAX(dim), COUNT(*), MAX(created_at) AS newest FROM embeddings WHERE status = 'ok' "
        "GROUP BY model ORDER BY newest DESC, model")]


def newest_model(db: sqlite_utils.Database) -> str | None:
    """The model whose vectors were made last (the one to use when none is named), or None. One row read
    through the index on (status, created_at), not every model's vectors counted."""
    row = db.execute("SELECT model FROM embeddings WHERE status = 'ok' ORDER BY created_at DESC LIMIT 1").fetchone()
    return row[0] if row else None
