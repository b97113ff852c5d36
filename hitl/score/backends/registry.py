"""Which backend a --model value names. Keys and endpoints come only from the environment."""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from hitl.config import Settings
from hitl.errors import HitlError
from hitl.score.backends.base import Backend


def backend_classes() -> Iterator[type[Backend]]:
    """Every backend, in the order --model values are matched, each imported only once the ones
    before it did not match: the SDKs take a second each to import, and a baseline run needs neither."""
    from hitl.score.backends.baseline import BaselineBackend

    yield BaselineBackend
    from hitl.score.backends.openai_compat import OpenAICompatBackend

    yield OpenAICompatBackend
    from hitl.score.backends.gemini import GeminiBackend

    yield GeminiBackend


def backend_class(model: str) -> type[Backend]:
    for cls in backend_classes():
        if cls.handles(model):
            return cls
    raise HitlError(f"unknown --model {model!r}: use baseline, a Gemini model name such as gemini-2.5-flash, "
                    f"or openai:<model> for an OpenAI-compatible server (vLLM, Ollama, ...)")


def make_backend(model: str, settings: Settings, base_urls: list[str] | None = None,
                 env: Mapping[str, str] = os.environ) -> Backend:
    """``baseline``, ``openai:<model>`` or a Gemini model name (``gemini-2.5-flash``, ...)."""
    return backend_class(model).from_settings(model, settings, base_urls, env)
