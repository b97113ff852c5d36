"""The learned rater: gradient-boosted trees on the curators' decisions, validated so that no frame
of a burst is judged by a model trained on its neighbour. Pure: arrays in, arrays and dicts out.

Stars: a regressor on 1-10. Hero: a classifier whose probabilities are calibrated (Platt or
isotonic, fitted on raw scores of held-out groups), so "p = 0.8" means eight in ten. Both from
scikit-learn's HistGradientBoosting, which takes missing values (NaN) and categories natively.

Fast on a busy machine (`learn` on 500 decisions and 5,000 candidates: scripts/bench/bench_learn.py):
a tree costs what its nodes cost, not its rows, so the trees are fewer and take larger steps
(:func:`tree_params`); the cross-validation's classifiers are calibrated on each other's held-out
scores instead of three more fits each (:func:`cross_fitted`), and the full model on all of them;
a bootstrap resample is a weighting of the rows, so each interval sorts its scores once
(:func:`weighted_aucs`, :func:`bootstrap_spearman`).
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy.special import expit, logit
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from threadpoolctl import threadpool_limits

from hitl.analyse.statistics import (
    CELL_BUDGET,
    ContingencyTable,
    pair_statistics,
    percentile_ci,
    quadratic_weighted_kappa,
    spearman,
)
from hitl.learn import UNDIRECTED, distinguishable_loss
from hitl.learn.features import Features

MIN_DECISIONS = 30
FOLDS = 5
# Below this many rows a fit is done sooner on one thread: OpenMP's threads spin while they wait,
# and on a busy machine (Label Studio, tests) one tree fit on 100 decisions took 26.6 s with every
# core's thread and 0.9 s with one.
SMALL_DATA_ROWS = 20_000


def threads_for(n_rows: int) -> AbstractContextManager:
    """One native thread (OpenMP, BLAS) for small data, as many as the libraries choose otherwise."""
    return threadpool_limits(limits=1) if n_rows < SMALL_DATA_ROWS else nullcontext()


def tree_params(categorical: np.ndarray, n: int, seed: int, X: np.ndarray | None = None) -> dict:
    """Small, regularised trees: a few hundred decisions is the usual size of the data.

    60 trees at a learning rate of 0.15 and 64 bins: a fit costs what a tree costs (Python's
    bookkeeping per node, not the rows), so fewer, larger steps make `learn` 2.5 times faster.
    Measured on bench_loop's collection (500 decisions, four seeds, grouped out of fold): Spearman
    0.921 against 0.922 and hero AUC 0.950 against 0.950 with 150 trees at 0.06 and 255 bins.
    The bins grow to the most categories a category column has in ``X`` (the trees need one each).
    """
    most = 0
    if X is not None and categorical.any():
        most = max(len(np.unique(column[np.isfinite(column)])) for column in X[:, categorical].T)
    return {"max_iter": 60, "learning_rate": 0.15, "max_leaf_nodes": 15, "min_samples_leaf": max(5, n // 40),
            "l2_regularization": 1.0, "max_bins": min(255, max(64, most)),
            "categorical_features": categorical if categorical.any() else None,
            "early_stopping": False, "random_state": seed}


class EmptyColumnsConstant(TransformerMixin, BaseEstimator):
    """Columns with no value at all in the training rows become a constant zero, in training and after.

    A feature is often missing for a whole fold (a model that scored only some images, a camera
    of its own), and scikit-learn 1.9's binning fails on a column with no value at all. A
    constant column is one the trees never split on, which is what an empty one means; columns
    that had values in training are left as they are, NaN included.
    """

    def fit(self, X, y=None):
        self.empty_ = np.isnan(np.asarray(X, dtype=float)).all(axis=0)
        return self

    def transform(self, X):
        X = np.array(X, dtype=float)
        X[:, self.empty_] = 0.0
        return X


def trees(kind: type, params: dict) -> Pipeline:
    """Gradient-boosted trees of ``kind`` behind :class:`EmptyColumnsConstant`."""
    return make_pipeline(EmptyColumnsConstant(), kind(**params))


def validation_groups(sequences: list[str | None], locations: list[str | None]) -> tuple[np.ndarray, str]:
    """Fold groups: by location when there are at least three (a model must generalise to a new
    camera), else by sequence (a burst's frames are never on both sides)."""
    if len({loc for loc in locations if loc is not None}) >= 3:
        values, by = [loc or f"?{k}" for k, loc in enumerate(locations)], "location"
    else:
        values, by = [seq or f"?{k}" for k, seq in enumerate(sequences)], "sequence"
    codes: dict[str, int] = {}
    return np.array([codes.setdefault(v, len(codes)) for v in values], dtype=np.int64), by


ISOTONIC_FROM = 400  # held-out scores from which the calibration is isotonic
TIE_BREAK = 1e-6  # of the trees' own probability, added to isotonic's: see Calibration


class Calibration:
    """The map from the hero trees' raw score (their log-odds) to a probability, learned on scores of
    rows the trees never saw: Platt's sigmoid (a logistic regression on the score, with Platt's
    smoothed targets so that separable scores give no infinite slope), isotonic from
    :data:`ISOTONIC_FROM` rows (it needs many points not to overfit). Isotonic's steps tie images
    the trees told apart (on bench_loop's collection that cost 0.006 of held-out hero AUC); a
    millionth of the trees' own probability keeps their order inside a step and changes no
    probability by more than that."""

    def __init__(self, raw: np.ndarray, y: np.ndarray):
        raw, y = np.asarray(raw, float), np.asarray(y, int)
        if len(y) >= ISOTONIC_FROM:
            self.isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
            return
        self.isotonic = None
        n_pos = int(y.sum())
        target = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (len(y) - n_pos + 2))
        both = np.concatenate([raw, raw])[:, None]  # each row once as a hero, once not, weighted by its target
        self.sigmoid = LogisticRegression(C=1e6).fit(both, np.repeat([1, 0], len(y)),
                                                     sample_weight=np.concatenate([target, 1 - target]))

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, float)
        if self.isotonic is not None:
            return np.clip(self.isotonic.predict(raw) + TIE_BREAK * (expit(raw) - 0.5), 0.0, 1.0)
        return self.sigmoid.predict_proba(raw[:, None])[:, 1]

    @classmethod
    def of(cls, raw: np.ndarray, y: np.ndarray) -> Calibration | None:
        """Fitted on the rows with a score; None without four of them of both classes."""
        known = np.isfinite(raw) & (y >= 0)
        if known.sum() < 4 or not 0 < y[known].sum() < known.sum():
            return None
        return cls(raw[known], y[known])


