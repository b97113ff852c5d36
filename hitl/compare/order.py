"""The curators' pairwise comparisons as an order of images. Pure: plain data in and out.

:func:`pairwise_order` fits Bradley-Terry strengths (:mod:`hitl.compare.strength`) over a given
list of images from the comparisons among them, as :func:`hitl.store.ratings.curator_comparisons`
returns them (one per curator and pair: each counts once, a curator's "same" as half a win each
way). A comparison naming an image outside the list is counted, not used. Only images compared
at least once are fitted: an image never compared has no strength and no rank.
"""
from __future__ import annotations

from dataclasses import dataclass

from hitl.compare.strength import fit_bradley_terry

# a comparison's preference -> s in the outcome (left, right, s): 1 the left image won
PREFERENCE_S = {"left": 1.0, "right": 0.0, "same": 0.5}


@dataclass(frozen=True)
class ImageStrength:
    """One image's place in the pairwise order; all None (and ``n_compared`` 0) when never compared.

    ``log_strength`` is the Bradley-Terry log-strength, mean 0 over the compared images;
    ``low`` and ``high`` its interval at the order's level; ``rank`` 1 is the strongest.
    """

    image_id: str
    rank: int | None
    log_strength: float | None
    low: float | None
    high: float | None
    n_compared: int


@dataclass(frozen=True)
class PairwiseOrder:
    """Every given image's :class:`ImageStrength` (in the order given) and what the fit used.

    ``n_used``: comparisons between two of the images; ``n_outside``: comparisons naming an
    image outside them; ``n_curators``: curators of the comparisons used.
    """

    images: list[ImageStrength]
    n_used: int
    n_outside: int
    n_curators: int
    level: float

    def by_id(self) -> dict[str, ImageStrength]:
        return {s.image_id: s for s in self.images}

    def ranked(self) -> list[ImageStrength]:
        """The compared images, strongest first."""
        return sorted((s for s in self.images if s.rank is not None), key=lambda s: s.rank)

    def strengths(self) -> dict[str, float]:
        """image_id -> log-strength of every compared image."""
        return {s.image_id: s.log_strength for s in self.images if s.log_strength is not None}


def comparison_outcome(comparison: dict) -> tuple[str, str, float]:
    """(left, right, s) of one comparison; ValueError for an unknown preference or an image against itself."""
    left, right, preference = comparison["left"], comparison["right"], comparison["preference"]
    if preference not in PREFERENCE_S:
        raise ValueError(f"comparison of {left!r} and {right!r}: preference must be one of "
                         f"{', '.join(PREFERENCE_S)}, not {preference!r}")
    if left == right:
        raise ValueError(f"comparison of {left!r} with itself")
    return left, right, PREFERENCE_S[preference]


def pairwise_order(image_ids: list[str], comparisons: list[dict], level: float = 0.95,
                   prior: float = 0.1) -> PairwiseOrder:
    """The Bradley-Terry order of ``image_ids`` from ``comparisons`` (dicts with left, right,
    preference and curator), with ``level`` intervals; ``prior`` as in :func:`fit_bradley_terry`."""
    if len(set(image_ids)) != len(image_ids):
        raise ValueError("image_ids must not repeat an image")
    position = {image_id: k for k, image_id in enumerate(image_ids)}
    used: list[tuple[str, str, float]] = []
    curators: set[str] = set()
    n_outside = 0
    for comparison in comparisons:
        left, right, s = comparison_outcome(comparison)
        if left in position and right in position:
            used.append((left, right, s))
            curators.add(comparison["curator"])
        else:
            n_outside += 1
    compared = sorted({i for left, right, _ in used for i in (left, right)}, key=position.__getitem__)
    index = {image_id: k for k, image_id in enumerate(compared)}
    fitted: dict[str, ImageStrength] = {}
    if compared:
        fit = fit_bradley_terry(len(compared), [(index[a], index[b], s) for a, b, s in used], prior=prior)
        bounds = fit.intervals(level)
        for rank, k in enumerate(fit.ranking(), start=1):
            fitted[compared[k]] = ImageStrength(
                compared[k], rank, float(fit.log_strength[k]), float(bounds[k, 0]), float(bounds[k, 1]),
                int(fit.n_compared[k]))
    images = [fitted.get(i) or ImageStrength(i, None, None, None, None, 0) for i in image_ids]
    return PairwiseOrder(images=images, n_used=len(used), n_outside=n_outside, n_curators=len(curators),
                         level=level)
