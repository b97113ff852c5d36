"""Sequences (camera bursts): from the CCT file, else derived from capture times.

Camera traps fire bursts, and reviewing a burst together is faster and more consistent
than frame by frame. Collections without sequence metadata get sequences from their
capture times (the CCT's, else EXIF); see frames_of and build_sequences.
"""
from __future__ import annotations

import math
import posixpath
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import compress
from pathlib import Path

import numpy as np
from PIL import Image

from converters.cct import CCTMetadata, normalise_datetime
from hitl.config import SelectSettings
from hitl.progress import progress_bar
from hitl.select.output import SelectionSummary

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
    falls through to the next one. Only the file header is read, no pixels, and only of a
    regular file (a FIFO named .jpg would block the open).
    """
    from hitl.files import regular_file_problem

    if regular_file_problem(Path(path)):
        return None
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


CCT_PREFIX = "cct:"  # a CCT seq_id is "cct:<seq_id>", a rebuilt one "exif:..."


@dataclass
class Frames:
    """Sequence, frame, capture time and location of each eligible image (row k = elig[k]).

    The texts stay in the CCT's columns (row ``cct_row[k]``) and are looked up only for the
    rows that become candidates: gathering half a million of them costs more than the rest.
    ``seq`` numbers the sequences: rows of one sequence share a number (which is immaterial).
    """

    elig: np.ndarray
    keys: list[str]  # each row's image_id
    seq: np.ndarray  # int64
    frames: np.ndarray  # int32, -1 where unknown
    nframes: np.ndarray  # int32, -1 where unknown
    hours: np.ndarray  # int16, the capture hour, -1 where unknown
    cct: CCTMetadata | None
    cct_row: np.ndarray  # int64, -1 where the image is not in the CCT file
    sizes: dict[int, tuple[int, int]]  # image index -> (width, height) from the CCT file
    own_seq: dict[int, str] = field(default_factory=dict)  # image index -> seq_id rebuilt from capture times
    own_time: dict[int, str | None] = field(default_factory=dict)  # image index -> EXIF time; None: unreadable

    def seq_id(self, k: int) -> str | None:
        i = int(self.elig[k])
        if i in self.own_seq:
            return self.own_seq[i]
        sid = self.cct.seq_id[self.cct_row[k]] if self.cct_row[k] >= 0 else None
        return None if sid is None else CCT_PREFIX + sid

    def time(self, k: int) -> str | None:
        """The capture time as written (normalise_datetime gives ISO 8601)."""
        i = int(self.elig[k])
        if i in self.own_time:
            return self.own_time[i]
        return self.cct.datetime[self.cct_row[k]] if self.cct_row[k] >= 0 else None

    def location(self, k: int) -> str:
        location = self.cct.location[self.cct_row[k]] if self.cct_row[k] >= 0 else None
        return location if location is not None else (self.keys[k].rpartition("/")[0] or ".")  # the folder: a camera

    def keep(self, keep: np.ndarray) -> Frames:
        return replace(self, elig=self.elig[keep], keys=list(compress(self.keys, keep.tolist())), seq=self.seq[keep],
                       frames=self.frames[keep], nframes=self.nframes[keep], hours=self.hours[keep],
                       cct_row=self.cct_row[keep])


def frames_of(elig: np.ndarray, keys: list[str], cct: CCTMetadata | None, root: Path, cfg: SelectSettings,
              summary: SelectionSummary, progress: bool | None) -> Frames:
    """Sequence, frame, capture time and location of each eligible image (``keys`` their ids).

    Priority: the CCT's seq_id; else sequences rebuilt with the gap rule from the CCT's
    capture times; else from EXIF DateTimeOriginal; an image with no usable time is its own
    sequence. ``cct`` is read with ``only=keys``, so it knows the row of each image already.
    """
    m = len(elig)
    if cct is not None:
        frames = _from_cct(cct, elig, keys, summary)
    else:
        frames = Frames(elig, keys, np.full(m, -1, np.int64), np.full(m, -1, np.int32), np.full(m, -1, np.int32),
                        np.full(m, -1, np.int16), None, np.full(m, -1, np.int64), {})
    bad_time = np.flatnonzero(frames.hours == -2)
    if len(bad_time):
        source = cct.source if cct is not None else "capture times"
        summary.problems[f"{source}: unparseable datetime"] += len(bad_time)
        summary.problem_examples.extend(f"{source}: {keys[k]}: unparseable datetime {frames.time(k)!r}; image kept "
                                        f"without a capture time" for k in bad_time[:3].tolist())
        frames.own_time.update((i, None) for i in frames.elig[bad_time].tolist())
        frames.hours[bad_time] = -1
    if (frames.seq < 0).any():
        _rebuild_sequences(frames, root, cfg, summary, progress)
    return frames


def _from_cct(cct: CCTMetadata, elig: np.ndarray, keys: list[str], summary: SelectionSummary) -> Frames:
    """What the CCT file says of each eligible image (-1 where it does not list it)."""
    m = len(elig)
    r = cct.only_rows
    hit = r >= 0
    rh = r[hit]
    seq, hours = np.full(m, -1, np.int64), np.full(m, -1, np.int16)
    frames, nframes = np.full(m, -1, np.int32), np.full(m, -1, np.int32)
    seq[hit], hours[hit] = cct.seq_group[rh], cct.hour[rh]
    frames[hit], nframes[hit] = cct.frame_num[rh], cct.seq_num_frames[rh]
    if len(rh) < m:
        summary.notes.append(f"{m - len(rh)} eligible images are not in {cct.source}; their sequences "
                             f"come from capture times")
    sizes: dict[int, tuple[int, int]] = {}
    for k in np.flatnonzero(hit)[cct.width[rh] > 0].tolist():
        sizes[int(elig[k])] = (int(cct.width[r[k]]), int(cct.height[r[k]]))
    return Frames(elig, keys, seq, frames, nframes, hours, cct, r, sizes)


def _rebuild_sequences(frames: Frames, root: Path, cfg: SelectSettings, summary: SelectionSummary,
                       progress: bool | None) -> None:
    """Sequences for the images without a CCT seq_id, from capture times (EXIF where the CCT has none)."""
    need = np.flatnonzero(frames.seq < 0).tolist()
    untimed = [k for k in need if frames.time(k) is None]
    if untimed and cfg.check_files:
        for k in progress_bar(progress, untimed, desc="Reading EXIF times", unit="img", leave=False):
            t = read_capture_time(root / frames.keys[k])
            if t is not None:
                frames.own_time[int(frames.elig[k])] = t.isoformat()
                frames.hours[k] = t.hour
    items = [(frames.keys[k], _when(frames.time(k))) for k in need]
    built = build_sequences(items, gap_seconds=cfg.sequence_gap_seconds)
    first = int(frames.seq.max(initial=-1)) + 1  # numbers after the CCT's sequences
    number: dict[str, int] = {}
    no_time = 0
    for k, (key, when) in zip(need, items):
        seq_id, frames.frames[k], frames.nframes[k] = built[key]
        frames.own_seq[int(frames.elig[k])] = seq_id
        frames.seq[k] = first + number.setdefault(seq_id, len(number))
        no_time += when is None
    if no_time:
        summary.notes.append(f"{no_time} eligible images have no usable capture time; each is its own sequence")


def _when(text: str | None) -> datetime | None:
    iso = normalise_datetime(text) if text else None
    return datetime.fromisoformat(iso) if iso else None
