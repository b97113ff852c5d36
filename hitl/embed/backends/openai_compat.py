"""``openai:<model>``: an image encoder served by vLLM (0.11.1 or later, ``--runner pooling``) on
``/v1/embeddings``, through the openai SDK. The SDK's ``embeddings.create`` takes no ``messages``,
so the chat-style body vLLM accepts for images is posted as vLLM's own example does
(``client.post("/embeddings", body=..., cast_to=...)``). Several base URLs share the load.
"""
from __future__ import annotations

import base64
import itertools
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import openai

from hitl.config import Settings
from hitl.embed.backends.base import EmbedBackend, EmbedTarget
from hitl.errors import CallError, HitlError
from hitl.imageprep import PreparedImage, prepare_image
from hitl.pipeline import Job
from hitl.remote import api_key, jpeg_data_url, normalise_base_url, post_json, probe_tcp, server_urls

PREFIX = "openai:"


def embedding_body(model: str, jpeg: bytes, encoding: str = "float") -> dict[str, Any]:
    """vLLM's chat-style embeddings request for one image."""
    url = jpeg_data_url(jpeg)
    return {"model": model, "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": url}}]}],
            "encoding_format": encoding}


def vector_from_response(data: Any) -> np.ndarray:
    """The one embedding of an OpenAI-shaped embeddings response: a list of floats, or base64 of
    little-endian float32. Raises CallError naming what is wrong."""
    try:
        item = data["data"][0]
        value = item["embedding"]
    except (KeyError, IndexError, TypeError):
        raise CallError("bad response", f"not an embeddings response: {str(data)[:200]}") from None
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError:
            raise CallError("bad response", "the embedding is neither a list of numbers nor base64") from None
        if not raw or len(raw) % 4:
            raise CallError("bad response", f"a base64 embedding of {len(raw)} bytes is no float32 vector")
        return np.frombuffer(raw, "<f4").astype(np.float32)
    if isinstance(value, list) and value and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        return np.asarray(value, np.float32)
    raise CallError("bad response", "the embedding is neither a list of numbers nor base64")


class OpenAIEmbedder(EmbedBackend):
    """``openai:<model>``: the model name as the server knows it (e.g. openai/clip-vit-large-patch14)."""

    key_env = ("HITL_OPENAI_API_KEY", "OPENAI_API_KEY")

    @classmethod
    def handles(cls, model: str) -> bool:
        return model.startswith(PREFIX)

    @classmethod
    def from_settings(cls, model: str, settings: Settings, base_urls: list[str] | None,
                      env: Mapping[str, str]) -> OpenAIEmbedder:
        cfg = settings.embed
        name = model.removeprefix(PREFIX)
        urls = server_urls(model, "openai:openai/clip-vit-large-patch14", base_urls, env)
        key = api_key(env, cls.key_env)
        try:
            return cls(name, urls, key, timeout_s=cfg.timeout_seconds, max_side=cfg.max_side,
                       quality=cfg.jpeg_quality, max_pixels=cfg.max_pixels)
        except ValueError as exc:
            raise HitlError(f"{model}: {exc}") from None

    def __init__(self, model: str, base_urls: list[str], api_key: str | None, timeout_s: float = 60.0,
                 max_side: int = 448, quality: int = 90, max_pixels: int = 50_000_000, encoding: str = "float"):
        self.model, self.name = model, f"{PREFIX}{model}"
        self.max_side, self.quality, self.max_pixels, self.encoding = max_side, quality, max_pixels, encoding
        self.clients = [openai.OpenAI(base_url=normalise_base_url(u), api_key=api_key or "not-needed",
                                      max_retries=0, timeout=timeout_s) for u in base_urls]
        self._next = itertools.cycle(range(len(self.clients)))
        self._lock = threading.Lock()

    def probe(self) -> None:
        for client in self.clients:
            probe_tcp(str(client.base_url), f"the embedding server for {self.name}")

    def job(self, target: EmbedTarget) -> Job:
        return prepare_image, (target.path, self.max_side, self.quality, self.max_pixels)

    def _client(self) -> openai.OpenAI:
        with self._lock:  # round robin keeps every server equally busy
            return self.clients[next(self._next)]

    def embed(self, prepared: PreparedImage) -> np.ndarray:
        body = embedding_body(self.model, prepared.jpeg, self.encoding)
        return vector_from_response(post_json(self._client(), "/embeddings", body))

    def parameters(self) -> dict[str, Any]:
        return {"max_side": self.max_side, "jpeg_quality": self.quality, "servers": len(self.clients)}
