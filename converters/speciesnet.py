"""SpeciesNet prediction files -> one species prediction per image.

Two layouts exist in the wild:

* legacy (model 4.x, no ``info`` header): each image carries an image-level
  ``prediction`` / ``prediction_score`` / ``prediction_source``, the raw top-5
  ``classifications`` and the MegaDetector ``detections``;
* 5.x (``{"info": {"format_version": "20261015"}, ...}``): there is no image-level
  prediction any more; every classified detection carries its own
  ``raw_classifications`` (``classes``/``scores``) and ``processed_classification``
  (``class``/``score``/``source``, the ensemble's answer after geofencing and rollup).

For 5.x the image-level prediction is taken from the classified detection with the
highest ``conf`` (SpeciesNet writes detections in decreasing ``conf`` order, so
that is its first classified detection; for whole-image models it is the
category "0" pseudo-detection). That is the detection the 4.x ensemble used for
its single image-level prediction.

Pure: plain data in, plain data out.
"""
from __future__ import annotations

import math
import mmap
from dataclasses import dataclass
from pathlib import Path

from .common import InputFormatError, RecordProblem, image_key, read_input
from .records import Unreadable, decode_records
from .sniff import check_kind

WHAT = "SpeciesNet predictions"

# Scores are probabilities; a little slack absorbs float noise from summed rollups.
_SCORE_SLACK = 1e-6


@dataclass(frozen=True)
class SpeciesPrediction:
    """SpeciesNet's answer for one image."""

    image_id: str  # via common.image_key(filepath, images_root)
    species: str | None  # readable name (parse_taxonomy) of the image-level prediction
    score: float | None
    source: str | None  # prediction_source (4.x) or processed_classification.source (5.x)
    taxonomy: str | None  # the raw taxonomy string
    failures: tuple[str, ...]  # e.g. ("DETECTOR", "CLASSIFIER"); empty if none
    # Per detection, in file order: (readable species, score) from the 5.x
    # processed_classification, (None, None) for unclassified detections; () for 4.x.
    detection_species: tuple[tuple[str | None, float | None], ...]


@dataclass
class SpeciesNetFile:
    """A parsed predictions file: usable records plus the counted bad ones."""

    layout: str  # "4.x" or "5.x"
    predictions: dict[str, SpeciesPrediction]  # by image_id
    problems: list[RecordProblem]


def parse_taxonomy(label: str) -> str:
    """Turn a SpeciesNet label into a readable species name.

    ``uuid;class;order;family;genus;species;common name`` gives the common name when
    present, else the binomial "Genus species", else the most specific non-empty rank
    (capitalised, as scientific names are). Non-taxonomic labels such as
    ``f1856211-...;;;;;;blank`` give their common name ("blank", "human", "vehicle").
    A five-token ``class;order;family;genus;species`` string is read the same way. A
    label that is not a taxonomy string is returned trimmed, as given. Nothing usable
    gives "unknown".
    """
    text = label.strip()
    if ";" not in text:
        return text or "unknown"
    tokens = [token.strip() for token in text.split(";")]
    if len(tokens) == 7:
        common, ranks = tokens[6], tokens[1:6]
    elif len(tokens) == 5:
        common, ranks = "", tokens
    else:
        # Not the Wildlife Insights shape: the last non-empty token is the most
        # specific thing the label says.
        said = [token for token in tokens if token]
        return said[-1] if said else "unknown"
    if common:
        return common
    klass, order, family, genus, species = ranks
    if genus and species:
        return f"{_capitalise(genus)} {species}"
    if species:
        return species
    for rank in (genus, family, order, klass):
        if rank:
            return _capitalise(rank)
    return "unknown"


def load_speciesnet(path: str | Path, images_root: str | Path | None = None) -> SpeciesNetFile:
    """Read a SpeciesNet predictions file (either layout) from disk.

    Raises InputFormatError, naming the file, when the file as a whole is unusable.
    """
    data = read_input(path, WHAT)
    try:
        check_kind(data, str(path), "speciesnet")
        decoded = decode_records(data, path, WHAT, "predictions")
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    return parse_speciesnet(decoded, str(path), images_root)