@dataclass
class Fitted:
    """A stars regressor and a hero classifier with its calibration (classifier None: one class
    only, then the base rate; calibration None: no held-out scores to learn it from, then the
    trees' own probabilities, which boosting on log-loss makes roughly calibrated)."""

    names: list[str]
    stars: Pipeline | None  # trees(HistGradientBoostingRegressor)
    hero: Pipeline | None  # trees(HistGradientBoostingClassifier)
    hero_rate: float
    stars_mean: float
    calibration: Calibration | None = None

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(stars 1-10, probability of hero) per row."""
        stars = (np.clip(self.stars.predict(X), 1, 10) if self.stars is not None
                 else np.full(len(X), self.stars_mean))
        return stars, self.p_hero(X)

    def raw_hero(self, X: np.ndarray) -> np.ndarray:
        """The hero trees' raw score (log-odds) per row; NaN without a classifier."""
        return self.hero.decision_function(X) if self.hero is not None else np.full(len(X), np.nan)

    def ranking(self, X: np.ndarray) -> np.ndarray:
        """What the rater orders rows by: the trees' raw score, of which its probability is a
        monotone map; with one class only, the base rate's log-odds."""
        if self.hero is None:
            return np.full(len(X), float(logit(np.clip(self.hero_rate, 1e-6, 1 - 1e-6))))
        return self.hero.decision_function(X)

    def p_hero(self, X: np.ndarray) -> np.ndarray:
        """The probability of hero per row."""
        if self.hero is None:
            return np.full(len(X), self.hero_rate)
        raw = self.raw_hero(X)
        return self.calibration(raw) if self.calibration is not None else expit(raw)


