"""Labelme JSON: one file per candidate image out, one curator decision per file back.

Labelme (https://github.com/wkentaro/labelme) is the single-curator review path: files on
disk, no server. Each candidate gets a Labelme document with the animal boxes as
rectangles, two image flags (``hero``, ``not_hero``) and, under the extra top-level key
``hero_hitl``, what hero-hitl needs to read the decision back. Labelme keeps unknown
top-level keys when it saves, so ``hero_hitl`` survives a curator's edit.

Coordinates: Labelme applies the EXIF orientation when it loads an image
(``labelme.utils.image.apply_exif_orientation``) and checks ``imageWidth``/``imageHeight``
against the rotated image, so points are pixels on the upright image, the same image
MegaDetector's normalised boxes refer to.

Pure: plain data in, plain data out.
"""
from __future__ import annotations

import hashlib
import json
import math
import posixpath
from typing import Any

from .common import HumanRating, InputFormatError, RecordProblem, image_key
from .decisions import check_decision

EXTRA_KEY = "hero_hitl"
# "reviewed" lets a curator confirm a pre-ticked choice: Labelme saves nothing that is unchanged,
# so without it agreeing with the model and never looking would read the same.
FLAGS = ("hero", "not_hero", "reviewed")
BEST_FRAME = "best_frame"  # a burst's frame files: ticked on the frame the curator picks (the marked one at first)
MODES = ("assisted", "blind")
# The labelme release whose format this writes; labelme 6 does not check it, 5.x only
# warns when the major version differs.
FORMAT_VERSION = "6.3.1"
class LabelmeFormatError(InputFormatError):
    """A JSON file Labelme could not open either; ``reason`` is short and countable."""

    def __init__(self, source: str, reason: str, detail: str = ""):
        super().__init__(f"{source}: {reason}" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.detail = detail


_RESERVED_EXTRA = {"image_id", "mode", "species", "prefill_model", "prefill_hero", "models", "export_digest",
                   "burst_of", "burst_frame", "burst_frames"}


def labelme_document(image_id: str, image_path: str, width: int, height: int, detections: list[dict],
                     scores: list[dict], mode: str, prefill_model: str | None, species: str | None = None,
                     extra: dict | None = None, burst: dict | None = None) -> dict:
    """The Labelme document for one image.

    ``image_path`` is the POSIX path from the JSON's folder to the image; ``width`` and
    ``height`` the upright size. ``detections`` are the boxes to draw (kind, conf, x, y, w, h
    normalised, species); ``scores`` the ok model scores (model, prompt_version, score, hero,
    reasoning, optionally updated_at). In "assisted" mode the flags are pre-ticked from
    ``prefill_model``'s newest verdict and every model's opinion is kept under ``hero_hitl``;
    in "blind" mode the document holds no model opinion at all. ``extra`` adds image facts
    (e.g. ``{"sequence": seq_id}``) to ``hero_hitl`` in both modes. ``burst`` (burst_of: the
    frame the burst marks, frame: this one's number, frames: how many) makes this a burst frame's
    file: a ``best_frame`` flag, ticked on the marked frame, says which frame the curator picks.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "blind" and prefill_model is not None:
        raise ValueError("blind mode shows no model opinion: prefill_model must be None")
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise ValueError(f"{image_id}: image size must be positive integers, not {width!r}x{height!r}")
    extra = dict(extra or {})
    clash = _RESERVED_EXTRA & set(extra)
    if clash:
        raise ValueError(f"extra must not set {', '.join(sorted(clash))}: those are written here")

    shapes = [shape for det in detections if (shape := _rectangle(det, width, height, species)) is not None]
    flags = {name: False for name in FLAGS}
    meta: dict[str, Any] = {"image_id": image_id, "mode": mode, "species": species, **extra}
    if burst is not None:
        flags[BEST_FRAME] = burst["burst_of"] == image_id
        meta.update(burst_of=burst["burst_of"], burst_frame=burst["frame"], burst_frames=burst["frames"])
    if mode == "assisted":
        own = [row for row in scores if row.get("model") == prefill_model]
        prefill = max(own, key=lambda row: row.get("updated_at") or "") if own else None
        prefill_hero = None if prefill is None or prefill.get("hero") is None else bool(prefill["hero"])
        if prefill_hero is not None:
            flags["hero" if prefill_hero else "not_hero"] = True
        meta["prefill_model"] = prefill_model
        meta["prefill_hero"] = prefill_hero
        meta["models"] = [
            {"model": row.get("model"), "prompt_version": row.get("prompt_version"),
             "score": row.get("score"), "hero": None if row.get("hero") is None else bool(row["hero"]),
             "reasoning": row.get("reasoning")}
            for row in scores
        ]
    # Lets the reader tell a file nobody has edited from a curator's decision (see rating_from_labelme).
    meta["export_digest"] = _digest(flags, shapes)
    return {
        "version": FORMAT_VERSION,
        "flags": flags,
        "shapes": shapes,
        "imagePath": image_path,
        "imageData": None,  # Labelme loads the image from imagePath; embedding it would copy every JPEG
        "imageHeight": height,
        "imageWidth": width,
        EXTRA_KEY: meta,
    }


def _rectangle(det: dict, width: int, height: int, species: str | None) -> dict | None:
    """A Labelme rectangle in upright pixels for a normalised detector box; None if empty."""
    x1 = min(max(det["x"], 0.0), 1.0) * width
    y1 = min(max(det["y"], 0.0), 1.0) * height
    x2 = min(max(det["x"] + det["w"], 0.0), 1.0) * width
    y2 = min(max(det["y"] + det["h"], 0.0), 1.0) * height
    if x2 - x1 < 1 or y2 - y1 < 1:  # nothing a curator could see or grab
        return None
    return {
        "label": det.get("species") or species or "animal",
        "points": [[round(x1, 2), round(y1, 2)], [round(x2, 2), round(y2, 2)]],
        "group_id": None,
        "description": "",
        "shape_type": "rectangle",
        "flags": {},
        "mask": None,
    }


def _digest(flags: dict, shapes: list) -> str:
    """A fingerprint of what a curator can change (ticked flags, shapes) that survives a Labelme save.

    Labelme rewrites key order, adds flags named on its command line as False and turns
    points into floats, so only ticked flag names and rounded points are hashed.
    """
    ticked = sorted(name for name, value in flags.items() if value is True)
    drawn = [[s.get("label"), s.get("shape_type"), [[round(float(v), 2) for v in p] for p in s.get("points") or []]]
             for s in shapes if isinstance(s, dict)]
    text = json.dumps([ticked, drawn], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rating_from_labelme(doc: dict, relative_json_path: str, folder: str, mtime_iso: str,
                        problems: list[RecordProblem] | None = None) -> HumanRating | None:
    """The curator's decision in one Labelme document.

    ``relative_json_path`` (POSIX, relative to ``folder``) becomes the annotation id and
    ``mtime_iso`` the edit time. Raises LabelmeFormatError (an InputFormatError) for a document
    Labelme itself could not open. Things worth knowing about a usable file (both flags ticked, shapes that are
    not rectangles, a file nobody edited since export) are appended to ``problems``.
    """
    notes = problems if problems is not None else []

    def note(reason: str, detail: str = "", record: str = "document") -> None:
        notes.append(RecordProblem(relative_json_path, record, reason, detail))

    def bad(reason: str, detail: str = "") -> LabelmeFormatError:
        return LabelmeFormatError(relative_json_path, reason, detail)

    if not isinstance(doc, dict):
        raise bad("not a Labelme file (the JSON is not an object)")
    image_path = doc.get("imagePath")
    if not isinstance(image_path, str) or not image_path.strip():
        raise bad("missing imagePath (the path from the JSON to its image)")
    flags = doc.get("flags") or {}
    if not isinstance(flags, dict) or not all(isinstance(k, str) and isinstance(v, bool) for k, v in flags.items()):
        raise bad("flags must map names to true/false", json.dumps(flags)[:80])
    shapes = doc.get("shapes")
    if not isinstance(shapes, list):
        raise bad("missing shapes list")
    meta = doc.get(EXTRA_KEY)
    meta = meta if isinstance(meta, dict) else {}

    hero_ticked, not_ticked = flags.get("hero", False), flags.get("not_hero", False)
    hero = True if hero_ticked and not not_ticked else False if not_ticked and not hero_ticked else None
    if hero_ticked and not_ticked:
        note("both hero and not_hero ticked", "counted as undecided")

    boxes = _boxes(shapes, doc.get("imageWidth"), doc.get("imageHeight"), bad, note)

    if meta.get("export_digest") and meta["export_digest"] == _digest(flags, shapes):
        note("not reviewed yet", "flags and boxes are as hero-hitl wrote them"
             + (f" (pre-ticked from {meta.get('prefill_model')}); tick 'reviewed' to confirm them"
                if meta.get("mode") == "assisted" else ""))
        return None

    image_id = meta.get("image_id") if isinstance(meta.get("image_id"), str) else None
    if image_id is None:
        # A file Labelme made itself (no hero_hitl): the image relative to the folder.
        here = posixpath.dirname(relative_json_path)
        try:
            image_id = image_key(posixpath.normpath(posixpath.join(here, image_path.replace("\\", "/"))))
        except ValueError as exc:
            note("image outside the folder", str(exc))
    mode = meta.get("mode")
    if mode is not None and mode not in MODES:
        raise bad("bad mode", f"hero_hitl.mode {mode!r} is not one of {', '.join(MODES)}")
    # a burst frame whose best_frame flag is ticked is the curator's pick of that burst
    burst_of = meta.get("burst_of") if flags.get(BEST_FRAME) is True else None
    return check_decision(HumanRating(
        source="labelme", project=folder, annotation_id=relative_json_path, image_id=image_id,
        hero=hero, boxes=boxes, mode=mode, created_at=mtime_iso, updated_at=mtime_iso, burst_of=burst_of,
    ))


def _boxes(shapes: list, width: object, height: object, bad, note) -> list[dict]:
    """Rectangles as normalised upright boxes with their labels; other shapes are noted and skipped."""
    if shapes and not (isinstance(width, int | float) and isinstance(height, int | float)
                       and math.isfinite(width) and math.isfinite(height) and width > 0 and height > 0):
        raise bad("imageWidth/imageHeight missing or not positive: the boxes cannot be normalised")
    boxes = []
    for i, shape in enumerate(shapes):
        points = shape.get("points") if isinstance(shape, dict) else None
        if not (isinstance(points, list) and points and all(
                isinstance(p, list | tuple) and len(p) == 2
                and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in p)
                for p in points)):
            raise bad("shape without a list of finite [x, y] points", f"shapes[{i}]")
        if shape.get("shape_type") != "rectangle":
            note("shape is not a rectangle", f"{shape.get('shape_type')!r} ignored", f"shapes[{i}]")
            continue
        # Labelme stores the two corners in the order they were dragged: any corner first.
        xs = [min(max(p[0] / width, 0.0), 1.0) for p in points]
        ys = [min(max(p[1] / height, 0.0), 1.0) for p in points]
        x, y = min(xs), min(ys)
        w, h = max(xs) - x, max(ys) - y
        if w <= 0 or h <= 0:
            note("empty rectangle", "no area inside the image; ignored", f"shapes[{i}]")
            continue
        label = shape.get("label")
        boxes.append({"x": round(x, 6), "y": round(y, 6), "w": round(w, 6), "h": round(h, 6),
                      "label": label if isinstance(label, str) else None})
    return boxes
