"""Sequence-aware, stratified choice of hero candidates: pure numpy, no files, no database.

Inputs are detection columns (see converters.megadetector.Detections) and per-image arrays;
outputs are indices. Everything here is deterministic for a given seed.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from converters.megadetector import KIND_ANIMAL, KIND_PERSON, KIND_VEHICLE

# Filled in this order: the scarce, most interesting kinds first, so common well-framed
# frames cannot use up the sequences that hold the only rare or multi-species shots.
CATEGORY_ORDER = ("rare_species", "multi_species", "group", "close_up", "well_framed", "night", "best_remaining")

CATEGORY_LABELS = {
    "rare_species": "rare species",
    "multi_species": "several species",
    "group": "group of one species",
    "close_up": "close-up",
    "well_framed": "well-framed single animal",
    "night": "night / IR",
    "best_remaining": "best remaining",
}


@dataclass
class ImageFeatures:
    """Per-image features over all images of a detector file (index = image index)."""

    n_animals: np.ndarray  # animal detections at or above the threshold
    n_people: np.ndarray
    n_vehicles: np.ndarray
    n_species: np.ndarray  # distinct classified species among those animals (>= 1 if any animal)
    main_det: np.ndarray  # detection row of the largest animal, -1 if none
    area: np.ndarray  # largest animal's box area as a fraction of the frame
    cut_off: np.ndarray  # bool: some animal box touches the frame edge
    centrality: np.ndarray  # 1 = largest animal centred, 0 = in a corner
    max_conf: np.ndarray  # highest animal confidence


def image_features(image: np.ndarray, kind: np.ndarray, conf: np.ndarray, bbox: np.ndarray,
                   species: np.ndarray, n_images: int, threshold: float, edge_margin: float,
                   data_strip: float = 0.0) -> ImageFeatures:
    """Compute per-image features from detection columns (rows grouped by image)."""
    above = conf >= threshold
    animal = above & (kind == KIND_ANIMAL)
    n_animals = np.bincount(image[animal], minlength=n_images).astype(np.int32)
    n_people = np.bincount(image[above & (kind == KIND_PERSON)], minlength=n_images).astype(np.int32)
    n_vehicles = np.bincount(image[above & (kind == KIND_VEHICLE)], minlength=n_images).astype(np.int32)

    rows = np.flatnonzero(animal)
    img = image[rows]
    x, y, w, h = (bbox[rows, k] for k in range(4))
    area_rows = w * h
    # the camera's data strip along the bottom hides what is behind it: a box reaching it is cut off too
    edge = ((x <= edge_margin) | (y <= edge_margin) | (x + w >= 1 - edge_margin)
            | (y + h >= 1 - data_strip - edge_margin))
    cut_off = np.bincount(img, weights=edge, minlength=n_images) > 0

    lead = _largest(img, area_rows)
    main_det = np.full(n_images, -1, dtype=np.int64)
    main_det[img[lead]] = rows[lead]
    area = np.zeros(n_images, dtype=np.float32)
    area[img[lead]] = area_rows[lead]
    cx = x[lead] + w[lead] / 2
    cy = y[lead] + h[lead] / 2
    centrality = np.zeros(n_images, dtype=np.float32)
    centrality[img[lead]] = 1 - np.hypot(cx - 0.5, cy - 0.5) / np.hypot(0.5, 0.5)

    max_conf = np.zeros(n_images, dtype=np.float32)
    if len(lead) and (img[1:] >= img[:-1]).all():  # file order: each image's rows are one run
        starts = np.flatnonzero(np.r_[True, img[1:] != img[:-1]])
        max_conf[img[starts]] = np.maximum(max_conf[img[starts]], np.maximum.reduceat(conf[rows], starts))
    else:
        np.maximum.at(max_conf, img, conf[rows])

    # Distinct species matter only where there are two or more animals.
    several = n_animals[img] >= 2
    sp = species[rows][several]
    known = sp >= 0
    width = int(sp.max(initial=0)) + 1
    pairs = np.unique(img[several][known].astype(np.int64) * width + sp[known])
    n_species = np.bincount(pairs // width, minlength=n_images).astype(np.int32)
    n_species = np.where(n_animals > 0, np.maximum(n_species, 1), 0).astype(np.int32)
    return ImageFeatures(n_animals, n_people, n_vehicles, n_species, main_det, area, cut_off,
                         centrality, max_conf)


def _largest(img: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Per image, the row of its largest box (the first one if several are as large)."""
    if len(img) and (img[1:] >= img[:-1]).all() and not np.isnan(area).any():
        # Rows in image order (a detector file's order): each image's maximum over its run,
        # without sorting a million rows.
        group = np.cumsum(np.r_[True, img[1:] != img[:-1]]) - 1
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        largest = np.flatnonzero(area == np.maximum.reduceat(area, starts)[group])
        first = np.r_[True, group[largest][1:] != group[largest][:-1]]
        return largest[first]
    # Any order: sort by (image, -area) and take each image's first row.
    order = np.lexsort((-area, img))
    first = np.ones(len(order), dtype=bool)
    first[1:] = img[order][1:] != img[order][:-1]
    return order[first]


def size_score(area: np.ndarray) -> np.ndarray:
    """0 for a speck, 1 for an animal filling 8-50% of the frame, falling towards full frame."""
    area = np.asarray(area, dtype=np.float64)
    rising = np.clip(np.log10(np.maximum(area, 1e-6) / 0.002) / np.log10(0.08 / 0.002), 0, 1)
    falling = np.clip(1 - (area - 0.5), 0.5, 1)
    return np.where(area <= 0.5, rising, falling)


