"""MegaDetector batch output (format 1.0 to 1.6) into columnar arrays.

A collection can hold millions of images, so detections are kept as numpy columns rather
than a dict per detection, and the file is decoded a chunk of records at a time, each
chunk dropped as soon as its columns exist.
Boxes are MegaDetector's: ``[x_min, y_min, width, height]``, normalised to [0, 1] on the
EXIF-upright image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain, compress
from operator import attrgetter, itemgetter
from pathlib import Path

import msgspec
import numpy as np

from .chunked import KeyedChunk, RecordKeys, Workers, decode_outer, key_chunk, map_chunks
from .common import RecordProblem, gc_paused, read_input
from .sniff import check_kind
from .speciesnet import parse_taxonomy

KIND_ANIMAL, KIND_PERSON, KIND_VEHICLE, KIND_OTHER = 0, 1, 2, 3
KIND_NAMES = ("animal", "person", "vehicle", "other")
_KIND_BY_NAME = {"animal": KIND_ANIMAL, "person": KIND_PERSON, "human": KIND_PERSON, "vehicle": KIND_VEHICLE}
KNOWN_FORMAT_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6")
BOX_TOLERANCE = 1e-3  # rounding in writers puts edges a hair outside [0, 1]


# Tuples rather than lists: a tuple holds its items itself, a list in a second block of
# memory, and reading a million of them is bound by memory, not by Python.
class _Detection(msgspec.Struct, gc=False):
    category: str | int
    conf: float
    bbox: tuple[float, float, float, float]
    classifications: tuple[tuple[str | int, float], ...] | None = None


class _Image(msgspec.Struct, gc=False):
    file: str
    detections: tuple[_Detection, ...] | None = None
    failure: str | None = None


class _File(msgspec.Struct):
    images: list[msgspec.Raw]  # built a chunk at a time: see chunked.map_chunks
    info: dict = {}
    detection_categories: dict[str, str] = {}
    classification_categories: dict[str, str] = {}
    classification_category_descriptions: dict[str, str] = {}


@dataclass
class Detections:
    """One row per detection, in file order; ``image`` indexes ``MegaDetectorFile.image_ids``."""

    image: np.ndarray  # int32
    kind: np.ndarray  # int8, KIND_*
    category: np.ndarray  # int16, the detector's category id as a number
    conf: np.ndarray  # float32
    bbox: np.ndarray  # float32, shape (n, 4): x_min, y_min, width, height
    species: np.ndarray  # int32 index into species_names, -1 when unclassified
    species_conf: np.ndarray  # float32
    det_index: np.ndarray  # int16, position of the detection within its image's list

    def __len__(self) -> int:
        return len(self.image)


@dataclass
class MegaDetectorFile:
    source: str
    format_version: str
    image_ids: list[str]
    failures: dict[int, str]  # image index -> the detector's failure text
    detections: Detections
    species_names: list[str]
    detection_categories: dict[str, str]
    info: dict
    problems: list[RecordProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unusable: dict[int, str] = field(default_factory=dict)  # image index -> why it cannot be a candidate

    def index(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.image_ids)}


def load_megadetector(path: str | Path, images_root: str | Path | None = None,
                      workers: Workers | None = None) -> MegaDetectorFile:
    """Read a MegaDetector results file. Whole-file problems raise InputFormatError."""
    return parse_megadetector(read_input(path, "MegaDetector"), str(path), images_root, workers)


def parse_megadetector(data: bytes, source: str, images_root: str | Path | None = None,
                       workers: Workers | None = None) -> MegaDetectorFile:
    """Parse MegaDetector JSON bytes; bad records are counted problems, not fatal. ``workers``:
    where its records are built (chunked.Workers; by default in this process)."""
    check_kind(data, source, "megadetector")
    with gc_paused():
        parsed, spans = decode_outer(data, source, "MegaDetector", _File, lambda exc: _not_megadetector(source, exc))
        tables = _tables(parsed, source)
        chunks = map_chunks(data, spans, source, "MegaDetector", _Image, "file",
                            lambda positions, records: _read_chunk(positions, records, tables, images_root), workers)
        del data, spans
        problems = [p for chunk_problems, _ in chunks for p in chunk_problems]
        return _finish([chunk for _, chunk in chunks], tables, source, problems)


def _not_megadetector(source: str, exc: Exception) -> str:
    return (f"{source}: not MegaDetector batch output ({exc}); expected an object with an "
            f"'images' list of {{'file', 'detections'}} records")


def _where(i: int, name: object) -> str:
    return f"images[{i}] (file {name!r})" if isinstance(name, str) else f"images[{i}]"


@dataclass
class _Tables:
    """What the file's header says: version, notes, and the category and class tables."""

    version: str
    info: dict
    notes: list[str]
    kind_of: dict[str, int]  # detection category id -> KIND_*
    species_names: list[str]
    species_of: dict[str | int, int]  # class id (as text and as a number) -> species_names index
    detection_categories: dict[str, str]


