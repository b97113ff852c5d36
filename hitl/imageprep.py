"""Turn an original camera-trap file into the small upright RGB JPEG that models see.

Three steps, in this order because each makes the next cheaper:

1. decode: for JPEGs ask libjpeg for a DCT-scaled decode (1/2, 1/4 or 1/8) that is still
   at least as large as the target, so a 2048x1536 frame is decoded at 1024x768 (the main
   speed lever); the file is always decoded in full so a truncated file fails here;
2. convert any mode to RGB (alpha composited over neutral grey, 16-bit scaled down) and
   downscale with an antialiased bicubic filter so the longest side is at most ``max_side``
   (never upscaled; after the DCT scaling the remaining factor is small, where bicubic
   matches LANCZOS for a model's eyes at two thirds of its cost; bilinear would be cheaper still,
   but it softens the frame enough to change what a model, and the baseline's sharpness, sees);
3. apply the EXIF orientation on the small image, so the result is upright.

Failures raise ImagePrepError with a short countable ``reason``.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "PreparedImage",
    "ImagePrepError",
    "load_upright_rgb",
    "encode_jpeg",
    "prepare_image",
    "EXIF_ORIENTATION",
]

EXIF_ORIENTATION = 0x0112
# Checked from the header before any decoding: a 144 MP PNG decodes to ~430 MB of RGB, and a
# few at once would take the machine's memory. Camera-trap frames are far below this.
MAX_PIXELS = 50_000_000
DECODE_BLOCK = 32 * 1024 * 1024  # bytes handed to the decoder at once: any camera-trap JPEG whole
BACKGROUND = (128, 128, 128)  # neutral grey under transparent pixels: neither black nor white

# EXIF orientation -> the transpose that makes the stored pixels upright (EXIF 2.3, tag 274).
_TRANSPOSE: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_SWAPS_AXES = {5, 6, 7, 8}

# Modes Pillow converts to RGB directly without losing meaning.
_DIRECT_RGB = {"RGB", "L", "1", "CMYK", "YCbCr", "RGBX", "LAB", "HSV"}
_WITH_ALPHA = {"RGBA", "LA", "PA", "RGBa", "La"}


@dataclass(frozen=True)
class PreparedImage:
    """The JPEG a model receives, with its size and the original's upright size."""

    jpeg: bytes
    width: int
    height: int
    source_width: int
    source_height: int
    sha256: str


class ImagePrepError(Exception):
    """An image could not be prepared. ``reason`` is short and countable; str() is a sentence."""

    def __init__(self, path: str | os.PathLike[str], reason: str, detail: str = ""):
        self.path = str(path)
        self.reason = reason
        self.detail = detail
        tail = f" ({detail})" if detail else ""
        super().__init__(f"Cannot prepare image {self.path}: {reason}{tail}.")


