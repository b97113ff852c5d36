"""YOLO (ultralytics) training data: the train/val split, label lines, data.yaml, safe names.

Pure functions: plain data in, plain data out; no image decoding and no database.
Boxes are normalised to the upright image with a top-left origin, ``(x, y, w, h)`` in
[0, 1] (MegaDetector's convention); YOLO label lines hold the box centre instead.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

__all__ = ["split_by_sequence", "label_lines", "parse_label_lines", "data_yaml", "safe_name", "safe_names"]

Box = tuple[int, float, float, float, float]  # (class_index, x, y, w, h), top-left origin

DECIMALS = 6
MAX_NAME = 64  # characters of a safe name before a collision suffix
# Names Windows refuses as a file or folder name, whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}


def split_by_sequence(items: Iterable[tuple[str, str | None]], val_share: float = 0.2, seed: int = 0) -> dict[str, str]:
    """image_id -> "train" or "val", whole sequences on one side (an image without one is its own group).

    The groups are sorted, then shuffled with ``numpy.random.default_rng(seed)``, so the result
    depends only on the set of items and the seed. Groups go to val until it holds at least
    ``round(val_share * n_images)`` images; with two or more groups and ``val_share > 0`` both
    sides get at least one group. A single group stays in train. Raises ValueError for a
    ``val_share`` outside [0, 1) and for an image listed with two different sequences.
    """
    if not 0 <= val_share < 1:  # also refuses NaN
        raise ValueError(f"val_share must be in [0, 1), not {val_share!r}")
    seq_of: dict[str, str | None] = {}
    for image_id, seq_id in items:
        if image_id in seq_of and seq_of[image_id] != seq_id:
            raise ValueError(f"image {image_id!r} is listed in sequences {seq_of[image_id]!r} and {seq_id!r}")
        seq_of[image_id] = seq_id
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for image_id, seq_id in seq_of.items():
        # The tag keeps a sequence named like an image apart from that lone image.
        key = ("image", str(image_id)) if seq_id is None else ("sequence", str(seq_id))
        groups[key].append(image_id)
    keys = sorted(groups)
    split = dict.fromkeys(seq_of, "train")
    if val_share == 0 or len(keys) < 2:
        return split
    target = max(1, round(val_share * len(seq_of)))
    in_val = 0
    for taken, index in enumerate(np.random.default_rng(seed).permutation(len(keys))):
        if in_val >= target or taken == len(keys) - 1:  # the last group always stays in train
            break
        for image_id in groups[keys[index]]:
            split[image_id] = "val"
        in_val += len(groups[keys[index]])
    return split


def _clip_box(box: Box) -> tuple[int, float, float, float, float]:
    """Check one (class, x, y, w, h) and clip it to the image: (class, x0, y0, x1, y1)."""
    cls, x, y, w, h = box
    if isinstance(cls, bool) or not isinstance(cls, int | np.integer) or cls < 0:
        raise ValueError(f"class index must be a non-negative integer, not {cls!r}")
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise ValueError(f"box {box!r} has a coordinate that is not a finite number")
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(1.0, x + w), min(1.0, y + h)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"box {box!r} has no area inside the image")
    return int(cls), x0, y0, x1, y1


def label_lines(boxes: Iterable[Box]) -> str:
    """The YOLO label file for one image: a line ``class cx cy w h`` per box (centre, 6 decimals).

    Boxes are clipped to the image first (a detector's box may overhang an edge by rounding).
    No boxes gives the empty string: an image without boxes is a negative, and ultralytics
    wants an empty label file for it. Raises ValueError for a box with no area in the image.
    """
    lines = []
    for box in boxes:
        cls, x0, y0, x1, y1 = _clip_box(box)
        cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        lines.append(f"{cls} {cx:.{DECIMALS}f} {cy:.{DECIMALS}f} {w:.{DECIMALS}f} {h:.{DECIMALS}f}")
    return "".join(line + "\n" for line in lines)


def parse_label_lines(text: str) -> list[Box]:
    """A YOLO label file back to (class, x, y, w, h) top-left boxes, clipped to [0, 1].

    Blank lines are skipped. Raises ValueError naming the (1-based) line for a line without
    five fields, a class that is not a non-negative integer, or a coordinate outside [0, 1].
    """
    boxes: list[Box] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) != 5:
                raise ValueError(f"expected 5 fields (class cx cy w h), found {len(fields)}")
            if not fields[0].isdigit():
                raise ValueError(f"class {fields[0]!r} is not a non-negative integer")
            cx, cy, w, h = (float(v) for v in fields[1:])
            if not all(0 <= v <= 1 for v in (cx, cy, w, h)):  # NaN fails too
                raise ValueError("coordinates must be numbers in [0, 1]")
            if w <= 0 or h <= 0:
                raise ValueError("width and height must be above 0")
        except ValueError as exc:
            raise ValueError(f"label line {number}: {exc}: {line.strip()!r}") from None
        # The centre and size are rounded separately: clip so an edge box stays inside.
        x0, y0 = max(0.0, cx - w / 2), max(0.0, cy - h / 2)
        x1, y1 = min(1.0, cx + w / 2), min(1.0, cy + h / 2)
        boxes.append((int(fields[0]), x0, y0, x1 - x0, y1 - y0))
    return boxes


def _yaml_string(value: str) -> str:
    """A YAML double-quoted scalar: JSON's quoting, plus escapes for what YAML must not see raw.

    YAML takes JSON strings, but refuses raw non-printable characters (DEL, C1 controls,
    surrogates, U+FFFE/FFFF) and folds U+0085, U+2028 and U+2029 as line breaks.
    """
    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"

    quoted = json.dumps(value, ensure_ascii=False)
    return re.sub("[\x7f-\x9f\u2028\u2029\ud800-\udfff\ufeff\ufffe\uffff]", escape, quoted)


def data_yaml(names: list[str]) -> str:
    """The ultralytics dataset file for ``images/{train,val}`` and ``labels/{train,val}`` beside it.

    ``names`` maps class index to name. There is deliberately no ``path:`` key: ultralytics then
    takes the folder holding data.yaml as the dataset root, wherever training is started from,
    while a relative ``path: .`` is resolved against the current directory (or DATASETS_DIR).
    """
    lines = [
        "# ultralytics dataset; the root is the folder holding this file",
        "train: images/train",
        "val: images/val",
        f"nc: {len(names)}",
        "names:" if names else "names: {}",
    ]
    lines += [f"  {index}: {_yaml_string(name)}" for index, name in enumerate(names)]
    return "\n".join(lines) + "\n"


def safe_name(label: str) -> str:
    """A file- and folder-name-safe form of a label: a-z, 0-9, ``-`` and ``_`` only.

    Accents are dropped (é -> e), letters lowercased, any other run of characters becomes one
    ``_``; at most 64 characters; nothing left gives "unlabelled". Distinct labels can map to
    the same name ("Red fox", "red_fox"): use safe_names for a set of labels.
    """
    ascii_text = unicodedata.normalize("NFKD", label).encode("ascii", "ignore").decode().lower()
    name = re.sub(r"[^a-z0-9-]+", "_", ascii_text).strip("_-")[:MAX_NAME].strip("_-")
    if not name:
        return "unlabelled"
    return f"{name}_" if name in _RESERVED else name


def _digest(label: str) -> str:
    return hashlib.sha256(label.encode("utf-8", "surrogatepass")).hexdigest()


def safe_names(labels: Iterable[str]) -> dict[str, str]:
    """label -> a distinct safe name; labels whose safe_name collides get ``-`` and a hash prefix.

    Every label in a collision gets a suffix (none is favoured), so the result does not depend
    on the order of ``labels``. Labels that are equal map to the same name.
    """
    unique = sorted(set(labels))
    names = {label: safe_name(label) for label in unique}
    for digits in (6, 12, 64):
        holders: dict[str, list[str]] = defaultdict(list)
        for label, name in names.items():
            holders[name].append(label)
        clashes = [label for group in holders.values() if len(group) > 1 for label in group]
        if not clashes:
            return names
        for label in clashes:
            names[label] = f"{safe_name(label)}-{_digest(label)[:digits]}"
    raise ValueError(f"cannot give distinct names to {sorted(clashes)!r}")  # needs a sha256 collision
