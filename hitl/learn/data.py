"""The learned rater's data from the store: every image's features, every curator decision as a row."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlite_utils

from converters.megadetector import KIND_NAMES
from hitl.analyse.consensus import latest_per_curator
from hitl.config import SelectSettings
from hitl.learn import LEARNED
from hitl.learn.features import META, MODE, Codes, Features, common_tags, meta_matrix, rater_columns, rater_matrix
from hitl.select import strata
from hitl.store import queries
from hitl.store.embeddings import vectors
from hitl.store.ratings import curator_decisions


@dataclass
class Images:
    """Every image in the store with what the learned rater reads of it."""

    ids: list[str]
    meta: dict[str, Any]  # the META input columns, and species / location / sequence names
    scores: dict[str, list[dict]]  # ok model results per image (the learned rater's own left out)


def load_images(db: sqlite_utils.Database, cfg: SelectSettings) -> Images:
    """Detector-derived facts through the same function selection uses (strata.image_features),
    so a model of them means the same on a candidate and on an unseen image of a detector file."""
    rows = queries.images(db)
    ids = [r["image_id"] for r in rows]
    index = {image_id: k for k, image_id in enumerate(ids)}
    det = defaultdict(list)
    for d in db.query("SELECT image_id, kind, conf, x, y, w, h, species FROM detections ORDER BY image_id, det_index"):
        if d["image_id"] in index:
            det["image"].append(index[d["image_id"]])
            det["kind"].append(KIND_NAMES.index(d["kind"]) if d["kind"] in KIND_NAMES else len(KIND_NAMES) - 1)
            det["conf"].append(d["conf"])
            det["bbox"].append((d["x"], d["y"], d["w"], d["h"]))
            det["species"].append(d["species"])
    species_codes = {name: k for k, name in enumerate(sorted({s for s in det["species"] if s}))}
    feats = strata.image_features(
        np.asarray(det["image"], dtype=np.int64), np.asarray(det["kind"], dtype=np.int8),
        np.asarray(det["conf"], dtype=np.float32), np.asarray(det["bbox"], dtype=np.float32).reshape(-1, 4),
        np.asarray([species_codes.get(s, -1) for s in det["species"]], dtype=np.int32), len(ids),
        cfg.threshold, cfg.edge_margin, cfg.data_strip)
    has_record = np.zeros(len(ids), dtype=bool)
    has_record[np.asarray(det["image"], dtype=np.int64)] = True
    meta = {name: _missing_without(getattr(feats, name).astype(float), has_record)
            for name in ("area", "cut_off", "centrality", "n_animals", "n_species", "max_conf")}
    meta.update(night=np.array([np.nan if r["night"] is None else float(r["night"]) for r in rows]),
                rarity=np.array([np.nan if r.get("rarity") is None else r["rarity"] for r in rows], dtype=float),
                hour=np.array([_hour(r["datetime"]) for r in rows]), species_names=[r["species"] for r in rows],
                location_names=[r["location"] for r in rows], sequences=[r["seq_id"] for r in rows],
                roots=[r["root"] for r in rows])
    scores = {k: [s for s in v if s["model"] != LEARNED] for k, v in queries.scores_by_image(db, raw=True).items()}
    return Images(ids, meta, scores)


def _missing_without(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    return np.where(known, values, np.nan)


def _hour(stamp: str | None) -> int:
    return int(stamp[11:13]) if isinstance(stamp, str) and len(stamp) >= 13 and stamp[11:13].isdigit() else -1


@dataclass
class Layout:
    """How features are built: the category codes, the raters and tags, the column names; fixed at
    learn time, so predicting on other images builds exactly the same columns."""

    species: Codes
    location: Codes
    raters: list[str]
    tags: list[str]

    @property
    def names(self) -> list[str]:
        return [name for name, _ in META] + rater_columns(self.raters, self.tags) + [MODE]

    @classmethod
    def of(cls, images: Images) -> Layout:
        raters = sorted({s["rater"] for results in images.scores.values() for s in results})
        return cls(Codes(images.meta["species_names"]), Codes(images.meta["location_names"]), raters,
                   common_tags(images.scores))


def image_features(images: Images, layout: Layout, rows: list[int] | None = None, mode: float = 0.0) -> Features:
    """One row per image (``rows``: their indices; default all), with ``mode`` as the review mode."""
    rows = list(range(len(images.ids))) if rows is None else rows
    m = images.meta
    columns = {name: np.asarray(m[name])[rows] for name in ("area", "cut_off", "centrality", "n_animals", "n_species",
                                                            "max_conf", "night", "rarity", "hour")}
    meta = meta_matrix(columns, layout.species, layout.location, [m["species_names"][r] for r in rows],
                       [m["location_names"][r] for r in rows])
    opinions = rater_matrix([images.ids[r] for r in rows], images.scores, rater_columns(layout.raters, layout.tags))
    return Features(layout.names, np.column_stack([meta, opinions, np.full(len(rows), mode)]))


@dataclass
class Decisions:
    """Every curator's most recent live decision on an image (consensus.DEFINITION), one row each."""

    rows: list[int]  # the image of each decision (index into Images.ids)
    curators: list[str]
    stars: np.ndarray  # NaN: no stars given
    hero: np.ndarray  # 1, 0, -1 undecided
    mode: np.ndarray  # 1 assisted, 0 blind, NaN unknown

    def __len__(self) -> int:
        return len(self.rows)

    def split(self) -> dict[str, int]:
        return {"assisted": int((self.mode == 1).sum()), "blind": int((self.mode == 0).sum()),
                "unknown mode": int(np.isnan(self.mode).sum())}


