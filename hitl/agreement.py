"""Agreement statistics: how far the model scores can be trusted against the curators.

Pure functions: plain data in (the long table of ``hitl.reviews.long_table``), plain data out.
Undefined statistics are ``None`` (never NaN), with a note in words saying why.

Speed: scores take few distinct values, so every two-rater statistic is computed from the
contingency table of the two raters' value levels (L_a x L_b cells) instead of per image. A
bootstrap resample of images only changes how many images fall into each cell, and those cell
counts follow a multinomial distribution with the observed cell shares (exactly the distribution
that resampling images gives), so a resample costs O(cells), not O(images). Krippendorff's alpha
is computed from the coincidence matrix; its bootstrap reweights units.

References for the formulas: Spearman / Kendall tau-b / Pearson (textbook, ties by midranks);
Bland & Altman (1986) limits of agreement; Cohen (1960, 1968) kappa and weighted kappa;
McGraw & Wong (1996) ICC(A,1) and ICC(C,1); Krippendorff (2011) "Computing Krippendorff's
Alpha-Reliability"; Gwet (2008) AC1; bands for words after Landis & Koch (1977).
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Iterable, Sequence
from itertools import combinations
from typing import Any

import numpy as np

PAIR_STATS = ("spearman", "kendall_tau_b", "pearson", "mae", "bias", "loa_low", "loa_high", "qwk",
              "icc_a1", "icc_c1")
SUBSET_STATS = ("spearman", "mae", "qwk")
HERO_STATS = ("percent_agreement", "cohen_kappa", "gwet_ac1", "precision", "recall", "f1")
ALPHA_LEVELS = ("interval", "ordinal")
LOA_Z = 1.96  # Bland & Altman's 95% limits
CELL_BUDGET = 2_000_000  # table cells held at once while bootstrapping (bounds memory, ~16 MB a temporary)
CONSENSUS = "humans"
READING_MIN_N = 30  # a per-species figure on fewer images is too noisy to single out in a sentence
BANDS = ((0.8, "almost perfect"), (0.6, "substantial"), (0.4, "moderate"), (0.2, "fair"), (0.0, "slight"))
CONVENTION = ("Words for agreement follow Landis & Koch (1977): below 0 poor, 0-0.2 slight, 0.2-0.4 fair, "
              "0.4-0.6 moderate, 0.6-0.8 substantial, above 0.8 almost perfect; they are applied to "
              "kappa, alpha, ICC and Spearman alike.")


# ---------------------------------------------------------------------------------------------
# Tables and batched statistics (the fast path; the public single statistics use it too)
# ---------------------------------------------------------------------------------------------

def _paired(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Float arrays of the pairs where both values are present (NaN/None = missing)."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b differ in length ({a.size} vs {b.size})")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


class _Table:
    """Contingency table of two raters' value levels, plus the QWK bin of each level."""

    def __init__(self, a: np.ndarray, b: np.ndarray, labels: Sequence[int] | None = None):
        self.va, ia = np.unique(a, return_inverse=True)
        self.vb, ib = np.unique(b, return_inverse=True)
        la, lb = self.va.size, self.vb.size
        self.n = int(a.size)
        self.cells = ia * lb + ib  # each image's cell
        self.counts = np.bincount(self.cells, minlength=la * lb).astype(float).reshape(la, lb)
        self.labels = None if labels is None else _labels(labels)
        if self.labels is not None:
            self.qa, self.qb = _bins(self.va, self.labels), _bins(self.vb, self.labels)

    def batch(self) -> np.ndarray:
        return self.counts[None]


def _labels(labels: Sequence[int]) -> np.ndarray:
    out = np.unique(np.asarray(list(labels), dtype=float))
    if out.size == 0 or not np.all(out == np.round(out)):
        raise ValueError("labels must be a non-empty sequence of integers")
    return out


