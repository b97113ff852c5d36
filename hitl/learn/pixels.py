"""The learned rater that sees the pixels: a ridge head on the image vector, stacked with the trees. Pure.

The head is two ridge regressions on the standardised vector (a linear probe): one of the stars,
one of the hero decision. Their two predictions join the detector features as columns
(:data:`HEAD`), and the gradient-boosted trees of :mod:`hitl.learn.model` learn on them all, so
the trees weigh what the pixels say against the detector record and the models' opinions. The
trees learn from head predictions for rows the head never saw (grouped folds inside the training
rows), as they will meet them on new images; the ridge penalty is chosen by the same folds.

Why this form and not the vector's leading principal components beside the detector features:
the taste of a collection need not lie along the directions in which its images differ most.
Measured with grouped out-of-fold figures (scripts/bench/bench_loop_pixels.py --forms, whose
drawn collection hides the taste in sharpness, light and pose; baseline vectors, 500 decisions):
hero AUC 0.818 and Spearman 0.599 for the stacked head, against 0.715 / 0.299, 0.739 / 0.466,
0.824 / 0.520 and 0.777 / 0.553 for 4, 8, 16 and 32 components beside (0.573 / 0.091 for the
detector record alone); the best number of components is a guess per collection, and in the
loop itself the head found 92 heroes in 500 reviews against 73 for 16 components (44 for the
detector record alone). On the sample data's 86 decisions (32 images, three locations) neither
form learns the hero decision yet: hero AUC 0.36 stacked, 0.41 to 0.46 with 2 to 8 components
beside, 0.41 without the vectors, Spearman 0.63 to 0.65 for all: too few to choose by.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import GroupKFold

from hitl.learn import model as M
from hitl.learn.features import Features

HEAD = ("pixels:stars", "pixels:hero")  # the head's columns beside the detector features
ALPHAS = np.logspace(-3, 2, 11)  # ridge penalties tried, in units of the training vectors' mean eigenvalue
INNER_FOLDS = 5


@dataclass
class Head:
    """Two ridge regressions on the image vector, the standardisation folded into their weights."""

    mean: np.ndarray  # (d,) the training vectors' mean
    weights: np.ndarray  # (d, 2) per raw vector component, for the stars and the hero decision
    intercept: np.ndarray  # (2,)

    def columns(self, V: np.ndarray) -> np.ndarray:
        """The :data:`HEAD` columns of each vector (rows of ``V``). In float32 with the mean folded into
        the intercept: a million stored vectors in a third of float64's time, the same to 1e-6."""
        offset = self.intercept - self.mean @ self.weights
        return (np.asarray(V, np.float32) @ self.weights.astype(np.float32)).astype(np.float64) + offset


def fit_head(V: np.ndarray, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray) -> tuple[Head, np.ndarray]:
    """The head fitted on every row, and each row's :data:`HEAD` columns from a head fitted without
    its group (grouped folds), which the trees learn from. Each target's penalty is the one whose
    grouped out-of-fold squared error is least.

    Rows with the same vector (several curators' decisions on one image) are fitted as one row
    weighted by their number, on their mean target: the same least squares, a smaller matrix."""
    unique, first, inverse = np.unique(np.asarray(V, np.float32), axis=0, return_index=True, return_inverse=True)
    inverse = inverse.ravel()
    Z = unique.astype(np.float64)
    mean = Z.mean(axis=0)
    scale = Z.std(axis=0)
    scale[scale < 1e-9] = 1.0
    Z = (Z - mean) / scale
    n_splits = min(INNER_FOLDS, len(np.unique(groups[first])))
    folds = list(GroupKFold(n_splits).split(Z, groups=groups[first])) if n_splits >= 2 else []
    alphas = ALPHAS * max(float((Z ** 2).sum()) / max(1, min(Z.shape)), 1e-9)  # about the mean eigenvalue of Z'Z
    svds: dict[tuple[int, bytes], tuple] = {}  # one decomposition per fold and weighting, whatever the target
    inner = np.zeros((len(V), len(HEAD)))
    weights = np.zeros((Z.shape[1], len(HEAD)))
    intercept = np.zeros(len(HEAD))
    for t, (known, y) in enumerate([(np.isfinite(stars), stars), (hero >= 0, hero.astype(np.float64))]):
        w = np.bincount(inverse[known], minlength=len(Z)).astype(np.float64)
        ybar = np.bincount(inverse[known], weights=y[known], minlength=len(Z)) / np.maximum(w, 1)
        if (w > 0).sum() < 2 or np.ptp(ybar[w > 0]) == 0:  # nothing to learn: a constant column
            intercept[t] = inner[:, t] = float(y[known].mean()) if known.any() else 0.0
            continue
        path = np.full((len(Z), len(alphas)), np.nan)
        for k, (train, test) in enumerate(folds):
            if (w[train] > 0).sum() >= 2:
                path[test] = _ridge_path(svds, k, Z[train], w[train], ybar[train], Z[test], alphas)
        error = np.full(len(alphas), np.inf)
        scored = (w > 0) & np.isfinite(path[:, 0])
        if scored.any():
            error = (w[scored, None] * (path[scored] - ybar[scored, None]) ** 2).sum(axis=0)
        best = int(np.argmin(error)) if np.isfinite(error).any() else len(alphas) // 2
        coef, intercept[t] = _ridge(svds, Z, w, ybar, alphas[best])
        weights[:, t] = coef / scale
        own = np.where(np.isfinite(path[:, best]), path[:, best], Z @ coef + intercept[t])
        inner[:, t] = own[inverse]
    return Head(mean, weights, intercept), inner


