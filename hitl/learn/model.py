"""The learned rater: gradient-boosted trees on the curators' decisions, validated so that no frame
of a burst is judged by a model trained on its neighbour. Pure: arrays in, arrays and dicts out.

Stars: a regressor on 1-10. Hero: a classifier whose probabilities are calibrated (Platt or
isotonic, fitted on held-out groups), so "p = 0.8" means eight in ten. Both from scikit-learn's
HistGradientBoosting, which takes missing values (NaN) and categories natively.
"""
from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
from scipy.stats import rankdata
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from threadpoolctl import threadpool_limits

from hitl.analyse.statistics import percentile_ci, quadratic_weighted_kappa, spearman
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


def tree_params(categorical: np.ndarray, n: int, seed: int) -> dict:
    """Small, regularised trees: a few hundred decisions is the usual size of the data."""
    return {"max_iter": 150, "learning_rate": 0.06, "max_leaf_nodes": 15, "min_samples_leaf": max(5, n // 40),
            "l2_regularization": 1.0, "categorical_features": categorical if categorical.any() else None,
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


@dataclass
class Fitted:
    """A stars regressor and a calibrated hero classifier (None: one class only, then the base rate)."""

    names: list[str]
    stars: Pipeline | None  # trees(HistGradientBoostingRegressor)
    hero: CalibratedClassifierCV | Pipeline | None  # calibrated trees(HistGradientBoostingClassifier)
    hero_rate: float
    stars_mean: float

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(stars 1-10, probability of hero) per row."""
        stars = (np.clip(self.stars.predict(X), 1, 10) if self.stars is not None
                 else np.full(len(X), self.stars_mean))
        return stars, self.p_hero(X)

    def p_hero(self, X: np.ndarray) -> np.ndarray:
        """The probability of hero per row."""
        return self.hero.predict_proba(X)[:, 1] if self.hero is not None else np.full(len(X), self.hero_rate)


def fit(F: Features, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0) -> Fitted:
    """Fit on the rows with a target (``stars`` NaN and ``hero`` -1 mark a decision without it)."""
    has_stars, has_hero = np.isfinite(stars), hero >= 0
    params = tree_params(F.categorical, len(F.X), seed)
    regressor = None
    if has_stars.sum() >= 2:
        regressor = trees(HistGradientBoostingRegressor, params).fit(F.X[has_stars], stars[has_stars])
    classifier, rate = None, float(hero[has_hero].mean()) if has_hero.any() else 0.0
    y = hero[has_hero]
    if has_hero.sum() >= 4 and 0 < y.sum() < len(y):
        classifier = _calibrated(F.X[has_hero], y, groups[has_hero], params)
    return Fitted(F.names, regressor, classifier, rate, float(np.nanmean(stars)) if has_stars.any() else 5.0)


def _calibrated(X: np.ndarray, y: np.ndarray, groups: np.ndarray, params: dict):
    """A hero classifier whose probabilities are calibrated on held-out groups; where a split
    would leave one class only, the trees' own probabilities (boosted log-loss) are used."""
    splits = min(3, len(np.unique(groups)))
    folds = list(GroupKFold(splits).split(X, y, groups)) if splits >= 2 else []
    if folds and all(0 < y[train].sum() < len(train) for train, _ in folds):
        method = "isotonic" if len(y) >= 400 else "sigmoid"  # isotonic needs many points not to overfit
        return CalibratedClassifierCV(trees(HistGradientBoostingClassifier, params), method=method,
                                      cv=folds).fit(X, y)
    return trees(HistGradientBoostingClassifier, params).fit(X, y)


def fold_models(F: Features, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0
                ) -> list[tuple[np.ndarray, Fitted]]:
    """The cross-validation's models, each with the rows it never saw (whole groups)."""
    splits = min(FOLDS, len(np.unique(groups)))
    if splits < 2:
        raise ValueError("cross-validation needs decisions on at least two sequences (or locations)")
    return [(test, fit(Features(F.names, F.X[train]), stars[train], hero[train], groups[train], seed))
            for train, test in GroupKFold(splits).split(F.X, groups=groups)]


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


def precision_at_k(score: np.ndarray, y: np.ndarray, k: int) -> float | None:
    """Of the k highest-ranked, the share that are heroes."""
    if len(score) == 0:
        return None
    top = np.argsort(-np.asarray(score, float), kind="mergesort")[: min(k, len(score))]
    return float(np.asarray(y, bool)[top].mean())


def figures(pred_stars: np.ndarray, p_hero: np.ndarray, stars: np.ndarray, hero: np.ndarray, k: int,
            groups: np.ndarray | None = None, resamples: int = 0, seed: int = 0) -> dict:
    """Spearman, QWK and MAE against the curators' stars; hero AUC, precision@k and ECE.

    With ``groups`` and ``resamples``, 95% intervals for Spearman and hero AUC too, from a
    bootstrap that resamples whole groups (a burst's frames are not independent evidence).
    """
    s = np.isfinite(stars) & np.isfinite(pred_stars)
    h = (hero >= 0) & np.isfinite(p_hero)
    intervals = {}
    if groups is not None and resamples > 0:
        intervals = {
            "spearman_ci": group_bootstrap_ci(lambda i: spearman(pred_stars[i], stars[i]) if len(i) >= 3 else None,
                                              groups[s], np.flatnonzero(s), resamples, seed),
            "hero_auc_ci": group_bootstrap_ci(lambda i: auc(p_hero[i], hero[i] == 1), groups[h], np.flatnonzero(h),
                                              resamples, seed),
        }
    return {**intervals,
        "n_stars": int(s.sum()), "n_hero": int(h.sum()),
        "spearman": spearman(pred_stars[s], stars[s]) if s.sum() >= 3 else None,
        "qwk": quadratic_weighted_kappa(np.rint(pred_stars[s]), stars[s], labels=range(0, 11)) if s.sum() >= 3 else None,
        "mae": float(np.abs(pred_stars[s] - stars[s]).mean()) if s.any() else None,
        "hero_auc": auc(p_hero[h], hero[h] == 1),
        "precision_at_k": precision_at_k(p_hero[h], hero[h] == 1, k),
        "ece": expected_calibration_error(p_hero[h], hero[h] == 1),
        "k": k,
    }


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


def learning_curve(F: Features, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0,
                   steps: int = 5) -> list[dict]:
    """Out-of-fold agreement when only part of the decisions is used (whole groups, at random)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(np.unique(groups))
    curve = []
    for share in np.linspace(1 / steps, 1.0, steps):
        kept = np.isin(groups, order[: max(2, int(round(share * len(order))))])
        if kept.sum() < 10:
            continue
        try:
            ps, pp, _ = out_of_fold(Features(F.names, F.X[kept]), stars[kept], hero[kept], groups[kept], seed)
        except ValueError:
            continue
        got = figures(ps, pp, stars[kept], hero[kept], k=10)
        curve.append({"decisions": int(kept.sum()), "spearman": got["spearman"], "hero_auc": got["hero_auc"]})
    return curve


IMPORTANCE_REPEATS = 10  # shuffles of each feature
UNDIRECTED = ("species", "location", "hour_sin", "hour_cos")  # an effect with no "more is better"


def importance(folds: list[tuple[np.ndarray, Fitted]], F: Features, hero: np.ndarray, groups: np.ndarray,
               seed: int = 0, repeats: int = IMPORTANCE_REPEATS, resamples: int = 200) -> list[dict]:
    """What the curators reward, measured where the model never looked: each feature's permutation
    importance for the held-out hero probability (the out-of-fold AUC lost when the feature is
    shuffled among a fold's held-out rows, the mean over ``repeats`` shuffles) with an interval
    (normal, the standard error from a bootstrap that resamples whole groups, at 95% for all the
    features together: Bonferroni), and for the features whose loss is clear of zero the direction
    of the effect (Spearman of the feature with the held-out probability, with its 95% interval).

    Every feature that has values, most important first; [] when the hero decisions cannot be
    judged. Held out, not on the training rows: a model that fits noise loses its fit to noise
    when a feature is shuffled, which says nothing about the curators; and the interval, not the
    spread over shuffles, since a held-out sample can favour a feature by luck.
    """
    y = hero >= 0
    if y.sum() < 10 or hero[y].all() or not hero[y].any():
        return []
    _, p, _ = held_out(folds, F.X)
    columns = [j for j in range(len(F.names)) if not np.isnan(F.X[y, j]).all()]
    shuffled = _shuffled_p(folds, F.X, columns, p, repeats, np.random.default_rng(seed))

    def drops(i: np.ndarray) -> np.ndarray:  # per column, for the decisions i
        return aucs(p[i], hero[i] == 1) - aucs(shuffled[:, :, i], hero[i] == 1).mean(axis=1)

    rows = np.flatnonzero(y)
    draws = np.array([drops(i) for i in group_resamples(groups[rows], rows, resamples, seed)]).reshape(-1, len(columns))
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


def _shuffled_p(folds: list[tuple[np.ndarray, Fitted]], X: np.ndarray, columns: list[int], p: np.ndarray,
                repeats: int, rng: np.random.Generator, cells: int = 4_000_000) -> np.ndarray:
    """Held-out probabilities with one column shuffled among each fold's held-out rows:
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
            flat = model.p_hero(block.reshape(-1, X.shape[1]))
            out[start:start + len(batch), :, test] = flat.reshape(len(batch), repeats, len(test))
    return out


def distinguishable_loss(item: dict) -> bool:
    """Shuffling the feature costs held-out AUC, its whole interval above zero (a record without
    the interval, from before it was computed, is not judged)."""
    ci = item.get("auc_drop_ci")
    return bool(ci) and ci[0] > 0
