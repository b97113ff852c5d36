"""Any OpenAI-compatible chat-completions server through the openai SDK: vLLM, Ollama,
llama.cpp, LM Studio or OpenAI itself. Several base URLs (data-parallel servers) share the load.
"""
from __future__ import annotations

import base64
import itertools
import threading
import time
from urllib.parse import urlparse

import httpx2
import openai

from ..prompts import VERDICT_SCHEMA
from .base import AuthError, CallError, Outcome, RetryableError, ScoreRequest, error_for_status, parse_retry_after
from .gemini import outcome_from_text


def normalise_base_url(url: str) -> str:
    """`http://host:8000` → `http://host:8000/v1` (where vLLM and Ollama serve the API)."""
    url = url.strip().rstrip("/")
    if not urlparse(url).scheme:
        raise ValueError(f"base URL {url!r} needs a scheme, e.g. http://127.0.0.1:8000/v1")
    return url if urlparse(url).path not in ("", "/") else url + "/v1"


class OpenAICompatBackend:
    """``openai:<model>``: the model name as the server knows it (e.g. Qwen/Qwen2.5-VL-7B-Instruct)."""

    def __init__(self, model: str, base_urls: list[str], api_key: str | None, timeout_s: float = 120.0,
                 max_tokens: int = 512, paid: bool = False):
        if not base_urls:
            raise ValueError("no base URL: pass --base-url or set HITL_OPENAI_BASE_URL")
        self.model = model
        self.name = f"openai:{model}"
        self.paid = paid
        self.max_tokens = max_tokens
        self.clients = [openai.OpenAI(base_url=normalise_base_url(u), api_key=api_key or "not-needed",
                                      max_retries=0, timeout=timeout_s) for u in base_urls]
        self._next = itertools.cycle(range(len(self.clients)))
        self._lock = threading.Lock()

    def _client(self) -> openai.OpenAI:
        with self._lock:  # round robin keeps every data-parallel server equally busy
            return self.clients[next(self._next)]

    def score(self, request: ScoreRequest, prompt: str) -> Outcome:
        data_url = "data:image/jpeg;base64," + base64.b64encode(request.jpeg).decode()
        started = time.perf_counter()
        try:
            response = self._client().chat.completions.create(
                model=self.model,
                messages=[{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": data_url}},
                    {"type": "text", "text": prompt},
                ]}],
                response_format={"type": "json_schema",
                                 "json_schema": {"name": "hero_verdict", "schema": VERDICT_SCHEMA}},
                temperature=0.0,
                max_tokens=self.max_tokens,
            )
        except Exception as exc:
            raise translate_error(exc) from exc
        latency = (time.perf_counter() - started) * 1000
        usage = response.usage
        choice = response.choices[0] if response.choices else None
        text = choice.message.content if choice and choice.message else None
        return outcome_from_text(text, usage.prompt_tokens if usage else None,
                                 usage.completion_tokens if usage else None, latency,
                                 choice.finish_reason if choice else None)


def translate_error(exc: Exception) -> Exception:
    """openai SDK exceptions → AuthError / RetryableError / CallError."""
    if isinstance(exc, (openai.AuthenticationError, openai.PermissionDeniedError)):
        return AuthError(f"HTTP {exc.status_code}: {exc.message}")
    if isinstance(exc, openai.APITimeoutError):
        return RetryableError("timeout", "no answer within the timeout")
    if isinstance(exc, openai.APIConnectionError):
        return RetryableError("connection", f"connection failed: {exc}")
    if isinstance(exc, openai.APIStatusError):
        return error_for_status(exc.status_code, exc.message, parse_retry_after(exc.response.headers.get("retry-after")))
    if isinstance(exc, httpx2.TimeoutException):
        return RetryableError("timeout", "no answer within the timeout")
    if isinstance(exc, (AuthError, RetryableError, CallError)):
        return exc
    return CallError("client error", f"{type(exc).__name__}: {exc}")
