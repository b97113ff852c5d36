"""A model's whole matrix of vectors, for a search over a collection: memory-mapped from a float32
copy kept beside the database, made from the ``embeddings`` table when it is missing or stale.

Reading a million 512-d vectors out of SQLite takes seconds (a row at a time, then float16 to
float32, which numpy does slowly); a float32 file the page cache holds is searched in a fraction
of one. The copy is derived data, never the source: the folder ``<database>.vectors/`` may be
deleted at any time; each file records the model's version (``embedding_versions``, raised by a
trigger whenever a vector of the model is written), so a copy older than the table is never read,
only made again. It appears whole or not at all (written under a temporary name, then renamed).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import sqlite_utils

from hitl.store.embeddings import CHUNK_ROWS, STORED, model_dim, vectors

SEPARATOR = "\0"  # no image_id holds a NUL


def version(db: sqlite_utils.Database, model: str) -> int:
    """The model's vector version: it changes whenever one of its vectors is written."""
    row = db.execute("SELECT version FROM embedding_versions WHERE model = ?", [model]).fetchone()
    return row[0] if row else 0


def database_path(db: sqlite_utils.Database) -> Path | None:
    """The file of the main database, or None for one in memory."""
    for _, name, path in db.execute("PRAGMA database_list").fetchall():
        if name == "main":
            return Path(path) if path else None
    return None


def cache_paths(db_path: Path, model: str) -> tuple[Path, Path, Path]:
    """The matrix, ids and header files of ``model``'s copy beside the database ``db_path``."""
    folder = db_path.with_name(db_path.name + ".vectors")
    stem = hashlib.sha256(model.encode("utf-8")).hexdigest()[:16]
    return folder / f"{stem}.f32", folder / f"{stem}.ids", folder / f"{stem}.json"


def matrix(db: sqlite_utils.Database, model: str) -> tuple[list[str], np.ndarray]:
    """Every vector ``model`` has: (image ids, float32 matrix, one unit row each), memory-mapped from
    the copy beside the database (made first when it is missing or stale). A database in memory, or
    a folder that cannot be written, is read straight from the table."""
    path = database_path(db)
    dim = model_dim(db, model)
    if dim is None:
        return [], np.zeros((0, 0), np.float32)
    if path is None:
        return vectors(db, model)
    data, ids_path, header_path = cache_paths(path, model)
    current = version(db, model)
    try:
        header = json.loads(header_path.read_text(encoding="utf-8"))
        if header.get("version") == current and header.get("model") == model and header.get("dim") == dim:
            return _load(data, ids_path, header["n"], dim)
    except (OSError, ValueError, KeyError):
        pass
    try:
        n = _write_copy(db, model, dim, current, data, ids_path, header_path)
    except OSError:
        return vectors(db, model)
    return _load(data, ids_path, n, dim)


def _load(data: Path, ids_path: Path, n: int, dim: int) -> tuple[list[str], np.ndarray]:
    text = ids_path.read_text(encoding="utf-8", errors="surrogatepass")
    ids = text.split(SEPARATOR) if text else []
    if len(ids) != n:
        raise OSError(f"{ids_path}: {len(ids)} ids for {n} vectors")
    mapped = np.memmap(data, dtype=np.float32, mode="r", shape=(n, dim)) if n else np.zeros((0, dim), np.float32)
    return ids, mapped


def _write_copy(db: sqlite_utils.Database, model: str, dim: int, current: int, data: Path, ids_path: Path,
                header_path: Path) -> int:
    """Write the float32 copy, its ids and then its header (the header last: a copy without one is not read)."""
    data.parent.mkdir(parents=True, exist_ok=True)
    header_path.unlink(missing_ok=True)
    ids: list[str] = []
    temp = data.with_name(f"{data.name}.{os.getpid()}.tmp")
    try:
        with temp.open("wb") as out:
            cursor = db.conn.execute("SELECT image_id, vector FROM embeddings WHERE model = ? AND status = 'ok'",
                                     [model])
            while rows := cursor.fetchmany(CHUNK_ROWS):
                ids.extend(r[0] for r in rows)
                block = np.frombuffer(b"".join(r[1] for r in rows), STORED).reshape(len(rows), dim)
                out.write(block.astype(np.float32).tobytes())
        os.replace(temp, data)
    finally:
        temp.unlink(missing_ok=True)
    for path, text in ((ids_path, SEPARATOR.join(ids)),
                       (header_path, json.dumps({"model": model, "version": current, "n": len(ids), "dim": dim}))):
        part = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        part.write_text(text, encoding="utf-8", errors="surrogatepass")
        os.replace(part, path)
    return len(ids)
