"""Calls to a model server over the network, whatever the stage (scoring, embedding): the provider
SDKs' exceptions become the library's own in one place, which failures are transient, and a
reachability probe that fails in seconds.
"""
from __future__ import annotations

import base64
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from hitl.errors import AuthError, BackendError, CallError, HitlError, RetryableError

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def normalise_base_url(url: str) -> str:
    """`http://host:8000` → `http://host:8000/v1` (where vLLM and Ollama serve the API)."""
    url = url.strip().rstrip("/")
    if not urlparse(url).scheme:
        raise ValueError(f"base URL {url!r} needs a scheme, e.g. http://127.0.0.1:8000/v1")
    return url if urlparse(url).path not in ("", "/") else url + "/v1"


def server_urls(model: str, example: str, base_urls: list[str] | None, env: Mapping[str, str]) -> list[str]:
    """The OpenAI-compatible servers for ``model``: ``--base-url`` values, else HITL_OPENAI_BASE_URL
    (comma-separated); HitlError when there are none. ``example``: a model name to show."""
    urls = base_urls or [u for u in env.get("HITL_OPENAI_BASE_URL", "").split(",") if u.strip()]
    if not model.partition(":")[2]:
        raise HitlError(f"--model {model} needs the model name the server serves, e.g. {example}")
    if not urls:
        raise HitlError(f"{model}: no server address; pass --base-url http://host:8000/v1 (repeatable) "
                        f"or set HITL_OPENAI_BASE_URL (comma-separated for several servers)")
    return urls


def api_key(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    """The first of the ``names`` set in the environment, if any."""
    return next((env[k] for k in names if env.get(k)), None)


def jpeg_data_url(jpeg: bytes) -> str:
    """A JPEG inlined in a request, as OpenAI-compatible servers take images."""
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def post_json(client: Any, path: str, body: dict[str, Any]) -> Any:
    """POST ``body`` through an openai SDK ``client`` and return the answer's JSON as it came.

    Not the SDK's typed methods: their request transform walks the whole body (a JSON schema
    included) and their response models are built field by field, together ~1 ms of CPU per call,
    as much as the HTTP itself. The SDK's errors become the library's own.
    """
    import httpx

    try:
        return client.post(path, body=body, cast_to=httpx.Response).json()
    except ValueError:
        raise CallError("bad response", "the server's answer is not JSON") from None
    except Exception as exc:
        raise translate_error(exc) from exc


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
    parsed = urlparse(url)
    host, port = parsed.hostname, parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as exc:
        raise HitlError(f"cannot reach {what} at {parsed.scheme}://{host}:{port} ({exc.strerror or exc}); "
                        f"is it running, and is this machine online? Nothing was sent or marked failed") from None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds; an HTTP date is read as 'soon')."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


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
