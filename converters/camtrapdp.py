"""Camtrap DP (the TDWG camera-trap exchange standard, 1.0): a package in as detector records and
capture metadata, and the tables out. Pure: files in, plain data out; no database.

A package is ``datapackage.json`` naming three CSV resources: ``deployments`` (a camera at a
location for a time), ``media`` (one row per file: ``filePath`` relative to the package or a
URL) and ``observations`` (event-level, or media-level with a box in ``bboxX``/``bboxY``/
``bboxWidth``/``bboxHeight``: normalised, top-left origin, as MegaDetector's). Reading maps
media-level observations onto the detector's columns so that selection treats a package as it
treats a MegaDetector file: ``animal`` with a box is an animal detection, ``human``/``vehicle``
the people rule, ``blank`` no animal.
"""
from __future__ import annotations

import csv
import io
import math
import mmap
from bisect import bisect_left, bisect_right
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from .cct import CCTMetadata, capture_hours
from .common import CSV_FIELD_LIMIT, Confined, InputFormatError, RecordProblem, decode_json, image_key, read_input
from .megadetector import KIND_ANIMAL, KIND_PERSON, KIND_VEHICLE, Detections, MegaDetectorFile
from .sniff import check_kind

PROFILE = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/camtrap-dp-profile.json"
SCHEMA = "https://raw.githubusercontent.com/tdwg/camtrap-dp/1.0.2/{}-table-schema.json"
TABLES = ("deployments", "media", "observations")
FORMAT = "camtrap-dp"
_KINDS = {"animal": KIND_ANIMAL, "human": KIND_PERSON, "vehicle": KIND_VEHICLE}
_BOX = ("bboxX", "bboxY", "bboxWidth", "bboxHeight")
_DESCRIPTOR = "Camtrap DP datapackage.json"


@dataclass
class CamtrapPackage:
    """A package read for selection: the media as a detector file and as capture metadata."""

    source: str  # the datapackage.json
    root: Path  # the package's folder: local filePaths are relative to it
    descriptor: dict
    detector: MegaDetectorFile  # image_ids are the media's filePaths
    metadata: CCTMetadata  # eventID as seq_id, the deployment's location, the media's timestamp
    media: dict[str, dict[str, str]]  # image_id -> its media row, as written
    deployments: dict[str, dict[str, str]]  # deploymentID -> its row
    remote: int = 0  # media that are URLs with no local file (counted, not read)
    problems: list[RecordProblem] = field(default_factory=list)
    # media someone or something classified (the others have no record: they may show anyone)
    classified: set[str] = field(default_factory=set)
    event_people: set[str] = field(default_factory=set)  # media of an event with a human observed at event level




def read_table(package: Path, descriptor: dict, name: str, source: str) -> tuple[list[str], list[dict[str, str]]]:
    """One CSV resource of a package: (its header, its rows as written)."""
    header, rows = _numbered_table(package, descriptor, name, source)
    return header, [row for _, row in rows]


