"""The `score` step's synchronous run: every candidate gets each model's verdict, once.

Images are prepared in a thread per core while the calls wait on the network, a few ahead of
the callers (:mod:`hitl.pipeline`, shared with `embed`). Each result is written the moment it
arrives (:mod:`hitl.score.record`), so a run killed at any point loses only the calls in flight,
and a rerun skips every finished key: nothing is paid for twice.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import sqlite_utils

from hitl import retry
from hitl.config import Settings
from hitl.errors import AuthError, CallError, RetryableError
from hitl.imageprep import ImagePrepError, PreparedImage, prepare_image
from hitl.pipeline import Job, Pipeline
from hitl.progress import progress_bar
from hitl.score.backends.base import Backend, Outcome, ScoreRequest
from hitl.score.prompts import load_prompt
from hitl.score.record import Recorder, ScoreSummary, finish_run, start_run
from hitl.score.targets import Target

INTERRUPTED = "interrupted: rerun the same command to continue where it stopped"


@dataclass
class Attempted:
    target: Target
    outcome: Outcome | None  # None: the run stopped before this image was finished
    attempts: int


class Caller:
    """What a preparing thread runs to prepare an image, and the backend's call under the retry policy."""

    def __init__(self, backend: Backend, prompt: str, settings: Settings, stop: threading.Event):
        self.backend = backend
        self.prompt = prompt
        self.cfg = settings.score
        # waiting on the stop event lets an auth failure elsewhere end a backoff at once
        self.policy = retry.retrying(settings.score, stop)

    def job(self, target: Target) -> Job:
        """The preparation of ``target``'s image, run in a preparing thread."""
        return prepare_image, (target.path, self.cfg.max_side, self.cfg.jpeg_quality, self.cfg.max_pixels)

    def request(self, target: Target) -> ScoreRequest:
        prepared = prepare_image(*self.job(target)[1])
        return self.request_for(target, prepared)

    @staticmethod
    def request_for(target: Target, prepared: PreparedImage) -> ScoreRequest:
        return ScoreRequest(image_id=target.image_id, key=target.image_id, jpeg=prepared.jpeg,
                            width=prepared.width, height=prepared.height, boxes=target.boxes, path=str(target.path))

    def prepare(self, target: Target) -> ScoreRequest | Attempted:
        """The request for ``target``, or a finished failure if the image itself is unusable."""
        try:
            return self.request(target)
        except ImagePrepError as exc:
            return prep_failure(target, exc)

    def send(self, target: Target, prepared: PreparedImage) -> Attempted:
        return self.call(target, self.request_for(target, prepared))

    def call(self, target: Target, request: ScoreRequest) -> Attempted:
        """One image's verdict, or its recorded failure; AuthError propagates (the run stops)."""
        try:
            outcome, attempts = retry.call(self.policy, self.backend.score, request, self.prompt)
        except retry.Interrupted as exc:
            return Attempted(target, None, exc.attempts)
        except RetryableError as exc:
            return Attempted(target, Outcome(None, error=f"{exc} (after {exc.attempts} attempts)",
                                             error_kind=exc.kind), exc.attempts)
        except CallError as exc:
            return Attempted(target, Outcome(None, error=str(exc), error_kind=exc.kind), exc.attempts)
        return Attempted(target, outcome, attempts)


def prep_failure(target: Target, exc: ImagePrepError) -> Attempted:
    """An unusable image as a finished failure: recorded with its reason, never sent."""
    return Attempted(target, Outcome(None, error=str(exc), error_kind=f"prepare: {exc.reason}"), 0)


def run_sync(db: sqlite_utils.Database, backend: Backend, targets: list[Target], settings: Settings, *,
             prompt_version: str, skipped: int = 0, estimate: float | None = None,
             progress: bool | None = None) -> ScoreSummary:
    """Score ``targets`` with ``backend``, ``concurrency`` calls in flight, writing as results arrive.

    An authentication or permission error stops the run at once: no new call starts, the
    images not done stay unscored (a rerun with the right key does them), and AuthError says why.
    """
    cfg = settings.score
    prompt = load_prompt(prompt_version) if backend.uses_prompt else ""
    mode = backend.run_mode
    run_id = start_run(db, backend.name, prompt_version, mode, len(targets), estimate,
                       {"concurrency": cfg.concurrency, "attempts": cfg.attempts, "timeout_seconds": cfg.timeout_seconds,
                        "max_side": cfg.max_side})
    summary = ScoreSummary(run_id, backend.name, prompt_version, mode, len(targets), skipped_done=skipped,
                           estimate_usd=estimate)
    stop = threading.Event()
    bar = progress_bar(progress, total=len(targets), desc=f"Scoring with {backend.name}", unit="img")
    recorder = Recorder(db, summary, backend.price(settings), 1.0, uses_detections=backend.uses_detections)
    caller = Caller(backend, prompt, settings, stop)

    def record(target: Target, result: Attempted | ImagePrepError) -> None:
        if isinstance(result, ImagePrepError):
            result = prep_failure(target, result)
        if result.outcome is not None:  # None: stopped before it was finished
            recorder.record(target.image_id, result.outcome, result.attempts, target.inputs)
            bar.update(1)

    run = Pipeline(targets, caller.job, caller.send, record, cfg.concurrency, stop)
    started = time.perf_counter()
    status = "stopped"
    try:
        status = run.run_all(len(targets))
    finally:
        bar.close()
        summary.elapsed_s = time.perf_counter() - started
        if status == "stopped":
            summary.stopped = INTERRUPTED
        if run.auth_error is not None:
            summary.stopped = f"authentication failed: {run.auth_error}"
        finish_run(db, summary, status)
    if run.auth_error is not None:
        raise AuthError(f"{backend.name}: authentication or permission error, run stopped after "
                        f"{summary.done} results ({run.auth_error}). Check the API key "
                        f"({backend.key_hint()}) and rerun: finished images are not called again.")
    return summary


