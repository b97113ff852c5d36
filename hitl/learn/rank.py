"""Ranking images never seen by a curator: the learned rater on the detector's record, and on the
image vector wherever the image has one.

`hitl select --learned` scores every eligible image of a detector file this way, so `--add`
brings in the most promising sequences of the whole collection. The model is refitted from the
store's decisions (deterministic for a seed) rather than loaded from a file: nothing is unpickled.
A collection's vectors (`hitl embed --md`) are read a chunk at a time, each chunk turned into the
head's two columns at once, so a million of them are never in memory together.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sqlite_utils

from hitl.config import SelectSettings
from hitl.learn import model as M
from hitl.learn import pixels as P
from hitl.learn import raters as R
from hitl.learn.data import Decisions, Images, Layout, decision_features, load_decisions, load_images
from hitl.learn.features import META, MODE, Codes, meta_matrix
from hitl.learn.run import NEWEST, image_vectors, refuse_too_few
from hitl.store.embeddings import vector_chunks

COLUMNS = [name for name, _ in META] + [MODE]


def check_decisions(db: sqlite_utils.Database, cfg: SelectSettings) -> tuple[Images, Decisions]:
    """The store's images and decisions, refusing at once (before a big detector file is read) when
    there are too few to learn from."""
    images = load_images(db, cfg)
    decisions = load_decisions(db, images)
    refuse_too_few(images, decisions, "; select without --learned meanwhile")
    return images, decisions


def learned_ranker(db: sqlite_utils.Database, cfg: SelectSettings, embeddings: str = NEWEST
                   ) -> Callable[[], MetaRanker]:
    """What `select --learned` ranks by (:func:`hitl.select.run.run_selection`'s ``ranker``): the
    store's decisions and the vectors asked for (``embeddings`` as for `learn`) checked now, the
    rater fitted on them when called."""
    images, decisions = check_decisions(db, cfg)
    vectors = image_vectors(db, images, embeddings)
    return lambda: MetaRanker.fit(db, images, decisions, vectors)


class MetaRanker:
    """p(hero) from the :data:`META` features as a blind curator would judge, with the head's
    columns of the image vector wherever an image has one."""

    def __init__(self, raters: R.Raters, species: Codes, location: Codes, n_decisions: int,
                 db: sqlite_utils.Database | None = None, model: str | None = None):
        self.raters, self.species, self.location, self.n_decisions = raters, species, location, n_decisions
        self.db, self.model = db, model if raters.pixels is not None else None
        self.counts = {"with vectors": 0, "without": 0}  # of the images ranked last

    @classmethod
    def fit(cls, db: sqlite_utils.Database, images: Images, decisions: Decisions, vectors, seed: int = 0
            ) -> MetaRanker:
        """Fitted on ``decisions`` (from :func:`check_decisions`) over the META features alone, and
        over them and ``vectors`` (:class:`hitl.learn.data.Vectors` or None) where a decided image has one."""
        layout = Layout.of(images)
        F = decision_features(images, layout, decisions).columns(COLUMNS)
        groups, _ = M.validation_groups([images.meta["sequences"][r] for r in decisions.rows],
                                        [images.meta["location_names"][r] for r in decisions.rows])
        rows = np.asarray(decisions.rows, dtype=np.int64)
        has = vectors.has(rows) if vectors is not None else None
        V = vectors.of(rows[has]) if has is not None and has.any() else None
        with M.threads_for(len(decisions)):
            raters = R.fit(F, decisions.stars, decisions.hero, groups, seed, V, has)
        return cls(raters, layout.species, layout.location, len(decisions), db,
                   vectors.model if vectors is not None else None)

    def p_hero(self, columns: dict[str, np.ndarray], species: list[str | None], locations: list[str | None],
               image_ids: list[str] | None = None, root: str | None = None) -> np.ndarray:
        """One probability per image; ``columns``: area, cut_off, centrality, n_animals, n_species,
        max_conf, night, rarity, hour (arrays of equal length); ``image_ids`` under ``root``: the
        images, whose vectors are looked for."""
        X = meta_matrix(columns, self.species, self.location, species, locations)
        X = np.column_stack([X, np.zeros(len(X))])  # mode: blind
        head, has = np.zeros((len(X), len(P.HEAD))), np.zeros(len(X), dtype=bool)
        if self.model is not None and image_ids is not None:
            head, has = self.head_columns(image_ids, root)
        p = np.empty(len(X))
        with M.threads_for(len(X)):
            if has.any():
                p[has] = self.raters.pixels.p_hero(X[has], head[has])
            if (~has).any():
                p[~has] = self.raters.detector.p_hero(X[~has])
        self.counts = {"with vectors": int(has.sum()), "without": int((~has).sum())}
        return p

    def head_columns(self, image_ids: list[str], root: str | None) -> tuple[np.ndarray, np.ndarray]:
        """The head's columns of every image of ``image_ids`` that has a vector under ``root``, and which have."""
        position = {image_id: k for k, image_id in enumerate(image_ids)}
        head, has = np.zeros((len(image_ids), len(P.HEAD))), np.zeros(len(image_ids), dtype=bool)
        for ids, V in vector_chunks(self.db, self.model, root=root, ordered=False):
            where = np.fromiter((position.get(i, -1) for i in ids), dtype=np.int64, count=len(ids))
            mine = where >= 0
            head[where[mine]] = self.raters.pixels.head.columns(V[mine])
            has[where[mine]] = True
        return head, has
