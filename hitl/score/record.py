"""Where results go: each one written the moment it exists, and the run's summary and record.

Results are keyed by (image_id, model, prompt_version) and committed one by one, so a run
killed at any point loses only the calls in flight, and a rerun skips every finished key.
"""
from __future__ import annotations

import json
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import sqlite_utils

from hitl.config import Price, Settings
from hitl.score.backends.base import Backend, Outcome
from hitl.store import transaction, upsert_many, utc_now


@dataclass
class ScoreSummary:
    run_id: int
    model: str
    prompt_version: str
    mode: str
    targets: int
    scored: int = 0
    failed: Counter = field(default_factory=Counter)
    skipped_done: int = 0
    scores: list[float] = field(default_factory=list)
    heroes: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    estimate_usd: float | None = None
    elapsed_s: float = 0.0
    stopped: str | None = None  # why the run ended early, if it did
    batch_job: str | None = None

    def as_counts(self) -> dict[str, Any]:
        spread = {}
        if self.scores:
            spread = {"mean": round(statistics.fmean(self.scores), 3), "min": min(self.scores),
                      "max": max(self.scores), "median": statistics.median(self.scores),
                      "stdev": round(statistics.stdev(self.scores), 3) if len(self.scores) > 1 else 0.0}
        return {"targets": self.targets, "scored": self.scored, "failed": dict(self.failed),
                "heroes": self.heroes, "scores": spread, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "cost_usd": round(self.cost_usd, 6), "estimate_usd": self.estimate_usd,
                "elapsed_s": round(self.elapsed_s, 3),
                "images_per_s": round(self.done / self.elapsed_s, 2) if self.elapsed_s > 0 else None,
                "stopped": self.stopped, "batch_job": self.batch_job}

    @property
    def done(self) -> int:
        return self.scored + sum(self.failed.values())



def estimate_cost(backend: Backend, n: int, settings: Settings, batch: bool) -> float | None:
    """Expected USD for ``n`` images: 0 for a free backend, None when a paid one has no price."""
    if not backend.paid:
        return 0.0
    price = backend.price(settings)
    if price is None:
        return None
    cfg = settings.score
    per_image = (cfg.expected_tokens_in * price.input + cfg.expected_tokens_out * price.output) / 1e6
    return n * per_image * (cfg.batch_discount if batch else 1.0)


def call_cost(outcome: Outcome, price: Price | None, discount: float) -> float | None:
    if price is None or outcome.tokens_in is None:
        return None
    return ((outcome.tokens_in or 0) * price.input + (outcome.tokens_out or 0) * price.output) / 1e6 * discount


SCORE_KEY = ("image_id", "model", "prompt_version")


def score_row(image_id: str, model: str, prompt_version: str, *, status: str, score: float | None = None,
              hero: bool | None = None, reasoning: str | None = None, tags: tuple[str, ...] | None = None,
              raw: str | None = None, error: str | None = None, error_kind: str | None = None,
              latency_ms: float | None = None, tokens_in: int | None = None, tokens_out: int | None = None,
              cost: float | None = None, attempts: int = 0, run_id: int | None = None, batch_job: str | None = None,
              created_at: str | None = None, inputs: str | None = None) -> dict[str, Any]:
    """One row of the scores table, whoever made the result: a run, a batch job or an imported label file.

    ``hero`` None: the rater did not say. ``created_at`` None: now (an update keeps the first time by passing it).
    ``inputs``: the digest of the image's detections it was computed from (:mod:`hitl.store.inputs`).
    """
    now = utc_now()
    return {
        "image_id": image_id, "model": model, "prompt_version": prompt_version, "status": status,
        "score": score, "hero": None if hero is None else int(hero), "reasoning": reasoning,
        "tags": None if tags is None else json.dumps(list(tags)), "raw_response": raw, "latency_ms": latency_ms,
        "tokens_in": tokens_in, "tokens_out": tokens_out, "cost_usd": cost, "error": error,
        "error_kind": error_kind, "attempts": attempts, "run_id": run_id, "batch_job": batch_job,
        "created_at": created_at or now, "updated_at": now, "inputs": inputs,
    }


def write_score_rows(db: sqlite_utils.Database, rows: list[dict[str, Any]]) -> None:
    """Insert or update rows made by :func:`score_row`, keyed by SCORE_KEY. The caller owns the transaction."""
    upsert_many(db, "scores", rows, SCORE_KEY)


class Recorder:
    """Writes each result the moment it exists, in its own short transaction."""

    def __init__(self, db: sqlite_utils.Database, summary: ScoreSummary, price, discount: float,
                 batch_job: str | None = None, uses_detections: bool = False):
        self.db = db
        self.uses_detections = uses_detections  # else the verdict owes nothing to the detections: no digest kept
        self.summary = summary
        self.price = price
        self.discount = discount
        self.batch_job = batch_job

    def record(self, image_id: str, outcome: Outcome, attempts: int, inputs: str | None = None) -> None:
        """Store one image's outcome; ``inputs``: the digest of the detections it was computed from
        (kept only for a backend that uses them)."""
        s = self.summary
        cost = call_cost(outcome, self.price, self.discount)
        v = outcome.verdict
        row = score_row(image_id, s.model, s.prompt_version, status="ok" if v is not None else "failed",
                        score=v.score if v else None, hero=v.hero if v else None,
                        reasoning=v.reasoning if v else None, tags=v.tags if v else None, raw=outcome.raw,
                        error=outcome.error, error_kind=outcome.error_kind, latency_ms=outcome.latency_ms,
                        tokens_in=outcome.tokens_in, tokens_out=outcome.tokens_out, cost=cost, attempts=attempts,
                        run_id=s.run_id, batch_job=self.batch_job,
                        inputs=inputs if self.uses_detections else None)
        with transaction(self.db):
            write_score_rows(self.db, [row])
        if v is not None:
            s.scored += 1
            s.scores.append(v.score)
            s.heroes += v.hero
        else:
            s.failed[outcome.error_kind or "error"] += 1
        s.tokens_in += outcome.tokens_in or 0
        s.tokens_out += outcome.tokens_out or 0
        s.cost_usd += cost or 0.0


def start_run(db: sqlite_utils.Database, model: str, prompt_version: str, mode: str, n: int,
              estimate: float | None, parameters: dict[str, Any]) -> int:
    return db["score_runs"].insert({
        "model": model, "prompt_version": prompt_version, "mode": mode, "started_at": utc_now(),
        "status": "running", "n_targets": n, "estimate_usd": estimate,
        "parameters": json.dumps(parameters, sort_keys=True, default=str),
    }).last_pk


def finish_run(db: sqlite_utils.Database, summary: ScoreSummary, status: str) -> None:
    db["score_runs"].update(summary.run_id, {"finished_at": utc_now(), "status": status,
                                             "counts": json.dumps(summary.as_counts(), sort_keys=True)})

