"""`hitl export --format camtrap-dp`: the reviewed images as a Camtrap DP package, and `--update`:
the curators' verdicts written back into the package they came from.

``favorite`` is true for the hero set (by the export policy). An image with a person detected, or
with no detector record, is left out and named (:func:`hitl.store.detector.publishable`) unless
asked for; a person's image asked for has ``filePublic`` false. Observations are media-level: the
curator's boxes where one corrected them (``classificationMethod`` human, ``classifiedBy`` the curator), else the
detector's (machine, with its probability); an image selected from a package keeps that
package's own observations and media row, only ``favorite`` and ``mediaComments`` change.
"""
from __future__ import annotations

import hashlib
import json
import mimetypes
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

import sqlite_utils

from converters import camtrapdp as C
from converters.common import InputFormatError
from hitl.errors import HitlError
from hitl.files import copy_new, make_output_folder, refuse_inside, write_atomic
from hitl.publish.placing import place_images, write_own_files
from hitl.store import utc_now
from hitl.store.detector import publishable
from hitl.store.heroes import curator_opinions, latest_drawn, select_with_counts

BACKUP_SUFFIX = ".before-hero-hitl"


class Verdicts:
    """What the curators decided, per image: reviewed, hero (by the policy), comments, boxes."""

    def __init__(self, db: sqlite_utils.Database, policy: str, min_stars: float | None):
        self.opinions = curator_opinions(db)
        heroes, self.counts = select_with_counts(db, policy, min_stars)
        self.heroes = {h["image_id"] for h in heroes}

    def favorite(self, image_id: str) -> bool:
        return image_id in self.heroes

    def comments(self, image_id: str) -> str:
        return " | ".join(f"{o['curator']}: {o['comment']}" for o in self.opinions.get(image_id, []) if o["comment"])

    def corrected(self, image_id: str) -> tuple[str, list[dict]] | None:
        """The most recent curator who drew boxes, and those boxes."""
        latest = latest_drawn(self.opinions.get(image_id, []))
        return None if latest is None else (latest["curator"], latest["boxes"])


def update_package(db: sqlite_utils.Database, *, policy: str = "majority", min_stars: float | None = None,
                   threshold: float = 0.3, include_people: bool = False,
                   include_undetected: bool = False) -> dict[str, Any]:
    """Write ``favorite`` and ``mediaComments`` of the reviewed images back into the packages they
    were selected from; every other cell stays as it was. The rows of the images the publishing
    rule leaves out stay as they were too (``counts["left_out"]`` names them). The first update
    keeps the original ``media.csv`` beside it (suffix ``.before-hero-hitl``)."""
    verdicts = Verdicts(db, policy, min_stars)
    origin = {image_id: (package, media_id) for image_id, package, media_id in db.execute(
        "SELECT image_id, package, media_id FROM camtrap_media") if image_id in verdicts.opinions}
    rule = publishable(db, list(origin), threshold=threshold, include_people=include_people,
                       include_undetected=include_undetected)
    by_package: dict[str, dict[str, str]] = defaultdict(dict)  # package -> mediaID -> image_id
    for image_id, (package, media_id) in origin.items():
        if rule.allows(image_id):
            by_package[package][media_id] = image_id
    if not by_package:
        raise HitlError("no reviewed image came from a Camtrap DP package (select --camtrap-dp); "
                        "export --format camtrap-dp --out DIR writes a new package instead" if not origin else
                        f"no reviewed image to write back: {'; '.join(rule.lines())}")
    counts: dict[str, Any] = {"packages": [], "favorite": 0, "not_favorite": 0, "comments": 0,
                              **rule.counts(), "left_out": rule.lines()}
    for package, media in sorted(by_package.items()):
        path = _update_media(Path(package), media, verdicts, counts)
        counts["packages"].append(str(path))
    return counts