def _numbered_table(package: Path, descriptor: dict, name: str,
                    source: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """read_table, each row with its line as a spreadsheet shows it."""
    resource = next((r for r in descriptor.get("resources") or [] if isinstance(r, dict) and r.get("name") == name), None)
    if resource is None:
        raise InputFormatError(f"{source}: the package has no {name!r} resource; a Camtrap DP package names "
                               f"{', '.join(TABLES)} in its 'resources'")
    paths = resource.get("path")
    paths = [paths] if isinstance(paths, str) else paths
    if not paths or not all(isinstance(p, str) for p in paths):
        raise InputFormatError(f"{source}: resource {name!r} has no 'path' to a CSV file")
    header: list[str] = []
    rows: list[dict[str, str]] = []
    for rel in paths:
        try:
            key = image_key(rel)
        except ValueError as exc:
            raise InputFormatError(f"{source}: resource {name!r}: {exc}") from None
        path = package / key
        if not path.is_file():
            raise InputFormatError(f"{source}: resource {name!r} names {rel!r}, which is not a file in {package}")
        if escape := Confined(package).escape(key):
            raise InputFormatError(f"{source}: resource {name!r} names {rel!r}, {escape}; a package's tables are "
                                   f"files inside it")
        data = read_input(path, f"Camtrap DP {name} table")
        try:
            text = bytes(data).decode("utf-8-sig", errors="replace")
        finally:
            if isinstance(data, mmap.mmap):
                data.close()
        names, table = csv_rows(text)
        header = header or names
        rows.extend({k: (v or "").strip() for k, v in row.items() if isinstance(k, str)} for row in table)
    return header, list(enumerate(rows, start=2))


def csv_rows(text: str) -> tuple[list[str], list[dict[str, str]]]:
    """A CSV table's header and rows (csv.DictReader's), cells of any length: the csv module refuses a
    cell over CSV_FIELD_LIMIT with an error that ends the reading, so its limit is lifted meanwhile."""
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        return list(reader.fieldnames or []), list(reader)
    finally:
        csv.field_size_limit(limit)


def _fitting(rows: list[tuple[int, dict[str, str]]], where: str,
             problems: list[RecordProblem]) -> list[tuple[int, dict[str, str]]]:
    """The rows whose every cell is at most CSV_FIELD_LIMIT characters; each other one a problem."""
    kept = []
    for n, row in rows:
        long = next((k for k, v in row.items() if len(v) > CSV_FIELD_LIMIT), None)
        if long is None:
            kept.append((n, row))
        else:
            problems.append(RecordProblem(where, f"line {n}", f"cell longer than {CSV_FIELD_LIMIT:,} characters",
                                          f"column {long!r} ({len(row[long]):,} characters); row skipped"))
    return kept


def read_descriptor(path: str | Path) -> tuple[Path, dict]:
    """The package's folder and its ``datapackage.json`` (a folder holding one is accepted too)."""
    path = Path(path)
    if path.is_dir():
        path = path / "datapackage.json"
    data = read_input(path, _DESCRIPTOR)
    try:
        check_kind(data, str(path), "camtrap-dp")
        descriptor = decode_json(data, path, _DESCRIPTOR)
    finally:
        if isinstance(data, mmap.mmap):
            data.close()
    if not isinstance(descriptor, dict) or not isinstance(descriptor.get("resources"), list):
        raise InputFormatError(f"{path}: not a data package (no 'resources' list); expected a Camtrap DP "
                               f"datapackage.json")
    return path.parent.resolve(), descriptor


def read_package(path: str | Path, media_root: str | Path | None = None) -> CamtrapPackage:
    """Read a package for selection. Bad rows are counted problems; a missing table raises.

    Media that are URLs are counted in ``remote`` and skipped, unless ``media_root`` (a folder
    inside the package) holds a file of the media's ``fileName``: its image_id is then that
    file's path relative to the package.
    """
    root, descriptor = read_descriptor(path)
    # absolute: the export finds the package again from wherever it runs
    source = str(root / ("datapackage.json" if Path(path).is_dir() else Path(path).name))
    problems: list[RecordProblem] = []
    tables = {name: _fitting(_numbered_table(root, descriptor, name, source)[1], f"{root.name}/{name}.csv", problems)
              for name in TABLES}
    deployments = {r["deploymentID"]: r for _, r in tables["deployments"] if r.get("deploymentID")}
    local = _media_root(root, media_root, source)
    media, by_media_id, remote = _media(tables["media"], root, local, deployments, source, problems)
    ids = list(media)
    detector = _detections(ids, by_media_id, tables["observations"], source, problems)
    events = _events([obs for _, obs in tables["observations"]], by_media_id)
    metadata = _metadata(ids, media, deployments, events, source)
    classified, event_people = _classified(media, by_media_id, [obs for _, obs in tables["observations"]], events)
    return CamtrapPackage(source, root, descriptor, detector, metadata, media, deployments, remote, problems,
                          classified, event_people)


def _media_root(root: Path, media_root, source: str) -> Path | None:
    if media_root is None:
        return None
    local = Path(media_root).resolve()
    if not local.is_dir():
        raise InputFormatError(f"--media-root {media_root} is not a folder")
    if local != root and root not in local.parents:
        raise InputFormatError(f"--media-root {media_root} is outside the package folder {root}: put the "
                               f"downloaded media in a folder inside it ({source} names its files from there)")
    return local


def _media(rows: list[tuple[int, dict[str, str]]], root: Path, local: Path | None, deployments: dict, source: str,
           problems: list[RecordProblem]) -> tuple[dict[str, dict], dict[str, str], int]:
    """The usable image media by image_id, each mediaID's image_id, and how many were remote.
    A filePath that leads out of the package (a link, or a linked folder on the way) is a problem."""
    media: dict[str, dict] = {}
    by_media_id: dict[str, str] = {}
    remote = 0
    where = f"{Path(source).parent.name}/media.csv"
    inside = Confined(root)
    for n, row in rows:
        record = f"line {n} (mediaID {row.get('mediaID')!r})"
        missing = [f for f in ("mediaID", "deploymentID", "filePath") if not row.get(f)]
        if missing:
            problems.append(RecordProblem(where, record, f"missing {' and '.join(missing)}"))
            continue
        if row.get("fileMediatype") and not row["fileMediatype"].startswith("image/"):
            problems.append(RecordProblem(where, record, "not an image", row["fileMediatype"]))
            continue
        if row["deploymentID"] not in deployments:
            problems.append(RecordProblem(where, record, "deploymentID not in deployments", row["deploymentID"]))
            continue
        path = row["filePath"]
        if path.startswith(("http://", "https://")):
            name = row.get("fileName") or ""
            found = local / name if local is not None and name and "/" not in name else None
            if found is None or not found.is_file():
                remote += 1
                continue
            path = found.relative_to(root).as_posix()
        try:
            key = image_key(path)
        except ValueError as exc:
            problems.append(RecordProblem(where, record, "bad filePath", str(exc)))
            continue
        if escape := inside.escape(key):
            problems.append(RecordProblem(where, record, "file outside the package", f"{key}: {escape}"))
            continue
        if key in media:
            problems.append(RecordProblem(where, record, "filePath listed twice", key))
            continue
        if row["mediaID"] in by_media_id:
            problems.append(RecordProblem(where, record, "mediaID listed twice"))
            continue
        media[key] = row
        by_media_id[row["mediaID"]] = key
    return media, by_media_id, remote


def _box(row: dict[str, str]) -> tuple[float, float, float, float] | None | str:
    """The observation's box, None without one, or what is wrong with it."""
    values = [row.get(k, "") for k in _BOX]
    if not any(values):
        return None
    try:
        x, y, w, h = (float(v) for v in values)
    except ValueError:
        return "bbox not a number"
    if not all(math.isfinite(v) for v in (x, y, w, h)) or w <= 0 or h <= 0:
        return "bbox empty or not finite"
    if x < 0 or y < 0 or x + w > 1 + 1e-6 or y + h > 1 + 1e-6:
        return "bbox outside [0,1]"
    return x, y, w, h


def _detections(ids: list[str], by_media_id: dict[str, str], observations: list[tuple[int, dict[str, str]]],
                source: str, problems: list[RecordProblem]) -> MegaDetectorFile:
    """Media-level observations as detector columns, one image per usable media row."""
    index = {key: i for i, key in enumerate(ids)}
    where = f"{Path(source).parent.name}/observations.csv"
    species_names: dict[str, int] = {}
    rows: list[tuple] = []
    boxless: dict[int, int] = {}
    for n, obs in observations:
        key = by_media_id.get(obs.get("mediaID", ""))
        if obs.get("observationLevel") != "media" or key is None:
            continue  # event-level, or of a media that is not read (remote, video, bad)
        record = f"line {n} (observationID {obs.get('observationID')!r})"
        kind = _KINDS.get(obs.get("observationType", ""))
        if kind is None:
            continue  # blank, unknown, unclassified: no detection
        box = _box(obs)
        if isinstance(box, str):
            problems.append(RecordProblem(where, record, box, ", ".join(obs.get(k, "") for k in _BOX)))
            continue
        if box is None and kind == KIND_ANIMAL:
            boxless[index[key]] = boxless.get(index[key], 0) + 1
            continue
        conf = _probability(obs)
        name = obs.get("scientificName") or ""
        sp = species_names.setdefault(name, len(species_names)) if name and kind == KIND_ANIMAL else -1
        rows.append((index[key], kind, conf, box or (0.0, 0.0, 0.0, 0.0), sp, conf if sp >= 0 else np.nan))
    rows.sort(key=lambda r: r[0])  # the detector's layout: each image's rows together
    image = np.array([r[0] for r in rows], np.int32)
    det_index = np.zeros(len(rows), np.int16)
    if len(rows):
        starts = np.r_[0, np.flatnonzero(np.diff(image)) + 1]
        det_index = (np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))).astype(np.int16)
    detections = Detections(
        image=image, kind=np.array([r[1] for r in rows], np.int8), category=np.array([r[1] + 1 for r in rows], np.int16),
        conf=np.array([r[2] for r in rows], np.float32),
        bbox=np.array([r[3] for r in rows], np.float32).reshape(-1, 4),
        species=np.array([r[4] for r in rows], np.int32), species_conf=np.array([r[5] for r in rows], np.float32),
        det_index=det_index)
    with_box = set(image[detections.kind == KIND_ANIMAL].tolist())
    unusable = {i: "animal observed without a box (its size is unknown)" for i in boxless if i not in with_box}
    return MegaDetectorFile(source=source, format_version=FORMAT, image_ids=ids, failures={}, detections=detections,
                            species_names=list(species_names), detection_categories={"1": "animal", "2": "person",
                                                                                      "3": "vehicle"},
                            info={"format": FORMAT}, unusable=unusable)


