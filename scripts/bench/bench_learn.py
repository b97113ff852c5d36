"""Benchmark of `hitl learn` on a busy machine: 500 curator decisions, 5,000 candidates, vectors.

    python scripts/bench/bench_learn.py [--candidates 5000] [--decisions 500] [--dim 512] [--embeddings MODEL|none]

Builds a store (synthetic, bench_loop's collection: detector records in bursts over 8 cameras,
two models' scores on every candidate, 512-d unit vectors of every candidate that carry part of
the taste), plants the decisions of two curators on 250 candidates, then times `python -m hitl
learn` as a curator runs it (a new process: imports, reading the store, every figure, the
predictions written), and `learn --embeddings none` beside it. The load average is printed:
the machine is shared. Target: at most 15 s on 2 busy cores.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE))

from bench_loop import collection, models, taste  # noqa: E402

TARGET_S = 15.0
CURATORS = ("ana@example.org", "ben@example.org")
MODEL = "openai:bench-512"


def build_store(path: Path, n: int, decisions: int, dim: int, seed: int = 0) -> None:
    """A store with ``n`` candidates (detections, two models' scores, a vector each) and ``decisions``
    curator decisions on the first of them (in a random order), from a taste the vectors partly show."""
    from hitl import store
    from hitl.store import transaction
    from hitl.store.embeddings import embedding_row, unit_float16, write_embeddings

    rng = np.random.default_rng(seed)
    c = collection(n, rng)
    signal, stars, hero = taste(c, (1.0, 1.2, -1.6, 1.0, -0.8, 0.0), rng)
    pixels = rng.normal(size=n)  # what only the pixels show: it moves the stars and the hero decision too
    utility = signal + 1.2 * pixels
    stars = np.clip(np.rint(5.5 + 1.6 * (utility - utility.mean()) / utility.std()), 1, 10)
    hero = (utility >= np.quantile(utility, 0.9)).astype(int)
    score_a, score_b = models(c, rng)
    ids = [f"cam{int(c['location'][k])}/IMG_{k:05d}.JPG" for k in range(n)]
    root = str(path.parent / "images")
    side = np.sqrt(c["area"])
    x = np.clip(0.5 - side / 2 + (1 - c["centrality"]) * rng.choice([-0.5, 0.5], n) * (1 - side), 0, 1 - side)
    db = store.connect(path)
    directions = rng.normal(size=(2, dim))
    vectors = np.outer(pixels, directions[0]) + np.outer(np.log(c["area"]), directions[1]) + rng.normal(0, 4.0, (n, dim))
    with transaction(db):
        db.conn.executemany(
            "INSERT INTO images (image_id, root, datetime, location, seq_id, species, night, rarity) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(ids[k], root, f"2024-05-{1 + k % 28:02d}T{int(c['hour'][k]):02d}:00:00", f"cam{int(c['location'][k])}",
              f"seq{int(c['burst'][k])}", f"species{int(c['species'][k])}", int(c["night"][k]), float(c["rarity"][k]))
             for k in range(n)])
        db.conn.executemany(
            "INSERT INTO detections (image_id, det_index, kind, category, conf, x, y, w, h) "
            "VALUES (?, 0, 'animal', '1', ?, ?, 0.3, ?, ?)",
            [(ids[k], float(c["max_conf"][k]), float(x[k]), float(side[k]), float(side[k])) for k in range(n)])
        db.conn.execute("INSERT INTO selection_runs (id, status) VALUES (1, 'finished')")
        db.conn.executemany("INSERT INTO candidates (image_id, run_id, rank, category, score) VALUES (?, 1, ?, 'x', 0)",
                            [(ids[k], k + 1) for k in range(n)])
        db.conn.executemany(
            "INSERT INTO scores (image_id, model, prompt_version, status, score, hero, reasoning) "
            "VALUES (?, ?, 'v1', 'ok', ?, ?, 'synthetic')",
            [(ids[k], model, float(s[k]), int(s[k] >= 7.5)) for k in range(n)
             for model, s in (("model-a", score_a), ("model-b", score_b))])
        decided = rng.permutation(n)[: decisions // len(CURATORS)]
        db.conn.executemany(
            "INSERT INTO ratings (source, project, annotation_id, image_id, annotator_email, stars, hero, skipped, "
            "deleted, mode, updated_at) VALUES ('sheet', 'bench', ?, ?, ?, ?, ?, 0, 0, 'blind', '2026-01-01T00:00:00Z')",
            [(f"{curator}|{ids[k]}", ids[k], curator, int(np.clip(stars[k] + j - 0.5 * (j > 0), 1, 10)), int(hero[k]))
             for k in decided.tolist() for j, curator in enumerate(CURATORS)])
        write_embeddings(db, [embedding_row(ids[k], MODEL, root, vector=unit_float16(vectors[k])) for k in range(n)])
    db.conn.close()


def time_learn(db: Path, *extra: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "hitl", "--db", str(db), "learn", *extra], cwd=REPO,
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"learn failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    return wall, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--candidates", type=int, default=5000)
    parser.add_argument("--decisions", type=int, default=500)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--show", action="store_true", help="Print what learn printed.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hitl-bench-learn-") as tmp:
        db = Path(tmp) / "learn.db"
        started = time.perf_counter()
        build_store(db, args.candidates, args.decisions, args.dim)
        built = time.perf_counter() - started
        load_before = os.getloadavg()[0]
        with_vectors, out = time_learn(db)
        without, _ = time_learn(db, "--embeddings", "none")
        load_after = os.getloadavg()[0]
    ok = with_vectors <= TARGET_S
    print("==== hitl learn benchmark ====")
    print(f"store: {args.candidates:,} candidates with {args.dim}-d vectors, {args.decisions} decisions "
          f"(built in {built:.1f} s); {os.cpu_count()} cores, load average {load_before:.1f} before, "
          f"{load_after:.1f} after")
    if args.show:
        print(out)
    print(f"learn (vectors {MODEL})     {with_vectors:.1f} s   target <= {TARGET_S:.0f} s   {'PASS' if ok else 'FAIL'}")
    print(f"learn --embeddings none      {without:.1f} s")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
