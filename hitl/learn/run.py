"""`hitl learn`: fit the curators' taste from every live decision, validate it, store it as a rater.

The figures are out of fold, grouped by sequence (or location), beside the same figures for
every single model on the same decisions. The learned rater's predictions go into the scores
table as model ``learned``, prompt version ``v<run>``, so the report, the gallery, the queue
and push see it like any model; for an image the model was trained on, the stored prediction
is the out-of-fold one, never the model's view of its own training data. Nothing is pickled:
the model is refitted from the store when it is needed again (deterministic for a seed).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlite_utils

from hitl.config import Settings
from hitl.errors import HitlError
from hitl.learn import HERO_P
from hitl.learn import model as M
from hitl.learn import pixels as P
from hitl.learn import raters as R
from hitl.learn.data import (
    LEARNED,
    Decisions,
    Images,
    Layout,
    Vectors,
    decision_features,
    image_features,
    load_decisions,
    load_images,
    load_vectors,
)
from hitl.learn.features import Features
from hitl.learn.words import what_curators_reward
from hitl.score.record import score_row, write_score_rows
from hitl.store import transaction, utc_now
from hitl.store.embeddings import models as embedding_models


@dataclass
class LearnResult:
    version: str
    n_decisions: int
    n_images: int
    split: dict[str, int]
    grouped_by: str
    figures: dict[str, Any]  # the learned rater's (with the vectors where they are used)
    singles: dict[str, dict[str, Any]]  # each single model's, on the same decisions
    curve: list[dict] = field(default_factory=list)
    importance: list[dict] = field(default_factory=list)
    reward: str = ""
    without_vectors: dict[str, Any] | None = None  # the detector-only rater's figures, when vectors are used
    vectors: dict[str, Any] = field(default_factory=dict)  # which, how many, and what they add (vector_facts)

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


RESAMPLES = 500  # for the figures' intervals
NEWEST = "newest"  # --embeddings: the model whose vectors were made last
NO_VECTORS = "none"


class TooFewDecisions(HitlError):
    """Fewer decisions than a model can be judged on; the message says which model agrees best meanwhile."""


def learn(db: sqlite_utils.Database, settings: Settings, seed: int = 0, k: int = 20,
          embeddings: str = NEWEST) -> LearnResult:
    """Fit, validate, store the figures and the learned rater's predictions; return the figures.

    ``embeddings``: the model whose image vectors the rater reads (NEWEST: the newest in the store,
    if any; NO_VECTORS: none, the detector-only rater)."""
    images = load_images(db, settings.select)
    decisions = load_decisions(db, images)
    layout = Layout.of(images)
    refuse_too_few(images, decisions)
    vectors = image_vectors(db, images, embeddings)
    rows = np.asarray(decisions.rows, dtype=np.int64)
    has = vectors.has(rows) if vectors is not None else np.zeros(len(rows), dtype=bool)
    V = vectors.of(rows[has]) if has.any() else None
    stars, hero = decisions.stars, decisions.hero
    with M.threads_for(len(decisions)):
        F = decision_features(images, layout, decisions)
        groups, by = M.validation_groups([images.meta["sequences"][r] for r in rows],
                                         [images.meta["location_names"][r] for r in rows])
        splits = M.splits(groups)
        detector = R.validate_detector(F, stars, hero, splits, seed)
        pixels = None if V is None else R.validate_pixels(F, V, has, stars, hero, groups, splits, seed)
        oof_stars, oof_p, oof_ranking = R.combined(detector, pixels)
        figures = M.figures(oof_stars, oof_p, stars, hero, k, groups, RESAMPLES, seed, oof_ranking)
        facts = vector_facts(vectors, embeddings, has, pixels is not None, images)
        without = None
        if pixels is not None:
            without = M.figures(detector.stars, detector.p, stars, hero, k, groups, RESAMPLES, seed, detector.ranking)
            facts["gain"] = M.gain((oof_stars, oof_ranking), (detector.stars, detector.ranking), stars, hero, groups,
                                   RESAMPLES, seed)
        singles = single_models(images, decisions, layout, k, groups, seed)
        full = R.fit(F, stars, hero, groups, seed, V if pixels is not None else None, has, detector, pixels)
        main = pixels or detector
        importance = M.importance(main.folds, main.held, hero[main.rows], groups[main.rows], seed)
        curve = _curve(main, F, V, stars, hero, groups, seed, k)
    reward = what_curators_reward(importance, figures)
    run_id = _record_run(db, decisions, images, main.held, by, seed, {"learned": figures, "without_vectors": without,
                         "singles": singles}, curve, importance, reward, facts)
    version = f"v{run_id}"
    with M.threads_for(len(images.ids)):
        _store_predictions(db, images, layout, decisions, full, vectors if pixels is not None else None,
                           oof_stars, oof_p, version)
    return LearnResult(version, len(decisions), len(set(decisions.rows)), decisions.split(), by, figures, singles,
                       curve, importance, reward, without, facts)


def _curve(main: R.Validated, F: Features, V: np.ndarray | None, stars: np.ndarray, hero: np.ndarray,
           groups: np.ndarray, seed: int, k: int) -> list[dict]:
    """The learning curve of the rater whose figures are printed first (on the decisions it covers)."""
    rows = main.rows
    F_main = Features(F.names, F.X[rows])
    whole = M.figures(main.stars, main.p, stars[rows], hero[rows], k, ranking=main.ranking)
    if main.held.names == F.names:
        oof = M.trees_oof(F_main, stars[rows], hero[rows], groups[rows], seed)
    else:
        def oof(kept: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            folds, held = P.fold_models(Features(F.names, F_main.X[kept]), V[kept], stars[rows][kept],
                                        hero[rows][kept], groups[rows][kept], seed)
            ps, pp, _ = M.held_out(folds, held.X)
            return ps, pp, M.held_out_ranking(folds, held.X)
    return M.learning_curve(oof, stars[rows], hero[rows], groups[rows], seed, whole=whole)


def image_vectors(db: sqlite_utils.Database, images: Images, embeddings: str) -> Vectors | None:
    """The vectors the rater reads: of the model named, or the newest; None for NO_VECTORS or a store
    without any. A model named that has no vector is an error naming those that have."""
    if embeddings == NO_VECTORS:
        return None
    known = [m.model for m in embedding_models(db)]
    if embeddings == NEWEST:
        return load_vectors(db, known[0], images) if known else None
    if embeddings not in known:
        have = f"the store has vectors of {', '.join(known)}" if known else "the store has no vectors yet"
        raise HitlError(f"--embeddings {embeddings}: no image vectors of that model ({have}); compute them with "
                        f"`python -m hitl embed --model {embeddings}`, or learn without them: --embeddings none")
    return load_vectors(db, embeddings, images)


def vector_facts(vectors: Vectors | None, embeddings: str, has: np.ndarray, used: bool, images: Images
                 ) -> dict[str, Any]:
    """What the run says of the vectors: the model, how many decisions and images have one, whether used."""
    if vectors is None:
        return {"model": None, "asked": embeddings, "used": False}
    return {"model": vectors.model, "asked": embeddings, "used": used, "decisions": int(has.sum()),
            "of_decisions": len(has), "images": int((vectors.index >= 0).sum()), "of_images": len(images.ids),
            "needed": M.MIN_DECISIONS}


def single_models(images: Images, decisions: Decisions, layout: Layout, k: int, groups: np.ndarray | None = None,
                  seed: int = 0) -> dict[str, dict[str, Any]]:
    """Each model's own score as a rater of the same decisions (score / 10 as its hero probability);
    with ``groups``, with the same grouped intervals as the learned rater's."""
    out = {}
    for rater in layout.raters:
        score = np.array([next((s["score"] for s in images.scores.get(images.ids[r], []) if s["rater"] == rater),
                               np.nan) for r in decisions.rows], dtype=float)
        has = np.isfinite(score)
        if has.sum() >= 3:
            out[rater] = M.figures(score[has], score[has] / 10, decisions.stars[has], decisions.hero[has], k,
                                   None if groups is None else groups[has], RESAMPLES, seed)
    return out


