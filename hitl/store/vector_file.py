"""A model's whole matrix of vectors, for a search over a collection: memory-mapped from a float32
copy kept beside the database, made from the ``embeddings`` table when it is missing or stale.

Reading a million 512-d vectors out of SQLite takes seconds (a row at a time, then float16 to
float32, which numpy does slowly); a float32 file the page cache holds is searched in a fraction
of one. The copy is derived data, never the source: the folder ``<database>.vectors/`` may be
deleted at any time; its header records the model's version (``embedding_versions``, raised by a
trigger whenever a vector of the model is written), so a copy older than the table is never read,
only made again. Its files (the matrix, the ids each ended by a NUL, where each id begins) are
written under temporary names, then renamed, and the header last: a copy is read whole or not at all.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sqlite_utils

from hitl.files import atomic_output, write_atomic
from hitl.store.embeddings import CHUNK_ROWS, STORED, model_dim, vectors

SEPARATOR = b"\0"  # no image_id holds a NUL


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


class StoredIds(Sequence[str]):
    """The image ids of a copy, read one by one where they are wanted: the joined ids memory-mapped and
    where each begins (a million ids are not split into a million strings for a query's fifty)."""

    def __init__(self, joined: np.ndarray, starts: np.ndarray):
        self._joined, self._starts = joined, starts

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, k):
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        return bytes(self._joined[self._starts[k]:self._starts[k + 1] - 1]).decode("utf-8", "surrogatepass")


def matrix(db: sqlite_utils.Database, model: str) -> tuple[Sequence[str], np.ndarray]:
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


def _load(data: Path, ids_path: Path, n: int, dim: int) -> tuple[Sequence[str], np.ndarray]:
    if n == 0:
        return [], np.zeros((0, dim), np.float32)
    starts = np.memmap(ids_path.with_suffix(".starts"), dtype=np.int64, mode="r")
    if len(starts) != n + 1:
        raise OSError(f"{ids_path}: {len(starts) - 1} ids for {n} vectors")
    return StoredIds(np.memmap(ids_path, dtype=np.uint8, mode="r"), starts), \
        np.memmap(data, dtype=np.float32, mode="r", shape=(n, dim))


def _write_copy(db: sqlite_utils.Database, model: str, dim: int, current: int, data: Path, ids_path: Path,
                header_path: Path) -> int:
    """Write the float32 copy, its ids (each ended by a NUL) and where each begins, then its header (the
    header last: a copy without one is not read)."""
    folder = data.parent
    folder.mkdir(parents=True, exist_ok=True)
    header_path.unlink(missing_ok=True)
    n, offset = 0, 0
    # each file under an exclusive temporary name (never a predictable one a link could be planted
    # under), renamed only once all three are whole
    with atomic_output(data, folder, binary=True) as out, atomic_output(ids_path, folder, binary=True) as ids, \
            atomic_output(ids_path.with_suffix(".starts"), folder, binary=True) as starts:
        starts.write(np.zeros(1, np.int64).tobytes())
        cursor = db.conn.execute("SELECT image_id, vector FROM embeddings WHERE model = ? AND status = 'ok'", [model])
        while rows := cursor.fetchmany(CHUNK_ROWS):
            names = [r[0].encode("utf-8", "surrogatepass") + SEPARATOR for r in rows]
            ids.write(b"".join(names))
            ends = offset + np.cumsum([len(name) for name in names], dtype=np.int64)
            starts.write(ends.tobytes())
            offset = int(ends[-1])
            block = np.frombuffer(b"".join(r[1] for r in rows), STORED).reshape(len(rows), dim)
            out.write(block.astype(np.float32).tobytes())
            n += len(rows)
    write_atomic(header_path, json.dumps({"model": model, "version": current, "n": n, "dim": dim}), folder)
    return n
