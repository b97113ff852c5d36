"""What every scoring backend shares: the request, the verdict, the outcome, the capabilities.

A backend turns one prepared image into an Outcome. It raises AuthError when the run must
stop at once (a bad key never becomes thousands of failing calls) and RetryableError for
failures worth another attempt (rate limits, server errors, timeouts); the runner owns the
retry policy (:mod:`hitl.score.retry`). What a backend can do is said by its class
attributes, as ``llm``'s model classes do, so the runner and the CLI never guess from names.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from hitl.errors import AuthError, BackendError, CallError, RetryableError
from hitl.score.verdict import ParseError, Verdict, parse_verdict


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


class Backend:
    """One model behind one interface. ``name`` is what --model selects and what is stored.

    Capabilities, set by each subclass:

    - ``paid``: calls cost money, so runs are estimated and ``--max-cost`` applies;
    - ``key_env``: the environment variables its API key is read from (first set wins;
      empty: no key needed);
    - ``supports_batch``: it implements the batch methods of :class:`BatchBackend`;
    - ``run_mode``: how a run is recorded: ``sync`` calls or ``offline`` computation;
    - ``uses_prompt``: the prompt is sent (a prompt version with no prompt file is then an error);
    - ``uses_detections``: the verdict is computed from the detector's boxes too, so it is recorded with
      a digest of them and goes stale when they change (:mod:`hitl.store.inputs`). A model that sees
      only the image and the prompt is not made stale by a new detector record.
    """

    name: str
    paid: bool = False
    key_env: ClassVar[tuple[str, ...]] = ()
    supports_batch: ClassVar[bool] = False
    run_mode: ClassVar[str] = "sync"
    uses_prompt: ClassVar[bool] = True
    uses_detections: ClassVar[bool] = False

    @classmethod
    def handles(cls, model: str) -> bool:
        """Does the --model value name this backend?"""
        raise NotImplementedError

    @classmethod
    def from_settings(cls, model: str, settings: dict[str, Any], base_urls: list[str] | None,
                      env: Mapping[str, str]) -> Backend:
        """Build the backend from the settings and the environment (keys and endpoints only there)."""
        raise NotImplementedError

    @classmethod
    def key_hint(cls) -> str:
        return " or ".join(cls.key_env) or "no key is needed"

    def score(self, request: ScoreRequest, prompt: str) -> Outcome:
        raise NotImplementedError

    def probe(self) -> None:
        """Raise HitlError at once when the backend cannot be reached at all (default: nothing to reach)."""

    def price(self, settings: dict[str, Any]) -> dict[str, float] | None:
        """USD per million tokens (``input``, ``output``) from the settings, or None when unknown."""
        if not self.paid:
            return None
        prices = settings["score"]["prices"]
        return prices.get(self.name) or prices.get(self.name.removeprefix("models/"))


class BatchBackend(Backend):
    """A backend with a batch API: keyed input lines out, keyed results back, at a discount."""

    supports_batch: ClassVar[bool] = True

    def batch_line(self, request: ScoreRequest, prompt: str) -> dict:
        raise NotImplementedError

    def submit_batch(self, jsonl_path: str, display_name: str) -> tuple[str, str]:
        """Upload the input file and create the job; returns (job name, input file name)."""
        raise NotImplementedError

    def batch_status(self, name: str) -> tuple[str, str | None, dict]:
        """(state, result file name or None, stats) of a job."""
        raise NotImplementedError

    def find_batch(self, display_name: str) -> str | None:
        """The name of a job submitted under ``display_name``, or None."""
        raise NotImplementedError

    def cancel_batch(self, name: str) -> None:
        raise NotImplementedError

    def batch_results(self, result_file: str) -> Iterable[tuple[str, Outcome]]:
        raise NotImplementedError


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


_TRANSIENT_BATCH = ("INTERNAL", "UNAVAILABLE", "RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "ABORTED")


def is_transient(error_kind: str | None) -> bool:
    """Did a recorded failure come from the way there (network, server load, a limit), not from the
    image or the answer? Those images are tried again on the next run without --retry-failed; a
    corrupt image, an unparseable answer or a refusal waits for --retry-failed."""
    kind = error_kind or ""
    if kind in ("timeout", "connection", "batch: missing result"):
        return True
    if kind.startswith("http "):
        code = kind.removeprefix("http ")
        return code.isdigit() and int(code) in RETRYABLE_STATUS
    if kind.startswith("batch error "):
        status = kind.removeprefix("batch error ")
        return status in _TRANSIENT_BATCH or (status.isdigit() and int(status) in RETRYABLE_STATUS)
    return False


def probe_tcp(url: str, what: str, timeout: float = 5.0) -> None:
    """One connection attempt to ``url``'s host and port, so a server that is down or a machine
    with no network fails in seconds with one line, not after every image's retry schedule."""
    import socket
    from urllib.parse import urlparse

    from hitl.errors import HitlError

    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise HitlError(f"cannot reach {what} at {parsed.scheme}://{host}:{port} ({exc.strerror or exc}); "
                        f"is it running, and is this machine online? Nothing was scored or marked failed") from None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds; an HTTP date is read as 'soon')."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def outcome_from_text(text: str | None, tokens_in: int | None, tokens_out: int | None, latency_ms: float | None,
                      finish_reason: str | None) -> Outcome:
    """Parse an answer; a bad answer is a recorded parse failure with the raw text kept."""
    try:
        verdict = parse_verdict(text)
    except ParseError as exc:
        detail = str(exc)
        if not text and finish_reason and finish_reason not in ("STOP", "stop"):
            detail = f"no answer (finish reason {finish_reason})"
        return Outcome(None, raw=text, error=detail, error_kind=f"parse: {exc.reason}",
                       tokens_in=tokens_in, tokens_out=tokens_out, latency_ms=latency_ms)
    return Outcome(verdict, raw=text, tokens_in=tokens_in, tokens_out=tokens_out, latency_ms=latency_ms)


