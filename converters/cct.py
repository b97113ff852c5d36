"""COCO Camera Traps metadata: sequence, frame, location, capture time and size per image."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from itertools import chain, compress, repeat
from operator import eq
from pathlib import Path
from typing import Annotated, Self

import msgspec
import numpy as np

from .chunked import KeyedChunk, RecordKeys, Workers, decode_outer, key_chunk, map_chunks, pack_texts, unpack_texts
from .common import RecordProblem, gc_paused, read_input
from .sniff import check_kind

_Int32 = Annotated[int, msgspec.Meta(ge=-(2 ** 31), le=2 ** 31 - 1)]  # their columns' type: a bigger one is a bad record


class _Image(msgspec.Struct, gc=False):
    file_name: str
    width: _Int32 | None = None
    height: _Int32 | None = None
    location: str | int | None = None
    datetime: str | None = None
    seq_id: str | int | None = None
    frame_num: _Int32 | None = None
    seq_num_frames: _Int32 | None = None


class _File(msgspec.Struct):
    images: list[msgspec.Raw]  # built a chunk at a time (chunked.map_chunks); annotations are never built


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
    seq_group: np.ndarray  # int64: rows with the same seq_id share a number (-1: no seq_id)
    hour: np.ndarray  # int16: the hour of ``datetime`` (capture_hours): -1 none, -2 unreadable
    problems: list[RecordProblem] = field(default_factory=list)
    only_rows: np.ndarray | None = None  # read with only=: the row of each of its image_ids, -1 if not listed

    def rows(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.image_ids)}


_WHAT = "COCO Camera Traps"


def load_cct(path: str | Path, images_root: str | Path | None = None,
             only: Sequence[str] | None = None, workers: Workers | None = None) -> CCTMetadata:
    """Read a COCO Camera Traps file. Whole-file problems raise InputFormatError."""
    with CCTFile(path, workers) as cct:
        return cct.read(images_root, only)


class CCTFile:
    """A COCO Camera Traps file being read: the file is read at once and its whole-file check
    may begin meanwhile (``workers``: see chunked.Workers.outer_pass) while the caller does
    other work; read() builds the rows. A context manager: leaving it stops a check still running."""

    def __init__(self, path: str | Path, workers: Workers | None = None) -> None:
        self.source = str(path)
        self._workers = workers or Workers()
        self._outer = self._workers.outer_pass(lambda: _checked(read_input(path, _WHAT), self.source), self.source,
                                               _WHAT, _File, partial(_not_cct, self.source))

    def read(self, images_root: str | Path | None = None, only: Sequence[str] | None = None) -> CCTMetadata:
        """As parse_cct. Whole-file problems raise InputFormatError."""
        with gc_paused():
            data, _, spans = self._outer.result()
        return _parse(data, spans, self.source, images_root, only, self._workers)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self._outer.close()


def parse_cct(data: bytes, source: str, images_root: str | Path | None = None,
              only: Sequence[str] | None = None, workers: Workers | None = None) -> CCTMetadata:
    """Parse COCO Camera Traps JSON bytes; bad records are counted problems, not fatal.

    With ``only`` (distinct image_ids, say the images a caller can use) every record is
    still checked, but rows are kept for those images alone, and ``only_rows`` gives the
    row of each: a caller joining a million images needs no lookup of its own. ``workers``:
    where its records are built (chunked.Workers; by default in this process).
    """
    with gc_paused():
        _, spans = decode_outer(_checked(data, source), source, _WHAT, _File, partial(_not_cct, source))
    return _parse(data, spans, source, images_root, only, workers)


def _checked(data: bytes, source: str) -> bytes:
    check_kind(data, source, "cct")
    return data


def _not_cct(source: str, exc: Exception) -> str:
    return (f"{source}: not COCO Camera Traps metadata ({exc}); expected an object with an "
            f"'images' list of {{'file_name', 'seq_id', 'frame_num', 'datetime', ...}} records")


def _parse(data: bytes, spans: list, source: str, images_root, only: Sequence[str] | None,
           workers: Workers | None) -> CCTMetadata:
    wanted = None if only is None else _Wanted(only)
    with gc_paused():
        chunks = map_chunks(data, spans, source, _WHAT, _Image, "file_name",
                            lambda positions, records: _read_chunk(positions, records, images_root, wanted), workers)
        del data, spans
        problems = [p for chunk_problems, _ in chunks for p in chunk_problems]
        return _metadata([chunk for _, chunk in chunks], source, problems, None if only is None else len(only))


@dataclass
class _Chunk:
    """One chunk of records as plain data: the rows kept (all with a good path, or those
    ``only`` wants), their fields, and every record's path."""

    keyed: KeyedChunk
    index: np.ndarray  # each kept row's record (within the chunk)
    slot: np.ndarray | None  # with only=: each kept row's position in it
    image_ids: list[str]
    seq_id: list[str | None]
    location: list[str | None]
    datetime: list[str | None]
    numbers: tuple[np.ndarray, ...]  # frame_num, seq_num_frames, width, height, hour
    seq_names: list[str | None]  # the distinct seq_ids, in order of first appearance
    seq_local: np.ndarray  # each row's seq_id as an index into seq_names

    def __getstate__(self) -> dict:  # may be sent from a second process: see chunked.map_chunks
        return {**self.__dict__, **{name: pack_texts(getattr(self, name)) for name in _TEXT_COLUMNS}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, **{name: unpack_texts(state[name]) for name in _TEXT_COLUMNS})


