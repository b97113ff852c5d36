"""Scores that outlived their inputs: the baseline's are recomputed (free, offline), the others are listed.

A score computed from the detector's boxes records their digest (:mod:`hitl.store.inputs`; a
backend says so with ``uses_detections``). When selection writes an image's detections anew, the
baseline's score of it is recomputed at once; any other stale score (one imported from a label
file, say) waits for ``hitl score --model M --refresh-stale``, and ``report`` and ``gallery`` say
which are stale and give that command.
"""
from __future__ import annotations

import shlex
from collections import Counter
from collections.abc import Iterable
from typing import Any

import sqlite_utils

from hitl.config import Settings
from hitl.score.record import ScoreSummary
from hitl.score.targets import stale_targets
from hitl.store.inputs import stale_scores

BASELINE = "baseline"


def refresh_baseline(db: sqlite_utils.Database, settings: Settings, threshold: float,
                     image_ids: Iterable[str], progress: bool | None = False) -> list[ScoreSummary]:
    """Recompute the baseline's scores of ``image_ids`` that were computed from other detections than
    the images have now, or with no record of them; one offline run per prompt version."""
    from hitl.score.backends import make_backend
    from hitl.score.runner import run_sync

    ids = list(image_ids)
    versions = [pv for (pv,) in db.execute("SELECT DISTINCT prompt_version FROM scores WHERE model = ? "
                                           "ORDER BY prompt_version", [BASELINE])]
    summaries = []
    for pv in versions:
        targets = stale_targets(db, BASELINE, pv, threshold, image_ids=ids, unrecorded=True)
        if targets:
            backend = make_backend(BASELINE, settings)
            summaries.append(run_sync(db, backend, targets, settings, prompt_version=pv, progress=progress))
    return summaries


def refresh_command(model: str, prompt_version: str) -> str:
    """The command that rescores ``model``'s stale scores of ``prompt_version``."""
    return (f"python -m hitl score --model {shlex.quote(model)} --prompt-version {shlex.quote(prompt_version)} "
            f"--refresh-stale")


def stale_marks(db: sqlite_utils.Database) -> tuple[set[tuple[str, str]], list[dict[str, Any]]]:
    """What ``report`` and ``gallery`` show: the stale scores (not failures) as (image_id, rater) pairs,
    and per rater with any a note: rater (``model@prompt_version``), n and the command that refreshes them."""
    rows = [r for r in stale_scores(db) if r["status"] == "ok"]
    pairs = {(r["image_id"], f"{r['model']}@{r['prompt_version']}") for r in rows}
    counts = Counter((r["model"], r["prompt_version"]) for r in rows)
    notes = [{"rater": f"{model}@{pv}", "n": n, "command": refresh_command(model, pv)}
             for (model, pv), n in sorted(counts.items())]
    return pairs, notes
