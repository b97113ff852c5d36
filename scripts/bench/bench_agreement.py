"""Benchmark ``hitl.agreement.compute_agreement`` on a large synthetic long table.

Usage: python scripts/bench/bench_agreement.py [--images 100000] [--resamples 1000] [--seed 0]

Rows: one curator (integer stars 1-10, hero yes/no, half the images assisted, half blind) and
two models (scores 0-10 with one decimal, hero flags), all driven by one latent quality per
image so they correlate as real raters do; species Zipf-skewed. Prints wall time and peak RSS
of the computation. Exit status: 0 target met, 2 target missed.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from hitl.analyse.agreement import compute_agreement  # noqa: E402

WALL_TARGET_S = 60.0
SPECIES = ["red deer", "roe deer", "wild boar", "red fox", "european badger", "european hare", "fallow deer",
           "stone marten", "pine marten", "red squirrel", "eurasian jay", "common blackbird", "grey wolf",
           "eurasian lynx", "brown bear", "raccoon", "eurasian otter", "stoat", "least weasel", "wildcat"]


def make_rows(n_images: int, seed: int) -> list[dict]:
    """The long table: 1 curator + 2 models per image, correlated through a latent quality."""
    rng = np.random.default_rng(seed)
    quality = rng.normal(0, 1, n_images)
    zipf = 1 / np.arange(1, len(SPECIES) + 1)
    species = rng.choice(len(SPECIES), n_images, p=zipf / zipf.sum())
    stars = np.clip(np.rint(5.5 + 1.8 * (quality + rng.normal(0, 0.5, n_images))), 1, 10)
    human_hero = quality + rng.normal(0, 0.4, n_images) > 1.0
    mode = np.where(rng.random(n_images) < 0.5, "assisted", "blind")
    models = []
    for name, bias, noise, hero_noise in (("gemini-2.5-flash@hero-v1", 0.4, 0.7, 0.6),
                                          ("gpt-4.1-mini@hero-v1", -0.3, 0.9, 0.8)):
        score = np.clip(np.round(5.0 + bias + 2.0 * (quality + rng.normal(0, noise, n_images)), 1), 0, 10)
        flag = quality + rng.normal(0, hero_noise, n_images) > 1.1
        models.append((name, score, flag))
    rows = []
    for i in range(n_images):
        image_id, sp = f"img{i:07d}", SPECIES[species[i]]
        rows.append({"image_id": image_id, "rater": "curator@example.org", "kind": "human",
                     "score": float(stars[i]), "hero": bool(human_hero[i]), "mode": str(mode[i]), "species": sp})
        for name, score, flag in models:
            rows.append({"image_id": image_id, "rater": name, "kind": "model", "score": float(score[i]),
                         "hero": bool(flag[i]), "mode": None, "species": sp})
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    t0 = time.perf_counter()
    rows = make_rows(args.images, args.seed)
    gen_s = time.perf_counter() - t0
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t0 = time.perf_counter()
    report = compute_agreement(rows, resamples=args.resamples, seed=args.seed)
    wall = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    text = json.dumps(report, allow_nan=False)  # must be plain JSON, no NaN

    ok = wall <= WALL_TARGET_S
    print(f"""rows                 {len(rows):,} ({args.images:,} images x 3 raters), generated in {gen_s:.1f} s
resamples            {args.resamples}
pairs / hero entries {len(report['pairs'])} / {len(report['hero'])}; species {len(report['by_species'])}
report JSON          {len(text) / 1e3:.0f} kB
wall time            {wall:.2f} s        target <= {WALL_TARGET_S:.0f} s  {'PASS' if ok else 'FAIL'}
peak RSS             {peak:.0f} MB (of which {rss_before:.0f} MB before the call: interpreter + rows)""")
    print("readings:")
    for line in report["readings"]:
        print("  - " + line)
    print(f"RESULT               {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
