"""Embedding backends: an embedding server (openai SDK), a local ONNX model, an offline baseline."""
from hitl.embed.backends.base import EmbedBackend, EmbedTarget
from hitl.embed.backends.registry import make_embedder

__all__ = ["EmbedBackend", "EmbedTarget", "make_embedder"]
