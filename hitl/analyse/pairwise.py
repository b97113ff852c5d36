"""How far the curators' pairwise order agrees with scores: Kendall's tau-b with a bootstrap interval. Pure.

The pairwise order is the Bradley-Terry log-strength of each compared image
(:mod:`hitl.compare.order`); a score is anything per image (the curators' mean stars, a model's
score). Only images that have both count. Tau-b is scipy's (ties corrected on either side, as
:func:`hitl.analyse.statistics.kendall_tau_b`); undefined is None, never NaN. The interval is a
percentile bootstrap that resamples images, seeded per comparison as every interval of the
report is (:func:`hitl.analyse.statistics.percentile_ci`).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import kendalltau

from hitl.analyse.statistics import block_rng, percentile_ci

MIN_IMAGES = 3  # fewer images with both values: "too few", no tau


def kendall_tau(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float | None:
    """Kendall's tau-b of paired values; None when fewer than 2 pairs or one side is constant."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"a and b differ in length ({a.size} vs {b.size})")
    if a.size < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a constant side: scipy warns and says NaN, we say None
        tau = float(kendalltau(a, b, method="asymptotic").statistic)
    return tau if math.isfinite(tau) else None


def tau_interval(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, *, resamples: int = 1000,
                 seed: int = 0, tag: str = "", level: float = 0.95) -> list[float] | None:
    """Percentile bootstrap interval of :func:`kendall_tau`, resampling the pairs (images) jointly.

    ``tag`` names what is compared, so each comparison draws its own resamples from ``seed``.
    None when there are no resamples or fewer than half of them define tau.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if resamples <= 0 or a.size == 0:
        return None
    rng = block_rng(seed, "pairwise-order", tag)
    samples = np.full(resamples, np.nan)
    for r, idx in enumerate(rng.integers(0, a.size, (resamples, a.size))):
        tau = kendall_tau(a[idx], b[idx])
        if tau is not None:
            samples[r] = tau
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