def _bins(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Index of the label each value falls in: rounded half up (7.5 -> 8), clipped, nearest label."""
    r = np.clip(np.floor(values + 0.5), labels[0], labels[-1])
    return np.abs(r[:, None] - labels[None, :]).argmin(axis=1)


def _midranks(marg: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Average ranks of each level from level counts (R, L), centred on the mean rank."""
    cum = np.cumsum(marg, axis=1)
    return cum - (marg - 1) / 2 - ((n + 1) / 2)[:, None]


def _weighted_corr(t: np.ndarray, ra: np.ndarray, cb: np.ndarray, xa: np.ndarray, xb: np.ndarray,
                   n: np.ndarray) -> np.ndarray:
    """Pearson correlation of level values xa (La or R x La) and xb weighted by the tables t."""
    xa = np.broadcast_to(xa, ra.shape)
    xb = np.broadcast_to(xb, cb.shape)
    ca = xa - ((ra * xa).sum(1) / n)[:, None]
    cbb = xb - ((cb * xb).sum(1) / n)[:, None]
    cov = (np.matmul(t, cbb[:, :, None])[:, :, 0] * ca).sum(1)
    den = np.sqrt((ra * ca * ca).sum(1) * (cb * cbb * cbb).sum(1))
    return np.clip(cov / den, -1.0, 1.0)


def _kendall_tau_b(t: np.ndarray, ra: np.ndarray, cb: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Tau-b from tables: concordant minus discordant pairs via 2-D cumulative sums, ties from marginals."""
    below = np.cumsum(t[:, ::-1, :], axis=1)[:, ::-1, :] - t  # images in strictly higher a-levels
    run = np.cumsum(below, axis=2)
    higher_b = run[:, :, -1:] - run  # ... and strictly higher b-level: concordant
    lower_b = run - below  # ... and strictly lower b-level: discordant
    s = (t * (higher_b - lower_b)).sum(axis=(1, 2))
    n0 = n * (n - 1) / 2
    n1 = (ra * (ra - 1)).sum(1) / 2
    n2 = (cb * (cb - 1)).sum(1) / 2
    return np.clip(s / np.sqrt((n0 - n1) * (n0 - n2)), -1.0, 1.0)


def _pair_batch(t: np.ndarray, tab: _Table, want: Iterable[str]) -> dict[str, np.ndarray]:
    """Every wanted pairwise statistic for a batch of tables t (R, La, Lb); NaN where undefined."""
    want = set(want)
    out: dict[str, np.ndarray] = {}
    n = t.sum(axis=(1, 2))
    ra, cb = t.sum(2), t.sum(1)
    varying = ((ra > 0).sum(1) > 1) & ((cb > 0).sum(1) > 1) & (n >= 2)
    d = tab.vb[None, :] - tab.va[:, None]  # b - a for every cell
    with np.errstate(divide="ignore", invalid="ignore"):
        if "pearson" in want:
            out["pearson"] = _weighted_corr(t, ra, cb, tab.va, tab.vb, n)
        if "spearman" in want:
            out["spearman"] = _weighted_corr(t, ra, cb, _midranks(ra, n), _midranks(cb, n), n)
        if "kendall_tau_b" in want:
            out["kendall_tau_b"] = _kendall_tau_b(t, ra, cb, n)
        for k in ("pearson", "spearman", "kendall_tau_b"):
            if k in out:
                out[k] = np.where(varying, out[k], np.nan)
        if "mae" in want:
            out["mae"] = np.where(n >= 1, (t * np.abs(d)).sum(axis=(1, 2)) / n, np.nan)
        if want & {"bias", "loa_low", "loa_high", "icc_a1", "icc_c1"}:
            bias = (t * d).sum(axis=(1, 2)) / n
            ssd = (t * (d[None] - bias[:, None, None]) ** 2).sum(axis=(1, 2))  # squared deviations of b - a
            sd = np.where(n >= 2, np.sqrt(ssd / (n - 1)), np.nan)
            out["bias"] = np.where(n >= 1, bias, np.nan)
            out["loa_low"], out["loa_high"] = bias - LOA_Z * sd, bias + LOA_Z * sd
            # Two-way ANOVA with k = 2: rows from the sums a + b, residuals from the differences.
            s = tab.va[:, None] + tab.vb[None, :]
            sbar = (t * s).sum(axis=(1, 2)) / n
            msr = (t * (s[None] - sbar[:, None, None]) ** 2).sum(axis=(1, 2)) / (2 * (n - 1))
            mse = ssd / (2 * (n - 1))
            msc = n * bias ** 2 / 2
            num = msr - mse
            den_c = msr + mse
            den_a = msr + mse + 2 * (msc - mse) / n
            ok = n >= 2
            out["icc_c1"] = np.where(ok & (den_c > 0), num / den_c, np.nan)
            out["icc_a1"] = np.where(ok & (den_a > 0), num / den_a, np.nan)
        if "qwk" in want:
            out["qwk"] = _qwk_batch(t, tab, n)
    return {k: out[k] for k in want}


def _qwk_batch(t: np.ndarray, tab: _Table, n: np.ndarray) -> np.ndarray:
    q = tab.labels.size
    ma = np.zeros((tab.va.size, q))
    ma[np.arange(tab.va.size), tab.qa] = 1
    mb = np.zeros((tab.vb.size, q))
    mb[np.arange(tab.vb.size), tab.qb] = 1
    tq = np.matmul(np.matmul(ma.T[None], t), mb)  # (R, Q, Q) counts by label bin
    idx = np.arange(q, dtype=float)
    w = (idx[:, None] - idx[None, :]) ** 2  # weights on label positions, as Cohen (1968) and sklearn
    expected = tq.sum(2)[:, :, None] * tq.sum(1)[:, None, :] / n[:, None, None]
    num = (w * tq).sum(axis=(1, 2))
    den = (w * expected).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, 1 - num / den, np.nan)


def _hero_batch(t: np.ndarray) -> dict[str, np.ndarray]:
    """Binary agreement from tables t (R, 2, 2) indexed [prediction, truth], 0 = no, 1 = yes."""
    tn, fn, fp, tp = t[:, 0, 0], t[:, 0, 1], t[:, 1, 0], t[:, 1, 1]
    n = tn + fn + fp + tp
    p1, t1 = fp + tp, fn + tp  # predicted yes, truly yes
    chance = p1 * t1 + (n - p1) * (n - t1)  # n^2 times Cohen's expected agreement
    with np.errstate(divide="ignore", invalid="ignore"):
        pi = (p1 + t1) / (2 * n)
        pe_ac1 = 2 * pi * (1 - pi)  # Gwet: sum over the 2 categories of pi_k (1 - pi_k), / (Q - 1) = 1
        pa = (tp + tn) / n
        return {
            "percent_agreement": pa,
            "cohen_kappa": np.where(n * n - chance > 0, (n * (tp + tn) - chance) / (n * n - chance), np.nan),
            "gwet_ac1": np.where(n > 0, (pa - pe_ac1) / (1 - pe_ac1), np.nan),
            "precision": np.where(p1 > 0, tp / p1, np.nan),
            "recall": np.where(t1 > 0, tp / t1, np.nan),
            "f1": np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), np.nan),
        }


def _resampled_tables(counts: np.ndarray, resamples: int, rng: np.random.Generator,
                      cells: np.ndarray | None = None):
    """Yield batches (r, *counts.shape) of bootstrap tables of the same n as ``counts``.

    Either a multinomial draw over the occupied cells (cost ~ cells per resample) or, when
    ``cells`` (each image's cell) is given and the images are few, a resample of images
    counted per cell (cost ~ images). Both have the same distribution; the cheaper is used.
    """
    flat = counts.ravel()
    n = int(round(flat.sum()))
    nz = np.flatnonzero(flat)
    by_image = cells is not None and n < 12 * nz.size  # numpy: ~12x more per binomial than per index
    p = flat[nz] / flat[nz].sum()
    chunk = max(1, CELL_BUDGET // max(1, flat.size, n if by_image else 0))
    done = 0
    while done < resamples:
        r = min(chunk, resamples - done)
        if by_image:
            picked = cells[rng.integers(0, n, (r, n))] + (np.arange(r) * flat.size)[:, None]
            out = np.bincount(picked.ravel(), minlength=r * flat.size).astype(float).reshape(r, flat.size)
        else:
            out = np.zeros((r, flat.size))
            out[:, nz] = rng.multinomial(n, p, size=r)
        yield out.reshape((r, *counts.shape))
        done += r


def _percentile_ci(samples: np.ndarray, level: float = 0.95) -> list[float] | None:
    """Percentile interval of the defined resamples; None when fewer than half are defined."""
    ok = samples[np.isfinite(samples)]
    if samples.size == 0 or ok.size < max(2, samples.size / 2):
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(ok, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _rng(seed: int, *parts: str) -> np.random.Generator:
    """A generator per statistic block, so its interval does not depend on what else is computed."""
    return np.random.default_rng([int(seed) % 2 ** 63, zlib.crc32("|".join(parts).encode())])


def _scalar(x: np.ndarray | float) -> float | None:
    v = float(np.asarray(x).ravel()[0])
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------------------------
# Public single statistics (numpy arrays in, float or None out; NaN/None pairs are dropped)
# ---------------------------------------------------------------------------------------------

def _one(a: Any, b: Any, stat: str, labels: Sequence[int] | None = None) -> float | None:
    a, b = _paired(a, b)
    if a.size == 0:
        return None
    tab = _Table(a, b, labels)
    return _scalar(_pair_batch(tab.batch(), tab, [stat])[stat])


def spearman(a: Any, b: Any) -> float | None:
    """Spearman's rho (Pearson correlation of midranks); None if n < 2 or a rater is constant."""
    return _one(a, b, "spearman")


def kendall_tau_b(a: Any, b: Any) -> float | None:
    """Kendall's tau-b (ties corrected); None if n < 2 or a rater is constant."""
    return _one(a, b, "kendall_tau_b")


def pearson(a: Any, b: Any) -> float | None:
    """Pearson's r; None if n < 2 or a rater is constant."""
    return _one(a, b, "pearson")


def mae(a: Any, b: Any) -> float | None:
    """Mean absolute difference; None if there is no pair."""
    return _one(a, b, "mae")


def bland_altman(a: Any, b: Any) -> tuple[float | None, float | None, float | None]:
    """(bias = mean of b - a, lower, upper 95% limits of agreement = bias -/+ 1.96 sd of b - a)."""
    a, b = _paired(a, b)
    if a.size == 0:
        return None, None, None
    tab = _Table(a, b)
    out = _pair_batch(tab.batch(), tab, ["bias", "loa_low", "loa_high"])
    return _scalar(out["bias"]), _scalar(out["loa_low"]), _scalar(out["loa_high"])


def quadratic_weighted_kappa(a: Any, b: Any, labels: Sequence[int] = tuple(range(0, 11))) -> float | None:
    """Cohen's kappa with quadratic weights on integer bins (rounded half up, clipped to labels)."""
    return _one(a, b, "qwk", labels)


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
        tab = _Table(x[:, 0], x[:, 1])
        out = _pair_batch(tab.batch(), tab, ["icc_a1", "icc_c1"])
        return _scalar(out["icc_a1"]), _scalar(out["icc_c1"])
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
    out = _hero_batch(_hero_table(p.astype(bool), t.astype(bool))[None])
    return _scalar(out["precision"]), _scalar(out["recall"]), _scalar(out["f1"])


def _hero_table(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    return np.bincount(pred.astype(int) * 2 + truth.astype(int), minlength=4).reshape(2, 2).astype(float)


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
    ci = _percentile_ci(vals, level)
    return None if ci is None else (ci[0], ci[1])


# ---------------------------------------------------------------------------------------------
# Krippendorff's alpha from the coincidence matrix
# ---------------------------------------------------------------------------------------------

class _Coincidence:
    """Units' contributions to the coincidence matrix, kept as (unit, cell, weight) entries.

    A unit with m pairable values adds each ordered pair of its values with weight 1 / (m - 1);
    entries hold the upper triangle and the diagonal, the lower half follows by symmetry.
    """

    def __init__(self, matrix: Any):
        x = np.asarray(matrix, dtype=float)
        if x.ndim != 2:
            raise ValueError("reliability data must be a raters x units matrix")
        present = np.isfinite(x)
        m = present.sum(0)
        keep = m >= 2  # only pairable values count
        x, present, m = x[:, keep], present[:, keep], m[keep]
        self.n_units, self.n_raters = int(keep.sum()), int(present.any(axis=1).sum())
        r, u = np.nonzero(present)
        self.values, v = np.unique(x[r, u], return_inverse=True)
        nv = self.values.size
        keys, cnt = np.unique(u.astype(np.int64) * nv + v, return_counts=True)  # sorted by unit, value
        eu, ev, cnt = keys // max(nv, 1), keys % max(nv, 1), cnt.astype(float)
        inv = 1.0 / np.maximum(m - 1, 1)
        diag = cnt > 1
        units, cells, weights = [eu[diag]], [ev[diag] * (nv + 1)], [cnt[diag] * (cnt[diag] - 1) * inv[eu[diag]]]
        k = 1
        while k < eu.size:  # entries k apart within one unit: two different values of that unit
            i = np.flatnonzero(eu[k:] == eu[:-k])
            if i.size == 0:
                break
            j = i + k
            units.append(eu[i])
            cells.append(ev[i] * nv + ev[j])
            weights.append(cnt[i] * cnt[j] * inv[eu[i]])
            k += 1
        self.unit = np.concatenate(units)
        self.cell = np.concatenate(cells)
        self.weight = np.concatenate(weights)

    def matrix(self, unit_weights: np.ndarray | None = None) -> np.ndarray:
        nv = self.values.size
        w = self.weight if unit_weights is None else self.weight * unit_weights[self.unit]
        half = np.bincount(self.cell, weights=w, minlength=nv * nv).reshape(nv, nv)
        return half + half.T - np.diag(np.diag(half))

    def alpha(self, level: str, o: np.ndarray | None = None) -> float | None:
        return _alpha_from(self.matrix() if o is None else o, self.values, level)


def _alpha_from(o: np.ndarray, values: np.ndarray, level: str) -> float | None:
    """alpha = 1 - (n - 1) * sum(o * d2) / sum(n_c n_k d2) for the level's squared distance d2."""
    nc = o.sum(1)
    n = nc.sum()
    if n < 2:
        return None
    if level == "nominal":
        do, de = n - np.trace(o), n * n - (nc * nc).sum()
    else:
        if level == "interval":
            x = values.astype(float)
        elif level == "ordinal":
            x = np.cumsum(nc) - nc / 2  # the ordinal distance is the interval one on these mid-ranks
        else:
            raise ValueError(f"unknown level of measurement {level!r}")
        x = x - (nc * x).sum() / n  # centred: exact zero spread when all values are equal
        spread = (nc * x * x).sum()
        do, de = 2 * spread - 2 * (x @ o @ x), 2 * n * spread
    if not de > 0:
        return None
    return float(1 - (n - 1) * do / de)


def krippendorff_alpha(matrix: Any, level: str = "interval") -> float | None:
    """Krippendorff's alpha of a raters x units matrix (NaN = missing); level interval/ordinal/nominal.

    None when fewer than two pairable values or no variation at all.
    """
    if level not in ("interval", "ordinal", "nominal"):
        raise ValueError(f"unknown level of measurement {level!r}")
    c = _Coincidence(matrix)
    if c.values.size == 0:
        return None
    return c.alpha(level)


# ---------------------------------------------------------------------------------------------
# Blocks of the report
# ---------------------------------------------------------------------------------------------

def _few(n: int, min_n: int, what: str) -> str:
    if n == 0:
        return f"no images {what}; at least {min_n} are needed"
    return f"only {n} {'image' if n == 1 else 'images'} {what}; at least {min_n} are needed"


def _constant_note(name: str, values: np.ndarray) -> str | None:
    u = np.unique(values)
    if u.size == 1:
        return f"{name} gave every image the same score ({u[0]:g}), so a correlation is undefined"
    return None


def _pair(a_name: str, b_name: str, kind: str, a: np.ndarray, b: np.ndarray, opts: dict,
          stats: Sequence[str] = PAIR_STATS) -> dict:
    """Two raters' score agreement with bootstrap intervals; a, b are per-image arrays with NaN."""
    a, b = _paired(a, b)
    n = int(a.size)
    out: dict[str, Any] = {"a": a_name, "b": b_name, "kind": kind, "n": n}
    out.update({k: None for k in stats})
    out["ci"] = {k: None for k in stats}
    if n < opts["min_n"]:
        out["note"] = _few(n, opts["min_n"], "rated by both")
        return out
    tab = _Table(a, b, opts["labels"])
    point = _pair_batch(tab.batch(), tab, stats)
    for k in stats:
        out[k] = _scalar(point[k])
    if opts["resamples"] > 0:
        rng = _rng(opts["seed"], "pair", opts.get("tag", ""), kind, a_name, b_name)
        parts = [_pair_batch(t, tab, stats) for t in _resampled_tables(tab.counts, opts["resamples"], rng, tab.cells)]
        for k in stats:
            if out[k] is not None:
                out["ci"][k] = _percentile_ci(np.concatenate([p[k] for p in parts]))
    notes = [s for s in (_constant_note(a_name, a), _constant_note(b_name, b)) if s]
    undefined = [k for k in stats if out[k] is None]
    if undefined:
        why = "; ".join(notes) if notes else "the scores do not vary enough"
        notes = [f"{why} (not computed: {', '.join(undefined)})"]
    out["note"] = "; ".join(notes) or None
    return out


def _hero(model: str, via: str, threshold: float | None, pred: np.ndarray, truth: np.ndarray,
          opts: dict) -> dict:
    """Model's hero decision (pred: 1/0/-1 missing) as a predictor of the curators' (truth)."""
    ok = (pred >= 0) & (truth >= 0)
    p, t = pred[ok].astype(bool), truth[ok].astype(bool)
    n = int(ok.sum())
    out: dict[str, Any] = {"model": model, "via": via, "threshold": threshold, "n": n}
    out.update({k: None for k in HERO_STATS})
    out["confusion"] = {"tp": int((p & t).sum()), "fp": int((p & ~t).sum()), "fn": int((~p & t).sum()),
                        "tn": int((~p & ~t).sum())}
    out["ci"] = {k: None for k in HERO_STATS}
    if n < opts["min_n"]:
        what = "with both a curator hero decision and the model's flag" if via == "flag" else \
            "with both a curator hero decision and a model score"
        out["note"] = _few(n, opts["min_n"], what)
        return out
    table = _hero_table(p, t)
    point = _hero_batch(table[None])
    for k in HERO_STATS:
        out[k] = _scalar(point[k])
    if opts["resamples"] > 0:
        rng = _rng(opts["seed"], "hero", opts.get("tag", ""), model, via)
        parts = [_hero_batch(b) for b in _resampled_tables(table, opts["resamples"], rng)]
        for k in HERO_STATS:
            if out[k] is not None:
                out["ci"][k] = _percentile_ci(np.concatenate([x[k] for x in parts]))
    notes = []
    if not p.any():
        notes.append("the model called no image a hero, so precision is undefined")
    if not t.any():
        notes.append("the curators called no image a hero, so recall is undefined")
    if out["cohen_kappa"] is None:
        notes.append("both sides made the same call on every image, so Cohen's kappa is undefined")
    out["note"] = "; ".join(notes) or None
    return out


def _alpha_block(matrix: np.ndarray, opts: dict, label: str, who: str) -> dict:
    """Krippendorff's alpha (interval and ordinal) with unit-bootstrap intervals."""
    c = _Coincidence(matrix)
    out: dict[str, Any] = {"alpha_interval": None, "alpha_ordinal": None,
                           "ci": {"alpha_interval": None, "alpha_ordinal": None},
                           "n_units": c.n_units, "n_raters": c.n_raters, "note": None}
    if c.n_units < opts["min_n"]:
        out["note"] = _few(c.n_units, opts["min_n"], f"rated by two or more {who}")
        return out
    o = c.matrix()
    for level in ALPHA_LEVELS:
        out[f"alpha_{level}"] = _alpha_from(o, c.values, level)
    if out["alpha_interval"] is None:
        out["note"] = f"the {who} gave every image the same score, so alpha is undefined"
        return out
    if opts["resamples"] > 0:
        rng = _rng(opts["seed"], "alpha", label)
        samples = np.full((len(ALPHA_LEVELS), opts["resamples"]), np.nan)
        for i in range(opts["resamples"]):
            w = np.bincount(rng.integers(0, c.n_units, c.n_units), minlength=c.n_units).astype(float)
            o = c.matrix(w)
            for j, level in enumerate(ALPHA_LEVELS):
                v = _alpha_from(o, c.values, level)
                samples[j, i] = np.nan if v is None else v
        for j, level in enumerate(ALPHA_LEVELS):
            out["ci"][f"alpha_{level}"] = _percentile_ci(samples[j])
    return out


# ---------------------------------------------------------------------------------------------
# The long table as matrices
# ---------------------------------------------------------------------------------------------

class _Data:
    """Raters x images matrices from the long table; a rater's later row for an image wins."""

    def __init__(self, rows: list[dict]):
        # One pass per column (comprehensions) is several times faster than one loop over the dicts.
        kinds = [r.get("kind") for r in rows]
        bad = set(kinds) - {"human", "model"}
        if bad:
            raise ValueError(f"row kind must be 'human' or 'model', not {sorted(map(repr, bad))[0]}")
        images: dict[Any, int] = {}
        img = [images.setdefault(r["image_id"], len(images)) for r in rows]
        raters: dict[tuple[str, str], int] = {}
        rat = [raters.setdefault((k, str(r["rater"])), len(raters)) for k, r in zip(kinds, rows)]
        score = [r.get("score") for r in rows]
        hero = [r.get("hero") for r in rows]
        modes: dict[str, int] = {}
        mode = [-1 if k != "human" or r.get("mode") is None else modes.setdefault(str(r["mode"]), len(modes))
                for k, r in zip(kinds, rows)]
        species: dict[int, str] = {}
        for i, r in zip(img, rows):
            sp = r.get("species")
            if sp is not None:
                species.setdefault(i, str(sp))
        self.n_images = len(images)
        self.raters = list(raters)  # (kind, name)
        self.modes = list(modes)
        self.img = np.asarray(img, dtype=np.int64)
        self.rat = np.asarray(rat, dtype=np.int64)
        self.score = np.array([np.nan if s is None else s for s in score], dtype=float)
        self.score[~np.isfinite(self.score)] = np.nan
        self.hero = np.array([-1 if h is None else bool(h) for h in hero], dtype=np.int8)
        self.mode = np.asarray(mode, dtype=np.int64)
        names = sorted(set(species.values()))
        code = {s: k for k, s in enumerate(names)}
        self.species_names = names
        self.species = np.full(self.n_images, -1, dtype=np.int64)
        if species:
            idx = np.fromiter(species.keys(), dtype=np.int64, count=len(species))
            self.species[idx] = [code[species[i]] for i in idx.tolist()]
        self.humans = [k for k, (kind, _) in enumerate(self.raters) if kind == "human"]
        self.models = [k for k, (kind, _) in enumerate(self.raters) if kind == "model"]
        self.S, self.H, self.rated = self.matrices(np.ones(self.img.size, dtype=bool))

    def matrices(self, select: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score (NaN missing), hero (-1 missing) and rated-at-all matrices from the selected rows."""
        r, n = len(self.raters), self.n_images
        S = np.full((r, n), np.nan)
        H = np.full((r, n), -1, dtype=np.int8)
        rated = np.zeros((r, n), dtype=bool)
        idx = np.flatnonzero(select)
        if idx.size:
            key = self.rat[idx] * n + self.img[idx]
            _, last = np.unique(key[::-1], return_index=True)  # the last row of each (rater, image)
            keep = idx[::-1][last]
            S[self.rat[keep], self.img[keep]] = self.score[keep]
            H[self.rat[keep], self.img[keep]] = self.hero[keep]
            rated[self.rat[keep], self.img[keep]] = True
        return S, H, rated

    def name(self, k: int) -> str:
        return self.raters[k][1]


def _consensus(S: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: mean of the curators' stars, hero by majority (a tie or no vote: -1)."""
    if S.shape[0] == 0:
        return np.full(S.shape[1], np.nan), np.full(S.shape[1], -1, dtype=np.int8)
    cnt = np.isfinite(S).sum(0)
    total = np.where(np.isfinite(S), S, 0.0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(cnt > 0, total / np.maximum(cnt, 1), np.nan)
    yes, no = (H == 1).sum(0), (H == 0).sum(0)
    hero = np.where(yes > no, 1, np.where(no > yes, 0, -1)).astype(np.int8)
    return score, hero


def _model_subset(d: _Data, S: np.ndarray, H: np.ndarray, cols: np.ndarray | None, opts: dict, label: str) -> dict:
    """Curators' consensus vs each model on a subset: Spearman, MAE, QWK and hero kappa."""
    cs, ch = _consensus(S[d.humans], H[d.humans])
    if cols is not None:
        mask = np.zeros(d.n_images, dtype=bool)
        mask[cols] = True
        cs, ch = np.where(mask, cs, np.nan), np.where(mask, ch, -1)
    n_images = int(np.isfinite(cs).sum())
    opts = opts | {"tag": label}
    models = []
    for m in sorted(d.models, key=d.name):
        name = d.name(m)
        p = _pair(CONSENSUS, name, "human-model", cs, d.S[m], opts, SUBSET_STATS)
        flag = _hero(name, "flag", None, d.H[m], ch, opts)
        thr = _threshold_pred(d.S[m], opts["hero_threshold"])
        by_thr = _hero(name, "threshold", opts["hero_threshold"], thr, ch, opts)
        models.append({"model": name, "n": p["n"], **{k: p[k] for k in SUBSET_STATS},
                       "hero_kappa": flag["cohen_kappa"], "hero_kappa_threshold": by_thr["cohen_kappa"],
                       "ci": {**p["ci"], "hero_kappa": flag["ci"]["cohen_kappa"],
                              "hero_kappa_threshold": by_thr["ci"]["cohen_kappa"]},
                       "note": p["note"]})
    return {"n_images": n_images, "models": models,
            "note": None if n_images else "no curator score in this group"}


def _threshold_pred(scores: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(np.isfinite(scores), (scores >= threshold).astype(np.int8), -1).astype(np.int8)


def _human_block(d: _Data, S: np.ndarray, opts: dict, label: str, min_pair_n: int = 1) -> dict:
    """Curator-vs-curator pairs and alpha among curators (the ceiling for any model)."""
    Sh = S[d.humans]
    opts = opts | {"tag": label}
    pairs = []
    for i, j in combinations(range(len(d.humans)), 2):
        both = int((np.isfinite(Sh[i]) & np.isfinite(Sh[j])).sum())
        if both >= min_pair_n:
            a, b = sorted([(d.name(d.humans[i]), i), (d.name(d.humans[j]), j)])
            pairs.append(_pair(a[0], b[0], "human-human", Sh[a[1]], Sh[b[1]], opts))
    block = _alpha_block(Sh, opts, label, "curators")
    if block["n_units"] == 0:
        block["note"] = "no image was rated by two curators, so their agreement cannot be measured"
    return {"pairs": pairs, **block}


# ---------------------------------------------------------------------------------------------
# Readings
# ---------------------------------------------------------------------------------------------

def _band(v: float) -> str:
    if v < 0:
        return "poor"
    for cut, word in BANDS:
        if v >= cut:
            return word
    return "slight"


def _f(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci_text(ci: list[float] | None, digits: int = 2) -> str:
    return "" if ci is None else f", 95% CI {ci[0]:.{digits}f}–{ci[1]:.{digits}f}"


def _rank_words(r: float) -> str:
    if r >= 0.8:
        return "very much like"
    if r >= 0.6:
        return "much like"
    if r >= 0.4:
        return "somewhat like"
    if r >= 0.2:
        return "only a little like"
    return "not like"


def _readings(report: dict, opts: dict) -> list[str]:
    out: list[str] = []
    consensus = {p["b"]: p for p in report["pairs"] if p["a"] == CONSENSUS}
    for model, p in consensus.items():
        if p["spearman"] is None:
            out.append(f"{model}: cannot say how it ranks images against the curators ({p['note']}).")
            continue
        out.append(f"{model} ranks images {_rank_words(p['spearman'])} the curators (Spearman {_f(p['spearman'])}"
                   f"{_ci_text(p['ci']['spearman'])}, n = {p['n']}; {_band(p['spearman'])}).")
        if p["bias"] is not None and p["loa_low"] is not None:
            side = "higher" if p["bias"] > 0 else "lower"
            level = (f"{abs(p['bias']):.1f} points {side} than" if abs(p["bias"]) >= 0.25
                     else "about as high as")
            scale = ("" if p["qwk"] is None else
                     f"; on the same 0-10 scale the agreement is {_band(p['qwk'])} (quadratic-weighted kappa "
                     f"{_f(p['qwk'])}{_ci_text(p['ci']['qwk'])})")
            out.append(f"{model} scores {level} the curators on average (bias {p['bias']:+.2f}, 95% limits of "
                       f"agreement {p['loa_low']:+.1f} to {p['loa_high']:+.1f}; mean absolute difference "
                       f"{_f(p['mae'])}){scale}.")
    by_model: dict[str, dict] = {}
    for h in report["hero"]:
        by_model.setdefault(h["model"], {})[h["via"]] = h
    for model, vias in by_model.items():
        f, t = vias.get("flag"), vias.get("threshold")
        for h in (f, t):
            if h is None:
                continue
            how = "its own hero flag" if h["via"] == "flag" else f"score ≥ {h['threshold']:g} as hero"
            if h["cohen_kappa"] is None and h["percent_agreement"] is None:
                out.append(f"{model}, {how}: hero agreement cannot be measured ({h['note']}).")
                continue
            pr = ("" if h["recall"] is None or h["precision"] is None else
                  f"; it finds {h['recall']:.0%} of the curators' heroes and {h['precision']:.0%} of its picks are theirs")
            kappa = ("Cohen's kappa undefined" if h["cohen_kappa"] is None else
                     f"Cohen's kappa {_f(h['cohen_kappa'])}{_ci_text(h['ci']['cohen_kappa'])}, {_band(h['cohen_kappa'])}")
            out.append(f"{model}, {how}: agrees with the curators' hero decision on {h['percent_agreement']:.0%} "
                       f"of {h['n']} images ({kappa}; Gwet's AC1 {_f(h['gwet_ac1'])}){pr}.")
        if f and t and f["ci"]["cohen_kappa"] and t["ci"]["cohen_kappa"]:
            if t["ci"]["cohen_kappa"][0] > f["ci"]["cohen_kappa"][1]:
                out.append(f"For {model}, score ≥ {t['threshold']:g} picks heroes better than its own flag.")
            elif f["ci"]["cohen_kappa"][0] > t["ci"]["cohen_kappa"][1]:
                out.append(f"For {model}, its own hero flag picks heroes better than score ≥ {t['threshold']:g}.")
    ih = report["inter_human"]
    if ih["alpha_interval"] is not None:
        out.append(f"Curators agree with each other at α = {_f(ih['alpha_interval'])}"
                   f"{_ci_text(ih['ci']['alpha_interval'])} (interval; {_band(ih['alpha_interval'])}, "
                   f"{ih['n_units']} images rated by two or more): no model can be expected to agree with them better.")
        hh = [p["spearman"] for p in ih["pairs"] if p["spearman"] is not None]
        if hh:
            ceiling = float(np.mean(hh))
            humans = {name for kind, name in report["_raters"] if kind == "human"}
            for model in consensus:
                mm = [p["spearman"] for p in report["pairs"] if p["b"] == model and p["a"] in humans
                      and p["spearman"] is not None]
                if mm:
                    v = float(np.mean(mm))
                    verdict = ("about as well as" if abs(v - ceiling) < 0.05 else
                               "better than" if v > ceiling else "less well than")
                    out.append(f"{model} agrees with individual curators (mean Spearman {v:.2f}) {verdict} "
                               f"curators agree with each other ({ceiling:.2f}).")
    elif ih["n_units"] == 0:
        out.append("No image was rated by two curators, so how far curators agree with each other — the ceiling "
                   "for any model — is unknown.")
    else:
        out.append(f"Too few images rated by two curators to measure their agreement ({ih['note']}).")
    ov = report["overall"]
    if ov["alpha_interval"] is not None:
        out.append(f"Across all {ov['n_raters']} raters (curators and models), α = {_f(ov['alpha_interval'])} "
                   f"(interval) and {_f(ov['alpha_ordinal'])} (ordinal) over {ov['n_units']} images.")
    modes = report["by_mode"]
    if len(modes) >= 2:
        for model in consensus:
            parts, cis = [], {}
            for mode, g in modes.items():
                for m in g["models"]:
                    if m["model"] == model and m["spearman"] is not None:
                        parts.append(f"{mode} {m['spearman']:.2f} (n = {m['n']})")
                        cis[mode] = m["ci"]["spearman"]
            if len(parts) >= 2:
                line = f"{model} against curators by review mode, Spearman: " + ", ".join(parts)
                a, b = cis.get("assisted"), cis.get("blind")
                if a and b and a[0] > b[1]:
                    line += ("; assisted curators saw the model's score, so part of their agreement may be "
                             "anchoring: trust the blind figure")
                out.append(line + ".")
    species = report["by_species"]
    for model in consensus:
        vals = [(m["spearman"], sp, m["n"]) for sp, g in species.items() for m in g["models"]
                if m["model"] == model and m["spearman"] is not None and m["n"] >= max(READING_MIN_N, opts["min_n"])]
        if len(vals) >= 2:
            lo, hi = min(vals), max(vals)
            out.append(f"{model} agrees least with the curators on {lo[1]} (Spearman {lo[0]:.2f}, n = {lo[2]}) "
                       f"and most on {hi[1]} ({hi[0]:.2f}, n = {hi[2]}).")
    if not consensus:
        out.append("No model and curator rated the same images, so the models cannot be judged yet.")
    out.append(CONVENTION)
    return out


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

def compute_agreement(rows: list[dict], *, hero_threshold: float = 7.0, resamples: int = 1000, seed: int = 0,
                      labels: Sequence[int] = tuple(range(0, 11)), min_n: int = 5) -> dict:
    """Agreement between curators and models from the long table; a JSON-ready dict.

    Keys: raters, pairs, overall, hero, inter_human, by_mode, by_species, readings, parameters.
    Intervals are 95% percentile bootstraps over images with ``resamples`` resamples, seeded.
    """
    lab = _labels(labels)
    opts = {"hero_threshold": float(hero_threshold), "resamples": max(0, int(resamples)), "seed": int(seed),
            "labels": lab, "min_n": max(1, int(min_n))}
    d = _Data(rows)
    report: dict[str, Any] = {}

    raters = []
    for k, (kind, name) in enumerate(d.raters):
        s, h = d.S[k][np.isfinite(d.S[k])], d.H[k][d.H[k] >= 0]
        raters.append({"name": name, "kind": kind, "n_images": int(d.rated[k].sum()),
                       "mean_score": float(s.mean()) if s.size else None,
                       "hero_share": float(h.mean()) if h.size else None})
    report["raters"] = sorted(raters, key=lambda r: (r["kind"] != "human", r["name"]))

    pairs = []
    order = sorted(range(len(d.raters)), key=lambda k: (d.raters[k][0] != "human", d.name(k)))
    for i, j in combinations(order, 2):
        both = np.isfinite(d.S[i]) & np.isfinite(d.S[j])
        if not both.any():
            continue
        kind = {("human", "human"): "human-human", ("model", "model"): "model-model"}.get(
            (d.raters[i][0], d.raters[j][0]), "human-model")
        pairs.append(_pair(d.name(i), d.name(j), kind, d.S[i], d.S[j], opts))
    cs, ch = _consensus(d.S[d.humans], d.H[d.humans])
    hero = []
    if d.humans:
        for m in sorted(d.models, key=d.name):
            pairs.append(_pair(CONSENSUS, d.name(m), "human-model", cs, d.S[m], opts))
            hero.append(_hero(d.name(m), "flag", None, d.H[m], ch, opts))
            hero.append(_hero(d.name(m), "threshold", opts["hero_threshold"],
                              _threshold_pred(d.S[m], opts["hero_threshold"]), ch, opts))
    report["pairs"] = pairs

    overall = _alpha_block(d.S, opts, "overall", "raters")
    report["overall"] = overall
    report["hero"] = hero

    inter = _human_block(d, d.S, opts, "humans")
    inter["by_mode"] = {}
    inter["by_species"] = {}
    mode_order = sorted(d.modes, key=lambda m: ({"assisted": 0, "blind": 1}.get(m, 2), m))
    by_mode = {}
    for mode in mode_order:
        sel = d.mode == d.modes.index(mode)
        S, H, _ = d.matrices(sel)
        by_mode[mode] = _model_subset(d, S, H, None, opts, f"mode {mode}")
        if len(d.humans) >= 2:
            inter["by_mode"][mode] = _human_block(d, S, opts, f"humans mode {mode}", opts["min_n"])
    by_species = {}
    left_out = 0
    human_any = np.isfinite(d.S[d.humans]).any(0) if d.humans else np.zeros(d.n_images, dtype=bool)
    two_humans = (np.isfinite(d.S[d.humans]).sum(0) >= 2) if d.humans else human_any
    counts = []
    for code, sp in enumerate(d.species_names):
        cols = np.flatnonzero(d.species == code)
        counts.append((-int(human_any[cols].sum()), sp, code, cols))
    for neg, sp, code, cols in sorted(counts):
        if -neg < opts["min_n"] or not d.models:
            left_out += 1
        else:
            by_species[sp] = _model_subset(d, d.S, d.H, cols, opts, f"species {sp}")
        if len(d.humans) >= 2 and two_humans[cols].sum() >= opts["min_n"]:
            sub = np.full_like(d.S, np.nan)
            sub[:, cols] = d.S[:, cols]
            inter["by_species"][sp] = _human_block(d, sub, opts, f"humans species {sp}", opts["min_n"])
    report["inter_human"] = inter
    report["by_mode"] = by_mode
    report["by_species"] = by_species
    report["by_species_note"] = (f"{left_out} species left out: fewer than {opts['min_n']} images with a curator "
                                 f"score" if left_out else None)
    report["_raters"] = d.raters
    report["readings"] = _readings(report, opts)
    del report["_raters"]
    report["parameters"] = {"hero_threshold": opts["hero_threshold"], "resamples": opts["resamples"],
                            "seed": opts["seed"], "labels": [int(x) for x in lab], "min_n": opts["min_n"]}
    return _clean(report)


def _clean(x: Any) -> Any:
    """Plain JSON types only; any non-finite float becomes None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    return x
