"""MegaDetector batch output (format 1.0 to 1.6) into columnar arrays.

A collection can hold millions of images, so detections are kept as numpy columns rather
than a dict per detection, and the decoded file is dropped as soon as the columns exist.
Boxes are MegaDetector's: ``[x_min, y_min, width, height]``, normalised to [0, 1] on the
EXIF-upright image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from operator import itemgetter
from pathlib import Path

import msgspec
import numpy as np

from .common import RecordProblem, decode_records, gc_paused, keyed_records, read_input
from .speciesnet import parse_taxonomy

KIND_ANIMAL, KIND_PERSON, KIND_VEHICLE, KIND_OTHER = 0, 1, 2, 3
KIND_NAMES = ("animal", "person", "vehicle", "other")
_KIND_BY_NAME = {"animal": KIND_ANIMAL, "person": KIND_PERSON, "human": KIND_PERSON, "vehicle": KIND_VEHICLE}
KNOWN_FORMAT_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6")
BOX_TOLERANCE = 1e-3  # rounding in writers puts edges a hair outside [0, 1]


class _Detection(msgspec.Struct, gc=False):
    category: str | int
    conf: float
    bbox: tuple[float, float, float, float]
    classifications: list[tuple[str | int, float]] | None = None


class _Image(msgspec.Struct, gc=False):
    file: str
    detections: list[_Detection] | None = None
    failure: str | None = None


class _TypedFile(msgspec.Struct):
    images: list[_Image]
    info: dict = {}
    detection_categories: dict[str, str] = {}
    classification_categories: dict[str, str] = {}
    classification_category_descriptions: dict[str, str] = {}


class _LooseFile(msgspec.Struct):
    images: list[object]
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

    def index(self) -> dict[str, int]:
        return {key: i for i, key in enumerate(self.image_ids)}


def load_megadetector(path: str | Path, images_root: str | Path | None = None) -> MegaDetectorFile:
    """Read a MegaDetector results file. Whole-file problems raise InputFormatError."""
    return parse_megadetector(read_input(path, "MegaDetector"), str(path), images_root)


def parse_megadetector(data: bytes, source: str, images_root: str | Path | None = None) -> MegaDetectorFile:
    """Parse MegaDetector JSON bytes; bad records are counted problems, not fatal."""
    head = data[:65536]  # enough to tell which kind of file it is, if it is not this kind
    with gc_paused():
        parsed, images, problems = decode_records(
            data, source, "MegaDetector", _TypedFile, _LooseFile, _Image, "file",
            lambda exc: _whole_file_hint(source, head, exc))
        del data
        return _columns(parsed, images, source, images_root, problems)


def _whole_file_hint(source: str, data: bytes, exc: Exception) -> str:
    head = data[:4096].lstrip()
    if head.startswith(b"{") and b'"predictions"' in data[:65536] and b'"images"' not in data[:65536]:
        return f"{source}: this is a SpeciesNet predictions file, not MegaDetector output; pass it with --speciesnet"
    if head.startswith(b"{") and b'"annotations"' in data[:65536] and b'"detections"' not in data[:65536]:
        return f"{source}: this looks like COCO Camera Traps metadata, not MegaDetector output; pass it with --cct"
    return (f"{source}: not MegaDetector batch output ({exc}); expected an object with an "
            f"'images' list of {{'file', 'detections'}} records")


def _where(i: int, name: object) -> str:
    return f"images[{i}] (file {name!r})" if isinstance(name, str) else f"images[{i}]"


def _columns(parsed, images, source, images_root, problems) -> MegaDetectorFile:
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
    species_of: dict[str, int] = {}
    descriptions = parsed.classification_category_descriptions
    for cat_id, name in parsed.classification_categories.items():
        readable = parse_taxonomy(name) if ";" in str(name) else str(name).strip()
        if not readable and str(cat_id) in descriptions:
            readable = parse_taxonomy(descriptions[str(cat_id)])
        species_of[str(cat_id)] = len(species_names)
        species_names.append(readable or f"class {cat_id}")

    # Pass 1, per image: keys, duplicates, failures, and one flat list of detections.
    records, keys, positions = keyed_records(images, source, images_root, "file", problems)
    image_ids: list[str] = keys
    record_of = positions  # image index -> position in the file, for messages
    failures = {i: rec.failure or "no detections and no failure reason"
                for i, rec in enumerate(records) if rec.detections is None}
    counts = [len(rec.detections) if rec.detections is not None else 0 for rec in records]
    flat: list[_Detection] = list(chain.from_iterable(rec.detections for rec in records if rec.detections))
    del records

    # Pass 2, per detection, as whole columns: list comprehensions and numpy, no per-row branches.
    n_det = len(flat)
    owner = np.repeat(np.arange(len(image_ids), dtype=np.int32), counts)
    starts = np.cumsum(counts) - np.asarray(counts, dtype=np.int64) if counts else np.zeros(0, np.int64)
    det_index = (np.arange(n_det) - np.repeat(starts, counts)).astype(np.int16)
    # Category ids become small codes in one pass; kinds and numbers come from lookup tables.
    code_of: dict[str | int, int] = {}
    species_of.update({int(k): v for k, v in species_of.items() if k.isdigit()})  # ids may be numbers
    # One pass over the detections fills four columns at once (a structured array):
    # at a million images every extra Python pass costs a few hundred milliseconds.
    columns = np.fromiter(_detection_rows(flat, code_of, species_of), count=n_det,
                          dtype=[("code", np.int16), ("conf", np.float64), ("species", np.int32), ("spconf", np.float32)])
    codes, conf = columns["code"], columns["conf"]
    species, species_conf = columns["species"].copy(), columns["spconf"].copy()
    ids = [str(c) for c in code_of]
    kind = np.array([kind_of.get(c, -1) for c in ids], dtype=np.int8)[codes] if ids else np.zeros(0, np.int8)
    category = np.array([int(c) if c.isdigit() else -1 for c in ids], dtype=np.int16)[codes] if ids else np.zeros(0, np.int16)
    bbox = np.fromiter(chain.from_iterable(d.bbox for d in flat), dtype=np.float64, count=4 * n_det).reshape(-1, 4)

    lo, hi = -BOX_TOLERANCE, 1 + BOX_TOLERANCE
    x, y, w, h = bbox.T
    bad_box = ~((x >= lo) & (x <= hi) & (y >= lo) & (y <= hi) & (w >= 0) & (w <= hi) & (h >= 0) & (h <= hi)
                & (x + w <= hi + BOX_TOLERANCE) & (y + h <= hi + BOX_TOLERANCE))
    bad_conf = ~((conf >= 0) & (conf <= 1))  # also catches NaN
    bad_kind = kind < 0
    bad = bad_kind | bad_box | bad_conf
    for d in np.flatnonzero(species == -2):  # unknown class id: keep the detection, drop the species
        t = _top(flat[d].classifications)
        problems.append(RecordProblem(source, _where(record_of[owner[d]], image_ids[owner[d]]),
                                      "unknown classification category",
                                      f"detections[{det_index[d]}] class {t[0]!r}; detection kept without species"))
        species[d] = -1
        species_conf[d] = 0
    del flat
    if bad.any():
        # A bad detection drops its whole image: keeping the rest could hide a person.
        bad_images = np.unique(owner[bad])
        for img in bad_images:
            d = int(np.flatnonzero(bad & (owner == img))[0])
            j = int(det_index[d])
            if bad_kind[d]:
                reason, detail = "unknown detection category", (f"detections[{j}] category {ids[codes[d]]!r} "
                                                                f"is not in detection_categories")
            elif bad_conf[d]:
                reason, detail = "confidence outside [0,1]", f"detections[{j}] conf {conf[d]}"
            else:
                reason, detail = "bbox outside [0,1]", (f"detections[{j}] bbox {bbox[d].round(4).tolist()}; boxes must be "
                                                       f"normalised x_min,y_min,width,height")
            problems.append(RecordProblem(source, _where(record_of[img], image_ids[img]), reason, detail + "; image skipped"))
        keep_image = np.ones(len(image_ids), dtype=bool)
        keep_image[bad_images] = False
        new_index = np.cumsum(keep_image) - 1
        keep = keep_image[owner]
        owner = new_index[owner[keep]].astype(np.int32)
        kind, category, conf, bbox = kind[keep], category[keep], conf[keep], bbox[keep]
        species, species_conf, det_index = species[keep], species_conf[keep], det_index[keep]
        failures = {int(new_index[i]): text for i, text in failures.items() if keep_image[i]}
        image_ids = [k for k, ok in zip(image_ids, keep_image) if ok]

    detections = Detections(
        image=owner, kind=kind, category=category, conf=conf.astype(np.float32),
        bbox=np.clip(bbox, 0.0, 1.0).astype(np.float32), species=species, species_conf=species_conf,
        det_index=det_index,
    )
    return MegaDetectorFile(
        source=source, format_version=version, image_ids=image_ids, failures=failures,
        detections=detections, species_names=species_names,
        detection_categories={str(k): str(v) for k, v in parsed.detection_categories.items()},
        info=info, problems=problems, notes=notes,
    )


def _top(classifications: list) -> tuple:
    """The best (class id, score); MegaDetector usually sorts them, but does not promise to."""
    return classifications[0] if len(classifications) == 1 else max(classifications, key=itemgetter(1))


def _detection_rows(flat: list, code_of: dict, species_of: dict):
    """(category code, confidence, species index, species score) per detection; -2: unknown class."""
    setdefault, get = code_of.setdefault, species_of.get
    for d in flat:
        c = d.classifications
        code = setdefault(d.category, len(code_of))
        if not c:
            yield code, d.conf, -1, 0.0
        else:
            top = c[0] if len(c) == 1 else max(c, key=itemgetter(1))
            yield code, d.conf, get(top[0], -2), top[1]
