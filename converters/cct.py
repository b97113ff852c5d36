"""COCO Camera Traps metadata: sequence, frame, location, capture time and size per image."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np

from .common import RecordProblem, decode_records, gc_paused, keyed_records, read_input


class _Image(msgspec.Struct, gc=False):
    file_name: str
    width: int | None = None
    height: int | None = None
    location: str | int | None = None
    datetime: str | None = None
    seq_id: str | int | None = None
    frame_num: int | None = None
    seq_num_frames: int | None = None


class _TypedFile(msgspec.Struct):
    images: list[_Image]


class _LooseFile(msgspec.Struct):
    images: list[object]


@dataclass
class CCTMetadata:
    """Columns by row; ``rows`` maps image_id to the row. Unknown numbers are -1, strings None."""

    source: str
    image_ids: list[str]
    seq_id: list[str | None]
    frame_num: np.ndarray  # int32
    seq_num_frames: np.ndarray  # int32
    location: list[str | None]
    datetime: list[str | None]  # as written; normalise_datetime() gives ISO 8601
    width: np.ndarray  # int32
    height: np.ndarray  # int32
    problems: list[RecordProblem] = field(default_factory=list)

    def rows(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.image_ids)}


def load_cct(path: str | Path, images_root: str | Path | None = None) -> CCTMetadata:
    """Read a COCO Camera Traps file. Whole-file problems raise InputFormatError."""
    return parse_cct(read_input(path, "COCO Camera Traps"), str(path), images_root)


def parse_cct(data: bytes, source: str, images_root: str | Path | None = None) -> CCTMetadata:
    """Parse COCO Camera Traps JSON bytes; bad records are counted problems, not fatal."""
    with gc_paused():
        _, images, problems = decode_records(
            data, source, "COCO Camera Traps", _TypedFile, _LooseFile, _Image, "file_name",
            lambda exc: (f"{source}: not COCO Camera Traps metadata ({exc}); expected an object with an "
                         f"'images' list of {{'file_name', 'seq_id', 'frame_num', 'datetime', ...}} records"))
        del data
        return _columns(images, source, images_root, problems)


def _columns(images: list, source: str, images_root, problems: list[RecordProblem]) -> CCTMetadata:
    records, keys, _ = keyed_records(images, source, images_root, "file_name", problems)
    n = len(records)
    # Capture times stay as written: normalise_datetime is applied only to the images a
    # caller needs, since parsing a million dates costs seconds and most are never used.
    return CCTMetadata(
        source=source, image_ids=keys,
        seq_id=[_text(rec.seq_id) for rec in records],
        frame_num=np.fromiter((-1 if rec.frame_num is None else rec.frame_num for rec in records), np.int32, n),
        seq_num_frames=np.fromiter((-1 if rec.seq_num_frames is None else rec.seq_num_frames for rec in records),
                                   np.int32, n),
        location=[_text(rec.location) for rec in records],
        datetime=[rec.datetime for rec in records],
        width=np.fromiter((rec.width if rec.width and rec.height else -1 for rec in records), np.int32, n),
        height=np.fromiter((rec.height if rec.width and rec.height else -1 for rec in records), np.int32, n),
        problems=problems,
    )


def _text(value: str | int | None) -> str | None:
    return value if value.__class__ is str or value is None else str(value)


def normalise_datetime(text: str) -> str | None:
    """Return ``YYYY-MM-DDTHH:MM:SS`` for the date formats camera-trap metadata uses, else None."""
    if len(text) == 19 and text[4] == "-" and text[10] in " T" and text[13] == ":":
        try:  # the common case, checked by the C parser without building a new string
            datetime.fromisoformat(text)
        except ValueError:
            return None
        return text if text[10] == "T" else f"{text[:10]}T{text[11:]}"
    text = text.strip()
    if len(text) >= 19 and text[4] == ":" and text[7] == ":":  # EXIF style 2019:06:01 13:42:07
        text = f"{text[:4]}-{text[5:7]}-{text[8:]}"
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        for fmt in ("%m/%d/%Y %H:%M:%S", "%m/%d/%Y %H:%M", "%d.%m.%Y %H:%M:%S"):
            try:
                value = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            return None
    return value.replace(tzinfo=None, microsecond=0).isoformat()

