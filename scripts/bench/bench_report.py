"""Benchmark of `hitl report`: 100,000 images x 3 raters, 1,000 bootstrap resamples.

    python scripts/bench/bench_report.py [--images 100000] [--resamples 1000]

Fills a database with the synthetic long table of bench_agreement.py (one curator, two
models, correlated through a latent quality; the image files are hard links to one sample
image so the disagreement thumbnails are real), then times the agreement computation and
the whole report (agreement.json, disagreements.csv, report.html with plots and thumbnails).
Targets: agreement at most 60 s, the HTML report at most 30 s more.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

AGREEMENT_TARGET_S, REPORT_EXTRA_TARGET_S = 60.0, 30.0


def fill(db, rows: list[dict], root: Path) -> None:
    from hitl.store import transaction

    source = REPO / "sample_data" / "images" / "cam_a" / "IMG_0001.JPG"
    images = sorted({r["image_id"] for r in rows})
    species = {r["image_id"]: r["species"] for r in rows}
    root.mkdir(parents=True)
    for image_id in images[:200]:  # enough for the top disagreements; the rest show "no preview"
        os.link(source, root / image_id)
    with transaction(db):
        db.conn.executemany("INSERT INTO images (image_id, root, species) VALUES (?, ?, ?)",
                            [(i, str(root), species[i]) for i in images])
        db.conn.executemany(
            "INSERT INTO ratings (source, project, annotation_id, image_id, annotator_email, stars, hero, skipped, "
            "deleted, mode, updated_at) VALUES ('labelstudio', '1', ?, ?, ?, ?, ?, 0, 0, ?, '2026-01-01T00:00:00Z')",
            [(str(k), r["image_id"], r["rater"], int(r["score"]), int(r["hero"]), r["mode"])
             for k, r in enumerate(rows) if r["kind"] == "human"])
        db.conn.executemany(
            "INSERT INTO scores (image_id, model, prompt_version, status, score, hero, reasoning) "
            "VALUES (?, ?, ?, 'ok', ?, ?, 'synthetic')",
            [(r["image_id"], *r["rater"].split("@"), r["score"], int(r["hero"])) for r in rows if r["kind"] == "model"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args()
    from bench_agreement import make_rows

    from hitl import store
    from hitl.analyse.agreement import compute_agreement
    from hitl.publish.report import build_report
    from hitl.store.ratings import long_table

    with tempfile.TemporaryDirectory(prefix="hitl-bench-report-") as tmp:
        tmp = Path(tmp)
        db = store.connect(tmp / "bench.db")
        fill(db, make_rows(args.images, 0), tmp / "images")
        started = time.perf_counter()
        rows = long_table(db)
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        compute_agreement(rows, resamples=args.resamples)
        agreement_s = time.perf_counter() - started
        started = time.perf_counter()
        paths = build_report(db, tmp / "report", resamples=args.resamples)
        report_s = time.perf_counter() - started
        size = paths["html"].stat().st_size
    extra = report_s - agreement_s  # build_report computes the agreement again, then renders
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    ok = agreement_s <= AGREEMENT_TARGET_S and extra <= REPORT_EXTRA_TARGET_S
    print("==== hitl report benchmark ====")
    print(f"images x raters         {args.images:,} x 3 ({len(rows):,} rows, read in {read_s:.1f} s)")
    print(f"agreement               {agreement_s:.1f} s with {args.resamples} resamples   target <= "
          f"{AGREEMENT_TARGET_S:.0f} s")
    print(f"whole report            {report_s:.1f} s, of which rendering {extra:.1f} s   target <= "
          f"{REPORT_EXTRA_TARGET_S:.0f} s more; report.html {size / 1e6:.1f} MB")
    print(f"peak RSS                {peak:.0f} MB")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
