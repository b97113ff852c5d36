"""MegaDetector batch output (format 1.0 to 1.6) into columnar arrays.

A collection can hold millions of images, so detections are kept as numpy columns rather
than a dict per detection, and the decoded file is dropped as soon as the columns exist.
Boxes are MegaDetector's: ``[x_min, y_min, width, height]``, normalised to [0, 1] on the
EXIF-upright image.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np

from .common import InputFormatError, RecordProblem, decode_json, image_key
from .speciesnet import parse_taxonomy

KIND_ANIMAL, KIND_PERSON, KIND_VEHICLE, KIND_OTHER = 0, 1, 2, 3
KIND_NAMES = ("animal", "person", "vehicle", "other")
_KIND_BY_NAME = {"animal": KIND_ANIMAL, "person": KIND_PERSON, "human": KIND_PERSON, "vehicle": KIND_VEHICLE}
KNOWN_FORMAT_VERSIONS = ("1.0", "1.1", "1.2", "1.3", "1.4", "1.5", "1.6")
BOX_TOLERANCE = 1e-3  # rounding in writers puts edges a hair outside [0, 1]


class _Detection(msgspec.Struct, gc=False):
    category: str | int
    conf: float
    bbox: list[float]
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
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read the MegaDetector file ({exc.strerror}); check the path") from None
    return parse_megadetector(data, str(path), images_root)


def parse_megadetector(data: bytes, source: str, images_root: str | Path | None = None) -> MegaDetectorFile:
    """Parse MegaDetector JSON bytes.

    The fast path decodes straight into typed structs. A file with any mistyped record
    falls back to a loose decode that converts record by record, so one bad record is
    counted and skipped instead of failing the file.
    """
    problems: list[RecordProblem] = []
    try:
        parsed = decode_json(data, source, "MegaDetector", type=_TypedFile)
        images = parsed.images
    except msgspec.ValidationError as exc:
        if "$.images[" not in str(exc):
            raise InputFormatError(_whole_file_hint(source, data, exc)) from None
        parsed = decode_json(data, source, "MegaDetector", type=_LooseFile)
        images = []
        for i, raw in enumerate(parsed.images):
            try:
                images.append(msgspec.convert(raw, _Image))
            except msgspec.ValidationError as err:
                name = raw.get("file") if isinstance(raw, dict) else None
                problems.append(RecordProblem(source, _where(i, name), "malformed image record", str(err)))
                images.append(None)
        parsed.images = []
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

    image_ids: list[str] = []
    seen: dict[str, int] = {}
    failures: dict[int, str] = {}
    d_img, d_kind, d_cat, d_conf, d_box, d_sp, d_spc, d_idx = [], [], [], [], [], [], [], []
    lo, hi = -BOX_TOLERANCE, 1 + BOX_TOLERANCE

    for i, rec in enumerate(images):
        if rec is None:
            continue
        path = rec.file
        try:
            key = image_key(path, images_root)
        except ValueError as exc:
            problems.append(RecordProblem(source, _where(i, path), "bad path", str(exc)))
            continue
        if key in seen:
            problems.append(RecordProblem(source, _where(i, path), "duplicate file entry",
                                          f"first at images[{seen[key]}]; this one skipped"))
            continue
        dets = rec.detections
        if dets is None:
            seen[key] = i
            failures[len(image_ids)] = rec.failure or "no detections and no failure reason"
            image_ids.append(key)
            continue
        rows = []
        bad = None
        for j, det in enumerate(dets):
            cat = str(det.category)
            kind = kind_of.get(cat)
            if kind is None:
                bad = ("unknown detection category", f"detections[{j}] category {cat!r} is not in detection_categories")
                break
            box = det.bbox
            if len(box) != 4:
                bad = ("malformed bbox", f"detections[{j}] bbox has {len(box)} numbers, expected 4")
                break
            x, y, w, h = box
            if not (lo <= x <= hi and lo <= y <= hi and 0 <= w <= hi and 0 <= h <= hi
                    and x + w <= hi + BOX_TOLERANCE and y + h <= hi + BOX_TOLERANCE):
                bad = ("bbox outside [0,1]", f"detections[{j}] bbox {box}; boxes must be normalised x_min,y_min,width,height")
                break
            conf = det.conf
            if not 0.0 <= conf <= 1.0:  # also false for NaN
                bad = ("confidence outside [0,1]", f"detections[{j}] conf {conf}")
                break
            sp, spc = -1, 0.0
            if det.classifications:
                top = max(det.classifications, key=lambda c: c[1])
                sp = species_of.get(str(top[0]), -1)
                if sp < 0:
                    problems.append(RecordProblem(source, _where(i, path), "unknown classification category",
                                                  f"detections[{j}] class {top[0]!r}; detection kept without species"))
                else:
                    spc = top[1]
            rows.append((kind, int(cat) if cat.isdigit() else -1, conf, x, y, w, h, sp, spc, j))
        if bad is not None:
            # The whole image is skipped: keeping it without the bad box could hide a person.
            problems.append(RecordProblem(source, _where(i, path), bad[0], bad[1] + "; image skipped"))
            continue
        seen[key] = i
        idx = len(image_ids)
        image_ids.append(key)
        for kind, cat, conf, x, y, w, h, sp, spc, j in rows:
            d_img.append(idx)
            d_kind.append(kind)
            d_cat.append(cat)
            d_conf.append(conf)
            d_box.append((x, y, w, h))
            d_sp.append(sp)
            d_spc.append(spc)
            d_idx.append(j)

    detections = Detections(
        image=np.asarray(d_img, dtype=np.int32),
        kind=np.asarray(d_kind, dtype=np.int8),
        category=np.asarray(d_cat, dtype=np.int16),
        conf=np.asarray(d_conf, dtype=np.float32),
        bbox=np.clip(np.asarray(d_box, dtype=np.float32).reshape(-1, 4), 0.0, 1.0),
        species=np.asarray(d_sp, dtype=np.int32),
        species_conf=np.asarray(d_spc, dtype=np.float32),
        det_index=np.asarray(d_idx, dtype=np.int16),
    )
    return MegaDetectorFile(
        source=source, format_version=version, image_ids=image_ids, failures=failures,
        detections=detections, species_names=species_names,
        detection_categories={str(k): str(v) for k, v in parsed.detection_categories.items()},
        info=info, problems=problems, notes=notes,
    )