def target_size(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Size with the longest side at most ``max_side``, aspect kept, never upscaled."""
    w, h = size
    longest = max(w, h)
    if longest <= max_side:
        return w, h
    scale = max_side / longest
    # Round the short side; pin the long side so it is exactly max_side.
    if w >= h:
        return max_side, max(1, round(h * scale))
    return max(1, round(w * scale)), max_side


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block must not lose an otherwise good image
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> a new RGB image; raises ValueError for modes with no sensible RGB."""
    mode = im.mode
    if mode == "P" or "transparency" in im.info or mode in _WITH_ALPHA:
        # Palette images may carry transparency; go through RGBA and composite.
        rgba = im.convert("RGBA")
        if rgba.getextrema()[3][0] == 255:  # fully opaque: skip the composite
            return rgba.convert("RGB")
        base = Image.new("RGB", rgba.size, BACKGROUND)
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    if mode in _DIRECT_RGB:
        return im.convert("RGB")  # CMYK: Pillow already undid Adobe inversion when decoding
    if mode.startswith("I;16") or mode in ("I", "F"):
        return Image.fromarray(_wide_to_u8(np.asarray(im), mode), "L").convert("RGB")
    raise ValueError(f"mode {mode}")


def _wide_to_u8(a: np.ndarray, mode: str) -> np.ndarray:
    """16-bit: full scale (>>8). 32-bit int/float: stretch min..max, since they have no fixed range."""
    if mode.startswith("I;16"):
        return (a.astype(np.uint32) >> 8).astype(np.uint8)
    a = a.astype(np.float64)
    lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
    if not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.clip((a - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8)


def load_upright_rgb(
    path: str | os.PathLike[str], max_side: int = 768, max_pixels: int = MAX_PIXELS
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode ``path`` to an upright RGB image with longest side <= max_side.

    Returns (image, upright size of the original). Raises ImagePrepError, also for a file
    that is not a regular file (a FIFO would hang the reader) and for an image of more than
    ``max_pixels`` pixels (read from the header, before decoding).
    """
    if max_side < 1:
        raise ValueError("max_side must be >= 1")
    path = Path(path)
    _check_regular(path)
    try:
        with Image.open(path) as im:
            stored = im.size
            if stored[0] * stored[1] > max_pixels:
                raise ImagePrepError(path, "too many pixels", f"{stored[0]}x{stored[1]} is above the limit of "
                                     f"{max_pixels / 1e6:g} MP (score.max_pixels)")
            orientation = _orientation(im)
            want = target_size(stored, max_side)
            if want != stored:
                # JPEG only (no-op elsewhere): libjpeg picks the largest 1/n scale with
                # decoded size >= want, so quality is kept for the resize step.
                im.draft("RGB", want)
            # one read and one call into libjpeg: Pillow's default feeds the decoder 64 KB at a time,
            # taking the interpreter back between blocks, and a preparing thread then waits its turn
            # behind the senders dozens of times per file (capped: a huge PNG is still read in parts)
            im.decodermaxblock = max(im.decodermaxblock, min(path.stat().st_size, DECODE_BLOCK))
            im.load()  # full decode: truncation raises here, not later
            try:
                rgb = _to_rgb(im)
            except ValueError as exc:
                raise ImagePrepError(path, "unsupported mode", str(exc)) from None
    except ImagePrepError:
        raise
    except FileNotFoundError:
        raise ImagePrepError(path, "file missing") from None
    except Image.DecompressionBombError as exc:
        raise ImagePrepError(path, "decompression bomb", str(exc)) from None
    except UnidentifiedImageError:
        raise ImagePrepError(path, "not an image") from None
    except (IsADirectoryError, PermissionError) as exc:
        raise ImagePrepError(path, "unreadable", exc.strerror or type(exc).__name__) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        # Pillow reports bad data as any of these ("image file is truncated",
        # "broken data stream", struct errors...).
        raise ImagePrepError(path, "truncated or corrupt", str(exc) or type(exc).__name__) from None

    if rgb.size != want:
        rgb = rgb.resize(want, Image.Resampling.BICUBIC, reducing_gap=3.0)
    if orientation in _TRANSPOSE:
        rgb = rgb.transpose(_TRANSPOSE[orientation])
    upright = (stored[1], stored[0]) if orientation in _SWAPS_AXES else stored
    return rgb, upright


def encode_jpeg(image: Image.Image, quality: int = 85) -> bytes:
    """Baseline (non-progressive) 4:2:0 JPEG; no optimize pass, it costs time for ~3% bytes."""
    if image.mode != "RGB":
        image = image.convert("RGB")
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, subsampling="4:2:0", progressive=False, optimize=False)
    return buf.getvalue()


def prepare_image(
    path: str | os.PathLike[str], max_side: int = 768, quality: int = 85, max_pixels: int = MAX_PIXELS
) -> PreparedImage:
    """Load, orient, convert, downscale and encode one file. Raises ImagePrepError."""
    rgb, (sw, sh) = load_upright_rgb(path, max_side, max_pixels)
    jpeg = encode_jpeg(rgb, quality)
    return PreparedImage(
        jpeg=jpeg,
        width=rgb.width,
        height=rgb.height,
        source_width=sw,
        source_height=sh,
        sha256=hashlib.sha256(jpeg).hexdigest(),
    )


def read_upright_size(path: str | Path) -> tuple[str | None, tuple[int, int] | None]:
    """Read only the header: (failure reason or None, upright size or None).

    Cheap enough for thousands of files; the size is the one MegaDetector, Label Studio and
    Labelme see, with the EXIF orientation applied. Only regular files are opened.
    """
    try:
        _check_regular(Path(path))
    except ImagePrepError as exc:
        return ("image file missing" if exc.reason == "file missing" else f"unreadable image ({exc.reason})"), None
    try:
        with Image.open(path) as im:
            width, height = im.size
            orientation = _orientation(im)
    except FileNotFoundError:
        return "image file missing", None
    except Exception as exc:  # Pillow raises many types for a bad file; all mean unusable
        return f"unreadable image ({type(exc).__name__})", None
    if orientation in _SWAPS_AXES:
        width, height = height, width
    return None, (width, height)


def _check_regular(path: Path) -> None:
    """Refuse what is not a regular file before opening it (a FIFO named .jpg blocks open())."""
    from hitl.files import regular_file_problem

    problem = regular_file_problem(path)
    if problem:
        raise ImagePrepError(path, *problem)
