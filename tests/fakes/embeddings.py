"""What the fake vLLM embeddings endpoint answers: a vector computed from the pixels it received.

``pixel_vector`` decodes the image and averages it down to a tiny grid (4 x 4 RGB: 48 numbers,
centred), so a test can tell which image a stored vector came from; ``digest_vector`` is the
cheap stand-in for benchmarks (from the bytes' hash, no decoding: the server's CPU is not the
client's). The response is the OpenAI embeddings shape vLLM gives, ``float`` or ``base64``
(little-endian float32).
"""
from __future__ import annotations

import base64
import hashlib
import io
from typing import Any

import numpy as np
from PIL import Image

GRID = 4


def pixel_vector(image: bytes, grid: int = GRID) -> np.ndarray:
    """The image averaged to ``grid`` x ``grid`` RGB cells, as floats in [-0.5, 0.5]."""
    with Image.open(io.BytesIO(image)) as im:
        small = im.convert("RGB").resize((grid, grid), Image.Resampling.BOX)
    return (np.asarray(small, np.float32).reshape(-1) / 255.0) - 0.5


def digest_vector(image: bytes, dim: int = 64) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(image).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(dim).astype(np.float32)


def embeddings_response(vector: np.ndarray, model: str, encoding: str, tokens: int) -> dict[str, Any]:
    if encoding == "base64":
        value: Any = base64.b64encode(np.asarray(vector, "<f4").tobytes()).decode("ascii")
    else:
        value = [float(x) for x in vector]
    return {"id": "embd-fake", "object": "list", "created": 1700000000, "model": model,
            "data": [{"object": "embedding", "index": 0, "embedding": value}],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0}}