def quality_score(area: np.ndarray, centrality: np.ndarray, conf: np.ndarray, cut_off: np.ndarray,
                  night: np.ndarray) -> np.ndarray:
    """A 0-1 promise score from detections alone: big, central, confident, whole, daylit."""
    score = (0.35 * size_score(area) + 0.20 * np.asarray(centrality) + 0.25 * np.asarray(conf)
             + 0.20 * (~np.asarray(cut_off, dtype=bool)))
    return np.where(np.asarray(night, dtype=bool), 0.9 * score, score)


def category_masks(n_animals: np.ndarray, n_species: np.ndarray, area: np.ndarray, cut_off: np.ndarray,
                   centrality: np.ndarray, night: np.ndarray, rare: np.ndarray,
                   close_up_area: float) -> dict[str, np.ndarray]:
    """Which categories each (eligible) image qualifies for; an image may qualify for several."""
    single = n_animals == 1
    return {
        "rare_species": np.asarray(rare, dtype=bool),
        "multi_species": n_species >= 2,
        "group": (n_animals >= 2) & (n_species == 1),
        "close_up": area >= close_up_area,
        "well_framed": single & ~np.asarray(cut_off, dtype=bool) & (area >= 0.02) & (centrality >= 0.5),
        "night": np.asarray(night, dtype=bool),
        "best_remaining": np.ones(len(n_animals), dtype=bool),
    }


def allocate(shares: Mapping[str, float], n: int) -> dict[str, int]:
    """Split ``n`` picks over categories by share (largest remainder, ties in category order)."""
    names = [c for c in CATEGORY_ORDER if shares.get(c, 0) > 0]
    total = sum(shares[c] for c in names)
    exact = {c: n * shares[c] / total for c in names}
    counts = {c: int(exact[c]) for c in names}
    rest = n - sum(counts.values())
    for c in sorted(names, key=lambda c: (-(exact[c] - counts[c]), CATEGORY_ORDER.index(c)))[:rest]:
        counts[c] += 1
    return {c: counts.get(c, 0) for c in CATEGORY_ORDER}


@dataclass
class Pick:
    row: int  # index into the eligible arrays
    category: str
    relaxed: bool  # taken after the per-species cap was relaxed to reach n


def pick(n: int, quality: np.ndarray, masks: Mapping[str, np.ndarray], seq: np.ndarray,
         species: np.ndarray, shares: Mapping[str, float], species_cap: int, seed: int,
         jitter: float = 0.03, accept: Callable[[int], bool] | None = None) -> list[Pick]:
    """Choose up to ``n`` rows: at most one per sequence, at most ``species_cap`` per species
    (relaxed only if the collection cannot fill ``n`` otherwise), categories by ``shares``.

    ``accept(row)`` may veto a row (say, its file is unreadable); the next best is taken instead.
    A small seeded jitter on the scores lets another seed draw an equally good, different set.
    """
    m = len(quality)
    rng = np.random.default_rng(seed)
    noisy = np.asarray(quality, dtype=np.float64) + jitter * rng.random(m)
    tiebreak = rng.random(m)
    # Best first, once for all: the rows of any category taken in this order are in the order
    # sorting that category alone by (score, tiebreak) would give. Scores rarely tie, and
    # without ties sorting by score alone gives that order several times quicker.
    order = np.argsort(-noisy)
    ranked = noisy[order]
    if (ranked[1:] == ranked[:-1]).any() or np.isnan(ranked).any():
        order = np.lexsort((tiebreak, -noisy))  # stable: equal (score, tiebreak) stay in row order
    targets = allocate(shares, n)
    seq_taken = np.zeros(int(seq.max(initial=-1)) + 1, dtype=bool)
    row_done = np.zeros(m, dtype=bool)  # taken or vetoed
    per_species: dict[int, int] = {}
    picks: list[Pick] = []

    def fill(rows: np.ndarray, category: str, want: int, cap: int | None, relaxed: bool) -> int:
        # Rows the loop would skip anyway are dropped up front: the loop then walks only
        # rows that might still be taken, not hundreds of thousands of taken ones.
        rows = rows[~row_done[rows] & ~seq_taken[seq[rows]]]
        if cap is not None:
            full = [sp for sp, count in per_species.items() if count >= cap]
            rows = rows[~np.isin(species[rows], full)] if full else rows
        got = 0
        for r in _ints(rows):
            if got >= want:
                break
            if row_done[r] or seq_taken[seq[r]]:
                continue
            sp = int(species[r])
            if cap is not None and per_species.get(sp, 0) >= cap:
                continue
            if accept is not None and not accept(r):
                row_done[r] = True
                continue
            row_done[r] = True
            seq_taken[seq[r]] = True
            per_species[sp] = per_species.get(sp, 0) + 1
            picks.append(Pick(r, category, relaxed))
            got += 1
        return got

    for category in CATEGORY_ORDER:
        if targets[category] > 0:
            fill(order[np.asarray(masks[category], dtype=bool)[order]], category, targets[category], species_cap, False)
    everything = order
    if len(picks) < n:  # categories that fell short hand their places to the best remaining
        fill(everything, "best_remaining", n - len(picks), species_cap, False)
    if len(picks) < n:  # still short without crowding: fill up, and say so in the reason
        fill(everything, "best_remaining", n - len(picks), None, True)
    return picks


def _ints(rows: np.ndarray, block: int = 4096):
    """The rows as Python ints (quicker to index with), converted a block at a time: a fill
    usually stops long before the end of hundreds of thousands of rows."""
    for start in range(0, len(rows), block):
        yield from rows[start:start + block].tolist()
