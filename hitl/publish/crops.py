"""One crop per box, cut from the full-resolution upright image, for training a species classifier.

Boxes are normalised to the upright image with a top-left origin, ``(x, y, w, h)`` in [0, 1];
the image passed in must be upright too (hitl.imageprep.load_upright_rgb applies the EXIF
orientation). Crops are encoded the same way every time, so a rerun can tell what is unchanged.
"""
from __future__ import annotations

import math

from PIL import Image

from hitl.imageprep import encode_jpeg

__all__ = ["CROP_QUALITY", "crop_pixels", "crop_box", "encode_crop"]

CROP_QUALITY = 90
# Pixel edges are snapped to this many decimals before floor/ceil, so float noise
# (0.3 * 1000 == 300.00000000000006) does not add a pixel row.
_SNAP = 6


def _edges(size: tuple[int, int], box: tuple[float, float, float, float], margin: float
           ) -> tuple[float, float, float, float]:
    """The box in pixels, grown by ``margin`` of its size on each side and clipped to the image."""
    if not math.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a number >= 0, not {margin!r}")
    if not all(math.isfinite(v) for v in box):
        raise ValueError(f"box {box!r} has a coordinate that is not a finite number")
    width, height = size
    x, y, w, h = box
    grow_x, grow_y = margin * w, margin * h
    left = round(min(max(0.0, (x - grow_x) * width), width), _SNAP)
    top = round(min(max(0.0, (y - grow_y) * height), height), _SNAP)
    right = round(max(min(float(width), (x + w + grow_x) * width), 0.0), _SNAP)
    bottom = round(max(min(float(height), (y + h + grow_y) * height), 0.0), _SNAP)
    return left, top, right, bottom


def crop_pixels(size: tuple[int, int], box: tuple[float, float, float, float], margin: float
                ) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) pixels of the crop of ``box`` in an upright image of ``size``.

    The box grows by ``margin`` of its own width and height on each side, is clipped to the
    image, and its edges are widened to whole pixels (floor for left/top, ceil for right/bottom).
    Right and bottom are exclusive, as in PIL's Image.crop. Raises ValueError for a negative
    margin or a non-finite coordinate.
    """
    left, top, right, bottom = _edges(size, box, margin)
    x0, y0 = math.floor(left), math.floor(top)
    return x0, y0, max(x0, math.ceil(right)), max(y0, math.ceil(bottom))


def crop_box(image: Image.Image, box: tuple[float, float, float, float], margin: float = 0.1,
             min_size: int = 32) -> Image.Image | None:
    """The crop of ``box`` (with ``margin``) from the full-resolution upright ``image``.

    None when the box itself, clipped to the image and before the margin, is narrower or
    lower than ``min_size`` pixels, or has no area in the image.
    """
    left, top, right, bottom = _edges(image.size, box, 0.0)
    if right - left <= 0 or bottom - top <= 0 or right - left < min_size or bottom - top < min_size:
        return None
    return image.crop(crop_pixels(image.size, box, margin))


def encode_crop(image: Image.Image) -> bytes:
    """A crop as JPEG, quality 90, no metadata: the same pixels always give the same bytes."""
    return encode_jpeg(image, quality=CROP_QUALITY)