_TEXT_COLUMNS = ("image_ids", "seq_id", "location", "datetime", "seq_names")


def _read_chunk(positions: np.ndarray, records: list, images_root, wanted: _Wanted | None) -> _Chunk:
    keyed = key_chunk([rec.file_name for rec in records], positions, images_root)
    keys, slot = keyed.keys, None
    if wanted is not None:
        slots = wanted.slots(keys, keyed.hashes)
        take = np.flatnonzero(slots >= 0)
        slot = slots[take]
    elif None in keys:
        take = np.array([k for k, key in enumerate(keys) if key is not None], np.int64)
    else:
        take = None  # all of them
    if take is not None:
        records, keys = [records[k] for k in take.tolist()], [keys[k] for k in take.tolist()]
    seq_id, when = _texts([rec.seq_id for rec in records]), [rec.datetime for rec in records]
    # Sequences numbered here, while the chunk's strings are fresh in the cache: hashing half
    # a million of them later, scattered over the heap, costs several times as much.
    seq_names = list(dict.fromkeys(seq_id))
    seq_local = np.fromiter(map({sid: k for k, sid in enumerate(seq_names)}.__getitem__, seq_id), np.int64, len(seq_id))
    return _Chunk(keyed, np.arange(len(records)) if take is None else take, slot, keys, seq_id,
                  _texts([rec.location for rec in records]), when,
                  (_ints([rec.frame_num for rec in records]), _ints([rec.seq_num_frames for rec in records]),
                   *_sizes([rec.width for rec in records], [rec.height for rec in records]), capture_hours(when)),
                  seq_names, seq_local)


def _metadata(chunks: list[_Chunk], source: str, problems: list[RecordProblem], n_only: int | None) -> CCTMetadata:
    """The kept rows as columns, less the repeats of an image_id (the first one wins)."""
    keys = RecordKeys([c.keyed for c in chunks])
    skipped = keys.skipped(source, "file_name", problems)
    numbers = [np.concatenate(column) for column in zip(*(c.numbers for c in chunks))] or [np.zeros(0, np.int32)] * 5
    numbers.append(_seq_groups(chunks))
    lists = [list(chain.from_iterable(getattr(c, name) for c in chunks)) for name in _TEXT_COLUMNS[:-1]]
    slot = np.concatenate([c.slot for c in chunks]) if n_only is not None and chunks else np.zeros(0, np.int64)
    if skipped:
        bases = np.cumsum([0] + [len(c.keyed.positions) for c in chunks])
        index = np.concatenate([base + c.index for base, c in zip(bases, chunks)])
        keep = ~np.isin(index, np.fromiter(skipped, np.int64, len(skipped)))
        numbers = [column[keep] for column in numbers]
        lists = [list(compress(column, keep.tolist())) for column in lists]
        slot = slot[keep] if n_only is not None else slot
    frame_num, seq_num_frames, width, height, hour, seq_group = numbers
    image_ids, seq_id, location, when = lists
    only_rows = None
    if n_only is not None:
        only_rows = np.full(n_only, -1, np.int64)
        only_rows[slot] = np.arange(len(image_ids))
    # Capture times stay as written: normalise_datetime is applied only to the images a
    # caller needs, since parsing a million dates costs seconds and most are never used.
    return CCTMetadata(source=source, image_ids=image_ids, seq_id=seq_id, frame_num=frame_num,
                       seq_num_frames=seq_num_frames, location=location, datetime=when, width=width,
                       height=height, seq_group=seq_group, hour=hour.astype(np.int16), problems=problems,
                       only_rows=only_rows)


