"""The `score` step's synchronous run: every candidate gets each model's verdict, once.

Images are prepared on every core while the calls wait on the network, a few ahead of the
callers so neither starves the other and memory stays bounded. Each result is written the
moment it arrives (:mod:`hitl.score.record`), so a run killed at any point loses only the
calls in flight, and a rerun skips every finished key: nothing is paid for twice.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass
from typing import Any

import sqlite_utils

from hitl.errors import AuthError, CallError, RetryableError
from hitl.imageprep import ImagePrepError, prepare_image
from hitl.progress import progress_bar
from hitl.score import retry
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
    """Prepare an image and call the backend under the retry policy."""

    def __init__(self, backend: Backend, prompt: str, settings: dict[str, Any], stop: threading.Event):
        self.backend = backend
        self.prompt = prompt
        self.cfg = settings["score"]
        # waiting on the stop event lets an auth failure elsewhere end a backoff at once
        self.policy = retry.retrying(settings, stop)

    def request(self, target: Target) -> ScoreRequest:
        prepared = prepare_image(target.path, self.cfg["max_side"], self.cfg["jpeg_quality"], self.cfg["max_pixels"])
        return ScoreRequest(image_id=target.image_id, key=target.image_id, jpeg=prepared.jpeg,
                            width=prepared.width, height=prepared.height, boxes=target.boxes, path=str(target.path))

    def prepare(self, target: Target) -> ScoreRequest | Attempted:
        """The request for ``target``, or a finished failure if the image itself is unusable."""
        try:
            return self.request(target)
        except ImagePrepError as exc:
            return Attempted(target, Outcome(None, error=str(exc), error_kind=f"prepare: {exc.reason}"), 0)

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


class SyncRun:
    """The bookkeeping of one run: what is being prepared, what is being called, what is ready."""

    def __init__(self, caller: Caller, recorder: Recorder, targets: list[Target], concurrency: int,
                 stop: threading.Event, bar):
        self.caller, self.recorder, self.stop, self.bar = caller, recorder, stop, bar
        self.pending = iter(targets)
        self.concurrency = max(1, concurrency)
        self.ahead = self.concurrency * 2
        self.preparing: dict[Future, Target] = {}
        self.calling: set[Future] = set()
        self.ready: list[tuple[Target, ScoreRequest]] = []
        self.auth_error: AuthError | None = None

    def run(self, prep_pool: ThreadPoolExecutor, call_pool: ThreadPoolExecutor) -> None:
        while True:
            if not self.stop.is_set():
                for target in itertools.islice(self.pending, max(0, self.ahead - len(self.preparing) - len(self.ready))):
                    self.preparing[prep_pool.submit(self.caller.prepare, target)] = target
                while self.ready and len(self.calling) < self.concurrency:
                    target, request = self.ready.pop(0)
                    self.calling.add(call_pool.submit(self.caller.call, target, request))
            if not self.preparing and not self.calling:
                return
            done, _ = wait(set(self.preparing) | self.calling, return_when=FIRST_COMPLETED)
            for future in done:
                if future in self.preparing:
                    self._prepared(self.preparing.pop(future), future.result())
                else:
                    self.calling.discard(future)
                    self._called(future)

    def _prepared(self, target: Target, prepared: ScoreRequest | Attempted) -> None:
        if isinstance(prepared, Attempted):  # unusable image: recorded, never sent
            self.recorder.record(target.image_id, prepared.outcome, 0, target.inputs)
            self.bar.update(1)
        elif not self.stop.is_set():
            self.ready.append((target, prepared))

    def _called(self, future: Future) -> None:
        try:
            result = future.result()
        except AuthError as exc:
            self.auth_error = self.auth_error or exc
            self.stop.set()
            return
        if result.outcome is not None:
            self.recorder.record(result.target.image_id, result.outcome, result.attempts, result.target.inputs)
            self.bar.update(1)

    def drain(self) -> None:
        """Keep the results of the calls in flight: they are being paid for."""
        for future in as_completed(self.calling):
            self._called(future)


def run_sync(db: sqlite_utils.Database, backend: Backend, targets: list[Target], settings: dict[str, Any], *,
             prompt_version: str, skipped: int = 0, estimate: float | None = None,
             progress: bool | None = None) -> ScoreSummary:
    """Score ``targets`` with ``backend``, ``concurrency`` calls in flight, writing as results arrive.

    An authentication or permission error stops the run at once: no new call starts, the
    images not done stay unscored (a rerun with the right key does them), and AuthError says why.
    """
    cfg = settings["score"]
    prompt = load_prompt(prompt_version) if backend.uses_prompt else ""
    mode = backend.run_mode
    run_id = start_run(db, backend.name, prompt_version, mode, len(targets), estimate,
                       {k: cfg[k] for k in ("concurrency", "attempts", "timeout_seconds", "max_side")})
    summary = ScoreSummary(run_id, backend.name, prompt_version, mode, len(targets), skipped_done=skipped,
                           estimate_usd=estimate)
    stop = threading.Event()
    bar = progress_bar(progress, total=len(targets), desc=f"Scoring with {backend.name}", unit="img")
    run = SyncRun(Caller(backend, prompt, settings, stop), Recorder(db, summary, backend.price(settings), 1.0,
                                                                  uses_detections=backend.uses_detections),
                  targets, cfg["concurrency"], stop, bar)
    started = time.perf_counter()
    status = "finished"
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="prepare") as prep_pool, \
                ThreadPoolExecutor(max_workers=run.concurrency, thread_name_prefix="score") as call_pool:
            try:
                run.run(prep_pool, call_pool)
            except KeyboardInterrupt:
                # A second Ctrl+C while draining abandons the calls in flight.
                stop.set()
                status, summary.stopped = "stopped", INTERRUPTED
                run.drain()
    except KeyboardInterrupt:
        stop.set()
        status, summary.stopped = "stopped", INTERRUPTED
    finally:
        bar.close()
        summary.elapsed_s = time.perf_counter() - started
        if run.auth_error is not None:
            status, summary.stopped = "stopped", f"authentication failed: {run.auth_error}"
        finish_run(db, summary, status)
    if run.auth_error is not None:
        raise AuthError(f"{backend.name}: authentication or permission error, run stopped after "
                        f"{summary.done} results ({run.auth_error}). Check the API key "
                        f"({backend.key_hint()}) and rerun: finished images are not called again.")
    return summary