def load_decisions(db: sqlite_utils.Database, images: Images) -> Decisions:
    index = {image_id: k for k, image_id in enumerate(images.ids)}
    by_image: dict[str, list[dict]] = defaultdict(list)
    for d in curator_decisions(db):
        if d["image_id"] in index and (d["stars"] is not None or d["hero"] is not None):
            by_image[d["image_id"]].append(d)
    found = [d for image_id in sorted(by_image) for d in latest_per_curator(by_image[image_id], key="curator")]
    return Decisions(
        rows=[index[d["image_id"]] for d in found], curators=[d["curator"] for d in found],
        stars=np.array([np.nan if d["stars"] is None else d["stars"] for d in found], dtype=float),
        hero=np.array([-1 if d["hero"] is None else int(d["hero"]) for d in found], dtype=np.int8),
        mode=np.array([{"assisted": 1.0, "blind": 0.0}.get(d["mode"], np.nan) for d in found], dtype=float))


def decision_features(images: Images, layout: Layout, decisions: Decisions) -> Features:
    F = image_features(images, layout, decisions.rows)
    F.X[:, F.names.index(MODE)] = decisions.mode
    return F


@dataclass
class Vectors:
    """One model's image vectors of the store's images: each image's row in ``matrix`` (-1: none)."""

    model: str
    index: np.ndarray  # per image of Images.ids
    matrix: np.ndarray  # float32, unit length

    def has(self, rows: list[int] | np.ndarray) -> np.ndarray:
        """Which of the images ``rows`` (indices into Images.ids) have a vector."""
        return self.index[np.asarray(rows, dtype=np.int64)] >= 0

    def of(self, rows: list[int] | np.ndarray) -> np.ndarray:
        """The vectors of the images ``rows``, every one of which has one."""
        return self.matrix[self.index[np.asarray(rows, dtype=np.int64)]]


def load_vectors(db: sqlite_utils.Database, model: str, images: Images) -> Vectors:
    """``model``'s vectors of ``images``, each read under its own image's root (the same relative
    path in another collection is another photo)."""
    by_root: dict[str, list[str]] = defaultdict(list)
    for image_id, root in zip(images.ids, images.meta["roots"]):
        by_root[root].append(image_id)
    position = {image_id: k for k, image_id in enumerate(images.ids)}
    index = np.full(len(images.ids), -1, dtype=np.int64)
    parts = []
    found = 0
    for root, ids in by_root.items():
        got, matrix = vectors(db, model, ids, root=root)
        index[[position[i] for i in got]] = np.arange(found, found + len(got))
        found += len(got)
        parts.append(matrix)
    matrix = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
    return Vectors(model, index, matrix)
