"""Bursts for review: each candidate with the frames of its sequence that selection kept.

`hitl push --bursts` and `hitl labelme export --bursts` show them so that a curator can pick the
best frame; the pick comes back as a rating (see :mod:`hitl.store.bursts`). Frames with no
baseline score are scored with it first, so the frame picked has a score at once (and every
frame's score can be shown); other models score it on their next `hitl score` run.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import sqlite_utils

from hitl.config import Settings
from hitl.store import bursts, queries

NO_BURST = "no burst frames (select with --frames-per-burst K)"


def burst_rows(db: sqlite_utils.Database, rows: list[dict], settings: Settings | None,
               echo: Callable[[str], None] = lambda _m: None) -> tuple[list[dict], Counter]:
    """The rows (candidates) whose sequence has kept frames, each with ``frames``: at most
    MAX_FRAMES in time order (the best by selection's quality, the candidate's always among them),
    each an image row with its ok ``scores``. Also the rows left out, counted by reason."""
    kept = bursts.members(db, {r["seq_id"] for r in rows if r["seq_id"]})
    left_out: Counter = Counter()
    chosen: list[tuple[dict, list[str]]] = []
    for row in rows:
        frames = kept.get(row["seq_id"] or "", [])
        if row["image_id"] not in {f["image_id"] for f in frames} or len(frames) < 2:
            left_out[NO_BURST] += 1
            continue
        chosen.append((row, bursts.shown_frames(frames, row["image_id"])))
    wanted = [i for _, ids in chosen for i in ids]
    if wanted and settings is not None:
        score_with_baseline(db, wanted, settings, echo)
    images = {r["image_id"]: r for r in queries.images(db, wanted)}
    scores = queries.scores_by_image(db)
    out = []
    for row, ids in chosen:
        out.append({**row, "frames": [{**images[i], "scores": scores.get(i, [])} for i in ids]})
    return out, left_out


def score_with_baseline(db: sqlite_utils.Database, image_ids: list[str], settings: Settings,
                        echo: Callable[[str], None]) -> int:
    """Score with the offline baseline the given images it has not scored; returns how many."""
    from hitl.score.backends.baseline import BaselineBackend
    from hitl.score.runner import run_sync
    from hitl.score.targets import candidate_targets

    backend = BaselineBackend()
    version = settings.score.prompt_version
    targets, _done = candidate_targets(db, backend.name, version, retry_failed=False,
                                       threshold=settings.select.threshold, image_ids=image_ids)
    if not targets:
        return 0
    echo(f"Scoring {len(targets)} burst frames with the baseline, so every frame has a score")
    summary = run_sync(db, backend, targets, settings, prompt_version=version)
    return summary.done


def proposal(frames: list[dict], model: tuple[str, str] | None) -> dict | None:
    """The frame ``model`` scores best, when it scored at least two of them (ties: the earliest)."""
    if model is None:
        return None
    scored = [(s["score"], -k, f["image_id"]) for k, f in enumerate(frames) for s in f["scores"]
              if (s["model"], s["prompt_version"]) == model]
    if len(scored) < 2:
        return None
    score, _, image_id = max(scored)
    return {"image_id": image_id, "model": model[0], "score": score}
