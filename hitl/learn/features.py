"""What the learned rater sees of an image: a feature table, each feature allowed to be missing. Pure.

Two kinds of feature. Those read off the detector record alone (:data:`META`), which every
image of a collection has without being opened, so a model of them can rank a million images
that were never candidates; and those only some images have: each model's score, hero flag and
tags, and the baseline's image measurements. Missing is NaN: gradient-boosted trees handle it.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# from the detector record: (name, what it is)
META = (
    ("area", "the largest animal's share of the frame"),
    ("cut_off", "an animal touches the frame edge or the data strip"),
    ("centrality", "how central the largest animal is (1 centred, 0 in a corner)"),
    ("n_animals", "animals detected"),
    ("n_species", "species among them"),
    ("max_conf", "the detector's highest animal confidence"),
    ("night", "a night / infrared frame"),
    ("rarity", "how rare the species is here (share of sequences with it)"),
    ("hour_sin", "time of day (sine)"),
    ("hour_cos", "time of day (cosine)"),
    ("species", "the species (category)"),
    ("location", "the camera or location (category)"),
)
CATEGORICAL = ("species", "location")
MODE = "assisted"  # 1 when the curator saw a model's opinion (prefilled), 0 blind; unseen images: 0
BASELINE_MEASURES = ("sharpness_log", "sharpness_rel", "exposure_distance", "shadows_clipped",
                     "highlights_clipped", "contrast_box", "contrast_frame", "chroma_mean", "saturation",
                     "thirds_distance")
MAX_CATEGORIES = 250  # HistGradientBoosting takes at most 255 categories per feature


@dataclass
class Features:
    """A feature matrix (rows: images, or decisions), its column names and which are categories."""

    names: list[str]
    X: np.ndarray  # float64, NaN where missing

    @property
    def categorical(self) -> np.ndarray:
        return np.array([name in CATEGORICAL for name in self.names], dtype=bool)

    def columns(self, names: Sequence[str]) -> Features:
        index = [self.names.index(n) for n in names]
        return Features(list(names), self.X[:, index])


class Codes:
    """Category values as small integer codes, fixed once learned (unseen values: missing)."""

    def __init__(self, values: Iterable[str | None]):
        counts: dict[str, int] = {}
        for value in values:
            if value is not None:
                counts[value] = counts.get(value, 0) + 1
        kept = sorted(counts, key=lambda v: (-counts[v], v))[:MAX_CATEGORIES]
        self.code = {value: float(k) for k, value in enumerate(sorted(kept))}

    def __call__(self, values: Iterable[str | None]) -> np.ndarray:
        return np.array([self.code.get(v, math.nan) if v is not None else math.nan for v in values], dtype=float)


def hour_features(hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Time of day on a circle (23:00 is next to 00:00); a negative hour is unknown."""
    h = np.asarray(hours, dtype=float)
    h = np.where(h < 0, np.nan, h)
    angle = 2 * np.pi * h / 24.0
    return np.sin(angle), np.cos(angle)


def meta_matrix(columns: dict[str, np.ndarray], species: Codes, location: Codes,
                species_names: Sequence[str | None], location_names: Sequence[str | None]) -> np.ndarray:
    """The :data:`META` columns, from arrays of the detector-derived values (one row per image)."""
    hour_sin, hour_cos = hour_features(columns["hour"])
    out = {name: np.asarray(columns[name], dtype=float) for name in ("area", "cut_off", "centrality", "n_animals",
                                                                       "n_species", "max_conf", "night", "rarity")}
    out.update(hour_sin=hour_sin, hour_cos=hour_cos, species=species(species_names), location=location(location_names))
    return np.column_stack([out[name] for name, _ in META]) if len(hour_sin) else np.zeros((0, len(META)))


def rater_columns(raters: Sequence[str], tags: Sequence[str]) -> list[str]:
    """Names of the columns a model's opinion gives: its score and hero flag, and its tags."""
    names = []
    for rater in raters:
        names += [f"score:{rater}", f"hero:{rater}"]
    return names + [f"tag:{tag}" for tag in tags] + [f"baseline:{m}" for m in BASELINE_MEASURES]


def rater_matrix(image_ids: Sequence[str], scores: dict[str, list[dict]], names: Sequence[str]) -> np.ndarray:
    """The model-opinion columns ``names`` (see :func:`rater_columns`) for each image; NaN where a
    model did not score it. ``scores``: per image, the ok results (rater, score, hero, tags, raw)."""
    index = {name: k for k, name in enumerate(names)}
    X = np.full((len(image_ids), len(names)), np.nan)
    tag_columns = [k for name, k in index.items() if name.startswith("tag:")]
    for row, image_id in enumerate(image_ids):
        results = scores.get(image_id, [])
        if results and tag_columns:
            X[row, tag_columns] = 0.0  # scored: a tag nobody gave is a 0, not missing
        for result in results:
            rater = result["rater"]
            if (k := index.get(f"score:{rater}")) is not None and result.get("score") is not None:
                X[row, k] = result["score"]
            if (k := index.get(f"hero:{rater}")) is not None and result.get("hero") is not None:
                X[row, k] = float(result["hero"])
            for tag in _tags(result.get("tags")):
                if (k := index.get(f"tag:{tag}")) is not None:
                    X[row, k] = 1.0
            for measure, value in _baseline_measures(result).items():
                if (k := index.get(f"baseline:{measure}")) is not None:
                    X[row, k] = value
    return X


def _tags(raw: str | list | None) -> list[str]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return []
    return [t for t in raw or [] if isinstance(t, str)]


def _baseline_measures(result: dict) -> dict[str, float]:
    """The baseline scorer keeps its image measurements in its raw answer."""
    if not str(result.get("rater", "")).startswith("baseline@") or not result.get("raw_response"):
        return {}
    try:
        found = json.loads(result["raw_response"]).get("features") or {}
    except (ValueError, AttributeError):
        return {}
    return {k: float(v) for k, v in found.items() if k in BASELINE_MEASURES and isinstance(v, (int, float))}


def common_tags(scores: dict[str, list[dict]], least: int = 5) -> list[str]:
    """Tags given often enough to learn from, in a stable order."""
    counts: dict[str, int] = {}
    for results in scores.values():
        for result in results:
            for tag in set(_tags(result.get("tags"))):
                counts[tag] = counts.get(tag, 0) + 1
    return sorted(t for t, n in counts.items() if n >= least)
