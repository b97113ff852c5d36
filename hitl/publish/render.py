"""The one render path of the HTML pages: gallery, hero-set contact sheet and agreement report.

The pages are Jinja templates in ``hitl/publish/templates`` sharing one layout, one
stylesheet (inlined, so every page is a single file that opens from disk) and one
thumbnail card. This module holds the environment, its filters and the helpers that turn
images into what the card shows.
"""
from __future__ import annotations

import base64
import math
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jinja2

from hitl.imageprep import ImagePrepError, encode_jpeg, load_upright_rgb
from hitl.progress import progress_bar

__all__ = ["Thumb", "make_thumbnails", "card_image", "verdict", "box_styles", "score_colour", "fmt", "render"]

THUMB_QUALITY = 80


class Thumb:
    """A thumbnail's JPEG bytes and size, or why there is none."""

    __slots__ = ("jpeg", "width", "height", "error")

    def __init__(self, jpeg: bytes | None = None, width: int = 0, height: int = 0, error: str | None = None):
        self.jpeg, self.width, self.height, self.error = jpeg, width, height, error

    def data_uri(self) -> str:
        """The JPEG as a data URI, to embed in a page."""
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg or b"").decode("ascii")


def _thumb(path: Path, side: int) -> Thumb:
    try:
        # load_upright_rgb applies the EXIF orientation, so a rotated photo shows upright
        image, _ = load_upright_rgb(path, max_side=side)
    except ImagePrepError as exc:
        return Thumb(error=exc.reason)
    return Thumb(encode_jpeg(image, THUMB_QUALITY), image.width, image.height)


def make_thumbnails(paths: Sequence[Path], side: int = 320, progress: bool | None = None,
                    desc: str = "Thumbnails") -> list[Thumb]:
    """Thumbnails of ``paths``, in order; an unreadable file gives a Thumb with ``error`` set.

    Threads pay off: Pillow releases the GIL while it decodes.
    """
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: _thumb(Path(p), side), paths)
        return list(progress_bar(progress, results, total=len(paths), desc=desc, unit="img", leave=False))


def box_styles(boxes: Iterable[dict]) -> list[dict]:
    """CSS positions (percent of the upright image) of normalised x, y, w, h boxes, clipped to it."""
    styles = []
    for box in boxes:
        try:
            x, y, w, h = (float(box[k]) for k in ("x", "y", "w", "h"))
        except (KeyError, TypeError, ValueError):
            continue  # a malformed box is not worth losing the page over
        x0, y0 = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
        x1, y1 = min(max(x + w, 0.0), 1.0), min(max(y + h, 0.0), 1.0)
        styles.append({"style": f"left:{x0 * 100:.2f}%;top:{y0 * 100:.2f}%;"
                                f"width:{(x1 - x0) * 100:.2f}%;height:{(y1 - y0) * 100:.2f}%",
                       "label": str(box.get("label") or ""),
                       # a label hanging off the right edge would be cut: anchor it right there
                       "side": "r" if x0 > 0.5 else "l"})
    return styles


def card_image(thumb: Thumb | None, *, alt: str, boxes: Iterable[dict] = (), src: str | None = None,
               lazy: bool = False, left_out: str | None = None) -> dict[str, Any]:
    """What the card macro draws: the picture (``src``, else the thumb's data URI) and its boxes,
    or why there is no picture (a None thumb is a file nobody could find; ``left_out`` the reason
    the publishing rule gives)."""
    if left_out:
        return {"src": None, "error": f"left out, {left_out}", "alt": alt}
    if thumb is None or thumb.error:
        return {"src": None, "error": "unknown file" if thumb is None else thumb.error, "alt": alt}
    return {"src": src or thumb.data_uri(), "error": None, "alt": alt, "width": thumb.width,
            "height": thumb.height, "lazy": lazy, "boxes": box_styles(boxes)}


def verdict(name: str, score: float | None = None, hero: bool | None = None, reasoning: str | None = None,
            status: str | None = "ok", error: str | None = None, stale: bool = False) -> dict[str, Any]:
    """One model's line on a card; ``status`` None means the model did not score the image; ``stale``:
    the score was computed before the image's detections changed (:mod:`hitl.score.stale`)."""
    return {"name": name, "status": status, "score": score, "hero": hero, "reasoning": reasoning, "error": error,
            "stale": stale}


def score_colour(score: float | None, top: float = 10.0) -> str:
    """A red-to-green badge colour for a score on 0..top (grey when there is none)."""
    if score is None:
        return "hsl(0,0%,55%)"
    share = min(max(score / top, 0.0), 1.0)
    return f"hsl({share * 120:.0f},55%,38%)"


def fmt(value: float | None, digits: int = 1) -> str:
    """A number with ``digits`` decimals; "–" when there is none (never "nan")."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


_ENV = jinja2.Environment(loader=jinja2.PackageLoader("hitl.publish", "templates"),
                          # .html escapes every value; style.css is ours and goes in verbatim
                          autoescape=jinja2.select_autoescape(["html"]),
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["fmt"] = fmt
_ENV.filters["colour"] = score_colour
_ENV.filters["counted"] = lambda n, word: f"{n} {word}" if n == 1 else f"{n} {word}s"  # "1 model", "2 models"


def render(template_name: str, **context: Any) -> str:
    """Render a page template from ``hitl/publish/templates``; a missing value is an error, not a blank."""
    return _ENV.get_template(template_name).render(**context)
