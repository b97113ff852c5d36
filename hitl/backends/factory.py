"""Build the backend a --model value names. Keys and endpoints come only from the environment."""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ..errors import HitlError


def make_backend(model: str, settings: dict[str, Any], base_urls: list[str] | None = None,
                 env: Mapping[str, str] = os.environ):
    """``baseline``, ``openai:<model>`` or a Gemini model name (``gemini-2.5-flash``, ...)."""
    cfg = settings["score"]
    if model == "baseline":
        from .baseline import BaselineBackend

        return BaselineBackend(max_side=cfg["max_side"])
    if model.startswith("openai:"):
        from .openai_compat import OpenAICompatBackend

        name = model.removeprefix("openai:")
        if not name:
            raise HitlError("--model openai: needs the model name the server serves, e.g. "
                            "openai:Qwen/Qwen2.5-VL-7B-Instruct")
        urls = base_urls or [u for u in env.get("HITL_OPENAI_BASE_URL", "").split(",") if u.strip()]
        if not urls:
            raise HitlError(f"{model}: no server address; pass --base-url http://host:8000/v1 (repeatable) "
                            f"or set HITL_OPENAI_BASE_URL (comma-separated for several servers)")
        key = env.get("HITL_OPENAI_API_KEY") or env.get("OPENAI_API_KEY")
        try:
            return OpenAICompatBackend(name, urls, key, timeout_s=cfg["timeout_seconds"],
                                       max_tokens=cfg["max_output_tokens"],
                                       paid=model.removeprefix("openai:") in cfg["prices"])
        except ValueError as exc:
            raise HitlError(f"{model}: {exc}") from None
    if model.startswith(("gemini", "models/gemini")):
        from .gemini import GeminiBackend, make_client

        key = env.get("GEMINI_API_KEY") or env.get("GOOGLE_API_KEY")
        if not key:
            raise HitlError(f"{model}: no API key; set GEMINI_API_KEY (or GOOGLE_API_KEY) in the environment")
        budget = cfg["gemini_thinking_budget"]
        client = make_client(key, env.get("HITL_GEMINI_BASE_URL") or None, cfg["timeout_seconds"])
        return GeminiBackend(model, client, thinking_budget=None if budget < 0 else budget,
                             max_output_tokens=cfg["max_output_tokens"])
    raise HitlError(f"unknown --model {model!r}: use baseline, a Gemini model name such as gemini-2.5-flash, "
                    f"or openai:<model> for an OpenAI-compatible server (vLLM, Ollama, ...)")