def parse_speciesnet(data: object, source: str,
                     images_root: str | Path | None = None) -> SpeciesNetFile:
    """Parse already-decoded SpeciesNet JSON.

    Whole-file problems raise InputFormatError; each bad record becomes a
    RecordProblem and is skipped, the other records still load.
    """
    if not isinstance(data, dict):
        raise InputFormatError(
            f"{source}: the top level is {_json_type(data)}, expected a JSON object with a "
            f"'predictions' list; pass the predictions file written by SpeciesNet")
    records = data.get("predictions")
    if records is None:  # a file of another kind is told apart before (sniff.check_kind)
        raise InputFormatError(f"{source}: no 'predictions' list; pass the predictions file written by SpeciesNet")
    if not isinstance(records, list):
        raise InputFormatError(
            f"{source}: 'predictions' is {_json_type(records)}, expected a list of per-image "
            f"records; the file is damaged or not a SpeciesNet predictions file")
    layout = _detect_layout(data, records, source)

    predictions: dict[str, SpeciesPrediction] = {}
    problems: list[RecordProblem] = []
    seen: set[str] = set()
    for index, record in enumerate(records):
        where = f"predictions[{index}]"
        if isinstance(record, Unreadable):
            problems.append(RecordProblem(source, where, record.reason, record.detail))
            continue
        if not isinstance(record, dict):
            problems.append(RecordProblem(source, where, "record not an object",
                                          f"found {_json_type(record)}"))
            continue
        filepath = record.get("filepath")
        if isinstance(filepath, str):
            where = f"{where} (filepath '{filepath}')"
        try:
            image_id = _image_id(filepath, images_root)
            # The first record naming an image wins, valid or not: a second one means
            # merged or hand-edited files, and guessing which is right would be silent.
            if image_id in seen:
                raise _BadRecord("duplicate filepath",
                                 f"image '{image_id}' is already named by an earlier record")
            seen.add(image_id)
            if layout == "5.x":
                prediction = _parse_5x(record, image_id)
            else:
                prediction = _parse_4x(record, image_id)
        except _BadRecord as bad:
            problems.append(RecordProblem(source, where, bad.reason, bad.detail))
            continue
        predictions[image_id] = prediction
    return SpeciesNetFile(layout=layout, predictions=predictions, problems=problems)


# --------------------------------------------------------------------------- internals


class _BadRecord(Exception):
    """One record is unusable; carries the countable reason and the detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


def _detect_layout(data: dict, records: list, source: str) -> str:
    info = data.get("info")
    if info is not None and not isinstance(info, dict):
        raise InputFormatError(
            f"{source}: 'info' is {_json_type(info)}, expected an object with 'format_version'; "
            f"the file is damaged, re-run SpeciesNet or restore the file")
    if isinstance(info, dict) and "format_version" in info:
        return "5.x"
    # A 5.x file whose header was lost still shows per-detection classifications.
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("detections"), list):
            for det in record["detections"]:
                if isinstance(det, dict) and (
                        "processed_classification" in det or "raw_classifications" in det):
                    return "5.x"
    return "4.x"


def _parse_4x(record: dict, image_id: str) -> SpeciesPrediction:
    failures = _failures(record)
    _check_classifications(record.get("classifications"), "classifications")
    for j, det in enumerate(_detections(record)):
        _check_detection(det, j)
    taxonomy, score, source = _image_level(record)
    return SpeciesPrediction(
        image_id=image_id, species=_readable(taxonomy), score=score, source=source,
        taxonomy=taxonomy, failures=failures, detection_species=())


def _parse_5x(record: dict, image_id: str) -> SpeciesPrediction:
    failures = _failures(record)
    per_detection: list[tuple[str | None, float | None]] = []
    best: tuple[float, str, float, str | None] | None = None  # conf, class, score, source
    for j, det in enumerate(_detections(record)):
        conf = _check_detection(det, j)
        _check_classifications(det.get("raw_classifications"), f"detections[{j}].raw_classifications",
                               reason="bad raw_classifications")
        processed = _processed(det.get("processed_classification"), j)
        if processed is None:
            per_detection.append((None, None))
            continue
        label, score, source = processed
        per_detection.append((_readable(label), score))
        # Strictly greater: ties keep the earlier detection, as SpeciesNet orders them.
        if best is None or conf > best[0]:
            best = (conf, label, score, source)
    if "prediction" in record or "prediction_score" in record:
        # Tolerate a hybrid file that still carries the legacy image-level fields.
        taxonomy, score, source = _image_level(record)
    elif best is not None:
        _, taxonomy, score, source = best
    else:
        taxonomy, score, source = None, None, None
    return SpeciesPrediction(
        image_id=image_id, species=_readable(taxonomy), score=score, source=source,
        taxonomy=taxonomy, failures=failures, detection_species=tuple(per_detection))


def _image_id(filepath: object, images_root: str | Path | None) -> str:
    if filepath is None or (isinstance(filepath, str) and not filepath.strip()):
        raise _BadRecord("missing filepath", "every record needs the image's 'filepath'")
    if not isinstance(filepath, str):
        raise _BadRecord("bad filepath", f"filepath is {_json_type(filepath)}, expected a string")
    try:
        return image_key(filepath, images_root)
    except ValueError as exc:
        raise _BadRecord("bad filepath", str(exc)) from None


def _failures(record: dict) -> tuple[str, ...]:
    failures = record.get("failures")
    if failures is None:
        return ()
    if not isinstance(failures, list) or not all(isinstance(f, str) for f in failures):
        raise _BadRecord("bad failures", f"expected a list of strings, found {_short(failures)}")
    return tuple(failures)


def _detections(record: dict) -> list:
    detections = record.get("detections")
    if detections is None:
        return []
    if not isinstance(detections, list):
        raise _BadRecord("bad detections", f"expected a list, found {_json_type(detections)}")
    return detections


def _check_detection(det: object, j: int) -> float:
    """Validate one MegaDetector-style detection; return its conf."""
    where = f"detections[{j}]"
    if not isinstance(det, dict):
        raise _BadRecord("bad detection", f"{where} is {_json_type(det)}, expected an object")
    conf = det.get("conf")
    if not _is_number(conf):
        raise _BadRecord("bad detection", f"{where}.conf is {_short(conf)}, expected a number")
    if not _in_unit_range(conf):
        raise _BadRecord("bad detection", f"{where}.conf {conf} is outside [0, 1]")
    bbox = det.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise _BadRecord("bad detection",
                         f"{where}.bbox is {_short(bbox)}, expected [x, y, width, height] numbers")
    for key in ("category", "label"):
        if key in det and not isinstance(det[key], str):
            raise _BadRecord("bad detection", f"{where}.{key} is {_short(det[key])}, expected a string")
    return float(conf)


def _check_classifications(value: object, where: str, reason: str = "bad classifications") -> None:
    """Validate a {"classes": [...], "scores": [...]} block (absent is fine)."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise _BadRecord(reason, f"{where} is {_json_type(value)}, expected an object")
    classes, scores = value.get("classes"), value.get("scores")
    if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
        raise _BadRecord(reason, f"{where}.classes is {_short(classes)}, expected a list of strings")
    if not isinstance(scores, list) or not all(_is_number(s) for s in scores):
        raise _BadRecord(reason, f"{where}.scores is {_short(scores)}, expected a list of numbers")
    if len(classes) != len(scores):
        raise _BadRecord("classes/scores length mismatch",
                         f"{where} has {len(classes)} classes but {len(scores)} scores")
    for s in scores:
        if not _in_unit_range(s):
            raise _BadRecord("score out of range", f"{where}.scores has {s}, outside [0, 1]")