def _seq_groups(chunks: list[_Chunk]) -> np.ndarray:
    """One number per distinct seq_id over the whole file, from each chunk's own numbering."""
    number: dict[str, int] = {}
    parts = [np.zeros(0, np.int64)]
    for c in chunks:
        table = [-1 if sid is None else number.setdefault(sid, len(number)) for sid in c.seq_names]
        parts.append(np.array(table or [-1], np.int64)[c.seq_local])
    return np.concatenate(parts)


class _Wanted:
    """Where each image_id of ``only`` is in it, found by hash with numpy, then checked by name.

    A dict of half a million ids probed a million times is slow where memory is: sorted
    hashes and a binary search per chunk do the same join for a fraction of the cost.
    """

    def __init__(self, only: Sequence[str]) -> None:
        self.only = only
        hashes = np.fromiter(map(hash, only), np.int64, len(only))
        self.order = np.argsort(hashes, kind="stable")
        self.sorted = hashes[self.order]
        self.by_name = None
        if (self.sorted[1:] == self.sorted[:-1]).any():  # two wanted ids share a hash: look them up by name
            self.by_name = {key: k for k, key in enumerate(only)}

    def slots(self, keys: list[str | None], hashes: np.ndarray) -> np.ndarray:
        """The position in ``only`` of each of ``keys``, -1 where it is not wanted."""
        if self.by_name is not None:
            return np.fromiter(map(self.by_name.get, keys, repeat(-1)), np.int64, len(keys))
        out = np.full(len(keys), -1, np.int64)
        if not len(self.sorted):
            return out
        ranked = np.argsort(hashes, kind="stable")  # sorted needles make the binary searches local
        pos = np.empty_like(ranked)
        pos[ranked] = np.searchsorted(self.sorted, hashes[ranked])
        pos[pos == len(self.sorted)] = 0
        hit = np.flatnonzero(self.sorted[pos] == hashes)
        slot = self.order[pos[hit]]
        # Equal hashes all but always mean equal ids; comparing the names makes it certain.
        same = np.fromiter(map(eq, map(keys.__getitem__, hit.tolist()), map(self.only.__getitem__, slot.tolist())),
                           bool, len(hit))
        if not same.all():
            hit, slot = hit[same], slot[same]
        out[hit] = slot
        return out


def _texts(values: list) -> list[str | None]:
    """Ids as text; most files write them as text already, and then the list is used as it is."""
    return values if set(map(type, values)) <= _TEXT_TYPES else [_text(v) for v in values]


_TEXT_TYPES = {str, type(None)}


def _ints(values: list) -> np.ndarray:
    """int32, -1 where not given."""
    return np.array([-1 if v is None else v for v in values] if None in values else values, dtype=np.int32)


def _sizes(widths: list, heights: list) -> tuple[np.ndarray, np.ndarray]:
    """Width and height where both are given and non-zero, else -1 for both."""
    if widths.count(None) == len(widths):  # the usual case: the file gives no sizes
        return np.full(len(widths), -1, np.int32), np.full(len(widths), -1, np.int32)
    known = [bool(w and h) for w, h in zip(widths, heights)]
    return (np.array([w if ok else -1 for w, ok in zip(widths, known)], np.int32),
            np.array([h if ok else -1 for h, ok in zip(heights, known)], np.int32))


