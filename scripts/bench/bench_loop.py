"""Simulation of the loop: how many heroes do curators find in their first reviews, by each order?

    python scripts/bench/bench_loop.py [--images 20000] [--seed 0] [--taste default] [--strategy hero]

A synthetic collection (detector records for --images frames in bursts, over 8 cameras and 10
species of skewed frequency) and a hidden curator taste over several of the detector's
features plus noise decide which frames are heroes (about 5%) and how many stars each gets.
Two synthetic models score every frame, each following the taste imperfectly and differently
(one sees size and centring but not cut-offs; the other sees cut-offs and species, noisily).
Curators review in rounds of 100, up to 1,000, in the order of: random; the selection's own
heuristic; each single model's score; and the loop: after each round `learn` (the learned
rater, hitl.learn.model, on META features and both models' scores) and `next` (its strategy,
hitl.learn.next) choose the next round, at most one frame per burst a round.

Target: at 500 reviews the loop finds at least 1.5x the heroes of the best single model's
order, and its expected calibration error on held-out frames is at most 0.05.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hitl.learn import model as M  # noqa: E402
from hitl.learn.features import META, Features, hour_features  # noqa: E402
from hitl.learn.next import order  # noqa: E402
from hitl.select import strata  # noqa: E402

ROUND, LAST, CHECKPOINTS = 100, 1000, (100, 300, 500, 1000)
TARGET_RATIO, TARGET_ECE = 1.5, 0.05
# the hidden taste: weights of (log area, centrality, cut off, detector confidence, rarity, night)
TASTES = {
    "default": (1.0, 1.2, -1.6, 1.0, -0.8, 0.0),
    "night-lover": (0.8, 0.8, -1.2, 0.6, -0.4, 0.9),
}


def collection(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Detector-derived features of ``n`` frames in bursts of 1-6 over 8 cameras."""
    burst = np.repeat(np.arange(n), rng.integers(1, 7, n))[:n]
    bursts = burst.max() + 1
    location = rng.integers(0, 8, bursts)[burst]
    species_of_burst = rng.choice(10, bursts, p=np.array([30, 20, 15, 10, 8, 6, 5, 3, 2, 1]) / 100)
    species = species_of_burst[burst]
    share = np.bincount(species_of_burst, minlength=10) / bursts
    hour = rng.integers(0, 24, bursts)[burst]
    jitter = lambda scale: rng.normal(0, scale, n)  # noqa: E731 - frames of a burst differ a little
    area = np.clip(np.exp(rng.normal(-3.2, 1.0, bursts)[burst] + jitter(0.25)), 0.002, 0.9)
    return {
        "burst": burst, "location": location, "species": species, "rarity": share[species],
        "area": area, "centrality": np.clip(rng.uniform(0.1, 1.0, bursts)[burst] + jitter(0.08), 0, 1),
        "cut_off": (rng.random(n) < np.where(area > 0.2, 0.45, 0.15)).astype(float),
        "max_conf": np.clip(rng.beta(6, 2, n), 0.3, 1.0), "night": ((hour >= 19) | (hour < 6)).astype(float),
        "hour": hour, "n_animals": rng.choice([1, 1, 1, 2, 3], n).astype(float), "n_species": np.ones(n),
    }


