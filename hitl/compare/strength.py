"""Bradley-Terry strengths from pairwise comparisons, with intervals. Pure: plain data in and out.

Each comparison (i, j, s) says image i beat image j (s = 1), lost to it (s = 0) or that the
curator called them the same (s = 0.5: half a win each way). Under Bradley-Terry,
P(i beats j) = 1 / (1 + exp(-(t_i - t_j))) for log-strengths t. The fit is the maximum a
posteriori t under a Gaussian prior N(0, 1/prior) on each t, by Newton's method: the
log-posterior is strictly concave, so it has one maximum, which is finite even for an image never
compared or one that won every comparison (where the plain maximum likelihood runs off to
infinity). The likelihood only sees differences, and the prior's gradient sums to -prior * sum(t),
so the maximum has mean log-strength 0: that is the scale's origin.

Standard errors come from the inverse of the negative Hessian of the log-posterior at the
maximum, restricted to the sum-to-zero subspace: the direction that moves every t together is
known only through the prior (variance 1 / (prior * n)) and says nothing about the ranking, so it
is projected out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

VALID_S = (0.0, 0.5, 1.0)


@dataclass(frozen=True)
class Strengths:
    """Fitted log-strengths (mean 0), their standard errors and how often each item was compared."""

    log_strength: np.ndarray
    se: np.ndarray
    n_compared: np.ndarray

    @property
    def n_items(self) -> int:
        return len(self.log_strength)

    def intervals(self, level: float = 0.95) -> np.ndarray:
        """Normal-approximation intervals, shape (n, 2): columns low and high."""
        if not 0 < level < 1:
            raise ValueError(f"level must be between 0 and 1, not {level}")
        z = NormalDist().inv_cdf(0.5 + level / 2)
        return np.column_stack([self.log_strength - z * self.se, self.log_strength + z * self.se])

    def ranking(self) -> list[int]:
        """Item indices, strongest first; equal strengths by index."""
        return np.lexsort((np.arange(self.n_items), -self.log_strength)).tolist()

    def p_beats(self, i: int, j: int) -> float:
        """The fitted probability that item i beats item j."""
        return _sigmoid(float(self.log_strength[i] - self.log_strength[j]))


def _sigmoid(x: float) -> float:
    # the two forms keep exp() from overflowing for large |x|
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def validate(n_items: int, outcomes: list[tuple[int, int, float]]) -> np.ndarray:
    """The outcomes as an (m, 3) float array; ValueError naming the first bad outcome's index."""
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, not {n_items}")
    if len(outcomes) == 0:
        return np.zeros((0, 3))
    try:
        a = np.asarray(outcomes, dtype=float)
    except (TypeError, ValueError):
        a = None
    if a is None or a.ndim != 2 or a.shape[1] != 3:
        bad = next((k for k, o in enumerate(outcomes) if not _is_triple(o)), 0)
        raise ValueError(f"outcome {bad} {outcomes[bad]!r}: not an (i, j, s) triple of numbers")
    i, j, s = a[:, 0], a[:, 1], a[:, 2]
    problems = [
        (~(np.isfinite(i) & np.isfinite(j) & (i == np.floor(i)) & (j == np.floor(j))), "indices must be integers"),
        ((i < 0) | (i >= n_items) | (j < 0) | (j >= n_items), f"index out of range 0..{n_items - 1}"),
        (i == j, "an item compared with itself"),
        (~np.isin(s, VALID_S), "s must be 1 (i won), 0 (j won) or 0.5 (same)"),
    ]
    bad = np.logical_or.reduce([mask for mask, _ in problems])
    if bad.any():
        k = int(np.argmax(bad))
        why = next(why for mask, why in problems if mask[k])
        raise ValueError(f"outcome {k} {tuple(outcomes[k])!r}: {why}")
    return a


def _is_triple(o: object) -> bool:
    try:
        numbers = [float(x) for x in o]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        return False
    return len(numbers) == 3


