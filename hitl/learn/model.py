"""The learned rater: gradient-boosted trees on the curators' decisions, validated so that no frame
of a burst is judged by a model trained on its neighbour. Pure: arrays in, arrays and dicts out.

Stars: a regressor on 1-10. Hero: a classifier whose probabilities are calibrated (Platt or
isotonic, fitted on held-out groups), so "p = 0.8" means eight in ten. Both from scikit-learn's
HistGradientBoosting, which takes missing values (NaN) and categories natively.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline

from hitl.analyse.statistics import percentile_ci, quadratic_weighted_kappa, spearman
from hitl.learn.features import Features

MIN_DECISIONS = 30
FOLDS = 5


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
        p = self.hero.predict_proba(X)[:, 1] if self.hero is not None else np.full(len(X), self.hero_rate)
        return stars, p


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


def out_of_fold(F: Features, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each row's prediction by a model that never saw its group: (stars, p_hero, fold of each row)."""
    n_groups = len(np.unique(groups))
    splits = min(FOLDS, n_groups)
    if splits < 2:
        raise ValueError("cross-validation needs decisions on at least two sequences (or locations)")
    pred_stars, pred_p = np.full(len(F.X), np.nan), np.full(len(F.X), np.nan)
    fold = np.full(len(F.X), -1, dtype=np.int64)
    for k, (train, test) in enumerate(GroupKFold(splits).split(F.X, groups=groups)):
        model = fit(Features(F.names, F.X[train]), stars[train], hero[train], groups[train], seed)
        pred_stars[test], pred_p[test] = model.predict(F.X[test])
        fold[test] = k
    return pred_stars, pred_p, fold


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
    score, y = np.asarray(score, float), np.asarray(y, bool)
    pos, neg = score[y], score[~y]
    if len(pos) == 0 or len(neg) == 0:
        return None
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    both = np.concatenate([pos, neg])
    for value in np.unique(both):  # midranks for ties
        tied = both == value
        ranks[tied] = ranks[tied].mean()
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


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
    codes, inverse = np.unique(groups, return_inverse=True)
    members = [rows[inverse == g] for g in range(len(codes))]
    rng = np.random.default_rng(seed)
    values = np.full(resamples, np.nan)  # NaN: undefined in that resample
    for k in range(resamples):
        picked = rng.integers(0, len(members), len(members))
        value = statistic(np.concatenate([members[g] for g in picked]))
        if value is not None:
            values[k] = value
    return percentile_ci(values, level)


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


def importance(model: Fitted, F: Features, stars: np.ndarray, hero: np.ndarray, seed: int = 0,
               top: int = 5) -> list[dict]:
    """What the curators reward: each feature's permutation importance for the hero probability
    (AUC lost when it is shuffled), with the direction of its effect."""
    y = hero >= 0
    if model.hero is None or y.sum() < 10:
        return []
    X, target = F.X[y], hero[y] == 1
    base = auc(model.predict(X)[1], target) or 0.5
    rng = np.random.default_rng(seed)
    found = []
    for j, name in enumerate(F.names):
        if np.isnan(X[:, j]).all():
            continue
        shuffled = X.copy()
        shuffled[:, j] = rng.permutation(shuffled[:, j])
        drop = base - (auc(model.predict(shuffled)[1], target) or 0.5)
        column = X[:, j]
        ok = np.isfinite(column)
        direction = spearman(column[ok], model.predict(X[ok])[1]) if ok.sum() >= 3 and name not in (
            "species", "location") else None
        found.append({"feature": name, "auc_drop": float(drop), "direction": direction})
    found.sort(key=lambda f: -f["auc_drop"])
    return [f for f in found[:top] if f["auc_drop"] > 0]