def _update_media(package: Path, media: dict[str, str], verdicts: Verdicts, counts: dict) -> Path:
    root, descriptor = C.read_descriptor(package)
    resource = next((r for r in descriptor["resources"] if isinstance(r, dict) and r.get("name") == "media"), {})
    if not isinstance(resource.get("path"), str):
        raise InputFormatError(f"{package}: the media resource must be one CSV file to be updated")
    path = root / resource["path"]
    raw = path.read_bytes()
    text = raw.decode("utf-8-sig")
    ending = "\r\n" if "\r\n" in text[:10000] else "\n"
    fields, rows = C.csv_rows(text)
    for name in ("favorite", "mediaComments"):
        if name not in fields:
            fields.append(name)
    for row in rows:
        image_id = media.get(row.get("mediaID") or "")
        if image_id is None:
            continue
        favorite = verdicts.favorite(image_id)
        row["favorite"] = "true" if favorite else "false"
        counts["favorite" if favorite else "not_favorite"] += 1
        comments = verdicts.comments(image_id)
        if comments:
            row["mediaComments"] = comments
            counts["comments"] += 1
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    if not os.path.lexists(backup):
        copy_new(path, backup)
    write_atomic(path, C.csv_text(fields, rows, ending))
    return path


def export_package(db: sqlite_utils.Database, out_dir: str | Path, *, policy: str = "majority",
                   min_stars: float | None = None, link: str = "copy", threshold: float = 0.3,
                   deployments_csv: str | Path | None = None, progress: bool | None = None,
                   include_people: bool = False, include_undetected: bool = False) -> dict[str, Any]:
    """A new Camtrap DP package of the reviewed images in ``out_dir``: the images under
    ``media/`` (copied or hard-linked), ``deployments.csv``, ``media.csv``, ``observations.csv``
    and ``datapackage.json``. Images from a package keep its deployments, media rows and
    metadata; others need ``deployments_csv`` (a Camtrap DP deployments table whose
    ``deploymentID``, ``locationID`` or ``locationName`` is each image's location). The images
    the publishing rule leaves out are named in ``counts["left_out"]``."""
    verdicts = Verdicts(db, policy, min_stars)
    reviewed = _reviewed(db, verdicts)
    rule = publishable(db, [i["image_id"] for i in reviewed], threshold=threshold, include_people=include_people,
                       include_undetected=include_undetected)
    images = [i for i in reviewed if rule.allows(i["image_id"])]
    if not images:
        raise HitlError(f"no reviewed image to export: {'; '.join(rule.lines())}" if reviewed else
                        "no reviewed image to export: rate some in Label Studio or Labelme first")
    sources = _Sources(db, images, deployments_csv)
    counts: dict[str, Any] = {"reviewed": len(reviewed), "favorite": 0, "not_public": 0, "exported": 0,
                              "unchanged": 0, "conflicts": [], "missing_files": 0, "missing": [],
                              "hardlink_fallbacks": 0, "failed": [], "notes": [], **rule.counts(),
                              "left_out": rule.lines()}
    # Camtrap DP requires every media's deployment and timestamp: an image without is left out, counted
    usable = [i for i in images if i["image_id"] in sources.origin or (i.get("datetime") and i.get("location"))]
    counts["no_time_or_place"] = len(images) - len(usable)
    if counts["no_time_or_place"]:
        counts["notes"].append(f"{counts['no_time_or_place']} reviewed images have no capture time or location and "
                               f"are left out (Camtrap DP requires both): select them with --cct")
    refuse_inside(out_dir, [i.get("root") for i in usable])
    out = make_output_folder(out_dir).resolve()
    # an image from a package keeps its path in it; the others go under media/
    from_package = [i for i in usable if i["image_id"] in sources.origin]
    placed = place_images(from_package, out, "tree", link, counts, progress, confined=set(sources.origin))
    placed += [(image, f"media/{name}", target) for image, name, target in place_images(
        [i for i in usable if i["image_id"] not in sources.origin], out / "media", "tree", link, counts, progress,
        root=out)]
    media, observations = [], []
    for image, name, _target in placed:
        row = sources.media_row(image, name)
        row["favorite"] = verdicts.favorite(image["image_id"])
        # a person's image is here only when asked for (--include-people), and never public
        row["filePublic"] = False if image["image_id"] in rule.people else row.get("filePublic", True)
        row["mediaComments"] = verdicts.comments(image["image_id"]) or row.get("mediaComments")
        counts["favorite"] += row["favorite"] is True
        counts["not_public"] += row["filePublic"] in (False, "false")
        media.append(row)
        observations += sources.observations(image, row, verdicts.corrected(image["image_id"]), threshold)
    deployments = sources.deployments_used(media)
    taxa = sorted({o["scientificName"] for o in observations if o.get("scientificName")})
    curators = sorted({o["curator"] for image in images for o in verdicts.opinions[image["image_id"]]})
    files = {"datapackage.json": json.dumps(C.descriptor(sources.descriptor, utc_now(), deployments, taxa, curators),
                                            indent=2, ensure_ascii=False),
             "deployments.csv": C.csv_text(sources.deployment_fields, deployments),
             "media.csv": C.csv_text(C.MEDIA_FIELDS, media),
             "observations.csv": C.csv_text(C.OBSERVATION_FIELDS, observations)}
    counts["written"] = write_own_files(out, files, counts)
    counts["media"], counts["observations"], counts["deployments"] = len(media), len(observations), len(deployments)
    return counts


