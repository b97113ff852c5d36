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
from hitl.learn.data import (
    LEARNED,
    Decisions,
    Images,
    Layout,
    decision_features,
    image_features,
    load_decisions,
    load_images,
)
from hitl.learn.features import Features
from hitl.learn.words import what_curators_reward
from hitl.score.record import score_row, write_score_rows
from hitl.store import transaction, utc_now


@dataclass
class LearnResult:
    version: str
    n_decisions: int
    n_images: int
    split: dict[str, int]
    grouped_by: str
    figures: dict[str, Any]  # the learned rater's
    singles: dict[str, dict[str, Any]]  # each single model's, on the same decisions
    curve: list[dict] = field(default_factory=list)
    importance: list[dict] = field(default_factory=list)
    reward: str = ""

    def as_json(self) -> dict[str, Any]:
        return self.__dict__.copy()


RESAMPLES = 500  # for the figures' intervals


class TooFewDecisions(HitlError):
    """Fewer decisions than a model can be judged on; the message says which model agrees best meanwhile."""


def learn(db: sqlite_utils.Database, settings: Settings, seed: int = 0, k: int = 20) -> LearnResult:
    """Fit, validate, store the figures and the learned rater's predictions; return the figures."""
    images = load_images(db, settings.select)
    decisions = load_decisions(db, images)
    layout = Layout.of(images)
    refuse_too_few(images, decisions)
    with M.threads_for(len(decisions)):
        F = decision_features(images, layout, decisions)
        groups, by = M.validation_groups([images.meta["sequences"][r] for r in decisions.rows],
                                         [images.meta["location_names"][r] for r in decisions.rows])
        folds = M.fold_models(F, decisions.stars, decisions.hero, groups, seed)
        oof_stars, oof_p, _ = M.held_out(folds, F.X)
        figures = M.figures(oof_stars, oof_p, decisions.stars, decisions.hero, k, groups, RESAMPLES, seed)
        singles = single_models(images, decisions, layout, k, groups, seed)
        full = M.fit(F, decisions.stars, decisions.hero, groups, seed)
        importance = M.importance(folds, F, decisions.hero, groups, seed)
        curve = M.learning_curve(F, decisions.stars, decisions.hero, groups, seed)
    reward = what_curators_reward(importance, figures)
    run_id = _record_run(db, decisions, images, F, by, seed, figures, singles, curve, importance, reward)
    version = f"v{run_id}"
    with M.threads_for(len(images.ids)):
        _store_predictions(db, images, layout, decisions, full, oof_stars, oof_p, version)
    return LearnResult(version, len(decisions), len(set(decisions.rows)), decisions.split(), by, figures, singles,
                       curve, importance, reward)


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


def _record_run(db, decisions: Decisions, images: Images, F: Features, by: str, seed: int, figures, singles, curve,
                importance, reward: str) -> int:
    with transaction(db):
        run_id = db["learn_runs"].insert({
            "created_at": utc_now(), "status": "finished", "n_decisions": len(decisions),
            "n_images": len(set(decisions.rows)),
            "parameters": json.dumps({"seed": seed, "grouped_by": by, "split": decisions.split()}),
            "features": json.dumps(F.names), "figures": json.dumps({"learned": figures, "singles": singles}),
            "curve": json.dumps(curve),
            "importance": json.dumps({"features": importance, "words": reward}),
        }).last_pk
        db["learn_runs"].update(run_id, {"version": f"v{run_id}"})
        return run_id


def _store_predictions(db, images: Images, layout: Layout, decisions: Decisions, full: M.Fitted,
                       oof_stars: np.ndarray, oof_p: np.ndarray, version: str) -> None:
    """One prediction per image as a blind curator would judge it; a trained-on image gets the mean
    of its decisions' out-of-fold predictions instead."""
    stars, p = full.predict(image_features(images, layout).X)
    trained: dict[int, list[int]] = {}
    for k, row in enumerate(decisions.rows):
        trained.setdefault(row, []).append(k)
    now = utc_now()
    rows = []
    for i, image_id in enumerate(images.ids):
        oof = i in trained
        s = float(np.mean(oof_stars[trained[i]])) if oof else float(stars[i])
        h = float(np.mean(oof_p[trained[i]])) if oof else float(p[i])
        rows.append(score_row(
            image_id, LEARNED, version, status="ok", score=round(min(max(s, 0.0), 10.0), 3), hero=h >= HERO_P,
            reasoning=(f"learned rater {version}: {s:.1f} stars, p(hero) {h:.2f}"
                       + (" (out of fold: this image was among its training decisions)" if oof else "")),
            tags=(), raw=json.dumps({"p_hero": round(h, 4), "stars": round(s, 3), "out_of_fold": oof}),
            created_at=now))
    with transaction(db):
        db.execute("DELETE FROM scores WHERE model = ?", [LEARNED])  # one learned rater: the newest
        write_score_rows(db, rows)


def latest_run(db: sqlite_utils.Database) -> dict | None:
    row = db.execute("SELECT * FROM learn_runs WHERE status = 'finished' ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    run = dict(zip([c[0] for c in db.execute("SELECT * FROM learn_runs LIMIT 0").description], row))
    for key in ("parameters", "features", "figures", "curve", "importance"):
        run[key] = json.loads(run[key]) if run[key] else None
    return run

