"""The learned rater as `learn`, `select --learned` and `next` use it: the vector-aware rater
(:mod:`hitl.learn.pixels`) wherever an image has a vector, the trees on the detector features
alone elsewhere; both cross-validated on the same grouped folds, so their figures stand side by side.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hitl.learn import model as M
from hitl.learn import pixels as P
from hitl.learn.features import Features


@dataclass
class Validated:
    """One rater's cross-validation on the decisions ``rows`` (indices into the decisions)."""

    rows: np.ndarray
    folds: list[tuple[np.ndarray, M.Fitted]]  # held-out positions are within ``rows``
    held: Features  # what each held-out row was judged on
    stars: np.ndarray  # out of fold, one per row of ``rows``
    p: np.ndarray
    raw: np.ndarray  # the hero trees' raw held-out scores, for the full fit's calibration
    ranking: np.ndarray  # what each held-out row is ordered by (model.Fitted.ranking)


def validate_detector(F: Features, stars: np.ndarray, hero: np.ndarray, splits: list, seed: int = 0) -> Validated:
    folds = M.cross_fitted([(train, test, Features(F.names, F.X[train]), F.X[test]) for train, test in splits],
                           stars, hero, seed)
    return _validated(np.arange(len(F.X)), folds, F)


def validate_pixels(F: Features, V: np.ndarray, has: np.ndarray, stars: np.ndarray, hero: np.ndarray,
                    groups: np.ndarray, splits: list, seed: int = 0) -> Validated | None:
    """The vector-aware rater on the decisions ``has`` marks (``V``: their vectors, in order), on
    ``splits`` restricted to them; None when fewer than :data:`hitl.learn.model.MIN_DECISIONS`
    decisions have a vector or they fall in fewer than two folds."""
    rows = np.flatnonzero(has)
    position = np.cumsum(has) - 1
    mine = [(position[train[has[train]]], position[test[has[test]]]) for train, test in splits]
    mine = [(train, test) for train, test in mine if len(train) and len(test)]
    if len(rows) < M.MIN_DECISIONS or len(mine) < 2:
        return None
    F_has = Features(F.names, F.X[rows])
    folds, held = P.fold_models(F_has, V, stars[rows], hero[rows], groups[rows], seed, mine)
    return _validated(rows, folds, held)


def _validated(rows: np.ndarray, folds: list[tuple[np.ndarray, M.Fitted]], held: Features) -> Validated:
    stars, p, _ = M.held_out(folds, held.X)
    return Validated(rows, folds, held, stars, p, M.held_out_raw(folds, held.X), M.held_out_ranking(folds, held.X))


def combined(detector: Validated, pixels: Validated | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each decision's out-of-fold (stars, p_hero, ranking): the vector-aware rater's where it has one."""
    stars, p, ranking = detector.stars.copy(), detector.p.copy(), detector.ranking.copy()
    if pixels is not None:
        known = np.isfinite(pixels.p)
        mine = pixels.rows[known]
        stars[mine], p[mine], ranking[mine] = pixels.stars[known], pixels.p[known], pixels.ranking[known]
    return stars, p, ranking


@dataclass
class Raters:
    """The detector-only rater for every image and, where an image has a vector, the vector-aware one."""

    detector: M.Fitted
    pixels: P.PixelRater | None = None

    def predict(self, X: np.ndarray, V: np.ndarray | None = None, has: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        """(stars, p_hero) per row of detector features ``X``; ``has``: the rows with a vector,
        ``V``: their vectors, in order."""
        stars, p = np.full(len(X), np.nan), np.full(len(X), np.nan)
        with_vector = np.zeros(len(X), dtype=bool) if has is None or self.pixels is None else has
        if with_vector.any():
            stars[with_vector], p[with_vector] = self.pixels.predict(X[with_vector], V)
        if (~with_vector).any():
            stars[~with_vector], p[~with_vector] = self.detector.predict(X[~with_vector])
        return stars, p


def fit(F: Features, stars: np.ndarray, hero: np.ndarray, groups: np.ndarray, seed: int = 0,
        V: np.ndarray | None = None, has: np.ndarray | None = None, detector: Validated | None = None,
        pixels: Validated | None = None) -> Raters:
    """Both raters on every decision they cover (``has`` and ``V`` as for :meth:`Raters.predict`;
    the vector-aware one only from :data:`hitl.learn.model.MIN_DECISIONS` decisions with a vector).
    With their cross-validations, the probabilities are calibrated on its held-out scores."""
    full = M.fit(F, stars, hero, groups, seed, None if detector is None else detector.raw)
    if V is None or has is None or has.sum() < M.MIN_DECISIONS:
        return Raters(full)
    rows = np.flatnonzero(has)
    raw = None if pixels is None else pixels.raw
    return Raters(full, P.fit(Features(F.names, F.X[rows]), V, stars[rows], hero[rows], groups[rows], seed, raw))