def _reviewed(db: sqlite_utils.Database, verdicts: Verdicts) -> list[dict]:
    rows = {r["image_id"]: r for r in db.query(
        "SELECT image_id, root, datetime, location, species, seq_id FROM images")}
    return [rows.get(image_id) or {"image_id": image_id, "root": None} for image_id in sorted(verdicts.opinions)]


class _Sources:
    """Where each reviewed image's deployment, media row and observations come from: the package
    it was selected from, or a deployments table the user gives for the others."""

    def __init__(self, db: sqlite_utils.Database, images: list[dict], deployments_csv: str | Path | None):
        self.origin = {r[0]: (r[1], r[2]) for r in db.execute("SELECT image_id, package, media_id FROM camtrap_media")}
        self.packages = {p: _Package(Path(p)) for p in sorted({self.origin[i["image_id"]][0] for i in images
                                                                 if i["image_id"] in self.origin})}
        self.descriptor = next(iter(self.packages.values())).descriptor if len(self.packages) == 1 else None
        self.by_location: dict[str, dict[str, str]] = {}
        header: list[str] = []
        if deployments_csv is not None:
            header, rows = _deployments_table(Path(deployments_csv))
            for row in rows:
                for key in ("locationName", "locationID", "deploymentID"):
                    if row.get(key):
                        self.by_location.setdefault(row[key], row)
        self.deployment_fields = list(dict.fromkeys(C.DEPLOYMENT_FIELDS + header + [
            f for p in self.packages.values() for f in p.deployment_fields]))
        self.detections = _detections(db)
        unplaced = sorted({i["location"] for i in images
                           if i["image_id"] not in self.origin and i.get("location") and i["location"] not in self.by_location})
        if unplaced:
            raise HitlError(f"reviewed images from a detector file have no deployment (Camtrap DP needs each camera's "
                            f"latitude, longitude and dates): pass --deployments deployments.csv, a Camtrap DP "
                            f"deployments table whose locationName or deploymentID is the location of each; "
                            f"missing: {', '.join(unplaced[:8])}")

    def _package(self, image_id: str) -> tuple[_Package, dict[str, str]] | None:
        if image_id not in self.origin:
            return None
        package_path, media_id = self.origin[image_id]
        package = self.packages[package_path]
        return package, package.media[media_id]

    def media_row(self, image: dict, file_path: str) -> dict[str, Any]:
        found = self._package(image["image_id"])
        if found is not None:
            return {**found[1], "filePath": file_path}
        deployment = self.by_location[image.get("location") or ""]
        return {"mediaID": _media_id(image["image_id"]), "deploymentID": deployment["deploymentID"],
                "timestamp": _timestamp(image.get("datetime"), deployment), "filePath": file_path, "filePublic": True,
                "fileName": Path(image["image_id"]).name, "fileMediatype": _mediatype(image["image_id"])}

    def observations(self, image: dict, media: dict[str, Any], corrected: tuple[str, list[dict]] | None,
                     threshold: float) -> list[dict[str, Any]]:
        found = self._package(image["image_id"])
        kept = found[0].observations.get(media["mediaID"], []) if found is not None else []
        if corrected is None and found is not None:
            return [dict(o) for o in kept]
        event = {"deploymentID": media["deploymentID"], "mediaID": media["mediaID"],
                 "eventID": next((o["eventID"] for o in kept if o.get("eventID")), None) or image.get("seq_id"),
                 "eventStart": media["timestamp"], "eventEnd": media["timestamp"], "observationLevel": "media"}
        species = image.get("species") if image.get("species") not in (None, "unidentified animal") else None
        if corrected is not None:
            curator, boxes = corrected
            others = [dict(o) for o in kept if o.get("observationType") != "animal"]
            return others + [{**event, "observationID": f"{media['mediaID']}_hitl{k}", "observationType": "animal",
                              "scientificName": _species_label(b.get("label")) or species, "count": 1,
                              **_bbox(b), "classificationMethod": "human", "classifiedBy": curator}
                             for k, b in enumerate(boxes, start=1)]
        rows = [{**event, "observationID": f"{media['mediaID']}_md{d['det_index']}", "observationType": kind,
                 "scientificName": (d["species"] or species) if kind == "animal" else None,
                 "count": 1, **_bbox(d), "classificationMethod": "machine", "classifiedBy": "MegaDetector",
                 "classificationProbability": round(d["conf"], 4)}
                for d in self.detections.get(image["image_id"], []) if d["conf"] >= threshold
                for kind in [{"animal": "animal", "person": "human", "vehicle": "vehicle"}.get(d["kind"])] if kind]
        return rows or [{**event, "observationID": f"{media['mediaID']}_blank", "observationType": "blank"}]

    def deployments_used(self, media: list[dict]) -> list[dict[str, str]]:
        wanted = {m["deploymentID"] for m in media}
        rows: dict[str, dict] = {}
        for package in self.packages.values():
            rows.update({k: v for k, v in package.deployments.items() if k in wanted})
        for row in self.by_location.values():
            if row["deploymentID"] in wanted:
                rows.setdefault(row["deploymentID"], row)
        return [rows[k] for k in sorted(rows)]


