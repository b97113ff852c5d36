"""Where vectors go: each written the moment it exists, checked; the run's summary and record."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlite_utils

from hitl.embed.backends.base import EmbedTarget
from hitl.store import transaction, utc_now
from hitl.store.embeddings import embedding_row, model_dim, unit_float16, write_embeddings


@dataclass
class EmbedSummary:
    run_id: int
    model: str
    mode: str
    targets: int
    embedded: int = 0
    failed: Counter = field(default_factory=Counter)
    skipped_done: int = 0
    dim: int | None = None
    elapsed_s: float = 0.0
    stopped: str | None = None

    @property
    def done(self) -> int:
        return self.embedded + sum(self.failed.values())

    def as_counts(self) -> dict[str, Any]:
        return {"targets": self.targets, "embedded": self.embedded, "failed": dict(self.failed),
                "skipped_done": self.skipped_done, "dim": self.dim, "elapsed_s": round(self.elapsed_s, 3),
                "images_per_s": round(self.done / self.elapsed_s, 2) if self.elapsed_s > 0 else None,
                "stopped": self.stopped}


@dataclass
class Result:
    """What one image's call gave: a vector, or a failure with its reason."""

    vector: np.ndarray | None
    error: str | None = None
    error_kind: str | None = None
    attempts: int = 0
    latency_ms: float | None = None


class Recorder:
    """Checks each vector (finite, not zero, the model's dimension) and writes it in its own short
    transaction; a vector that fails the check is recorded as a failure, never stored."""

    def __init__(self, db: sqlite_utils.Database, summary: EmbedSummary):
        self.db, self.summary = db, summary
        summary.dim = model_dim(db, summary.model)

    def record(self, target: EmbedTarget, result: Result) -> None:
        s = self.summary
        vector = None
        if result.vector is not None:
            try:
                vector = self._checked(result.vector)
            except ValueError as exc:
                result = Result(None, f"the model answered {exc}", "bad vector", result.attempts, result.latency_ms)
        row = embedding_row(target.image_id, s.model, target.root, vector=vector, error=result.error,
                            error_kind=result.error_kind, attempts=result.attempts, latency_ms=result.latency_ms,
                            run_id=s.run_id)
        with transaction(self.db):
            write_embeddings(self.db, [row])
        if vector is not None:
            s.embedded += 1
        else:
            s.failed[result.error_kind or "error"] += 1

    def _checked(self, vector: np.ndarray) -> np.ndarray:
        unit = unit_float16(vector)
        if self.summary.dim is None:
            self.summary.dim = unit.size
        elif unit.size != self.summary.dim:
            raise ValueError(f"a vector of {unit.size} dimensions where this model's have {self.summary.dim}")
        if not np.isfinite(unit).all():
            raise ValueError("a vector float16 cannot hold")
        return unit


def start_run(db: sqlite_utils.Database, model: str, n: int, parameters: dict[str, Any]) -> int:
    return db["embed_runs"].insert({"model": model, "started_at": utc_now(), "status": "running", "n_targets": n,
                                    "parameters": json.dumps(parameters, sort_keys=True, default=str)}).last_pk


def finish_run(db: sqlite_utils.Database, summary: EmbedSummary, status: str) -> None:
    db["embed_runs"].update(summary.run_id, {"finished_at": utc_now(), "status": status,
                                             "counts": json.dumps(summary.as_counts(), sort_keys=True)})
