"""Agreement statistics between two raters (or many, for Krippendorff's alpha). Pure numpy.

Undefined statistics are ``None`` (never NaN). The report built from them is in
:mod:`hitl.analyse.agreement`.

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
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

PAIR_STATS = ("spearman", "kendall_tau_b", "pearson", "mae", "bias", "loa_low", "loa_high", "qwk",
              "icc_a1", "icc_c1")
HERO_STATS = ("percent_agreement", "cohen_kappa", "gwet_ac1", "precision", "recall", "f1")
LOA_Z = 1.96  # Bland & Altman's 95% limits
CELL_BUDGET = 2_000_000  # table cells held at once while bootstrapping (bounds memory, ~16 MB a temporary)

# ---------------------------------------------------------------------------------------------
# Tables and batched statistics (the fast path; the single statistics below use it too)
# ---------------------------------------------------------------------------------------------

def paired_values(a: Any, b: Any) -> tuple[np.ndarray, np.ndarray]:
    """Float arrays of the pairs where both values are present (NaN/None = missing)."""
    a = np.asarray(a, dtype=float).ravel()
    b = np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b differ in length ({a.size} vs {b.size})")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


class ContingencyTable:
    """Contingency table of two raters' value levels, plus the QWK bin of each level."""

    def __init__(self, a: np.ndarray, b: np.ndarray, labels: Sequence[int] | None = None):
        self.va, ia = np.unique(a, return_inverse=True)
        self.vb, ib = np.unique(b, return_inverse=True)
        la, lb = self.va.size, self.vb.size
        self.n = int(a.size)
        self.cells = ia * lb + ib  # each image's cell
        self.counts = np.bincount(self.cells, minlength=la * lb).astype(float).reshape(la, lb)
        self.labels = None if labels is None else score_labels(labels)
        if self.labels is not None:
            self.qa, self.qb = _bins(self.va, self.labels), _bins(self.vb, self.labels)

    def batch(self) -> np.ndarray:
        """The table as a batch of one, as pair_statistics takes tables."""
        return self.counts[None]


def score_labels(labels: Sequence[int]) -> np.ndarray:
    """The distinct integer score labels, sorted, as floats (the bins of the weighted kappa)."""
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


def pair_statistics(t: np.ndarray, tab: ContingencyTable, want: Iterable[str]) -> dict[str, np.ndarray]:
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


def _qwk_batch(t: np.ndarray, tab: ContingencyTable, n: np.ndarray) -> np.ndarray:
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


def hero_statistics(t: np.ndarray) -> dict[str, np.ndarray]:
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


def hero_table(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The 2 x 2 table of boolean predictions against boolean truth, indexed [prediction, truth]."""
    return np.bincount(pred.astype(int) * 2 + truth.astype(int), minlength=4).reshape(2, 2).astype(float)


def resampled_tables(counts: np.ndarray, resamples: int, rng: np.random.Generator,
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


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> list[float] | None:
    """Percentile interval of the defined resamples; None when fewer than half are defined."""
    ok = samples[np.isfinite(samples)]
    if samples.size == 0 or ok.size < max(2, samples.size / 2):
        return None
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(ok, [tail, 100 - tail])
    return [float(lo), float(hi)]


def block_rng(seed: int, *parts: str) -> np.random.Generator:
    """A generator per statistic block, so its interval does not depend on what else is computed."""
    return np.random.default_rng([int(seed) % 2 ** 63, zlib.crc32("|".join(parts).encode())])


def finite_or_none(x: np.ndarray | float) -> float | None:
    """The first value as a float, None when it is NaN or infinite (undefined statistics are None)."""
    v = float(np.asarray(x).ravel()[0])
    return v if math.isfinite(v) else None


# ---------------------------------------------------------------------------------------------
# Single statistics (numpy arrays in, float or None out; NaN/None pairs are dropped)
# ---------------------------------------------------------------------------------------------

def pair_statistic(a: Any, b: Any, stat: str, labels: Sequence[int] | None = None) -> float | None:
    """One of PAIR_STATS for two raters' scores (``labels``: the bins of ``qwk``); None when undefined."""
    a, b = paired_values(a, b)
    if a.size == 0:
        return None
    tab = ContingencyTable(a, b, labels)
    return finite_or_none(pair_statistics(tab.batch(), tab, [stat])[stat])


def spearman(a: Any, b: Any) -> float | None:
    """Spearman's rho (Pearson correlation of midranks); None if n < 2 or a rater is constant."""
    return pair_statistic(a, b, "spearman")


def quadratic_weighted_kappa(a: Any, b: Any, labels: Sequence[int] = tuple(range(0, 11))) -> float | None:
    """Cohen's kappa with quadratic weights on integer bins (rounded half up, clipped to labels)."""
    return pair_statistic(a, b, "qwk", labels)


# ---------------------------------------------------------------------------------------------
# Krippendorff's alpha from the coincidence matrix
# ---------------------------------------------------------------------------------------------

class Coincidence:
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
        return alpha_from(self.matrix() if o is None else o, self.values, level)


def alpha_from(o: np.ndarray, values: np.ndarray, level: str) -> float | None:
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


