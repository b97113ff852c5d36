"""Which embedding backend a --model value names (beside the scoring ones in hitl/score/backends)."""
from __future__ import annotations

import os
from collections.abc import Mapping

from hitl.config import Settings
from hitl.embed.backends.base import EmbedBackend
from hitl.errors import HitlError


def backend_classes() -> list[type[EmbedBackend]]:
    """Every embedding backend, in the order --model values are matched; imported when asked for."""
    from hitl.embed.backends.baseline import BaselineEmbedder
    from hitl.embed.backends.onnx import OnnxEmbedder
    from hitl.embed.backends.openai_compat import OpenAIEmbedder

    return [BaselineEmbedder, OpenAIEmbedder, OnnxEmbedder]


def make_embedder(model: str, settings: Settings, base_urls: list[str] | None = None,
                  env: Mapping[str, str] = os.environ) -> EmbedBackend:
    """``baseline``, ``openai:<model>`` (an embedding server) or ``onnx:<path>`` (a local model)."""
    for cls in backend_classes():
        if cls.handles(model):
            return cls.from_settings(model, settings, base_urls, env)
    raise HitlError(f"unknown --model {model!r}: use baseline, openai:<model> for an embedding server (vLLM "
                    f"--runner pooling) or onnx:<path/to/model.onnx> for a local image encoder")
