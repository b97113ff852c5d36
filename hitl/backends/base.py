"""What every scoring backend shares: the request, the verdict, the outcome and the errors.

A backend turns one prepared image into an Outcome. It raises AuthError when the run must
stop at once (a bad key never becomes thousands of failing calls) and RetryableError for
failures worth another attempt (rate limits, server errors, timeouts); the runner owns the
retry policy.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Verdict:
    """A model's opinion of one image: the JSON every prompt asks for."""

    score: float  # 0-10
    hero: bool
    reasoning: str
    tags: tuple[str, ...] = ()


@dataclass
class ScoreRequest:
    image_id: str
    key: str  # stable key for batch lines: responses are matched by it, never by order
    jpeg: bytes  # the prepared image (EXIF-upright RGB JPEG)
    width: int
    height: int
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)  # animals, normalised x,y,w,h
    path: str = ""  # the original file, for backends that read pixels themselves


@dataclass
class Outcome:
    """What a call produced: a verdict, or an error with the raw text kept."""

    verdict: Verdict | None
    raw: str | None = None
    error: str | None = None  # human-readable
    error_kind: str | None = None  # short and countable: parse, http 500, timeout, prepare, ...
    tokens_in: int | None = None
    tokens_out: int | None = None
    latency_ms: float | None = None


class AuthError(Exception):
    """Credentials missing, wrong or not allowed: stop the run at once."""


class RetryableError(Exception):
    """Worth another attempt; ``retry_after`` (seconds) comes from the server when it said so."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


class Backend(Protocol):
    """One model behind one interface. ``name`` is what --model selects and what is stored."""

    name: str
    paid: bool

    def score(self, request: ScoreRequest, prompt: str) -> Outcome: ...


class CallError(Exception):
    """The call failed in a way another attempt will not fix (a 400, a refused request)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


# Terminal states of a batch job, as google-genai reports them.
BATCH_DONE_STATES = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED"})

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def error_for_status(status: int, message: str, retry_after: float | None = None) -> Exception:
    """Map an HTTP status to the exception the runner acts on."""
    if status in (401, 403) or (status == 400 and "api key" in message.lower()):
        # Gemini answers a wrong key with 400 "API key not valid": that is an auth error too
        return AuthError(f"HTTP {status}: {message}")
    if status in RETRYABLE_STATUS:
        return RetryableError(f"http {status}", f"HTTP {status}: {message}", retry_after)
    return CallError(f"http {status}", f"HTTP {status}: {message}")


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds; an HTTP date is read as 'soon')."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