def _tables(parsed: _File, source: str) -> _Tables:
    info = parsed.info if isinstance(parsed.info, dict) else {}
    version = str(info.get("format_version", "1.0"))
    notes = []
    if version not in KNOWN_FORMAT_VERSIONS:
        notes.append(f"{source}: format_version {version!r} is newer than 1.6; read as 1.6")

    kind_of: dict[str, int] = {}
    for cat_id, name in parsed.detection_categories.items():
        kind_of[str(cat_id)] = _KIND_BY_NAME.get(str(name).strip().lower(), KIND_OTHER)
    if not kind_of:  # very old files omit the table; these are MegaDetector's fixed ids
        kind_of = {"1": KIND_ANIMAL, "2": KIND_PERSON, "3": KIND_VEHICLE}
        notes.append(f"{source}: no detection_categories; assumed 1=animal, 2=person, 3=vehicle")

    species_names: list[str] = []
    species_of: dict[str | int, int] = {}
    descriptions = parsed.classification_category_descriptions
    for cat_id, name in parsed.classification_categories.items():
        readable = parse_taxonomy(name) if ";" in str(name) else str(name).strip()
        if not readable and str(cat_id) in descriptions:
            readable = parse_taxonomy(descriptions[str(cat_id)])
        species_of[str(cat_id)] = len(species_names)
        species_names.append(readable or f"class {cat_id}")
    species_of.update({int(k): v for k, v in species_of.items() if _digits(k, 30)})  # ids may be numbers
    return _Tables(version, info, notes, kind_of, species_names, species_of,
                   {str(k): str(v) for k, v in parsed.detection_categories.items()})


# One row per detection, filled in one pass: at a million images every extra Python pass
# over the detections costs a few hundred milliseconds.
_ROW = np.dtype([("code", np.int16), ("conf", np.float64), ("species", np.int32), ("spconf", np.float64)])


@dataclass
class _Chunk:
    """One chunk of records as plain data, its detections already checked; indexes are
    within the chunk, and ``detections`` has no ``image`` column yet."""

    keyed: KeyedChunk
    failures: dict[int, str]  # record -> the detector's failure text
    counts: np.ndarray  # detections per record
    detections: dict[str, np.ndarray]  # the Detections columns but ``image``
    unknown: dict[int, object]  # detection -> its top class id, missing from the table
    bad: dict[int, tuple[str, str]]  # record -> (reason, detail) for its first bad detection


