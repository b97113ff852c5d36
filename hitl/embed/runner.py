"""The `embed` step's run: every target gets the model's vector, once.

Built like `score`'s: images prepared in a thread per core a few ahead of the senders
(:mod:`hitl.pipeline`), the calls under the one retry policy (:mod:`hitl.retry`), each vector
written the moment it arrives, so a run killed at any point loses only what was in flight and a
rerun embeds nothing twice.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from hitl import retry
from hitl.config import Settings
from hitl.embed.backends.base import EmbedBackend, EmbedTarget
from hitl.embed.record import EmbedSummary, Recorder, Result, finish_run, start_run
from hitl.errors import AuthError, CallError, RetryableError
from hitl.imageprep import ImagePrepError
from hitl.pipeline import STOPPED, Pipeline
from hitl.progress import progress_bar

INTERRUPTED = "interrupted: rerun the same command to continue where it stopped"


def senders(backend: EmbedBackend, settings: Settings) -> int:
    """Calls in flight: the setting for a server, the backend's own number for a local model."""
    return backend.local_senders or settings.embed.concurrency


def embed_call(policy, backend: EmbedBackend, prepared: Any) -> Result | None:
    """One image's vector or its failure under the retry policy (None: stopped before it was done).
    AuthError propagates: the run stops."""
    started = time.perf_counter()
    try:
        vector, attempts = retry.call(policy, backend.embed, prepared)
    except retry.Interrupted:
        return None
    except RetryableError as exc:
        return Result(None, f"{exc} (after {exc.attempts} attempts)", exc.kind, exc.attempts)
    except CallError as exc:
        return Result(None, str(exc), exc.kind, exc.attempts)
    return Result(np.asarray(vector), attempts=attempts, latency_ms=(time.perf_counter() - started) * 1000)


def run_embed(db: sqlite_utils.Database, backend: EmbedBackend, targets: list[EmbedTarget],
              settings: Settings, *, skipped: int = 0, progress: bool | None = None,
              source: dict[str, Any] | None = None) -> EmbedSummary:
    """Embed ``targets`` with ``backend``, writing each vector as it arrives. ``source``: where the
    targets came from (the detector file of a collection, say), recorded with the run.

    An authentication or permission error stops the run at once: the images not done stay
    without a vector (a rerun with the right key does them), and AuthError says why.
    """
    cfg = settings.embed
    run_id = start_run(db, backend.name, len(targets), {**backend.parameters(), "concurrency": senders(backend, settings),
                                                        "attempts": cfg.attempts,
                                                        **{k: str(Path(v).resolve()) for k, v in (source or {}).items() if v}})
    summary = EmbedSummary(run_id, backend.name, backend.run_mode, len(targets), skipped_done=skipped)
    stop = threading.Event()
    policy = retry.retrying(settings.embed, stop)
    recorder = Recorder(db, summary)
    bar = progress_bar(progress, total=len(targets), desc=f"Embedding with {backend.name}", unit="img")

    def record(target: EmbedTarget, result: Result | ImagePrepError | None) -> None:
        if result is None:  # stopped before it was finished: nothing to keep
            return
        if isinstance(result, ImagePrepError):  # an unusable image: recorded, never sent
            result = Result(None, str(result), f"prepare: {result.reason}")
        recorder.record(target, result)
        bar.update(1)

    run = Pipeline(targets, backend.job, lambda _target, prepared: embed_call(policy, backend, prepared),
                   record, senders(backend, settings), stop)
    started = time.perf_counter()
    status = STOPPED
    try:
        status = run.run_all(len(targets))
    finally:
        bar.close()
        summary.elapsed_s = time.perf_counter() - started
        if status == STOPPED:
            summary.stopped = (f"authentication failed: {run.auth_error}" if run.auth_error is not None
                               else INTERRUPTED)
        finish_run(db, summary, status)
    if run.auth_error is not None:
        raise AuthError(f"{backend.name}: authentication or permission error, run stopped after {summary.done} "
                        f"images ({run.auth_error}). Check the API key ({backend.key_hint()}) and rerun: "
                        f"images already embedded are not sent again.")
    return summary
