"""``baseline``: the offline image vector of :mod:`hitl.embed.descriptors`, computed entirely in the
preparing thread (decode, measure); the sender only hands it over. NOT a learned representation."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from hitl.embed.backends.base import Box, EmbedBackend, EmbedTarget
from hitl.embed.descriptors import baseline_descriptor
from hitl.imageprep import load_upright_rgb
from hitl.pipeline import Job


def largest_share(boxes: list[Box]) -> float | None:
    """The share of the frame the largest box covers (clipped to the frame), or None without boxes."""
    areas = [max(0.0, min(x + w, 1.0) - max(x, 0.0)) * max(0.0, min(y + h, 1.0) - max(y, 0.0))
             for x, y, w, h in boxes]
    return max(areas) if areas and max(areas) > 0 else None


def baseline_vector(path: Path, boxes: list[Box], side: int, max_pixels: int) -> np.ndarray:
    """Decode ``path`` upright at ``side`` pixels on its longest side and describe it (in a preparing thread)."""
    rgb, _ = load_upright_rgb(path, side, max_pixels)
    return baseline_descriptor(np.asarray(rgb), largest_share(boxes))


class BaselineEmbedder(EmbedBackend):
    """Free, deterministic, no weights, no network."""

    name = "baseline"
    run_mode = "offline"
    uses_detections = True  # the largest box's share is one of its blocks

    @classmethod
    def handles(cls, model: str) -> bool:
        return model == "baseline"

    @classmethod
    def from_settings(cls, model, settings, base_urls, env) -> BaselineEmbedder:
        cfg = settings.embed
        return cls(cfg.baseline_side, cfg.max_pixels)

    def __init__(self, side: int = 256, max_pixels: int = 50_000_000):
        self.side, self.max_pixels = side, max_pixels

    def job(self, target: EmbedTarget) -> Job:
        return baseline_vector, (target.path, list(target.boxes), self.side, self.max_pixels)

    def embed(self, prepared: np.ndarray) -> np.ndarray:
        return prepared

    def parameters(self) -> dict[str, Any]:
        return {"side": self.side}