def _read_chunk(positions: np.ndarray, records: list, tables: _Tables, images_root) -> _Chunk:
    keyed = key_chunk(list(map(_FILE, records)), positions, images_root)
    dets = list(map(_DETECTIONS, records))
    failures = {}
    for k in _nones(dets):  # a failed image: no detections list
        failures[k] = records[k].failure or "no detections and no failure reason"
        dets[k] = ()
    counts = np.fromiter(map(len, dets), np.int64, len(dets))
    n = int(counts.sum())
    code_of: dict[str | int, int] = {}
    # Straight from the records' tuples: a flat list of the detections is one more pass.
    rows = np.fromiter(_detection_rows(dets, code_of, tables.species_of), count=n, dtype=_ROW)
    bbox = np.fromiter(chain.from_iterable(map(_BBOX, chain.from_iterable(dets))), np.float64, 4 * n).reshape(-1, 4)
    # clipped: a score beyond float32 drops its image (see _bad_detections), without an overflow on the way
    species, species_conf = rows["species"].copy(), np.clip(rows["spconf"], -1, 2).astype(np.float32)
    unknown = {}
    odd = np.flatnonzero(species == -2).tolist()
    flat: list[_Detection] = list(chain.from_iterable(dets)) if odd else []
    for d in odd:  # keep the detection, drop the species
        unknown[d] = _top(flat[d].classifications)[0]
        species[d], species_conf[d] = -1, 0
    # Category ids became small codes while reading; kinds and numbers come from lookup tables.
    ids = [str(c) for c in code_of]
    codes = rows["code"]
    kind = np.array([tables.kind_of.get(c, -1) for c in ids] or [0], dtype=np.int8)[codes]
    category = np.array([int(c) if _digits(c, 4) else -1 for c in ids] or [0], dtype=np.int16)[codes]
    starts = np.cumsum(counts) - counts
    det_index = (np.arange(n) - np.repeat(starts, counts)).astype(np.int16)
    bad = _bad_detections(kind, rows["conf"], rows["spconf"], bbox, det_index, counts, ids, codes)
    columns = {"kind": kind, "category": category, "conf": np.clip(rows["conf"], -1, 2).astype(np.float32),
               "bbox": np.clip(bbox, 0.0, 1.0).astype(np.float32), "species": species,
               "species_conf": species_conf, "det_index": det_index}
    return _Chunk(keyed, failures, counts, columns, unknown, bad)


_FILE, _DETECTIONS, _BBOX = attrgetter("file"), attrgetter("detections"), attrgetter("bbox")


def _nones(values: list) -> list[int]:
    """Where None is in ``values``, found by list.index, which scans in C."""
    found: list[int] = []
    try:
        while True:
            found.append(values.index(None, found[-1] + 1 if found else 0))
    except ValueError:
        return found


def _digits(text: str, most: int) -> bool:
    """Is ``text`` a number of at most ``most`` ASCII digits? (str.isdigit takes '²' too, which int() refuses)"""
    return text.isascii() and text.isdigit() and len(text) <= most


def _bad_detections(kind: np.ndarray, conf: np.ndarray, species_conf: np.ndarray, bbox: np.ndarray,
                    det_index: np.ndarray, counts: np.ndarray, ids: list[str],
                    codes: np.ndarray) -> dict[int, tuple[str, str]]:
    """Each record with a bad detection: (reason, detail) for its first one."""
    lo, hi = -BOX_TOLERANCE, 1 + BOX_TOLERANCE
    x, y, w, h = bbox.T
    bad_box = ~((x >= lo) & (x <= hi) & (y >= lo) & (y <= hi) & (w >= 0) & (w <= hi) & (h >= 0) & (h <= hi)
                & (x + w <= hi + BOX_TOLERANCE) & (y + h <= hi + BOX_TOLERANCE))
    bad_conf = ~((conf >= 0) & (conf <= 1))  # also catches NaN
    bad_score = ~((species_conf >= 0) & (species_conf <= 1))  # the classifier's; 0 where none
    bad_kind = kind < 0
    bad_rows = np.flatnonzero(bad_kind | bad_box | bad_conf | bad_score)
    if not len(bad_rows):
        return {}
    owner = np.repeat(np.arange(len(counts)), counts)
    records, first = np.unique(owner[bad_rows], return_index=True)
    bad = {}
    for k, d in zip(records.tolist(), bad_rows[first].tolist()):
        j = int(det_index[d])
        if bad_kind[d]:
            bad[k] = "unknown detection category", (f"detections[{j}] category {ids[codes[d]]!r} "
                                                    f"is not in detection_categories")
        elif bad_conf[d]:
            bad[k] = "confidence outside [0,1]", f"detections[{j}] conf {conf[d]}"
        elif bad_score[d]:
            bad[k] = "confidence outside [0,1]", f"detections[{j}] classification score {species_conf[d]}"
        else:
            bad[k] = "bbox outside [0,1]", (f"detections[{j}] bbox {[round(v, 4) for v in bbox[d].tolist()]}; boxes must be "
                                           f"normalised x_min,y_min,width,height")
    return bad