def _decomposed(svds: dict, key: int, Z: np.ndarray, w: np.ndarray) -> tuple:
    """The weighted centring of ``Z`` and the SVD of its weighted rows, once per fold and weighting."""
    found = svds.get((key, w.tobytes()))
    if found is None:
        m = (w @ Z) / w.sum()
        U, S, Vt = np.linalg.svd(np.sqrt(w)[:, None] * (Z - m), full_matrices=False)
        found = svds[(key, w.tobytes())] = (m, U, S, Vt)
    return found


def _ridge(svds: dict, Z: np.ndarray, w: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Weighted ridge coefficients on ``Z`` and the intercept."""
    m, U, S, Vt = _decomposed(svds, -1, Z, w)
    ym = float(w @ y / w.sum())
    coef = Vt.T @ (S / (S ** 2 + alpha) * (U.T @ (np.sqrt(w) * (y - ym))))
    return coef, float(ym - m @ coef)


def _ridge_path(svds: dict, key: int, Z: np.ndarray, w: np.ndarray, y: np.ndarray, Z_test: np.ndarray,
                alphas: np.ndarray) -> np.ndarray:
    """Predictions for ``Z_test`` of weighted ridge fits at every penalty: (rows, penalties)."""
    m, U, S, Vt = _decomposed(svds, key, Z, w)
    ym = float(w @ y / w.sum())
    shrink = S[:, None] / (S[:, None] ** 2 + alphas[None, :])
    coef = Vt.T @ (shrink * (U.T @ (np.sqrt(w) * (y - ym)))[:, None])
    return (Z_test - m) @ coef + ym


def names(detector_names: list[str]) -> list[str]:
    """The vector-aware rater's columns: the detector rater's and the head's."""
    return list(detector_names) + list(HEAD)


@dataclass
class PixelRater:
    """The head and the trees fitted on the detector features with the head's columns."""

    head: Head
    trees: M.Fitted

    def predict(self, X: np.ndarray, V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(stars 1-10, probability of hero) per row of detector features ``X`` and vectors ``V``."""
        return self.trees.predict(np.column_stack([X, self.head.columns(V)]))

    def p_hero(self, X: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """The probability of hero per row of ``X`` and the head's ``columns`` of its vector (a
        collection's vectors are read, and their columns made, a chunk at a time)."""
        return self.trees.p_hero(np.column_stack([X, columns]))


def fit(F: Features, V: np.ndarray, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0,
        held_out_raw: np.ndarray | None = None) -> PixelRater:
    """The vector-aware rater on every row (see :func:`hitl.learn.model.fit` for ``held_out_raw``)."""
    head, inner = fit_head(V, stars, hero, groups)
    trees = M.fit(Features(names(F.names), np.column_stack([F.X, inner])), stars, hero, groups, seed, held_out_raw)
    return PixelRater(head, trees)


def fold_models(F: Features, V: np.ndarray, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0,
                splits: list[tuple[np.ndarray, np.ndarray]] | None = None
                ) -> tuple[list[tuple[np.ndarray, M.Fitted]], Features]:
    """The cross-validation's trees (``splits``: default grouped folds), and the features they are
    judged on: each held-out row with the columns of its own fold's head, a head that never saw it."""
    splits = M.splits(groups) if splits is None else splits
    held = Features(names(F.names), np.column_stack([F.X, np.full((len(F.X), len(HEAD)), np.nan)]))
    parts = []
    for train, test in splits:
        head, inner = fit_head(V[train], stars[train], hero[train], groups[train])
        held.X[test] = np.column_stack([F.X[test], head.columns(V[test])])
        parts.append((train, test, Features(held.names, np.column_stack([F.X[train], inner])), held.X[test]))
    return M.cross_fitted(parts, stars, hero, seed), held
