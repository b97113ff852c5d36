"""COCO Camera Traps metadata: sequence, frame, location, capture time and size per image."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np

from .common import InputFormatError, RecordProblem, decode_json, image_key


class _Image(msgspec.Struct, gc=False):
    file_name: str
    id: str | int | None = None
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
    datetime: list[str | None]  # ISO 8601 "YYYY-MM-DDTHH:MM:SS"
    width: np.ndarray  # int32
    height: np.ndarray  # int32
    problems: list[RecordProblem] = field(default_factory=list)

    def rows(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.image_ids)}


def load_cct(path: str | Path, images_root: str | Path | None = None) -> CCTMetadata:
    """Read a COCO Camera Traps file. Whole-file problems raise InputFormatError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read the COCO Camera Traps file ({exc.strerror}); check the path") from None
    return parse_cct(data, str(path), images_root)


def parse_cct(data: bytes, source: str, images_root: str | Path | None = None) -> CCTMetadata:
    """Parse COCO Camera Traps JSON bytes; bad records are counted problems, not fatal."""
    problems: list[RecordProblem] = []
    try:
        images = decode_json(data, source, "COCO Camera Traps", type=_TypedFile).images
    except msgspec.ValidationError as exc:
        if "$.images[" not in str(exc):
            raise InputFormatError(
                f"{source}: not COCO Camera Traps metadata ({exc}); expected an object with an 'images' "
                f"list of {{'file_name', 'seq_id', 'frame_num', 'datetime', ...}} records") from None
        raw_images = decode_json(data, source, "COCO Camera Traps", type=_LooseFile).images
        images = []
        for i, raw in enumerate(raw_images):
            try:
                images.append(msgspec.convert(raw, _Image))
            except msgspec.ValidationError as err:
                name = raw.get("file_name") if isinstance(raw, dict) else None
                problems.append(RecordProblem(source, _where(i, name), "malformed image record", str(err)))
                images.append(None)
        del raw_images
    del data

    n = len(images)
    ids: list[str] = []
    seq: list[str | None] = []
    loc: list[str | None] = []
    when: list[str | None] = []
    frame = np.full(n, -1, dtype=np.int32)
    nframes = np.full(n, -1, dtype=np.int32)
    width = np.full(n, -1, dtype=np.int32)
    height = np.full(n, -1, dtype=np.int32)
    seen: set[str] = set()
    row = 0
    for i, rec in enumerate(images):
        if rec is None:
            continue
        path = rec.file_name
        try:
            key = image_key(path, images_root)
        except ValueError as exc:
            problems.append(RecordProblem(source, _where(i, path), "bad path", str(exc)))
            continue
        if key in seen:
            problems.append(RecordProblem(source, _where(i, path), "duplicate file_name", "this one skipped"))
            continue
        iso = None
        if rec.datetime:
            iso = normalise_datetime(rec.datetime)
            if iso is None:
                problems.append(RecordProblem(source, _where(i, path), "unparseable datetime",
                                              f"{rec.datetime!r}; image kept without a capture time"))
        seen.add(key)
        ids.append(key)
        seq.append(None if rec.seq_id is None else str(rec.seq_id))
        loc.append(None if rec.location is None else str(rec.location))
        when.append(iso)
        if rec.frame_num is not None:
            frame[row] = rec.frame_num
        if rec.seq_num_frames is not None:
            nframes[row] = rec.seq_num_frames
        if rec.width is not None and rec.height is not None and rec.width > 0 and rec.height > 0:
            width[row] = rec.width
            height[row] = rec.height
        row += 1
    return CCTMetadata(source=source, image_ids=ids, seq_id=seq, frame_num=frame[:row],
                       seq_num_frames=nframes[:row], location=loc, datetime=when,
                       width=width[:row], height=height[:row], problems=problems)


def normalise_datetime(text: str) -> str | None:
    """Return ``YYYY-MM-DDTHH:MM:SS`` for the date formats camera-trap metadata uses, else None."""
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


def _where(i: int, name: object) -> str:
    return f"images[{i}] (file_name {name!r})" if isinstance(name, str) else f"images[{i}]"
