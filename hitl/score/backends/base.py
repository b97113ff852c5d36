"""What every scoring backend shares: the request, the verdict, the outcome, the capabilities.

A backend turns one prepared image into an Outcome. It raises AuthError when the run must
stop at once (a bad key never becomes thousands of failing calls) and RetryableError for
failures worth another attempt (rate limits, server errors, timeouts); the runner owns the
retry policy (:mod:`hitl.retry`). What a backend can do is said by its class
attributes, as ``llm``'s model classes do, so the runner and the CLI never guess from names.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

from hitl.config import Price, Settings
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
    def from_settings(cls, model: str, settings: Settings, base_urls: list[str] | None,
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

    def price(self, settings: Settings) -> Price | None:
        """USD per million tokens (``input``, ``output``) from the settings, or None when unknown."""
        if not self.paid:
            return None
        prices = settings.score.prices
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