def _log_posterior(t: np.ndarray, i: np.ndarray, j: np.ndarray, s: np.ndarray, prior: float) -> float:
    d = t[i] - t[j]
    # log p = -log(1 + exp(-d)) and log(1 - p) = -log(1 + exp(d)), finite for any d
    return float(-np.sum(s * np.logaddexp(0.0, -d) + (1 - s) * np.logaddexp(0.0, d))) - 0.5 * prior * float(t @ t)


def _gradient_hessian(t: np.ndarray, i: np.ndarray, j: np.ndarray, s: np.ndarray,
                      prior: float) -> tuple[np.ndarray, np.ndarray]:
    """Gradient and negative Hessian of the log-posterior at t."""
    n = len(t)
    p = 1.0 / (1.0 + np.exp(-(t[i] - t[j])))
    r = s - p
    grad = np.bincount(i, r, n) - np.bincount(j, r, n) - prior * t
    # the comparisons' graph Laplacian weighted by p(1 - p), plus the prior on the diagonal
    off = np.bincount(i * n + j, p * (1 - p), n * n).reshape(n, n)
    off = off + off.T
    neg_hess = np.diag(off.sum(axis=1) + prior) - off
    return grad, neg_hess


def fit_bradley_terry(n_items: int, outcomes: list[tuple[int, int, float]], prior: float = 0.1,
                      max_iter: int = 1000, tol: float = 1e-9) -> Strengths:
    """MAP Bradley-Terry log-strengths of ``n_items`` items from ``outcomes`` (i, j, s), by Newton's method.

    ``prior`` is the precision of the Gaussian prior on each log-strength; it must be positive.
    Stops when no log-strength moves more than ``tol``; RuntimeError after ``max_iter`` steps.
    """
    if not prior > 0:
        raise ValueError(f"prior must be positive, not {prior}")
    a = validate(n_items, outcomes)
    i, j, s = a[:, 0].astype(np.intp), a[:, 1].astype(np.intp), a[:, 2]
    t = np.zeros(n_items)
    value = _log_posterior(t, i, j, s, prior)
    for _ in range(max_iter):
        grad, neg_hess = _gradient_hessian(t, i, j, s, prior)
        step = np.linalg.solve(neg_hess, grad)
        # halve the step while the posterior falls: Newton on a strictly concave function then
        # converges from anywhere, even from t = 0 with an item that won everything
        for _ in range(60):
            new_value = _log_posterior(t + step, i, j, s, prior)
            if new_value >= value - 1e-12 * abs(value):
                break
            step = step / 2
        t, value = t + step, new_value
        if np.max(np.abs(step), initial=0.0) <= tol:
            break
    else:
        raise RuntimeError(f"Bradley-Terry fit did not converge in {max_iter} iterations")
    _, neg_hess = _gradient_hessian(t, i, j, s, prior)
    return Strengths(log_strength=t - t.mean(), se=_constrained_se(neg_hess),
                     n_compared=np.bincount(i, minlength=n_items) + np.bincount(j, minlength=n_items))


def _constrained_se(neg_hess: np.ndarray) -> np.ndarray:
    """Standard errors of t from the inverse negative Hessian, on the sum-to-zero subspace."""
    n = len(neg_hess)
    # the all-ones direction is an eigenvector (the Laplacian's rows sum to 0) whose eigenvalue is
    # the prior alone; adding J/n lifts it to prior + 1 without touching the others, so the
    # inverse stays well conditioned for a tiny prior, and projecting with P = I - J/n then
    # removes it exactly: diag(P C P) = diag(C) - 2 * row means + grand mean (C symmetric)
    c = np.linalg.inv(neg_hess + 1.0 / n)
    var = np.diag(c) - 2 * c.mean(axis=1) + c.mean()
    return np.sqrt(np.clip(var, 0.0, None))