def refuse_too_few(images: Images, decisions: Decisions, meanwhile: str = "") -> None:
    """Raise TooFewDecisions when there are fewer decisions than the learned rater can be judged on
    (``meanwhile``: what else to do, said at the end)."""
    if len(decisions) >= M.MIN_DECISIONS:
        return
    best = ""
    singles = single_models(images, decisions, Layout.of(images), k=10) if len(decisions) >= 3 else {}
    ranked = sorted(((v["spearman"], name) for name, v in singles.items() if v["spearman"] is not None), reverse=True)
    if ranked:
        best = f"; meanwhile {ranked[0][1]} agrees best with the curators (Spearman {ranked[0][0]:.2f}, n = " \
               f"{singles[ranked[0][1]]['n_stars']})"
    raise TooFewDecisions(f"only {len(decisions)} curator decisions; the learned rater needs at least "
                          f"{M.MIN_DECISIONS} to be fitted and judged (rate more in Label Studio, or import a sheet "
                          f"with `hitl ratings --import`){best}{meanwhile}")


def _record_run(db, decisions: Decisions, images: Images, F: Features, by: str, seed: int, figures: dict, curve,
                importance, reward: str, vectors: dict) -> int:
    with transaction(db):
        run_id = db["learn_runs"].insert({
            "created_at": utc_now(), "status": "finished", "n_decisions": len(decisions),
            "n_images": len(set(decisions.rows)),
            "parameters": json.dumps({"seed": seed, "grouped_by": by, "split": decisions.split(), "vectors": vectors}),
            "features": json.dumps(F.names), "figures": json.dumps(figures),
            "curve": json.dumps(curve),
            "importance": json.dumps({"features": importance, "words": reward}),
        }).last_pk
        db["learn_runs"].update(run_id, {"version": f"v{run_id}"})
        return run_id


