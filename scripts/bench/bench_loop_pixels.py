"""Simulation of the loop when the curators' taste lies in the pixels: does reading the image vectors
find more heroes in the first 500 reviews?

    python scripts/bench/bench_loop_pixels.py [--images 5000] [--seed 0] [--strategy hero] [--forms]

A collection drawn for it (tests/fakes/drawn.py: PIL frames in bursts over eight cameras; what the
curators reward is how sharp the animal is, the light and the pose, which no detector record
holds), each frame embedded by the baseline embedder's descriptor at 256 x 192. Curators review
in rounds of 100, the first round in the selection heuristic's order, then by the loop: the
learned rater fitted on everything reviewed, `next`'s order (hitl.learn.next), one frame per burst
a round. Two loops: the detector-only rater (the detector record), and the rater that reads the
vectors too (hitl.learn.raters: the ridge head stacked with the trees).

Target: at 500 reviews the loop with vectors finds at least 1.5x the heroes of the detector-only loop.
--forms also compares, on 500 random decisions and grouped out of fold, the stacked ridge head
with the vectors' leading principal components beside the detector features (the choice
hitl/learn/pixels.py documents).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))
sys.path.insert(0, str(HERE))

from bench_loop import ROUND, fixed_order, the_loop, trees_rater  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from hitl.learn import model as M  # noqa: E402
from hitl.learn import raters as R  # noqa: E402
from hitl.learn.features import META, Features, hour_features  # noqa: E402
from hitl.select import strata  # noqa: E402
from tests.fakes import drawn  # noqa: E402

LAST, CHECKPOINTS = 500, (100, 200, 300, 400, 500)
TARGET_RATIO = 1.5
PCA_SIZES = (4, 8, 16, 32)


def detector_features(record: dict[str, np.ndarray]) -> Features:
    """The detector record's META columns, as the learned rater sees an image it never saw scored."""
    hour_sin, hour_cos = hour_features(record["hour"])
    columns = {**record, "hour_sin": hour_sin, "hour_cos": hour_cos, "species": record["species"].astype(float),
               "location": record["location"].astype(float)}
    return Features([name for name, _ in META], np.column_stack([columns[name] for name, _ in META]))


def _embed_part(args: tuple[int, int, int]) -> np.ndarray:
    n, seed, part = args
    d = drawn.collection(n, np.random.default_rng(seed))
    return drawn.vectors(d, frames=range(part, n, 2))


def embed(n: int, seed: int) -> np.ndarray:
    """Every frame's baseline vector, in two processes (the collection is drawn again in each, from its seed)."""
    with multiprocessing.get_context("fork").Pool(2) as pool:
        halves = pool.map(_embed_part, [(n, seed, 0), (n, seed, 1)])
    V = np.empty((n, halves[0].shape[1]), np.float32)
    V[0::2], V[1::2] = halves
    return V


def vector_rater(F: Features, V: np.ndarray, stars: np.ndarray, hero: np.ndarray, burst: np.ndarray, seed: int):
    """``the_loop``'s ``rate`` for the rater that reads the vectors (every frame has one)."""
    def rate(taken: np.ndarray, rest: np.ndarray) -> tuple[np.ndarray, R.Raters]:
        raters = R.fit(Features(F.names, F.X[taken]), stars[taken], hero[taken], burst[taken], seed, V[taken],
                       np.ones(len(taken), dtype=bool))
        return raters.predict(F.X[rest], V[rest], np.ones(len(rest), dtype=bool))[1], raters
    return rate


