"""`hitl similar` over a million stored 512-d vectors: the time of one query, in a process that has
queried before and as a cold command line (a new process: Python, the imports, the database).

The store holds ``--vectors`` random unit vectors (float16, as `hitl embed` stores them) of one
model, in 200 camera folders. The first query makes the model's float32 copy beside the database
(hitl/store/vector_file.py; once per change of the model's vectors), every later one memory-maps it
and takes the 50 closest in one pass of chunked products. Printed: the time to fill the store, the
first query (with the copy made), the warm queries and the cold command lines (wall time, and the
search alone as the command reports it), each process's peak memory, and the load average (the
machine may be shared).
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hitl import store  # noqa: E402
from hitl.similar.search import find_similar  # noqa: E402

MODEL = "bench-512"
CHUNK = 50_000


def image_id(k: int) -> str:
    return f"cam_{k % 200:03d}/IMG_{k:07d}.JPG"


def fill(db_path: Path, n: int, dim: int) -> float:
    """``n`` random unit vectors of MODEL in the store, written as the embed step writes them (a row each)."""
    db = store.connect(db_path)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for start in range(0, n, CHUNK):
        block = rng.standard_normal((min(CHUNK, n - start), dim)).astype(np.float32)
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        block = block.astype("<f2")
        with store.transaction(db):
            db.conn.executemany(
                "INSERT INTO embeddings (image_id, model, root, dim, vector, status, attempts, created_at) "
                "VALUES (?, ?, '/bench', ?, ?, 'ok', 1, '2026-01-01T00:00:00')",
                ((image_id(start + k), MODEL, dim, block[k].tobytes()) for k in range(len(block))))
    return time.perf_counter() - started


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cold(db_path: Path, query: str) -> tuple[float, float, float]:
    """Wall time of `python -m hitl similar` in a new process, the search it reports, its peak memory (MB)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "hitl", "--db", str(db_path), "similar", query, "-n", "50"],
                            env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    search = float(re.search(r"vectors \((\d+\.\d+) s\)", result.stdout).group(1))
    return wall, search, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=10, help="warm queries, in this process")
    parser.add_argument("--cold", type=int, default=3, help="command lines, each a new process")
    parser.add_argument("--keep", type=Path, help="keep (or reuse) the database in this folder")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        measure(args, args.keep)
        return
    with tempfile.TemporaryDirectory(prefix="bench-similar-") as folder:
        measure(args, Path(folder))


def measure(args: argparse.Namespace, folder: Path) -> None:
    db_path = folder / "hitl.db"
    if not db_path.exists():
        seconds = fill(db_path, args.vectors, args.dim)
        print(f"Stored {args.vectors:,} {args.dim}-d float16 vectors in {seconds:.1f} s "
              f"({db_path.stat().st_size / 1e9:.2f} GB)")
    db = store.connect(db_path)
    rng = np.random.default_rng(1)
    queries = [image_id(int(k)) for k in rng.integers(0, args.vectors, args.queries + args.cold + 1)]
    started = time.perf_counter()
    first = find_similar(db, queries[0], n=50)
    print(f"First query, the float32 copy made: {time.perf_counter() - started:.2f} s "
          f"({first.searched:,} vectors; the search {first.seconds:.2f} s)")
    times, searches = [], []
    for query in queries[1:args.queries + 1]:
        started = time.perf_counter()
        found = find_similar(db, query, n=50)
        times.append(time.perf_counter() - started)
        searches.append(found.seconds)
    print(f"Warm queries ({len(times)}): median {statistics.median(times):.3f} s, worst {max(times):.3f} s "
          f"(the search {statistics.median(searches):.3f} s); peak memory {peak_mb():.0f} MB")
    colds = [cold(db_path, query) for query in queries[args.queries + 1:]]
    print(f"Cold command lines ({len(colds)}): median {statistics.median(c[0] for c in colds):.2f} s wall, "
          f"worst {max(c[0] for c in colds):.2f} s; the search alone {statistics.median(c[1] for c in colds):.2f} s; "
          f"peak memory {max(c[2] for c in colds):.0f} MB")
    print(f"Load average: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")

if __name__ == "__main__":
    main()