def _finish(chunks: list[_Chunk], t: _Tables, source: str, problems: list[RecordProblem]) -> MegaDetectorFile:
    """The chunks as one file; then the problems; then one drop of every skipped image."""
    keys = RecordKeys([c.keyed for c in chunks])
    counts = np.concatenate([c.counts for c in chunks]) if chunks else np.zeros(0, np.int64)
    cols = Detections(image=np.repeat(np.arange(len(counts), dtype=np.int32), counts),
                      **{name: np.concatenate([c.detections[name] for c in chunks]) if chunks else
                         np.zeros((0, 4) if name == "bbox" else 0, _EMPTY[name]) for name in _COLUMNS[1:]})
    failures, unknown, bad = _merged(chunks)
    skipped = np.zeros(len(keys.keys), dtype=bool)
    skipped[list(keys.skipped(source, "file", problems))] = True
    for d, class_id in unknown.items():
        img = cols.image[d]
        if not skipped[img]:
            problems.append(RecordProblem(source, _where(keys.positions[img], keys.keys[img]),
                                          "unknown classification category",
                                          f"detections[{cols.det_index[d]}] class {class_id!r}; "
                                          f"detection kept without species"))
    # A bad detection drops its whole image: keeping the rest could hide a person.
    for img, (reason, detail) in bad.items():
        if not skipped[img]:
            problems.append(RecordProblem(source, _where(keys.positions[img], keys.keys[img]), reason,
                                          detail + "; image skipped"))
    drop = skipped
    drop[list(bad)] = True
    image_ids = keys.keys
    if drop.any():
        keep_image = ~drop
        new_index = np.cumsum(keep_image) - 1
        keep = keep_image[cols.image]
        cols = Detections(image=new_index[cols.image[keep]].astype(np.int32),
                          **{name: getattr(cols, name)[keep] for name in _COLUMNS[1:]})
        failures = {int(new_index[i]): text for i, text in failures.items() if keep_image[i]}
        image_ids = list(compress(image_ids, keep_image.tolist()))
    return MegaDetectorFile(
        source=source, format_version=t.version, image_ids=image_ids, failures=failures, detections=cols,
        species_names=t.species_names, detection_categories=t.detection_categories, info=t.info,
        problems=problems, notes=t.notes,
    )


_COLUMNS = ("image", "kind", "category", "conf", "bbox", "species", "species_conf", "det_index")
_EMPTY = {"kind": np.int8, "category": np.int16, "conf": np.float32, "bbox": np.float32, "species": np.int32,
          "species_conf": np.float32, "det_index": np.int16}


def _merged(chunks: list[_Chunk]) -> tuple[dict[int, str], dict[int, object], dict[int, tuple[str, str]]]:
    """The chunks' failures and bad detections (by record) and unknown classes (by detection), file-wide."""
    failures: dict[int, str] = {}
    unknown: dict[int, object] = {}
    bad: dict[int, tuple[str, str]] = {}
    records = detections = 0
    for c in chunks:
        failures.update((records + k, text) for k, text in c.failures.items())
        bad.update((records + k, found) for k, found in c.bad.items())
        unknown.update((detections + d, class_id) for d, class_id in c.unknown.items())
        records += len(c.counts)
        detections += len(c.detections["kind"])
    return failures, unknown, bad


def _top(classifications: list) -> tuple:
    """The best (class id, score); MegaDetector usually sorts them, but does not promise to."""
    return classifications[0] if len(classifications) == 1 else max(classifications, key=itemgetter(1))


def _detection_rows(dets: list[tuple], code_of: dict, species_of: dict):
    """(category code, confidence, species index, species score) per detection of each record's
    ``dets``; -2: unknown class."""
    setdefault, get = code_of.setdefault, species_of.get
    for d in chain.from_iterable(dets):
        c = d.classifications
        code = setdefault(d.category, len(code_of))
        if not c:
            yield code, d.conf, -1, 0.0
        else:
            top = c[0] if len(c) == 1 else max(c, key=itemgetter(1))
            yield code, d.conf, get(top[0], -2), top[1]