def fit(F: Features, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0,
        held_out_raw: np.ndarray | None = None) -> Fitted:
    """Fit on the rows with a target (``stars`` NaN and ``hero`` -1 mark a decision without it).

    The hero probability is calibrated on raw scores of rows the trees never saw:
    ``held_out_raw`` (one per row, from the cross-validation's models: :func:`held_out_raw`, as
    scikit-learn's CalibratedClassifierCV(ensemble=False) does), else from three grouped folds of
    these rows fitted here."""
    fitted = _trees(F, stars, hero, seed)
    if fitted.hero is not None:
        raw = held_out_raw if held_out_raw is not None else _own_held_out_raw(F, hero, groups, seed)
        fitted.calibration = Calibration.of(raw, hero)
    return fitted


def _trees(F: Features, stars: np.ndarray, hero: np.ndarray, seed: int) -> Fitted:
    """The regressor and the uncalibrated classifier."""
    has_stars, has_hero = np.isfinite(stars), hero >= 0
    params = tree_params(F.categorical, len(F.X), seed, F.X)
    regressor = None
    if has_stars.sum() >= 2:
        regressor = trees(HistGradientBoostingRegressor, params).fit(F.X[has_stars], stars[has_stars])
    classifier, rate = None, float(hero[has_hero].mean()) if has_hero.any() else 0.0
    y = hero[has_hero]
    if has_hero.sum() >= 4 and 0 < y.sum() < len(y):
        classifier = trees(HistGradientBoostingClassifier, params).fit(F.X[has_hero], y)
    return Fitted(F.names, regressor, classifier, rate, float(np.nanmean(stars)) if has_stars.any() else 5.0)


