"""Which embedding backend a --model value names (beside the scoring ones in hitl/score/backends)."""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping

from hitl.config import Settings
from hitl.embed.backends.base import EmbedBackend
from hitl.errors import HitlError


def backend_classes() -> Iterator[type[EmbedBackend]]:
    """Every embedding backend, in the order --model values are matched, each imported only once the
    ones before it did not match (the openai SDK takes a second to import; baseline and onnx runs need none)."""
    from hitl.embed.backends.baseline import BaselineEmbedder

    yield BaselineEmbedder
    from hitl.embed.backends.onnx import OnnxEmbedder  # ONNX Runtime itself is imported when a model loads

    yield OnnxEmbedder
    from hitl.embed.backends.openai_compat import OpenAIEmbedder

    yield OpenAIEmbedder


def make_embedder(model: str, settings: Settings, base_urls: list[str] | None = None,
                  env: Mapping[str, str] = os.environ) -> EmbedBackend:
    """``baseline``, ``openai:<model>`` (an embedding server) or ``onnx:<path>`` (a local model)."""
    for cls in backend_classes():
        if cls.handles(model):
            return cls.from_settings(model, settings, base_urls, env)
    raise HitlError(f"unknown --model {model!r}: use baseline, openai:<model> for an embedding server (vLLM "
                    f"--runner pooling) or onnx:<path/to/model.onnx> for a local image encoder")
