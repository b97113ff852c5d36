"""How far the curators' pairwise order agrees with scores: Kendall's tau-b with a bootstrap interval. Pure.

The pairwise order is the Bradley-Terry log-strength of each compared image
(:mod:`hitl.compare.order`); a score is anything per image (the curators' mean stars, a model's
score). Only images that have both count. Tau-b is corrected for ties on either side, as scipy's
and :func:`hitl.analyse.statistics.kendall_tau_b` are; undefined is None, never NaN. The interval is
a percentile bootstrap that resamples images, seeded per comparison as every interval of the report
is (:func:`hitl.analyse.statistics.percentile_ci`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from threadpoolctl import threadpool_limits

from hitl.analyse.statistics import CELL_BUDGET, block_rng, finite_or_none, percentile_ci, resampled_tables

MIN_IMAGES = 3  # fewer images with both values: "too few", no tau


def kendall_tau(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Kendall's tau-b of paired values; None when fewer than 2 pairs or one side is constant.
    ValueError when a value is NaN: the pairs with a missing value are the caller's to leave out."""
    a, b = _paired(a, b)
    if a.size < 2:
        return None
    return finite_or_none(tau_b_of_counts(a, b, np.ones((1, a.size))))


def _paired(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b differ in length ({a.size} vs {b.size})")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("a and b hold NaN: pass only the pairs with both values")
    return a, b


def tau_b_of_counts(a: np.ndarray, b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Tau-b of the paired values ``a``, ``b`` (one per image) where row r of ``counts`` (R, images)
    takes image i counts[r, i] times, as a bootstrap resample does; NaN where undefined.

    A pair of images counts counts_i * counts_j times, concordant, discordant or tied as the pair of
    values is, so the numerator of every row is one product with the images' sign matrix (two copies
    of one image are a pair tied on both sides); the ties per side come from the counts per value.
    The work grows with R * images^2: 1,000 resamples of 1,500 images take a quarter of a second."""
    s = np.zeros(len(counts))
    block = max(1, CELL_BUDGET // a.size)  # the sign matrix a block of images at a time
    for start in range(0, a.size, block):
        cols = slice(start, start + block)
        concordance = _order(a, cols) * _order(b, cols)
        s += ((counts @ concordance) * counts[:, cols]).sum(axis=1)
    s /= 2
    total = counts.sum(axis=1)
    n0 = total * (total - 1) / 2
    n1, n2 = _tied_pairs(a, counts), _tied_pairs(b, counts)
    with np.errstate(divide="ignore", invalid="ignore"):
        tau = s / np.sqrt((n0 - n1) * (n0 - n2))
    return np.where((n0 > n1) & (n0 > n2), np.clip(tau, -1.0, 1.0), np.nan)


def _order(values: np.ndarray, cols: slice) -> np.ndarray:
    """+1, 0 or -1: is value i above, level with or below value j (j in ``cols``); compared, not
    subtracted, so that two infinities are level."""
    return (values[:, None] > values[None, cols]).astype(float) - (values[:, None] < values[None, cols])


def _tied_pairs(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per row of ``counts``, the pairs of taken images with equal values."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])  # where each value's run begins
    per_value = np.add.reduceat(counts[:, order], starts, axis=1)
    return (per_value * (per_value - 1)).sum(axis=1) / 2


def tau_interval(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, resamples: int = 1000,
                 seed: int = 0, tag: str = "", level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of :func:`kendall_tau`, resampling the pairs (images) jointly.

    ``tag`` names what is compared, so each comparison draws its own resamples from ``seed``.
    None when there are no resamples or fewer than half of them define tau.
    """
    a, b = _paired(a, b)
    if resamples <= 0 or a.size == 0:
        return None
    rng = block_rng(seed, "pairwise-order", tag)
    # each image its own cell: every batch holds how many times each resample took each image
    batches = resampled_tables(np.ones(a.size), resamples, rng, cells=np.arange(a.size))
    # one thread: BLAS's own threads double the CPU of these products without shortening them
    with threadpool_limits(limits=1):
        samples = np.concatenate([tau_b_of_counts(a, b, counts) for counts in batches])
    return percentile_ci(samples, level)


def order_agreement(strengths: Mapping[str, float], scores: Mapping[str, float | None], name: str, *,
                    resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """Tau-b between the strengths and ``scores`` (image_id -> value) over the images with both.

    Returns against (``name``), n, tau, ci ([low, high] or None) and note (why there is no tau,
    in words; None when there is one).
    """
    common = sorted(i for i in strengths if scores.get(i) is not None and math.isfinite(scores[i]))
    out: dict = {"against": name, "n": len(common), "tau": None, "ci": None, "note": None}
    if len(common) < MIN_IMAGES:
        out["note"] = f"too few: {len(common)} of the compared images have {name}; at least {MIN_IMAGES} are needed"
        return out
    a = np.array([strengths[i] for i in common])
    b = np.array([float(scores[i]) for i in common])  # type: ignore[arg-type]
    out["tau"] = kendall_tau(a, b)
    if out["tau"] is None:
        out["note"] = "undefined: every one of these images has the same " + (
            "strength" if np.unique(a).size == 1 else f"value of {name}")
        return out
    out["ci"] = tau_interval(a, b, resamples=resamples, seed=seed, tag=name, level=level)
    return out


def pairwise_agreement(strengths: Mapping[str, float], references: Mapping[str, Mapping[str, float | None]], *,
                       resamples: int = 1000, seed: int = 0, level: float = 0.95) -> list[dict]:
    """:func:`order_agreement` of the strengths with each of ``references`` (name -> scores), in their order."""
    return [order_agreement(strengths, scores, name, resamples=resamples, seed=seed, level=level)
            for name, scores in references.items()]
