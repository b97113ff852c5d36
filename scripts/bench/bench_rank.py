"""Benchmark of `hitl select --learned`: ranking every eligible image of a 1M-image collection by
the learned rater, on top of what select itself costs.

    python scripts/bench/bench_rank.py [--images 1000000] [--workdir DIR]

Uses bench_select's synthetic collection (generated once in --workdir). Runs a plain select of
5,000 candidates, plants 3 curators' decisions on 150 of them (a taste over the candidates'
size and framing, so there is something to learn), then `select --add --learned -n 5000`,
which refits the learned rater from those decisions and ranks every eligible image. Prints
both wall times; the target is at most 30 s more than the plain select.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent.parent))

from bench_select import SELECT_NO_CHECK_FILES_ARGS, ensure_data, run_select  # noqa: E402

EXTRA_TARGET_S = 30.0


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1_000_000)
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
    ranking = next((line for line in learned["stderr"].splitlines() if line.startswith("Ranking")), "?")
    extra = learned["wall"] - plain["wall"]
    ok = extra <= EXTRA_TARGET_S
    print("==== hitl select --learned benchmark ====")
    print(f"images               {args.images:,}; {decisions} curator decisions planted")
    print(f"plain select         {plain['wall']:.2f} s, peak RSS {plain['maxrss_kib'] / 1024:.0f} MB")
    print(f"select --learned     {learned['wall']:.2f} s, peak RSS {learned['maxrss_kib'] / 1024:.0f} MB ({ranking})")
    print(f"ranking costs        {extra:+.2f} s   target <= {EXTRA_TARGET_S:.0f} s   {'PASS' if ok else 'FAIL'}")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