def _probability(obs: dict[str, str]) -> float:
    """classificationProbability where given; a human's classification counts as certain."""
    text = obs.get("classificationProbability", "")
    try:
        p = float(text)
    except ValueError:
        return 1.0
    return min(max(p, 0.0), 1.0) if math.isfinite(p) else 1.0


def _events(observations: list[dict[str, str]], by_media_id: dict[str, str]) -> dict[str, str]:
    """Each image's eventID, from its media-level observations."""
    events: dict[str, str] = {}
    for obs in observations:
        key = by_media_id.get(obs.get("mediaID", ""))
        if key is not None and obs.get("eventID"):
            events.setdefault(key, obs["eventID"])
    return events


def _classified(media: dict[str, dict], by_media_id: dict[str, str], observations: list[dict[str, str]],
                events: dict[str, str]) -> tuple[set[str], set[str]]:
    """The media someone or something classified: with a media-level observation, or in an event
    with an event-level one (its eventID, or its deployment and time span), ``unclassified`` ones
    aside; and the media of an event with a human observed at event level."""
    classified = {by_media_id[o["mediaID"]] for o in observations if o.get("observationLevel") == "media"
                  and o.get("mediaID") in by_media_id and o.get("observationType") != "unclassified"}
    by_event: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, event in events.items():
        by_event[(media[key]["deploymentID"], event)].append(key)
    spans: dict[str, list[tuple[float, str]]] = defaultdict(list)  # deploymentID -> (time, image_id), by time
    for key, row in media.items():
        when = _seconds(row.get("timestamp"))
        if when is not None:
            spans[row["deploymentID"]].append((when, key))
    for rows in spans.values():
        rows.sort()
    times = {d: [t for t, _ in rows] for d, rows in spans.items()}
    people: set[str] = set()
    for o in observations:
        if o.get("observationLevel") != "event" or o.get("observationType") == "unclassified":
            continue
        deployment = o.get("deploymentID") or ""
        keys = set(by_event.get((deployment, o.get("eventID") or ""), ()))
        start, end = _seconds(o.get("eventStart")), _seconds(o.get("eventEnd"))
        if start is not None and end is not None and deployment in times:
            found = times[deployment]
            keys.update(k for _, k in spans[deployment][bisect_left(found, start):bisect_right(found, end)])
        classified |= keys
        if o.get("observationType") == "human":
            people |= keys
    return classified, people