PREDICT_ROWS = 50_000  # images predicted at a time (their vectors with them)


def _store_predictions(db, images: Images, layout: Layout, decisions: Decisions, full: R.Raters,
                       vectors: Vectors | None, oof_stars: np.ndarray, oof_p: np.ndarray, version: str) -> None:
    """One prediction per image as a blind curator would judge it, by the vector-aware rater where
    the image has a vector (``vectors``: None when the rater reads none); a trained-on image gets
    the mean of its decisions' out-of-fold predictions instead."""
    n = len(images.ids)
    stars, p = np.empty(n), np.empty(n)
    has = vectors.has(np.arange(n)) if vectors is not None else np.zeros(n, dtype=bool)
    for start in range(0, n, PREDICT_ROWS):
        part = np.arange(start, min(n, start + PREDICT_ROWS))
        X = image_features(images, layout, part.tolist()).X
        V = vectors.of(part[has[part]]) if vectors is not None else None
        stars[part], p[part] = full.predict(X, V, has[part])
    trained: dict[int, list[int]] = {}
    for k, row in enumerate(decisions.rows):
        trained.setdefault(row, []).append(k)
    model = vectors.model if vectors is not None else None
    now = utc_now()
    rows = []
    for i, image_id in enumerate(images.ids):
        oof = i in trained
        s = float(np.mean(oof_stars[trained[i]])) if oof else float(stars[i])
        h = float(np.mean(oof_p[trained[i]])) if oof else float(p[i])
        seen = model if has[i] else None
        rows.append(score_row(
            image_id, LEARNED, version, status="ok", score=round(min(max(s, 0.0), 10.0), 3), hero=h >= HERO_P,
            reasoning=(f"learned rater {version}" + (f" with {seen} vectors" if seen else "")
                       + f": {s:.1f} stars, p(hero) {h:.2f}"
                       + (" (out of fold: this image was among its training decisions)" if oof else "")),
            tags=(), raw=json.dumps({"p_hero": round(h, 4), "stars": round(s, 3), "out_of_fold": oof,
                                     "vectors": seen}),
            created_at=now))
    with transaction(db):
        db.execute("DELETE FROM scores WHERE model = ?", [LEARNED])  # one learned rater: the newest
        write_score_rows(db, rows)
