"""Simulation of `hitl compare`: how many comparisons until the fitted order matches a planted one?

    python scripts/bench/bench_pairwise.py [--sizes 100 300 1000] [--spread 10] [--cap-per-item 60] [--seed 0]

For each size n, n images get planted log-strengths spaced evenly over [-spread/2, spread/2]
(default [-5, 5]: neighbours 10 / (n - 1) apart, the best image beats the worst with
p = 0.99995), in a random order. A simulated curator answers every pair by the Bradley-Terry
probability (seeded). Comparisons come in rounds of n/2 pairs, chosen either by
hitl.compare.pairs.next_pairs (adaptive: coverage of 3 per image first, then the pairs of highest
p(1-p)(se_i^2 + se_j^2) under the latest fit) or by random_pairs (uniform; the baseline); never
one pair twice. After each round hitl.compare.strength.fit_bradley_terry refits on everything so
far and Kendall's tau between fitted and planted strengths is measured, until tau reaches 0.9 or
the comparisons reach --cap-per-item per image (n * cap / 2 comparisons: each comparison
involves two images), which prints "not reached".

Target: adaptive needs fewer comparisons than random to reach tau 0.9, at every size.
Exit status: 0 target met, 2 target missed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hitl.compare.pairs import next_pairs, random_pairs  # noqa: E402
from hitl.compare.strength import fit_bradley_terry  # noqa: E402

GOALS = (0.8, 0.9)
MIN_PER_ITEM = 3


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (ties in either, e.g. images never compared, count in neither direction)."""
    sx, sy = np.sign(x[:, None] - x[None, :]), np.sign(y[:, None] - y[None, :])
    concordance = float((sx * sy).sum())
    scale = np.sqrt(float(np.abs(sx).sum()) * float(np.abs(sy).sum()))
    return concordance / scale if scale else 0.0


def simulate(planted: np.ndarray, strategy: str, cap_per_item: int, seed: int) -> dict:
    """Rounds of n/2 pairs until tau 0.9 or the cap: comparisons needed for each goal, rounds, seconds."""
    n = len(planted)
    rng = np.random.default_rng([seed, n, strategy == "adaptive"])  # the curator's coin, per run
    limit, per_round = cap_per_item * n // 2, max(1, n // 2)
    done: set[frozenset[int]] = set()
    outcomes: list[tuple[int, int, float]] = []
    reached: dict[float, int] = {}
    strengths, rounds, tau = None, 0, 0.0
    started = time.perf_counter()
    while len(outcomes) < limit and len(reached) < len(GOALS):
        k, round_seed = min(per_round, limit - len(outcomes)), seed * 100_003 + rounds
        pairs = (next_pairs(strengths, n, k, done, MIN_PER_ITEM, round_seed) if strategy == "adaptive"
                 else random_pairs(n, k, done, round_seed))
        if not pairs:  # every pair shown once
            break
        p_first = 1.0 / (1.0 + np.exp(-(planted[[a for a, _ in pairs]] - planted[[b for _, b in pairs]])))
        wins = rng.random(len(pairs)) < p_first
        for (a, b), won in zip(pairs, wins.tolist()):
            done.add(frozenset((a, b)))
            outcomes.append((a, b, 1.0 if won else 0.0))
        strengths = fit_bradley_terry(n, outcomes)
        rounds += 1
        tau = kendall_tau(strengths.log_strength, planted)
        for goal in GOALS:
            if tau >= goal and goal not in reached:
                reached[goal] = len(outcomes)
    return {"reached": reached, "rounds": rounds, "comparisons": len(outcomes), "tau": tau,
            "seconds": time.perf_counter() - started}


def cell(reached: dict[float, int], goal: float, n: int) -> str:
    if goal not in reached:
        return "not reached"
    return f"{reached[goal]:,} ({2 * reached[goal] / n:.0f}/img)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000], help="numbers of images")
    parser.add_argument("--spread", type=float, default=10.0, help="planted log-strengths span [-spread/2, spread/2]")
    parser.add_argument("--cap-per-item", type=int, default=60, help="stop at this many comparisons per image")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    print("==== hitl compare: adaptive vs random pairs (Bradley-Terry, planted curator) ====")
    print(f"planted log-strengths evenly over [{-args.spread / 2:g}, {args.spread / 2:g}]; rounds of n/2 pairs; "
          f"cap {args.cap_per_item} comparisons per image; seed {args.seed}")
    print(f"{'images':>7} {'pairs':10} {'to tau 0.8':>20} {'to tau 0.9':>20} {'final tau':>10} {'rounds':>7} "
          f"{'time s':>8}")
    ok = True
    for n in args.sizes:
        planted = np.random.default_rng([args.seed, n]).permutation(np.linspace(-args.spread / 2, args.spread / 2, n))
        runs = {strategy: simulate(planted, strategy, args.cap_per_item, args.seed) for strategy in ("adaptive", "random")}
        for strategy, run in runs.items():
            print(f"{n:>7,} {strategy:10} {cell(run['reached'], 0.8, n):>20} {cell(run['reached'], 0.9, n):>20} "
                  f"{run['tau']:>10.3f} {run['rounds']:>7} {run['seconds']:>8.1f}")
        adaptive, random_ = runs["adaptive"]["reached"], runs["random"]["reached"]
        ok &= 0.9 in adaptive and (0.9 not in random_ or adaptive[0.9] < random_[0.9])
    print("target: adaptive reaches tau 0.9 with fewer comparisons than random, at every size "
          "(random 'not reached' counts as more)")
    print(f"time {time.perf_counter() - started:.1f} s")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