class _Package:
    """An input package's tables as written, for rows to carry over unchanged."""

    def __init__(self, path: Path):
        try:
            root, self.descriptor = C.read_descriptor(path)
            self.deployment_fields, deployments = C.read_table(root, self.descriptor, "deployments", str(path))
            media = C.read_table(root, self.descriptor, "media", str(path))[1]
            observations = C.read_table(root, self.descriptor, "observations", str(path))[1]
        except (InputFormatError, OSError) as exc:
            raise HitlError(f"the Camtrap DP package the images were selected from cannot be read ({exc}); "
                            f"put it back at {path} or select again") from None
        self.deployments = {d["deploymentID"]: d for d in deployments if d.get("deploymentID")}
        self.media = {m["mediaID"]: m for m in media if m.get("mediaID")}
        self.observations: dict[str, list[dict]] = defaultdict(list)
        for o in observations:
            if o.get("observationLevel") == "media" and o.get("mediaID"):
                self.observations[o["mediaID"]].append(o)


def _deployments_table(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        raise HitlError(f"--deployments {path} is not a file")
    header, rows = C.csv_rows(path.read_bytes().decode("utf-8-sig", errors="replace"))
    missing = [f for f in ("deploymentID", "latitude", "longitude", "deploymentStart", "deploymentEnd") if f not in header]
    if missing:
        raise HitlError(f"{path}: a Camtrap DP deployments table needs the columns {', '.join(missing)} too")
    return header, [{k: (v or "").strip() for k, v in row.items() if isinstance(k, str)} for row in rows]


def _detections(db: sqlite_utils.Database) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = defaultdict(list)
    for r in db.query("SELECT d.image_id, d.det_index, d.kind, d.conf, d.x, d.y, d.w, d.h, "
                      "COALESCE(d.species, i.species) AS species FROM detections d LEFT JOIN images i USING (image_id) "
                      "ORDER BY d.image_id, d.det_index"):
        found[r["image_id"]].append(dict(r))
    return found


def _bbox(box: dict) -> dict[str, float | None]:
    if not box.get("w") or not box.get("h"):
        return {}
    return {"bboxX": round(box["x"], 5), "bboxY": round(box["y"], 5), "bboxWidth": round(box["w"], 5),
            "bboxHeight": round(box["h"], 5)}


def _species_label(label: str | None) -> str | None:
    return label if label and label.lower() not in ("animal", "unidentified animal") else None


def _media_id(image_id: str) -> str:
    """A stable mediaID for an image that was not in a package."""
    return hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:12]


def _mediatype(image_id: str) -> str:
    return mimetypes.guess_type(image_id)[0] or "image/jpeg"


def _timestamp(when: str | None, deployment: dict[str, str]) -> str | None:
    """The capture time (as the camera wrote it) with the offset of the deployment's own times."""
    if not when:
        return None
    start = deployment.get("deploymentStart") or ""
    offset = "Z" if start.endswith("Z") else start[19:] if len(start) > 19 and start[19] in "+-" else "Z"
    return when[:19] + offset