def _seconds(text: str | None) -> float | None:
    """An ISO 8601 time as seconds since the epoch (one without an offset read as UTC), or None."""
    try:
        when = datetime.fromisoformat(text or "")
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def location_of(deployment: dict[str, str]) -> str | None:
    """The readable location of a deployment: its locationName, else its locationID, else its ID."""
    return deployment.get("locationName") or deployment.get("locationID") or deployment.get("deploymentID") or None


def _metadata(ids: list[str], media: dict[str, dict], deployments: dict, events: dict[str, str],
              source: str) -> CCTMetadata:
    """Capture metadata as the COCO Camera Traps reader gives it: eventID as the sequence (within
    its deployment), the deployment's location, the media's timestamp as written."""
    seq_id = [f"{media[k]['deploymentID']}/{events[k]}" if k in events else None for k in ids]
    when = [media[k].get("timestamp") or None for k in ids]
    codes: dict[str, int] = {}
    seq_group = np.array([-1 if s is None else codes.setdefault(s, len(codes)) for s in seq_id], np.int64)
    n = len(ids)
    return CCTMetadata(source=source, image_ids=ids, seq_id=seq_id, frame_num=np.full(n, -1, np.int32),
                       seq_num_frames=np.full(n, -1, np.int32),
                       location=[location_of(deployments[media[k]["deploymentID"]]) for k in ids], datetime=when,
                       width=np.full(n, -1, np.int32), height=np.full(n, -1, np.int32), seq_group=seq_group,
                       hour=capture_hours(when).astype(np.int16), only_rows=np.arange(n, dtype=np.int64))


