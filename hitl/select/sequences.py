"""Sequences (camera bursts) derived from EXIF capture times.

For collections that come without sequence metadata: camera traps fire bursts,
and reviewing a burst together is faster and more consistent than frame by frame.
"""
from __future__ import annotations

import math
import posixpath
import re
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Iterable

from PIL import Image

_EXIF_IFD = 0x8769
_DATETIME_ORIGINAL = 0x9003  # in the Exif IFD
_DATETIME_DIGITIZED = 0x9004  # in the Exif IFD
_DATETIME = 0x0132  # in IFD0; often rewritten by editing software, hence the last resort

# EXIF says "YYYY:MM:DD HH:MM:SS"; some writers use '-' in the date or a 'T', and a
# few append fractions or a zone, which are dropped (times are naive local times).
_EXIF_TIME = re.compile(
    r"(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})"
    r"(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2})?")

_PREFIX = "exif:"


def read_capture_time(path: str | Path) -> datetime | None:
    """Return the image's capture time from EXIF, or None; never raises.

    DateTimeOriginal, then DateTimeDigitized, then IFD0 DateTime; a malformed value
    falls through to the next one. Only the file header is read, no pixels.
    """
    try:
        with Image.open(path) as image:
            # PNG keeps eXIf wherever it likes and Pillow would decode the pixels to
            # find a late one; a PNG without header EXIF is treated as having none.
            if image.format == "PNG" and "exif" not in image.info:
                return None
            exif = image.getexif()
            try:
                sub_ifd = exif.get_ifd(_EXIF_IFD)
            except Exception:  # noqa: BLE001 - a broken Exif IFD still leaves IFD0 DateTime
                sub_ifd = {}
            candidates = (sub_ifd.get(_DATETIME_ORIGINAL), sub_ifd.get(_DATETIME_DIGITIZED),
                          exif.get(_DATETIME))
        for value in candidates:
            when = _parse_exif_time(value)
            if when is not None:
                return when
    except Exception:  # noqa: BLE001 - any unreadable file simply has no time
        return None
    return None


def build_sequences(items: Iterable[tuple[str, datetime | None]],
                    gap_seconds: float = 60.0) -> dict[str, tuple[str, int, int]]:
    """Group images into sequences: image_id -> (seq_id, frame_num, seq_num_frames).

    The camera is the image's folder. Within a camera, images sorted by
    (time, image_id) stay in one sequence while each gap to the previous image is at
    most ``gap_seconds``. seq_id is "exif:<folder>/<running index>" (zero padded,
    from 0); an image without a usable time is its own sequence "exif:<image_id>".
    The result does not depend on the order of ``items``. An image_id given twice
    keeps its earliest time.
    """
    if not isinstance(gap_seconds, (int, float)) or math.isnan(gap_seconds) or gap_seconds < 0:
        raise ValueError(f"gap_seconds must be a non-negative number, got {gap_seconds!r}")

    times: dict[str, datetime | None] = {}
    for image_id, when in items:
        if image_id in times:
            # Keep the earliest known time so the result stays order independent.
            known = times[image_id]
            if known is None or (when is not None and when < known):
                times[image_id] = when
        else:
            times[image_id] = when

    by_camera: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    untimed: list[str] = []
    for image_id, when in times.items():
        if when is None:
            untimed.append(image_id)
        else:
            by_camera[posixpath.dirname(image_id)].append((when, image_id))

    result: dict[str, tuple[str, int, int]] = {}
    used: set[str] = set()
    for camera in sorted(by_camera):
        runs = _split_runs(sorted(by_camera[camera]), gap_seconds)
        # Pad to a fixed width per camera so the ids sort in time order as text.
        width = max(4, len(str(len(runs) - 1)))
        folder = f"{camera}/" if camera else ""
        for index, run in enumerate(runs):
            seq_id = f"{_PREFIX}{folder}{index:0{width}d}"
            used.add(seq_id)
            for frame, image_id in enumerate(run):
                result[image_id] = (seq_id, frame, len(run))

    for image_id in sorted(untimed):
        seq_id = f"{_PREFIX}{image_id}"
        # An untimed image literally named like a running index ("cam1/0003") would
        # clash with a timed sequence; sorted order makes the fix deterministic.
        while seq_id in used:
            seq_id += "+"
        used.add(seq_id)
        result[image_id] = (seq_id, 0, 1)
    return result


def _split_runs(ordered: list[tuple[datetime, str]], gap_seconds: float) -> list[list[str]]:
    """Cut a time-ordered camera's images wherever the gap exceeds gap_seconds."""
    runs: list[list[str]] = []
    previous: datetime | None = None
    for when, image_id in ordered:
        if previous is None or (when - previous).total_seconds() > gap_seconds:
            runs.append([])
        runs[-1].append(image_id)
        previous = when
    return runs


def _parse_exif_time(value: object) -> datetime | None:
    """Parse an EXIF date-time value; None for blanks, zeros and garbage."""
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", "").strip()
    match = _EXIF_TIME.fullmatch(text)
    if match is None:
        return None
    try:
        return datetime(*(int(part) for part in match.groups()))
    except ValueError:  # "0000:00:00 00:00:00", month 13 and the like
        return None