def translate_error(exc: BaseException) -> BackendError:
    """Any exception a provider SDK or its HTTP client raises → AuthError / RetryableError / CallError.

    The one place foreign exceptions become the library's own (as httpx maps transport
    errors in one place): google-genai's APIError, the openai SDK's status, timeout and
    connection errors, and the httpx exceptions underneath both.
    """
    import httpx
    import httpx2
    import openai
    from google.genai import errors as genai_errors

    if isinstance(exc, BackendError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        headers = getattr(exc.response, "headers", None)
        retry_after = parse_retry_after(headers.get("retry-after")) if headers is not None else None
        if retry_after is None:
            retry_after = _retry_delay(exc.details)
        return error_for_status(exc.code or 0, exc.message or str(exc), retry_after)
    if isinstance(exc, openai.APIStatusError):
        return error_for_status(exc.status_code, exc.message,
                                parse_retry_after(exc.response.headers.get("retry-after")))
    if isinstance(exc, (openai.APITimeoutError, httpx.TimeoutException, httpx2.TimeoutException, TimeoutError)):
        return RetryableError("timeout", f"no answer within the timeout ({type(exc).__name__})")
    if isinstance(exc, (openai.APIConnectionError, httpx.TransportError, httpx2.TransportError, ConnectionError)):
        return RetryableError("connection", f"connection failed: {exc}")
    return CallError("client error", f"{type(exc).__name__}: {exc}")


def _retry_delay(details: Any) -> float | None:
    """Gemini also states the wait in the error body: details[].retryDelay = "12s"."""
    try:
        for item in details["error"]["details"]:
            if "retryDelay" in item:
                return float(str(item["retryDelay"]).rstrip("s"))
    except (KeyError, TypeError, ValueError):
        pass
    return None
