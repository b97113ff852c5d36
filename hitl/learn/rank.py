"""Ranking images never seen by a curator: the learned rater on the detector's record alone.

`hitl select --learned` scores every eligible image of a detector file this way, so `--add`
brings in the most promising sequences of the whole collection. The model is refitted from the
store's decisions (deterministic for a seed) rather than loaded from a file: nothing is unpickled.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import sqlite_utils

from hitl.config import SelectSettings
from hitl.learn import model as M
from hitl.learn.data import Decisions, Images, Layout, decision_features, load_decisions, load_images
from hitl.learn.features import META, MODE, Codes, Features, meta_matrix
from hitl.learn.run import refuse_too_few

COLUMNS = [name for name, _ in META] + [MODE]


def check_decisions(db: sqlite_utils.Database, cfg: SelectSettings) -> tuple[Images, Decisions]:
    """The store's images and decisions, refusing at once (before a big detector file is read) when
    there are too few to learn from."""
    images = load_images(db, cfg)
    decisions = load_decisions(db, images)
    refuse_too_few(images, decisions, "; select without --learned meanwhile")
    return images, decisions


def learned_ranker(db: sqlite_utils.Database, cfg: SelectSettings) -> Callable[[], MetaRanker]:
    """What `select --learned` ranks by (:func:`hitl.select.run.run_selection`'s ``ranker``): the
    store's decisions checked now, the rater fitted on them when called."""
    images, decisions = check_decisions(db, cfg)
    return lambda: MetaRanker.fit(images, decisions)


class MetaRanker:
    """p(hero) from the :data:`META` features, as a blind curator would judge."""

    def __init__(self, fitted: M.Fitted, species: Codes, location: Codes, n_decisions: int):
        self.fitted, self.species, self.location, self.n_decisions = fitted, species, location, n_decisions

    @classmethod
    def fit(cls, images: Images, decisions: Decisions, seed: int = 0) -> MetaRanker:
        """Fitted on ``decisions`` (from :func:`check_decisions`) over the META features alone."""
        layout = Layout.of(images)
        F = decision_features(images, layout, decisions).columns(COLUMNS)
        groups, _ = M.validation_groups([images.meta["sequences"][r] for r in decisions.rows],
                                        [images.meta["location_names"][r] for r in decisions.rows])
        with M.threads_for(len(decisions)):
            fitted = M.fit(F, decisions.stars, decisions.hero, groups, seed)
        return cls(fitted, layout.species, layout.location, len(decisions))

    def p_hero(self, columns: dict[str, np.ndarray], species: list[str | None], locations: list[str | None]
               ) -> np.ndarray:
        """One probability per image; ``columns``: area, cut_off, centrality, n_animals, n_species,
        max_conf, night, rarity, hour (arrays of equal length)."""
        X = meta_matrix(columns, self.species, self.location, species, locations)
        X = np.column_stack([X, np.zeros(len(X))])  # mode: blind
        return self.fitted.predict(Features(COLUMNS, X).X)[1]
