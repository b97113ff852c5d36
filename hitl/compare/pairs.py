"""Which pairs of images a curator compares next. Pure: plain data in and out.

``next_pairs`` fills a batch in two passes. First, coverage: while an item has been compared
fewer than ``min_per_item`` times (counting the pairs already chosen for this batch), the least
compared such item is paired with another item short of comparisons if there is one (the shorter the
better), and among those with the one nearest it in estimated log-strength (with no estimate yet:
a random one). Then information: every remaining
pair (i, j) is scored by

    p (1 - p) * (se_i^2 + se_j^2),   p = P(i beats j) under the current fit,

and the highest-scoring pairs are taken. p (1 - p) is the Fisher information one comparison
gives about t_i - t_j (largest for evenly matched items, whose order is least settled), and
se_i^2 + se_j^2 how uncertain that difference still is. Two rules hold throughout: no pair in
``done`` (already shown to this curator) and none twice in a batch; and no item more than
ceil(2 * n_pairs / n_items) + 1 times in one batch, so that one batch spreads over the set
instead of spending itself on a few close items. Ties are broken by a seeded generator, so a
call is deterministic for its seed. A batch is short only when the new pairs run out (or those
left all involve items the spread rule has filled).
"""
from __future__ import annotations

import math

import numpy as np

from hitl.compare.strength import Strengths


def _partners(n_items: int, done: set[frozenset[int]]) -> list[set[int]]:
    """For each item, the items it must not be paired with again (from ``done``)."""
    partners: list[set[int]] = [set() for _ in range(n_items)]
    for pair in done:
        if len(pair) != 2:  # not a pair of two items: nothing to exclude
            continue
        a, b = tuple(pair)
        if 0 <= a < n_items and 0 <= b < n_items:
            partners[a].add(b)
            partners[b].add(a)
    return partners


def _coverage(counts: np.ndarray, estimate: np.ndarray | None, partners: list[set[int]], used: np.ndarray,
              cap: int, n_pairs: int, min_per_item: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The first pass: pairs for items compared fewer than ``min_per_item`` times."""
    n = len(counts)
    counts = counts.astype(float).copy()
    tiebreak = rng.random(n)
    out: list[tuple[int, int]] = []
    stuck = np.zeros(n, dtype=bool)  # items with no partner left in this batch
    while len(out) < n_pairs:
        want = (counts < min_per_item) & (used < cap) & ~stuck
        if not want.any():
            break
        a = int(np.flatnonzero(want)[np.lexsort((tiebreak[want], counts[want]))[0]])
        free = used < cap
        free[a] = False
        free[list(partners[a])] = False
        if not free.any():
            stuck[a] = True
            continue
        candidates = np.flatnonzero(free)
        # a partner short of comparisons too (the shorter the better) serves two items at once;
        # among equally short ones, the nearest in estimate (or a random one with no estimate)
        closeness = rng.random(len(candidates)) if estimate is None else np.abs(estimate[candidates] - estimate[a])
        key = (tiebreak[candidates], closeness, np.minimum(counts[candidates], min_per_item))
        b = int(candidates[np.lexsort(key)[0]])
        out.append((a, b) if a < b else (b, a))
        partners[a].add(b)
        partners[b].add(a)
        used[[a, b]] += 1
        counts[[a, b]] += 1
    return out


def _informative(strengths: Strengths | None, partners: list[set[int]], used: np.ndarray, cap: int,
                 n_pairs: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The second pass: the highest p(1-p) * (se_i^2 + se_j^2) pairs (random order with no fit)."""
    n = len(used)
    if n_pairs <= 0 or n < 2:
        return []
    i, j = np.triu_indices(n, k=1)
    if strengths is None:
        score = np.zeros(len(i))
    else:
        t, var = strengths.log_strength, strengths.se ** 2
        p = 1.0 / (1.0 + np.exp(-(t[i] - t[j])))
        score = p * (1 - p) * (var[i] + var[j])
    order = np.lexsort((rng.random(len(i)), -score))
    out: list[tuple[int, int]] = []
    for k in order.tolist():
        a, b = int(i[k]), int(j[k])
        if used[a] >= cap or used[b] >= cap or b in partners[a]:
            continue
        out.append((a, b))
        partners[a].add(b)
        partners[b].add(a)
        used[[a, b]] += 1
        if len(out) == n_pairs:
            break
    return out


def next_pairs(strengths: Strengths | None, n_items: int, n_pairs: int, done: set[frozenset[int]],
               min_per_item: int = 3, seed: int = 0, never: set[frozenset[int]] = frozenset()) -> list[tuple[int, int]]:
    """The next ``n_pairs`` pairs (i < j) for a curator to compare; the rule is the module docstring's.

    ``strengths``: the current fit of these ``n_items`` items (None before any comparison; then
    comparisons so far are counted from ``done``). ``done``: pairs already shown to this curator.
    ``never``: pairs not to show, not counted as comparisons (two near-duplicates, say).
    """
    if strengths is not None and strengths.n_items != n_items:
        raise ValueError(f"strengths are for {strengths.n_items} items, not {n_items}")
    if n_pairs <= 0 or n_items < 2:
        return []
    rng = np.random.default_rng(seed)
    partners = _partners(n_items, set(done) | set(never))
    if strengths is not None:
        counts = np.asarray(strengths.n_compared)
        estimate = np.asarray(strengths.log_strength, dtype=float)
    else:
        counts = np.array([len(p) for p in _partners(n_items, done)])
        estimate = None
    cap = math.ceil(2 * n_pairs / n_items) + 1
    used = np.zeros(n_items, dtype=int)
    out = _coverage(counts, estimate, partners, used, cap, n_pairs, min_per_item, rng)
    return out + _informative(strengths, partners, used, cap, n_pairs - len(out), rng)


def random_pairs(n_items: int, n_pairs: int, done: set[frozenset[int]], seed: int = 0) -> list[tuple[int, int]]:
    """The baseline: ``n_pairs`` pairs (i < j) drawn uniformly from those not in ``done``, none twice."""
    if n_pairs <= 0 or n_items < 2:
        return []
    rng = np.random.default_rng(seed)
    i, j = np.triu_indices(n_items, k=1)
    seen = np.array([min(p) * n_items + max(p) for p in done if len(p) == 2 and max(p) < n_items], dtype=np.int64)
    fresh = np.flatnonzero(~np.isin(i.astype(np.int64) * n_items + j, seen))
    take = rng.choice(fresh, size=min(n_pairs, len(fresh)), replace=False)
    return [(int(i[k]), int(j[k])) for k in take]