def forms(F: Features, V: np.ndarray, d: drawn.Drawn, seed: int) -> dict[str, dict]:
    """Grouped out-of-fold figures on 500 random decisions: detector only, the stacked ridge head,
    and the leading principal components of the vectors beside the detector features."""
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(seed + 1)
    pick = np.sort(rng.permutation(len(d))[:500])
    groups, stars, hero = d.record["burst"][pick], d.stars[pick], d.hero[pick]
    Fp = Features(F.names, F.X[pick])
    splits = M.splits(groups)
    out = {"detector record only": R.validate_detector(Fp, stars, hero, splits, seed),
           "stacked ridge head": R.validate_pixels(Fp, V[pick], np.ones(len(pick), dtype=bool), stars, hero, groups,
                                                   splits, seed)}
    for k in PCA_SIZES:
        components = PCA(k, random_state=seed).fit(V).transform(V)[pick]
        Fk = Features(F.names + [f"pc{j}" for j in range(k)], np.column_stack([Fp.X, components]))
        out[f"{k} principal components beside"] = R.validate_detector(Fk, stars, hero, splits, seed)
    return {name: M.figures(v.stars, v.p, stars, hero, 20, ranking=v.ranking) for name, v in out.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strategy", choices=("hero", "uncertain", "mixed"), default="hero")
    parser.add_argument("--forms", action="store_true", help="Also compare the forms the vectors can enter in.")
    args = parser.parse_args()
    started = time.perf_counter()
    d = drawn.collection(args.images, np.random.default_rng(args.seed))
    V = embed(args.images, args.seed)
    embedded = time.perf_counter() - started
    F = detector_features(d.record)
    burst = d.record["burst"]
    heuristic = strata.quality_score(d.record["area"], d.record["centrality"], d.record["max_conf"],
                                     d.record["cut_off"].astype(bool), d.record["night"].astype(bool))
    rng = np.random.default_rng(args.seed)
    orders = {"random": rng.permutation(args.images), "selection heuristic": fixed_order(heuristic, burst)}
    with threadpool_limits(1):
        orders[f"loop, detector record only ({args.strategy})"], _ = the_loop(
            trees_rater(F, d.stars, d.hero, burst, args.seed), burst, heuristic, args.strategy, LAST)
        orders[f"loop, with the vectors ({args.strategy})"], _ = the_loop(
            vector_rater(F, V, d.stars, d.hero, burst, args.seed), burst, heuristic, args.strategy, LAST)
        compared = {}
        if args.forms:
            compared = forms(F, V, d, args.seed)
            from sklearn.decomposition import PCA

            components = PCA(16, random_state=args.seed).fit(V).transform(V)
            F16 = Features(F.names + [f"pc{j}" for j in range(16)], np.column_stack([F.X, components]))
            orders[f"loop, 16 principal components ({args.strategy})"], _ = the_loop(
                trees_rater(F16, d.stars, d.hero, burst, args.seed), burst, heuristic, args.strategy, LAST)
    print("==== hitl loop simulation: a taste only the pixels show ====")
    print(f"frames {args.images:,} drawn in {int(burst.max()) + 1:,} bursts over {drawn.CAMERAS} cameras, embedded "
          f"(baseline, {V.shape[1]}-d) in {embedded:.0f} s; heroes {int(d.hero.sum())} ({d.hero.mean():.1%}); "
          f"seed {args.seed}; rounds of {ROUND}")
    print(f"{'order':44}" + "".join(f"{f'after {k}':>11}" for k in CHECKPOINTS))
    table = {name: [int(d.hero[sequence[:k]].sum()) for k in CHECKPOINTS] for name, sequence in orders.items()}
    for name, counts in table.items():
        print(f"{name:44}" + "".join(f"{n:>11}" for n in counts))
    without = table[f"loop, detector record only ({args.strategy})"][-1]
    with_vectors = table[f"loop, with the vectors ({args.strategy})"][-1]
    ratio = with_vectors / max(1, without)
    ok = ratio >= TARGET_RATIO
    print(f"at {LAST} reviews: with the vectors {with_vectors} heroes, detector record only {without}: {ratio:.2f}x   "
          f"target >= {TARGET_RATIO}x")
    if compared:
        print("forms, grouped out of fold on 500 random decisions:")
        for name, f in compared.items():
            print(f"  {name:36} hero AUC {f['hero_auc']:.3f}  Spearman {f['spearman']:.3f}  "
                  f"precision@20 {f['precision_at_k']:.2f}  ECE {f['ece']:.3f}")
    print(f"time {time.perf_counter() - started:.0f} s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