def _processed(value: object, j: int) -> tuple[str, float, str | None] | None:
    """Validate a 5.x processed_classification; return (class, score, source)."""
    if value is None:
        return None
    where = f"detections[{j}].processed_classification"
    if not isinstance(value, dict):
        raise _BadRecord("bad processed_classification", f"{where} is {_json_type(value)}, expected an object")
    label, score, source = value.get("class"), value.get("score"), value.get("source")
    if not isinstance(label, str) or not label.strip():
        raise _BadRecord("bad processed_classification", f"{where}.class is {_short(label)}, expected a label")
    if not _is_number(score):
        raise _BadRecord("bad processed_classification", f"{where}.score is {_short(score)}, expected a number")
    if not _in_unit_range(score):
        raise _BadRecord("score out of range", f"{where}.score {score} is outside [0, 1]")
    if source is not None and not isinstance(source, str):
        raise _BadRecord("bad processed_classification", f"{where}.source is {_short(source)}, expected a string")
    return label, float(score), source


def _image_level(record: dict) -> tuple[str | None, float | None, str | None]:
    """The legacy image-level prediction / prediction_score / prediction_source."""
    taxonomy = record.get("prediction")
    if taxonomy is not None and not isinstance(taxonomy, str):
        raise _BadRecord("bad prediction", f"prediction is {_short(taxonomy)}, expected a label string")
    score = record.get("prediction_score")
    if score is not None:
        if not _is_number(score):
            raise _BadRecord("bad prediction_score", f"prediction_score is {_short(score)}, expected a number")
        if not _in_unit_range(score):
            raise _BadRecord("score out of range", f"prediction_score {score} is outside [0, 1]")
        score = float(score)
    source = record.get("prediction_source")
    if source is not None and not isinstance(source, str):
        raise _BadRecord("bad prediction_source", f"prediction_source is {_short(source)}, expected a string")
    if taxonomy is not None and not taxonomy.strip():
        taxonomy = None  # an empty label says nothing; treat it as absent
    return taxonomy, score, source


def _readable(label: str | None) -> str | None:
    return None if label is None else parse_taxonomy(label)


def _capitalise(name: str) -> str:
    return name[:1].upper() + name[1:]


def _is_number(value: object) -> bool:
    # bool is an int subclass in Python, but true/false is never a score.
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True  # math.isfinite would overflow on huge ints; ints are finite anyway
    return isinstance(value, float) and math.isfinite(value)


def _in_unit_range(value: float) -> bool:
    return -_SCORE_SLACK <= value <= 1 + _SCORE_SLACK


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _short(value: object) -> str:
    """A value for a message: the JSON type plus a clipped rendering."""
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_json_type(value)} ({text})"
