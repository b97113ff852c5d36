"""Every eligible image of a collection, read as `select` reads it, without selecting: the same
readers (MegaDetector or Camtrap DP, SpeciesNet), the same threshold, the same people rule, and
nothing written. For the steps that work on a whole collection (`hitl embed --md`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from converters.camtrapdp import read_package
from converters.megadetector import KIND_ANIMAL, load_megadetector
from hitl.errors import HitlError
from hitl.select import strata
from hitl.select.output import SelectionSummary
from hitl.select.records import FileRecord
from hitl.select.run import _count_problems, _eligible, _load_speciesnet, _Run

Box = tuple[float, float, float, float]


@dataclass
class Collection:
    """The eligible images of one collection: ids relative to ``root``, each one's animal boxes at the
    threshold, and what was left out and why (the counts of `select`'s summary)."""

    root: str
    image_ids: list[str]
    boxes: dict[str, list[Box]] = field(default_factory=dict)
    read: int = 0
    excluded: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def eligible_images(db: sqlite_utils.Database, settings: dict[str, Any], *, md: str | Path | None = None,
                    images_root: str | Path | None = None, camtrap_dp: str | Path | None = None,
                    media_root: str | Path | None = None, speciesnet: str | Path | None = None) -> Collection:
    """Read the detector file (``md`` with ``images_root``, or a Camtrap DP package) and return every image
    `select` would consider, the people rule and the threshold of ``settings["select"]`` applied."""
    cfg = settings["select"]
    if (md is None) == (camtrap_dp is None):
        raise HitlError("give the detections as --md (MegaDetector) or --camtrap-dp (a Camtrap DP package), one of them")
    package = None
    if camtrap_dp is not None:
        package = read_package(camtrap_dp, media_root)
        root, detector = package.root, package.detector
    elif images_root is None:
        raise HitlError("--images is needed with --md: the folder MegaDetector's 'file' paths are relative to")
    else:
        root = Path(images_root).resolve()
        detector = load_megadetector(md, root)
    summary = SelectionSummary(run_id=0, images_read=len(detector.image_ids), eligible=0, sequences=0, selected=0,
                               requested=0)
    _count_problems(summary, detector.problems + (package.problems if package is not None else []))
    det = detector.detections
    feats = strata.image_features(det.image, det.kind, det.conf, det.bbox, det.species, len(detector.image_ids),
                                  cfg["threshold"], cfg["edge_margin"], cfg["data_strip"])
    sn = _load_speciesnet(speciesnet, root, detector, summary, lambda _msg: None)
    run = _Run(db, root, 1, cfg, False, summary, detector, feats, sn, None, lambda _msg: None, False, package=package)
    run.records = [FileRecord(str(detector.source))] + ([FileRecord(str(speciesnet))] if speciesnet else [])
    ok, _, _ = _eligible(run)
    for reason in detector.failures.values():
        summary.excluded[f"detector failure: {reason}"] += 1
    animal = (det.kind == KIND_ANIMAL) & (det.conf >= cfg["threshold"]) & ok[det.image]
    boxes: dict[str, list[Box]] = {}
    for image, bbox in zip(det.image[animal].tolist(), det.bbox[animal].tolist()):
        boxes.setdefault(detector.image_ids[image], []).append(tuple(bbox))
    ids = [detector.image_ids[i] for i in np.flatnonzero(ok).tolist()]
    return Collection(str(root), ids, boxes, len(detector.image_ids), dict(summary.excluded),
                      summary.problem_examples)