# ---- out: the tables of a package --------------------------------------------------------------

MEDIA_FIELDS = ["mediaID", "deploymentID", "captureMethod", "timestamp", "filePath", "filePublic", "fileName",
                "fileMediatype", "exifData", "favorite", "mediaComments"]
OBSERVATION_FIELDS = ["observationID", "deploymentID", "mediaID", "eventID", "eventStart", "eventEnd",
                      "observationLevel", "observationType", "cameraSetupType", "scientificName", "count",
                      "lifeStage", "sex", "behavior", "individualID", "individualPositionRadius",
                      "individualPositionAngle", "individualSpeed", "bboxX", "bboxY", "bboxWidth", "bboxHeight",
                      "classificationMethod", "classifiedBy", "classificationTimestamp",
                      "classificationProbability", "observationTags", "observationComments"]
DEPLOYMENT_FIELDS = ["deploymentID", "locationID", "locationName", "latitude", "longitude", "coordinateUncertainty",
                     "deploymentStart", "deploymentEnd", "setupBy", "cameraID", "cameraModel", "cameraDelay",
                     "cameraHeight", "cameraDepth", "cameraTilt", "cameraHeading", "detectionDistance",
                     "timestampIssues", "baitUse", "featureType", "habitat", "deploymentGroups", "deploymentTags",
                     "deploymentComments"]


def csv_text(fields: list[str], rows: list[dict[str, Any]], lineterminator: str = "\n") -> str:
    """A table as CSV: the fields in order, missing values empty, booleans as true/false."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore", lineterminator=lineterminator)
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def descriptor(source: dict | None, created: str, deployments: list[dict[str, str]], taxa: list[str],
               contributors: list[str]) -> dict[str, Any]:
    """``datapackage.json`` for the three tables: the input package's metadata where there was
    one (its own resources replaced), else what the profile requires, from the data."""
    base = {k: v for k, v in (source or {}).items() if k != "resources"}
    resources = [{"name": name, "path": f"{name}.csv", "profile": "tabular-data-resource", "format": "csv",
                  "mediatype": "text/csv", "encoding": "utf-8", "schema": SCHEMA.format(name)} for name in TABLES]
    lat = [float(d["latitude"]) for d in deployments if _number(d.get("latitude"))]
    lon = [float(d["longitude"]) for d in deployments if _number(d.get("longitude"))]
    dates = sorted(d[k][:10] for d in deployments for k in ("deploymentStart", "deploymentEnd") if d.get(k))
    generated = {
        "profile": PROFILE, "created": created,
        "contributors": [{"title": name, "role": "contributor"} for name in contributors] or [{"title": "hero-hitl"}],
        "project": {"title": "Hero images curated with hero-hitl", "samplingDesign": "opportunistic",
                    "captureMethod": ["activityDetection"], "individualAnimals": False, "observationLevel": ["media"]},
        "spatial": ({"type": "Polygon", "coordinates": [[[min(lon), min(lat)], [max(lon), min(lat)], [max(lon), max(lat)],
                                                         [min(lon), max(lat)], [min(lon), min(lat)]]]}
                    if lat and lon else None),
        "temporal": {"start": dates[0], "end": dates[-1]} if dates else None,
        "taxonomic": [{"scientificName": name} for name in taxa],
    }
    out = {**{k: v for k, v in generated.items() if v is not None}, **base}
    out["profile"], out["created"] = PROFILE, created
    out["resources"] = resources + [r for r in (source or {}).get("resources", [])
                                    if isinstance(r, dict) and r.get("name") not in TABLES]
    return out


def _number(text: Any) -> bool:
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False
