"""The one retry policy for model calls (scoring, embedding) and batch polls (tenacity), honouring Retry-After.

The SDKs' own retries are off (they ignore Retry-After, and two layers of retries multiply):
RetryableError is retried with exponential backoff and jitter, or after the wait the server
asked for; AuthError and CallError are never retried. A stop event ends a wait at once, so
an authentication failure in one worker or a Ctrl+C does not wait out everyone's backoff.
"""
from __future__ import annotations

import random
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import tenacity

from hitl.config import EmbedSettings, ScoreSettings
from hitl.errors import RetryableError

T = TypeVar("T")


class Interrupted(Exception):
    """The stop event was set before or during a wait: the call was not (re)tried."""


class wait_for_server(tenacity.wait.wait_base):
    """The server's Retry-After if it gave one, else doubling backoff up to ``maximum``; both
    with jitter so parallel workers do not retry in step."""

    def __init__(self, base: float, maximum: float):
        self.base, self.maximum = base, maximum

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            return retry_after * random.uniform(1.0, 1.1)
        backoff = min(self.maximum, self.base * 2 ** (retry_state.attempt_number - 1))
        return backoff * random.uniform(0.5, 1.0)


def retrying(cfg: ScoreSettings | EmbedSettings, stop: threading.Event | None = None) -> tenacity.Retrying:
    """The policy of a settings section (``[score]``, ``[embed]``): ``attempts``, ``retry_base_seconds``,
    ``retry_max_seconds``."""
    event = stop or threading.Event()

    def sleep(seconds: float) -> None:
        if event.wait(seconds):
            raise Interrupted()

    def before(_state: tenacity.RetryCallState) -> None:
        if event.is_set():
            raise Interrupted()

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, cfg.attempts)),
        wait=wait_for_server(cfg.retry_base_seconds, cfg.retry_max_seconds),
        retry=tenacity.retry_if_exception_type(RetryableError),
        sleep=sleep, before=before, reraise=True,
    )


def call(policy: tenacity.Retrying, fn: Callable[..., T], *args: Any) -> tuple[T, int]:
    """``fn(*args)`` under ``policy``; returns (result, attempts made).

    Raises what the last attempt raised (a RetryableError once the attempts are used up) or
    Interrupted; either carries ``attempts``, the number of calls made.
    """
    run = policy.copy()
    try:
        return run(fn, *args), run.statistics.get("attempt_number", 1)
    except Exception as exc:
        exc.attempts = run.statistics.get("attempt_number", 1)  # type: ignore[attr-defined]
        raise
