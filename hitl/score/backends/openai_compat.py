"""Any OpenAI-compatible chat-completions server through the openai SDK: vLLM, Ollama,
llama.cpp, LM Studio or OpenAI itself. Several base URLs (data-parallel servers) share the load.
"""
from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hitl.config import Price, Settings
from hitl.errors import HitlError
from hitl.remote import api_key, jpeg_data_url, normalise_base_url, post_json, probe_tcp, server_urls
from hitl.score.backends.base import Backend, Outcome, ScoreRequest, outcome_from_text
from hitl.score.verdict import VERDICT_SCHEMA

if TYPE_CHECKING:
    import openai

PREFIX = "openai:"


class OpenAICompatBackend(Backend):
    """``openai:<model>``: the model name as the server knows it (e.g. Qwen/Qwen2.5-VL-7B-Instruct).

    Paid only when the settings hold a price for the model (a local vLLM server costs nothing).
    """

    key_env = ("HITL_OPENAI_API_KEY", "OPENAI_API_KEY")

    @classmethod
    def handles(cls, model: str) -> bool:
        return model.startswith(PREFIX)

    @classmethod
    def from_settings(cls, model: str, settings: Settings, base_urls: list[str] | None,
                      env: Mapping[str, str]) -> OpenAICompatBackend:
        cfg = settings.score
        name = model.removeprefix(PREFIX)
        urls = server_urls(model, "openai:Qwen/Qwen2.5-VL-7B-Instruct", base_urls, env)
        key = api_key(env, cls.key_env)
        try:
            return cls(name, urls, key, timeout_s=cfg.timeout_seconds, max_tokens=cfg.max_output_tokens,
                       paid=name in cfg.prices)
        except ValueError as exc:
            raise HitlError(f"{model}: {exc}") from None

    def __init__(self, model: str, base_urls: list[str], api_key: str | None, timeout_s: float = 120.0,
                 max_tokens: int = 512, paid: bool = False):
        if not base_urls:
            raise ValueError("no base URL: pass --base-url or set HITL_OPENAI_BASE_URL")
        self.model = model
        self.name = f"{PREFIX}{model}"
        self.paid = paid  # an instance attribute: the price table decides, not the class
        self.max_tokens = max_tokens
        import openai  # here, not at the top: a Gemini run matches past this class (hitl.score.backends.registry)

        self.clients = [openai.OpenAI(base_url=normalise_base_url(u), api_key=api_key or "not-needed",
                                      max_retries=0, timeout=timeout_s) for u in base_urls]
        self._next = itertools.cycle(range(len(self.clients)))
        self._lock = threading.Lock()

    def probe(self) -> None:
        for client in self.clients:
            probe_tcp(str(client.base_url), f"the OpenAI-compatible server for {self.name}")

    def price(self, settings: Settings) -> Price | None:
        return settings.score.prices.get(self.model) if self.paid else None

    def _client(self) -> openai.OpenAI:
        with self._lock:  # round robin keeps every data-parallel server equally busy
            return self.clients[next(self._next)]

    def score(self, request: ScoreRequest, prompt: str) -> Outcome:
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": jpeg_data_url(request.jpeg)}},
                {"type": "text", "text": prompt},
            ]}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "hero_verdict", "schema": VERDICT_SCHEMA}},
            "temperature": 0.0,
            "max_tokens": self.max_tokens,
        }
        started = time.perf_counter()
        data = post_json(self._client(), "/chat/completions", body)
        latency = (time.perf_counter() - started) * 1000
        return outcome_from_completion(data, latency)


def outcome_from_completion(data: Any, latency_ms: float) -> Outcome:
    """The verdict in a chat completion's JSON; a missing part reads as no answer (a parse failure)."""
    data = data if isinstance(data, dict) else {}
    choices = data.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = choice.get("message")
    text = message.get("content") if isinstance(message, dict) else None
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
    return outcome_from_text(text if isinstance(text, str) else None, usage.get("prompt_tokens"),
                             usage.get("completion_tokens"), latency_ms, choice.get("finish_reason"))