def taste(c: dict[str, np.ndarray], weights: tuple, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The curators' utility of each frame, their stars (1-10) and hero decision (top ~5%)."""
    w = weights
    z = lambda x: (x - x.mean()) / (x.std() or 1)  # noqa: E731
    signal = (w[0] * z(np.log(c["area"])) + w[1] * z(c["centrality"]) + w[2] * c["cut_off"] + w[3] * z(c["max_conf"])
              + w[4] * z(c["rarity"]) + w[5] * c["night"])
    utility = signal + rng.normal(0, 0.6, len(signal))
    stars = np.clip(np.rint(5.5 + 1.6 * z(utility)), 1, 10)
    hero = (utility >= np.quantile(utility, 0.95)).astype(np.int8)
    return signal, stars, hero


def models(c: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two models' 0-10 scores: each sees part of the taste, with its own noise."""
    z = lambda x: (x - x.mean()) / (x.std() or 1)  # noqa: E731
    a = z(np.log(c["area"])) + 0.8 * z(c["centrality"]) + rng.normal(0, 1.0, len(c["area"]))
    b = -1.4 * c["cut_off"] + 0.5 * z(c["max_conf"]) - 0.6 * z(c["rarity"]) + rng.normal(0, 1.2, len(c["area"]))
    return np.clip(5 + 1.5 * z(a), 0, 10), np.clip(5 + 1.5 * z(b), 0, 10)


def features(c: dict[str, np.ndarray], score_a: np.ndarray, score_b: np.ndarray) -> Features:
    """What the learned rater sees: the META columns (detector record) and both models' scores."""
    hour_sin, hour_cos = hour_features(c["hour"])
    columns = {"area": c["area"], "cut_off": c["cut_off"], "centrality": c["centrality"], "n_animals": c["n_animals"],
               "n_species": c["n_species"], "max_conf": c["max_conf"], "night": c["night"], "rarity": c["rarity"],
               "hour_sin": hour_sin, "hour_cos": hour_cos, "species": c["species"].astype(float),
               "location": c["location"].astype(float)}
    names = [name for name, _ in META] + ["score:a", "score:b"]
    return Features(names, np.column_stack([columns[name] for name, _ in META] + [score_a, score_b]))


def fixed_order(score: np.ndarray, burst: np.ndarray) -> np.ndarray:
    """Highest score first, at most one frame per burst until every burst has had its turn."""
    ranked = np.argsort(-score, kind="mergesort")
    first = np.zeros(len(score), dtype=bool)
    _, firsts = np.unique(burst[ranked], return_index=True)
    first[firsts] = True
    return np.concatenate([ranked[first], ranked[~first]])


def the_loop(rate: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, Any]], burst: np.ndarray, start: np.ndarray,
             strategy: str, last: int = LAST) -> tuple[np.ndarray, Any]:
    """Reviews in rounds: the first from ``start``'s order, then learn on everything reviewed, next.
    ``rate(reviewed, rest)``: the rest's probabilities of hero by a rater fitted on the reviewed
    frames, and that rater."""
    reviewed = list(fixed_order(start, burst)[:ROUND])
    fitted = None
    while len(reviewed) < last:
        taken = np.array(reviewed)
        rest = np.setdiff1d(np.arange(len(burst)), taken)
        p, fitted = rate(taken, rest)
        used, chosen = set(burst[taken].tolist()), []
        for row, _ in order(p, strategy):
            b = burst[rest[row]]
            if b in used:
                continue
            used.add(b)
            chosen.append(rest[row])
            if len(chosen) == ROUND:
                break
        reviewed += chosen
    return np.array(reviewed[:last]), fitted


def trees_rater(F: Features, stars: np.ndarray, hero: np.ndarray, burst: np.ndarray, seed: int):
    """``the_loop``'s ``rate`` for the learned rater's trees on ``F``."""
    def rate(taken: np.ndarray, rest: np.ndarray) -> tuple[np.ndarray, M.Fitted]:
        fitted = M.fit(Features(F.names, F.X[taken]), stars[taken], hero[taken], burst[taken], seed)
        return fitted.predict(F.X[rest])[1], fitted
    return rate


def found(sequence: np.ndarray, hero: np.ndarray) -> list[int]:
    return [int(hero[sequence[:k]].sum()) for k in CHECKPOINTS]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--taste", choices=sorted(TASTES), default="default")
    parser.add_argument("--strategy", choices=("hero", "uncertain", "mixed"), default="hero")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    c = collection(args.images, rng)
    _, stars, hero = taste(c, TASTES[args.taste], rng)
    score_a, score_b = models(c, rng)
    heuristic = strata.quality_score(c["area"], c["centrality"], c["max_conf"], c["cut_off"].astype(bool),
                                     c["night"].astype(bool))
    F = features(c, score_a, score_b)
    orders = {"random": rng.permutation(args.images), "selection heuristic": fixed_order(heuristic, c["burst"]),
              "model A's score": fixed_order(score_a, c["burst"]), "model B's score": fixed_order(score_b, c["burst"])}
    best_single = max(("model A's score", "model B's score"), key=lambda k: found(orders[k], hero)[2])
    loop, fitted = the_loop(trees_rater(F, stars, hero, c["burst"], args.seed), c["burst"],
                            score_a if best_single == "model A's score" else score_b, args.strategy)
    orders[f"the loop (learn -> next, {args.strategy})"] = loop
    held_out = np.setdiff1d(rng.permutation(args.images)[:5000], loop)
    ece = M.expected_calibration_error(fitted.predict(F.X[held_out])[1], hero[held_out] == 1)
    print("==== hitl learn/next loop simulation ====")
    print(f"images {args.images:,} in {c['burst'].max() + 1:,} bursts; heroes {int(hero.sum())} ({hero.mean():.1%}); "
          f"taste {args.taste}; seed {args.seed}")
    print(f"{'order':42}" + "".join(f"{f'after {k}':>12}" for k in CHECKPOINTS))
    table = {name: found(seq, hero) for name, seq in orders.items()}
    for name, counts in table.items():
        print(f"{name:42}" + "".join(f"{n:>12}" for n in counts))
    loop_500, single_500 = table[list(table)[-1]][2], table[best_single][2]
    ratio = loop_500 / max(1, single_500)
    ok = ratio >= TARGET_RATIO and ece is not None and ece <= TARGET_ECE
    print(f"at 500 reviews: the loop {loop_500} vs {best_single} {single_500}: {ratio:.2f}x   "
          f"target >= {TARGET_RATIO}x")
    print(f"held-out calibration error of the final learned rater: {ece:.3f} on {len(held_out):,} frames   "
          f"target <= {TARGET_ECE}")
    print(f"time {time.perf_counter() - started:.1f} s")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
