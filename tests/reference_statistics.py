"""The single agreement statistics hitl itself never calls: references the tests check the
batched statistics (:mod:`hitl.analyse.statistics`, :mod:`hitl.analyse.agreement`) and the
published worked examples against. Kept here so that they are not shipped.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hitl.analyse.statistics import (
    Coincidence,
    ContingencyTable,
    finite_or_none,
    hero_statistics,
    hero_table,
    pair_statistic,
    pair_statistics,
    paired_values,
    percentile_ci,
)


def kendall_tau_b(a: Any, b: Any) -> float | None:
    """Kendall's tau-b (ties corrected); None if n < 2 or a rater is constant."""
    return pair_statistic(a, b, "kendall_tau_b")


def pearson(a: Any, b: Any) -> float | None:
    """Pearson's r; None if n < 2 or a rater is constant."""
    return pair_statistic(a, b, "pearson")


def mae(a: Any, b: Any) -> float | None:
    """Mean absolute difference; None if there is no pair."""
    return pair_statistic(a, b, "mae")


def bland_altman(a: Any, b: Any) -> tuple[float | None, float | None, float | None]:
    """(bias = mean of b - a, lower, upper 95% limits of agreement = bias -/+ 1.96 sd of b - a)."""
    a, b = paired_values(a, b)
    if a.size == 0:
        return None, None, None
    tab = ContingencyTable(a, b)
    out = pair_statistics(tab.batch(), tab, ["bias", "loa_low", "loa_high"])
    return finite_or_none(out["bias"]), finite_or_none(out["loa_low"]), finite_or_none(out["loa_high"])


def icc(*columns: Any) -> tuple[float | None, float | None]:
    """(ICC(A,1), ICC(C,1)): two-way, single rater, absolute agreement / consistency (McGraw & Wong).

    ``icc(a, b)`` for two raters; more columns for k raters. Subjects with a missing value are dropped.
    """
    if len(columns) < 2:
        raise ValueError("icc needs at least two raters")
    x = np.column_stack([np.asarray(c, dtype=float).ravel() for c in columns])
    x = x[np.isfinite(x).all(axis=1)]
    if len(columns) == 2:
        if x.shape[0] == 0:
            return None, None
        tab = ContingencyTable(x[:, 0], x[:, 1])
        out = pair_statistics(tab.batch(), tab, ["icc_a1", "icc_c1"])
        return finite_or_none(out["icc_a1"]), finite_or_none(out["icc_c1"])
    n, k = x.shape
    if n < 2:
        return None, None
    grand = x.mean()
    msr = k * ((x.mean(1) - grand) ** 2).sum() / (n - 1)
    msc = n * ((x.mean(0) - grand) ** 2).sum() / (k - 1)
    resid = x - x.mean(1, keepdims=True) - x.mean(0, keepdims=True) + grand
    mse = (resid ** 2).sum() / ((n - 1) * (k - 1))
    den_a = msr + (k - 1) * mse + k * (msc - mse) / n
    den_c = msr + (k - 1) * mse
    return (float((msr - mse) / den_a) if den_a > 0 else None,
            float((msr - mse) / den_c) if den_c > 0 else None)


def cohen_kappa(a: Any, b: Any) -> float | None:
    """Unweighted Cohen's kappa on any categories (pairs with a None/NaN dropped)."""
    a, b = _categorical(a, b)
    if a.size == 0:
        return None
    cats, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
    q = cats.size
    t = np.bincount(inv[:a.size] * q + inv[a.size:], minlength=q * q).reshape(q, q).astype(float)
    n = t.sum()
    chance = (t.sum(1) * t.sum(0)).sum()
    return float((n * np.trace(t) - chance) / (n * n - chance)) if n * n - chance > 0 else None


def gwet_ac1(a: Any, b: Any, categories: Sequence | None = None) -> float | None:
    """Gwet's AC1 for two raters; ``categories`` defaults to those observed ((False, True) for booleans)."""
    a, b = _categorical(a, b)
    if a.size == 0:
        return None
    if categories is None:
        categories = (False, True) if a.dtype == bool and b.dtype == bool else np.unique(np.concatenate([a, b]))
    cats = list(categories)
    q = len(cats)
    if q < 2:
        return None
    n = a.size
    pa = float(np.mean(a == b))
    pi = np.array([((a == c).sum() + (b == c).sum()) / (2 * n) for c in cats])
    pe = float((pi * (1 - pi)).sum() / (q - 1))
    return (pa - pe) / (1 - pe) if pe < 1 else None


def _categorical(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    a, b = list(np.asarray(a, dtype=object).ravel()), list(np.asarray(b, dtype=object).ravel())
    if len(a) != len(b):
        raise ValueError(f"a and b differ in length ({len(a)} vs {len(b)})")

    def missing(v: Any) -> bool:
        return v is None or (isinstance(v, float) and math.isnan(v))

    keep = [i for i in range(len(a)) if not (missing(a[i]) or missing(b[i]))]
    return np.array([a[i] for i in keep]), np.array([b[i] for i in keep])


def precision_recall_f1(pred: Any, truth: Any) -> tuple[float | None, float | None, float | None]:
    """Precision, recall and F1 of boolean predictions against boolean truth (None where undefined)."""
    p, t = _categorical(pred, truth)
    out = hero_statistics(hero_table(p.astype(bool), t.astype(bool))[None])
    return finite_or_none(out["precision"]), finite_or_none(out["recall"]), finite_or_none(out["f1"])


def bootstrap_ci(statistic: Callable[..., float | None], *arrays: Any, resamples: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval of ``statistic(*arrays)``, resampling rows jointly.

    The plain reference method (one call per resample); ``compute_agreement`` gets the same
    intervals in distribution from resampled contingency tables. None when undefined.
    """
    arrays = tuple(np.asarray(x) for x in arrays)
    n = arrays[0].shape[0] if arrays else 0
    if n == 0 or resamples <= 0:
        return None
    rng = np.random.default_rng(seed)
    vals = np.full(resamples, np.nan)
    for i in range(resamples):
        idx = rng.integers(0, n, n)
        v = statistic(*(x[idx] for x in arrays))
        if v is not None:
            vals[i] = v
    ci = percentile_ci(vals, level)
    return None if ci is None else (ci[0], ci[1])


def krippendorff_alpha(matrix: Any, level: str = "interval") -> float | None:
    """Krippendorff's alpha of a raters x units matrix (NaN = missing); level interval/ordinal/nominal.

    None when fewer than two pairable values or no variation at all.
    """
    if level not in ("interval", "ordinal", "nominal"):
        raise ValueError(f"unknown level of measurement {level!r}")
    c = Coincidence(matrix)
    if c.values.size == 0:
        return None
    return c.alpha(level)
