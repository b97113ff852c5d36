"""Benchmark of `hitl select --learned`: ranking every eligible image of a 1M-image collection by
the learned rater, on top of what select itself costs, without and with image vectors.

    python scripts/bench/bench_rank.py [--images 1000000] [--dim 512] [--workdir DIR]

Uses bench_select's synthetic collection (generated once in --workdir). Runs a plain select of
5,000 candidates, plants 3 curators' decisions on 150 of them (a taste over the candidates'
size and framing, so there is something to learn), then `select --add --learned -n 5000`,
which refits the learned rater from those decisions and ranks every eligible image. Then it
stores a --dim vector (float16, unit length, as `hitl embed --md` stores them) for every image of
the collection, a part of each along the decided taste, and runs the same `select --add
--learned`: the vector-aware rater fitted, every eligible image's vector read in chunks, each
image ranked by the rater its vector allows. Prints the wall times and peak memory. Targets:
ranking at most 30 s more than the plain select; with the vectors at most 60 s and 4 GB in all.
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

from bench_select import SELECT_NO_CHECK_FILES_ARGS, ensure_data, run_select  # noqa: E402

EXTRA_TARGET_S = 30.0
VECTORS_TARGET_S, VECTORS_TARGET_MB = 60.0, 4096.0
MODEL = "openai:bench-512"


def plant_decisions(db_path: Path, n_images: int = 150) -> int:
    from hitl import store
    from hitl.store import transaction

    db = store.connect(db_path)
    rows = list(db.query("SELECT image_id, score FROM candidates ORDER BY rank LIMIT ?", [n_images]))
    with transaction(db):
        for k, row in enumerate(rows):
            for c, curator in enumerate(("ana@example.org", "ben@example.org", "cy@example.org")):
                stars = max(1, min(10, round(2 + 8 * row["score"] + (k + c) % 3 - 1)))
                store.insert_row(db, "ratings", {
                    "source": "sheet", "project": "bench", "annotation_id": f"{curator}|{row['image_id']}",
                    "image_id": row["image_id"], "annotator_email": curator, "stars": stars, "hero": int(stars >= 8),
                    "skipped": 0, "deleted": 0, "boxes": "[]", "mode": "blind",
                    "updated_at": "2026-12-01T00:00:00+00:00", "via": "sheet"})
    return len(rows) * 3


def plant_vectors(db_path: Path, n_images: int, dim: int, root: Path, seed: int = 0) -> None:
    """Store a unit vector of ``dim`` float16 for every image of the synthetic collection under ``root``,
    each the sum of noise and a direction weighted by its decided stars (0 for an undecided image)."""
    import sqlite3

    import numpy as np
    from _synthetic import image_files

    from hitl.store.embeddings import STORED

    ids = image_files(n_images)
    db = sqlite3.connect(db_path)
    stars = dict(db.execute("SELECT image_id, AVG(stars) FROM ratings GROUP BY image_id").fetchall())
    rng = np.random.default_rng(seed)
    direction = rng.standard_normal(dim).astype(np.float32)
    step = 20_000
    for start in range(0, len(ids), step):
        part = ids[start:start + step]
        taste = np.array([stars.get(i, 5.5) - 5.5 for i in part], dtype=np.float32)
        V = rng.standard_normal((len(part), dim), dtype=np.float32) + taste[:, None] * direction * 0.3
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        blobs = V.astype(STORED)
        db.executemany("INSERT OR REPLACE INTO embeddings (image_id, model, root, dim, vector, status, attempts, "
                       "created_at) VALUES (?, ?, ?, ?, ?, 'ok', 1, '2026-12-01T00:00:00+00:00')",
                       [(i, MODEL, str(root), dim, blobs[k].tobytes()) for k, i in enumerate(part)])
        db.commit()
    db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="hitl-bench-rank-"))
    workdir.mkdir(parents=True, exist_ok=True)
    md, cct, _ = ensure_data(workdir, args.images)
    (workdir / "images").mkdir(exist_ok=True)
    db = workdir / "rank.db"
    for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
        p.unlink(missing_ok=True)
    base = [sys.executable, "-m", "hitl", "--db", str(db), "select", "--md", str(md), "--cct", str(cct),
            "--images", str(workdir / "images"), "-n", "5000", *SELECT_NO_CHECK_FILES_ARGS]
    plain = run_select(base, workdir, None)
    if plain["returncode"] != 0:
        print(plain["stderr"][-3000:])
        return 1
    decisions = plant_decisions(db)
    learned = run_select(base + ["--add", "--learned"], workdir, None)
    if learned["returncode"] != 0:
        print(learned["stderr"][-3000:])
        return 1
    started = time.perf_counter()
    # in a process of its own: a select started later must not inherit this one's memory high-water mark
    planter = multiprocessing.get_context("spawn").Process(
        target=plant_vectors, args=(db, args.images, args.dim, (workdir / "images").resolve()))
    planter.start()
    planter.join()
    if planter.exitcode != 0:
        print(f"storing the vectors failed (exit {planter.exitcode})")
        return 1
    planted_s = time.perf_counter() - started
    with_vectors = run_select(base + ["--add", "--learned"], workdir, None)
    if with_vectors["returncode"] != 0:
        print(with_vectors["stderr"][-3000:])
        return 1
    ranking = next((line for line in learned["stderr"].splitlines() if line.startswith("Ranking")), "?")
    counted = next((line for line in with_vectors["stderr"].splitlines() if "ranked with their" in line), "?")
    extra = learned["wall"] - plain["wall"]
    peak_mb = max(with_vectors["maxrss_kib"] / 1024, with_vectors["tree_peak"] / 2 ** 20)
    ok_extra = extra <= EXTRA_TARGET_S
    ok_vectors = with_vectors["wall"] <= VECTORS_TARGET_S and peak_mb <= VECTORS_TARGET_MB
    print("==== hitl select --learned benchmark ====")
    print(f"images               {args.images:,}; {decisions} curator decisions planted; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"plain select         {plain['wall']:.2f} s, peak RSS {plain['maxrss_kib'] / 1024:.0f} MB")
    print(f"select --learned     {learned['wall']:.2f} s, peak RSS {learned['maxrss_kib'] / 1024:.0f} MB ({ranking})")
    print(f"ranking costs        {extra:+.2f} s   target <= {EXTRA_TARGET_S:.0f} s   {'PASS' if ok_extra else 'FAIL'}")
    print(f"vectors stored       {args.images:,} x {args.dim}-d float16 in {planted_s:.0f} s")
    print(f"with the vectors     {with_vectors['wall']:.2f} s, peak {peak_mb:.0f} MB   target <= "
          f"{VECTORS_TARGET_S:.0f} s and {VECTORS_TARGET_MB / 1024:.0f} GB   {'PASS' if ok_vectors else 'FAIL'}")
    print(f"                     {counted.strip()}")
    ok = ok_extra and ok_vectors
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