def _text(value: str | int | None) -> str | None:
    return value if value.__class__ is str or value is None else str(value)


def capture_hours(times: list[str | None]) -> np.ndarray:
    """The hour of each capture time as written: -1 where there is none, -2 where it cannot be
    read (see _hour); the usual layout ("YYYY-MM-DD HH:..." or with a T) is read
    for all of them at once, straight off the characters, and only the rest one by one."""
    chars = _fixed_width(times)
    if chars is None:  # each text as 16 UCS-4 code points (shorter ones end in zeros; None reads "None")
        chars = np.array(times, dtype="U16").view(np.uint32).reshape(len(times), 16)
    tens, units = chars[:, 11].astype(np.int64) - 48, chars[:, 12].astype(np.int64) - 48
    hours = (tens * 10 + units).astype(np.int16)
    separator = (chars[:, 10] == ord(" ")) | (chars[:, 10] == ord("T"))
    usual = ((chars[:, 15] != 0) & (chars[:, 13] == ord(":")) & separator
             & (tens >= 0) & (tens <= 9) & (units >= 0) & (units <= 9) & (hours < 24))
    for k in np.flatnonzero(~usual).tolist():
        hours[k] = _hour(times[k])
    return hours


def _fixed_width(texts: list) -> np.ndarray | None:
    """The characters of ``texts`` as a (n, width) array when all are ASCII strings of one
    length (the usual "YYYY-MM-DD HH:MM:SS"), in one join; else None."""
    if not texts or texts[0].__class__ is not str:
        return None
    width = len(texts[0])
    try:
        data = "\0".join(texts).encode("ascii")
    except (TypeError, UnicodeEncodeError):  # a None, or a non-ASCII text
        return None
    if len(data) != (width + 1) * len(texts) - 1 or data.count(0) != len(texts) - 1 or width < 16:
        return None
    chars = np.frombuffer(data + b"\0", np.uint8).reshape(len(texts), width + 1)
    return chars if (chars[:, width] == 0).all() else None


def _hour(text: str | None) -> int:
    """Hour of a capture time as written: -1 when there is none, -2 when it cannot be read."""
    if not text:
        return -1
    hh = text[11:13]
    if len(text) >= 16 and text[13] == ":" and text[10] in " T" and hh.isascii() and hh.isdigit() and int(hh) < 24:
        return int(hh)
    iso = normalise_datetime(text)
    return int(iso[11:13]) if iso else -2


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



# ---- out: COCO Camera Traps with boxes, for training -------------------------------------------

def cct_document(images: list[dict], info: dict) -> dict:
    """A COCO Camera Traps document from plain data.

    ``images``: dicts with id (the image_id), file_name, width, height (upright pixels),
    location, datetime, seq_id and ``boxes``: dicts with label, x, y, w, h (normalised,
    upright, top-left) and any extra fields to keep on the annotation (reviewed, curator...).
    Boxes become ``bbox`` in pixels ``[x, y, width, height]``; categories are the labels in
    sorted order, numbered from 1 (0 is COCO Camera Traps' "empty" by convention).
    """
    labels = sorted({b["label"] for image in images for b in image["boxes"]})
    category = {label: k for k, label in enumerate(labels, start=1)}
    out_images, annotations = [], []
    for image in images:
        w, h = image["width"], image["height"]
        out_images.append({k: image.get(k) for k in ("id", "file_name", "width", "height", "location", "datetime",
                                                     "seq_id") if image.get(k) is not None})
        for box in image["boxes"]:
            bbox = [round(box["x"] * w, 2), round(box["y"] * h, 2), round(box["w"] * w, 2), round(box["h"] * h, 2)]
            extra = {k: v for k, v in box.items() if k not in ("label", "x", "y", "w", "h")}
            annotations.append({"id": len(annotations) + 1, "image_id": image["id"], "category_id": category[box["label"]],
                                "bbox": bbox, "area": round(bbox[2] * bbox[3], 2), "iscrowd": 0, **extra})
    return {"info": info, "images": out_images, "annotations": annotations,
            "categories": [{"id": k, "name": label} for label, k in category.items()]}