def _own_held_out_raw(F: Features, hero: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """Raw hero scores of the hero rows from three grouped folds (NaN where a fold's training rows
    hold one class only, and for rows without a hero decision)."""
    raw = np.full(len(hero), np.nan)
    rows = np.flatnonzero(hero >= 0)
    n_splits = min(3, len(np.unique(groups[rows])))
    if n_splits < 2:
        return raw
    for train, test in GroupKFold(n_splits).split(rows, groups=groups[rows]):
        model = _trees(Features(F.names, F.X[rows[train]]), np.full(len(train), np.nan), hero[rows[train]], seed)
        raw[rows[test]] = model.raw_hero(F.X[rows[test]])
    return raw


def splits(groups: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The cross-validation's (training rows, held-out rows), whole groups at a time."""
    n_splits = min(FOLDS, len(np.unique(groups)))
    if n_splits < 2:
        raise ValueError("cross-validation needs decisions on at least two sequences (or locations)")
    return list(GroupKFold(n_splits).split(np.zeros(len(groups)), groups=groups))


def fold_models(F: Features, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0
                ) -> list[tuple[np.ndarray, Fitted]]:
    """The cross-validation's models, each with the rows it never saw (whole groups)."""
    return cross_fitted([(train, test, Features(F.names, F.X[train]), F.X[test]) for train, test in splits(groups)],
                        stars, hero, seed)


def cross_fitted(parts: list[tuple[np.ndarray, np.ndarray, Features, np.ndarray]], stars: np.ndarray,
                 hero: np.ndarray, seed: int = 0) -> list[tuple[np.ndarray, Fitted]]:
    """One model per part (training rows, held-out rows, the training rows' features, the held-out
    rows' features), each hero classifier calibrated on the other parts' held-out raw scores: a
    fold's probabilities are calibrated without its own labels, and no fold pays for fits of its own."""
    folds = [(test, _trees(F_train, stars[train], hero[train], seed)) for train, test, F_train, _ in parts]
    raw = np.full(len(stars), np.nan)
    for (test, model), (_, _, _, X_test) in zip(folds, parts):
        raw[test] = model.raw_hero(X_test)
    for test, model in folds:
        if model.hero is not None:
            others = np.ones(len(raw), dtype=bool)
            others[test] = False
            model.calibration = Calibration.of(raw[others], hero[others])
    return folds


def held_out_raw(folds: list[tuple[np.ndarray, Fitted]], X: np.ndarray) -> np.ndarray:
    """Each row's raw hero score by the fold model that never saw it (NaN: none)."""
    raw = np.full(len(X), np.nan)
    for test, model in folds:
        raw[test] = model.raw_hero(X[test])
    return raw


def held_out_ranking(folds: list[tuple[np.ndarray, Fitted]], X: np.ndarray) -> np.ndarray:
    """Each row's :meth:`Fitted.ranking` by the fold model that never saw it (NaN: none)."""
    out = np.full(len(X), np.nan)
    for test, model in folds:
        out[test] = model.ranking(X[test])
    return out


def held_out(folds: list[tuple[np.ndarray, Fitted]], X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's prediction by the fold model that never saw it: (stars, p_hero, fold of each row)."""
    pred_stars, pred_p = np.full(len(X), np.nan), np.full(len(X), np.nan)
    fold = np.full(len(X), -1, dtype=np.int64)
    for k, (test, model) in enumerate(folds):
        pred_stars[test], pred_p[test] = model.predict(X[test])
        fold[test] = k
    return pred_stars, pred_p, fold


def out_of_fold(F: Features, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's prediction by a model that never saw its group: (stars, p_hero, fold of each row)."""
    return held_out(fold_models(F, stars, hero, groups, seed), F.X)


# ---- how good: the figures printed and stored -----------------------------------------------------

def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float | None:
    """Mean |confidence - accuracy| over equal-width probability bins, weighted by their size."""
    p, y = np.asarray(p, float), np.asarray(y, float)
    if len(p) == 0:
        return None
    edges = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        inside = edges == b
        if inside.any():
            total += inside.sum() * abs(p[inside].mean() - y[inside].mean())
    return float(total / len(p))


def auc(score: np.ndarray, y: np.ndarray) -> float | None:
    """Area under the ROC curve (the chance a hero ranks above a non-hero; ties count half)."""
    value = aucs(np.asarray(score, float), y)
    return None if np.isnan(value) else float(value)


def aucs(scores: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The AUC of every row of ``scores`` (its last axis: the decisions) against ``y``; NaN with one class."""
    y = np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return np.full(scores.shape[:-1], np.nan)
    ranks = rankdata(scores, axis=-1)  # midranks for ties
    return (ranks[..., y].sum(axis=-1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def weighted_aucs(scores: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The AUC of every row of ``scores`` (m, n) against ``y`` (n) for every row of ``weights`` (r, n):
    (r, m). A bootstrap resample is a weighting (each row counted as often as it was drawn), so one
    sort per score row serves every resample; NaN where a weighting leaves one class."""
    y = np.asarray(y, bool)
    weights = np.asarray(weights, float)
    total = weights[:, y].sum(axis=1) * weights[:, ~y].sum(axis=1)
    out = np.full((len(weights), len(scores)), np.nan)
    for j, score in enumerate(np.asarray(scores, float)):
        order = np.argsort(score, kind="mergesort")
        ranked = score[order]
        starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])  # the ties: one group each
        w = weights[:, order]
        pos = np.add.reduceat(w * y[order], starts, axis=1)
        neg = np.add.reduceat(w * ~y[order], starts, axis=1)
        below = np.cumsum(neg, axis=1) - neg
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, j] = (pos * (below + 0.5 * neg)).sum(axis=1) / total
    out[total == 0] = np.nan
    return out


def precision_at_k(score: np.ndarray, y: np.ndarray, k: int) -> float | None:
    """Of the k highest-ranked, the share that are heroes."""
    if len(score) == 0:
        return None
    top = np.argsort(-np.asarray(score, float), kind="mergesort")[: min(k, len(score))]
    return float(np.asarray(y, bool)[top].mean())


def figures(pred_stars: np.ndarray, p_hero: np.ndarray, stars: np.ndarray, hero: np.ndarray, k: int,
            groups: np.ndarray | None = None, resamples: int = 0, seed: int = 0,
            ranking: np.ndarray | None = None) -> dict:
    """Spearman, QWK and MAE against the curators' stars; hero AUC, precision@k and ECE.

    ``ranking``: what the rater orders images by (:meth:`Fitted.ranking`; default ``p_hero``),
    for the hero AUC and precision@k. Held out, each fold's probabilities come through its own
    calibration, and pooling folds whose calibrations differ a little mixes their orders (on
    bench_loop's collection that cost 0.007 of AUC); the rater that ranks new images has one.
    With ``groups`` and ``resamples``, 95% intervals for Spearman and hero AUC too, from a
    bootstrap that resamples whole groups (a burst's frames are not independent evidence).
    """
    ranking = p_hero if ranking is None else ranking
    s = np.isfinite(stars) & np.isfinite(pred_stars)
    h = (hero >= 0) & np.isfinite(p_hero) & np.isfinite(ranking)
    intervals = {}
    if groups is not None and resamples > 0:
        intervals = {
            "spearman_ci": percentile_ci(bootstrap_spearman(pred_stars[s], stars[s],
                                                            resample_counts(groups[s], resamples, seed))),
            "hero_auc_ci": percentile_ci(weighted_aucs(ranking[None, h], hero[h] == 1,
                                                       resample_counts(groups[h], resamples, seed))[:, 0]),
        }
    return {**intervals,
        "n_stars": int(s.sum()), "n_hero": int(h.sum()),
        "spearman": spearman(pred_stars[s], stars[s]) if s.sum() >= 3 else None,
        "qwk": quadratic_weighted_kappa(np.rint(pred_stars[s]), stars[s], labels=range(0, 11)) if s.sum() >= 3 else None,
        "mae": float(np.abs(pred_stars[s] - stars[s]).mean()) if s.any() else None,
        "hero_auc": auc(ranking[h], hero[h] == 1),
        "precision_at_k": precision_at_k(ranking[h], hero[h] == 1, k),
        "ece": expected_calibration_error(p_hero[h], hero[h] == 1),
        "k": k,
    }


def gain(better: tuple[np.ndarray, np.ndarray], base: tuple[np.ndarray, np.ndarray], stars: np.ndarray,
         hero: np.ndarray, groups: np.ndarray, resamples: int, seed: int = 0) -> dict:
    """How much one rater's held-out (stars, ranking) agree better with the curators than another's
    on the same decisions: the differences of hero AUC and of Spearman, each with a 95% interval
    from one bootstrap of whole groups (both raters on the same resampled decisions: paired)."""
    s = np.isfinite(stars) & np.isfinite(better[0]) & np.isfinite(base[0])
    h = (hero >= 0) & np.isfinite(better[1]) & np.isfinite(base[1])
    out: dict = {}
    if s.sum() >= 3:
        counts = resample_counts(groups[s], resamples, seed)
        a, b = spearman(better[0][s], stars[s]), spearman(base[0][s], stars[s])
        out["spearman"] = None if a is None or b is None else a - b
        out["spearman_ci"] = percentile_ci(bootstrap_spearman(better[0][s], stars[s], counts)
                                           - bootstrap_spearman(base[0][s], stars[s], counts))
    if h.any():
        counts = resample_counts(groups[h], resamples, seed)
        a, b = auc(better[1][h], hero[h] == 1), auc(base[1][h], hero[h] == 1)
        out["hero_auc"] = None if a is None or b is None else a - b
        both = weighted_aucs(np.stack([better[1][h], base[1][h]]), hero[h] == 1, counts)
        out["hero_auc_ci"] = percentile_ci(both[:, 0] - both[:, 1])
    return out


def resample_counts(groups: np.ndarray, resamples: int, seed: int = 0) -> np.ndarray:
    """:func:`group_resamples`' draws of every row as weights: how often each row was drawn, (resamples, rows)."""
    rows = np.arange(len(groups))
    return np.array([np.bincount(i, minlength=len(rows)) for i in group_resamples(groups, rows, resamples, seed)],
                    dtype=float).reshape(-1, len(rows))


def bootstrap_spearman(a: np.ndarray, b: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Spearman of ``a`` and ``b`` in every resample ``counts`` weights (see :func:`resample_counts`):
    the contingency tables of the agreement statistics, weighted; NaN where undefined or under 3 rows."""
    if len(a) == 0:
        return np.full(len(counts), np.nan)
    table = ContingencyTable(np.asarray(a, float), np.asarray(b, float))
    size = table.counts.size
    out = np.empty(len(counts))
    step = max(1, CELL_BUDGET // size)
    for start in range(0, len(counts), step):
        part = counts[start:start + step]
        cells = table.cells[None, :] + (np.arange(len(part)) * size)[:, None]
        tables = np.bincount(cells.ravel(), weights=part.ravel(), minlength=len(part) * size)
        out[start:start + len(part)] = pair_statistics(tables.reshape(len(part), *table.counts.shape), table,
                                                       ["spearman"])["spearman"]
    out[counts.sum(axis=1) < 3] = np.nan
    return out


def group_bootstrap_ci(statistic, groups: np.ndarray, rows: np.ndarray, resamples: int, seed: int = 0,
                       level: float = 0.95) -> list[float] | None:
    """Percentile interval of ``statistic(row indices)`` over resamples of whole groups."""
    if len(rows) == 0:
        return None
    values = np.full(resamples, np.nan)  # NaN: undefined in that resample
    for k, picked in enumerate(group_resamples(groups, rows, resamples, seed)):
        value = statistic(picked)
        if value is not None:
            values[k] = value
    return percentile_ci(values, level)


def group_resamples(groups: np.ndarray, rows: np.ndarray, resamples: int, seed: int = 0):
    """``resamples`` bootstrap draws of ``rows`` (row indices, with their ``groups``), whole groups at a time."""
    codes, inverse = np.unique(groups, return_inverse=True)
    members = [rows[inverse == g] for g in range(len(codes))]
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def learning_curve(oof: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]], stars: np.ndarray,
                   hero: np.ndarray, groups: np.ndarray, seed: int = 0, steps: int = 5, whole: dict | None = None
                   ) -> list[dict]:
    """Out-of-fold agreement when only part of the decisions is used (whole groups, at random).

    ``oof(kept)``: the out-of-fold (stars, p_hero, ranking) of the rows ``kept`` (a mask), fitted
    on them alone (ValueError: they cannot be cross-validated). ``whole``: the figures of every
    row, already computed, for the last point (the same folds and models: not fitted again)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.unique(groups))
    curve = []
    for share in np.linspace(1 / steps, 1.0, steps):
        kept = np.isin(groups, order[: max(2, int(round(share * len(order))))])
        if kept.sum() < 10:
            continue
        if kept.all() and whole is not None:
            got = whole
        else:
            try:
                ps, pp, ranked = oof(kept)
            except ValueError:
                continue
            got = figures(ps, pp, stars[kept], hero[kept], k=10, ranking=ranked)
        curve.append({"decisions": int(kept.sum()), "spearman": got["spearman"], "hero_auc": got["hero_auc"]})
    return curve


def trees_oof(F: Features, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0
              ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`learning_curve`'s ``oof`` for the trees on ``F``."""
    def oof(kept: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        folds = fold_models(Features(F.names, F.X[kept]), stars[kept], hero[kept], groups[kept], seed)
        ps, pp, _ = held_out(folds, F.X[kept])
        return ps, pp, held_out_ranking(folds, F.X[kept])
    return oof


IMPORTANCE_REPEATS = 10  # shuffles of each feature


def importance(folds: list[tuple[np.ndarray, Fitted]], F: Features, hero: np.ndarray, groups: np.ndarray,
               seed: int = 0, repeats: int = IMPORTANCE_REPEATS, resamples: int = 200) -> list[dict]:
    """What the curators reward, measured where the model never looked: each feature's permutation
    importance for the held-out hero ranking (the out-of-fold AUC lost when the feature is
    shuffled among a fold's held-out rows, the mean over ``repeats`` shuffles) with an interval
    (normal, the standard error from a bootstrap that resamples whole groups, at 95% for all the
    features together: Bonferroni), and for the features whose loss is clear of zero the direction
    of the effect (Spearman of the feature with the held-out ranking, with its 95% interval).

    Every feature that has values, most important first; [] when the hero decisions cannot be
    judged. Held out, not on the training rows: a model that fits noise loses its fit to noise
    when a feature is shuffled, which says nothing about the curators; and the interval, not the
    spread over shuffles, since a held-out sample can favour a feature by luck.
    """
    y = hero >= 0
    if y.sum() < 10 or hero[y].all() or not hero[y].any():
        return []
    p = held_out_ranking(folds, F.X)
    columns = [j for j in range(len(F.names)) if not np.isnan(F.X[y, j]).all()]
    shuffled = _shuffled_ranking(folds, F.X, columns, p, repeats, np.random.default_rng(seed))

    def drops(i: np.ndarray) -> np.ndarray:  # per column, for the decisions i
        return aucs(p[i], hero[i] == 1) - aucs(shuffled[:, :, i], hero[i] == 1).mean(axis=1)

    rows = np.flatnonzero(y)
    counts = resample_counts(groups[rows], resamples, seed)
    is_hero = hero[rows] == 1
    whole = weighted_aucs(p[None, rows], is_hero, counts)[:, 0]
    each = weighted_aucs(shuffled[:, :, rows].reshape(-1, len(rows)), is_hero, counts)
    draws = whole[:, None] - each.reshape(len(counts), len(columns), repeats).mean(axis=2)
    level = 1 - 0.05 / len(columns)  # Bonferroni: every feature looked at is one more chance to find noise
    z = NormalDist().inv_cdf(0.5 + level / 2)
    found = []
    for c, (j, drop) in enumerate(zip(columns, drops(rows))):
        ok = draws[:, c][np.isfinite(draws[:, c])]
        se = float(ok.std(ddof=1)) if len(ok) >= max(2, len(draws) / 2) else None
        found.append({"feature": F.names[j], "auc_drop": float(drop), "repeats": repeats, "level": level,
                      "auc_drop_ci": None if se is None else [float(drop) - z * se, float(drop) + z * se],
                      "direction": None, "direction_ci": None})
    found.sort(key=lambda f: -f["auc_drop"])
    for item in found:
        if item["feature"] in UNDIRECTED or not distinguishable_loss(item):
            continue
        column = F.X[:, F.names.index(item["feature"])]
        ok = np.flatnonzero(y & np.isfinite(column))
        if len(ok) >= 3:
            item["direction"] = spearman(column[ok], p[ok])
            item["direction_ci"] = group_bootstrap_ci(
                lambda i, c=column: spearman(c[i], p[i]) if len(i) >= 3 else None, groups[ok], ok, resamples, seed)
    return found


def _shuffled_ranking(folds: list[tuple[np.ndarray, Fitted]], X: np.ndarray, columns: list[int], p: np.ndarray,
                repeats: int, rng: np.random.Generator, cells: int = 4_000_000) -> np.ndarray:
    """Held-out rankings (:meth:`Fitted.ranking`) with one column shuffled among each fold's held-out rows:
    (columns, repeats, rows). Many shuffled copies go into one predict call (a call's cost is
    mostly per tree, not per row), at most ``cells`` values at a time."""
    out = np.repeat(p[None, None], len(columns), axis=0).repeat(repeats, axis=1)
    for test, model in folds:
        per_column = repeats * len(test) * X.shape[1]
        step = max(1, cells // max(per_column, 1))
        for start in range(0, len(columns), step):
            batch = columns[start:start + step]
            block = np.repeat(X[test][None, None], len(batch), axis=0).repeat(repeats, axis=1)
            for c, j in enumerate(batch):
                for r in range(repeats):
                    block[c, r, :, j] = rng.permutation(X[test, j])
            flat = model.ranking(block.reshape(-1, X.shape[1]))
            out[start:start + len(batch), :, test] = flat.reshape(len(batch), repeats, len(test))
    return out
