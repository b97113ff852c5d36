"""Who may be a candidate, and every eligible image of a collection read as `select` reads it.

The steps `select` and the whole-collection stages (`hitl embed --md`) share: the inputs of one
run (:class:`SelectionRun`), the eligibility mask (the threshold, the people rule, failures,
images already taken), SpeciesNet's answers, and the counted problems. :func:`eligible_images`
applies them without selecting: the same readers, the same threshold, the same people rule,
and nothing written.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import sqlite_utils

from converters.camtrapdp import CamtrapPackage, read_package
from converters.cct import CCTMetadata
from converters.common import RecordProblem
from converters.megadetector import KIND_ANIMAL, MegaDetectorFile, load_megadetector
from converters.speciesnet import SpeciesNetFile, load_speciesnet
from hitl.config import SelectSettings, Settings
from hitl.errors import HitlError
from hitl.select import strata
from hitl.select.checks import FileChecks
from hitl.select.output import SelectionSummary
from hitl.select.records import FileRecord, in_people_events, person_flags

NON_ANIMAL_LABELS = {"blank", "human", "vehicle", "animal", "no cv result", "unknown"}
Box = tuple[float, float, float, float]


class Ranker(Protocol):
    """Ranks images never seen by a curator on their detector record, and their image vectors
    where they have one (the learned rater)."""

    n_decisions: int  # how many curator decisions it learned from
    model: str | None  # whose image vectors it reads (None: none)
    counts: dict[str, int]  # of the images ranked last: how many with a vector, how many without

    def p_hero(self, columns: dict[str, np.ndarray], species: list[str | None], locations: list[str | None],
               image_ids: list[str] | None = None, root: str | None = None) -> np.ndarray: ...


@dataclass
class SelectionRun:
    """What every step of one selection needs: the inputs, the settings and the summary."""

    db: sqlite_utils.Database
    root: Path
    n: int
    cfg: SelectSettings
    add: bool
    summary: SelectionSummary
    md: MegaDetectorFile
    feats: strata.ImageFeatures
    sn: SpeciesNetFile | None
    cct: CCTMetadata | None
    echo: Callable[[str], None]
    progress: bool | None
    ranker: Callable[[], Ranker] | None = None  # builds the learned rater that ranks instead of the heuristic
    package: CamtrapPackage | None = None  # when the input is a Camtrap DP package
    files: FileChecks | None = None  # the picks' file checks
    # what the input files said of every image, selected or not: the detector file's first
    records: list[FileRecord] = dataclasses.field(default_factory=list)
    only: set[str] | None = None  # --only: the images that may be chosen (None: any)


def eligible_mask(run: SelectionRun) -> tuple[np.ndarray, dict[int, tuple[str, float | None]], set[str]]:
    """Who may be a candidate: the mask, SpeciesNet's animal answers, the sequences already taken."""
    md, feats, cfg, summary = run.md, run.feats, run.cfg, run.summary
    n_img = len(md.image_ids)
    ok = np.ones(n_img, dtype=bool)
    ok[list(md.failures)] = False
    for i, reason in md.unusable.items():
        if ok[i]:
            ok[i] = False
            summary.excluded[reason] += 1
    run.records[0].people.update(person_flags(md, cfg.threshold, run.package))  # stored, selected or not
    if not cfg.include_people:
        exclude(summary, ok, feats.n_people > 0, "person above threshold")
        exclude(summary, ok, feats.n_vehicles > 0, "vehicle above threshold")
        exclude(summary, ok, in_people_events(md, run.package), "person (Camtrap DP event)")
    if run.only is not None:
        listed = np.fromiter((image_id in run.only for image_id in md.image_ids), bool, len(md.image_ids))
        exclude(summary, ok, ~listed, "not listed in --only")
    exclude(summary, ok, feats.n_animals == 0, "no animal above threshold")
    exclude(summary, ok, feats.area < cfg.min_animal_area, "animal too small")

    sn_species: dict[int, tuple[str, float | None]] = {}
    if run.sn is not None:
        people = np.zeros(n_img, dtype=bool)
        vehicles = np.zeros(n_img, dtype=bool)
        index = md.index()
        for key, pred in run.sn.predictions.items():
            if pred.species == "human":  # flagged even when the MegaDetector file lacks the image
                run.records[1].people[key] = (pred.score, "speciesnet")
            i = index.get(key)
            if i is None or pred.species is None:
                continue
            if pred.species == "human":
                people[i] = True
            elif pred.species == "vehicle":
                vehicles[i] = True
            elif pred.species not in NON_ANIMAL_LABELS:
                sn_species[i] = (pred.species, pred.score)
        if not cfg.include_people:
            exclude(summary, ok, people, "person (SpeciesNet)")
            exclude(summary, ok, vehicles, "vehicle (SpeciesNet)")

    existing_seqs: set[str] = set()
    if run.add:
        existing = set()
        for row in run.db.execute("SELECT c.image_id, i.seq_id FROM candidates c JOIN images i USING (image_id)"):
            existing.add(row[0])
            if row[1]:
                existing_seqs.add(row[1])
        if existing:
            index = md.index()
            already = np.zeros(n_img, dtype=bool)
            already[[index[k] for k in existing if k in index]] = True
            exclude(summary, ok, already, "already a candidate")
    return ok, sn_species, existing_seqs


def load_speciesnet_file(path, root, md: MegaDetectorFile, summary: SelectionSummary, echo) -> SpeciesNetFile | None:
    if not path:
        return None
    echo(f"Reading {path}")
    sn = load_speciesnet(path, root)
    count_problems(summary, sn.problems)
    index = md.index()
    missing = [k for k in sn.predictions if k not in index]
    if missing:
        summary.problems[f"{path}: image not in the MegaDetector file"] += len(missing)
        summary.problem_examples.extend(f"{path}: {k}: not in the MegaDetector file" for k in missing[:3])
    for pred in sn.predictions.values():
        if pred.failures:
            summary.notes.append(f"SpeciesNet failed on {pred.image_id}: {', '.join(pred.failures)}")
    return sn


def count_problems(summary: SelectionSummary, problems: list[RecordProblem]) -> None:
    for p in problems:
        summary.problems[f"{p.source}: {p.reason}"] += 1
        if len(summary.problem_examples) < 20:
            summary.problem_examples.append(str(p))


def exclude(summary: SelectionSummary, ok: np.ndarray, mask: np.ndarray, reason: str) -> None:
    hit = ok & mask
    count = int(hit.sum())
    if count:
        summary.excluded[reason] += count
        ok &= ~mask



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


def eligible_images(db: sqlite_utils.Database, settings: Settings, *, md: str | Path | None = None,
                    images_root: str | Path | None = None, camtrap_dp: str | Path | None = None,
                    media_root: str | Path | None = None, speciesnet: str | Path | None = None) -> Collection:
    """Read the detector file (``md`` with ``images_root``, or a Camtrap DP package) and return every image
    `select` would consider, the people rule and the threshold of ``settings.select`` applied."""
    cfg = settings.select
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
    count_problems(summary, detector.problems + (package.problems if package is not None else []))
    det = detector.detections
    feats = strata.image_features(det.image, det.kind, det.conf, det.bbox, det.species, len(detector.image_ids),
                                  cfg.threshold, cfg.edge_margin, cfg.data_strip)
    sn = load_speciesnet_file(speciesnet, root, detector, summary, lambda _msg: None)
    run = SelectionRun(db, root, 1, cfg, False, summary, detector, feats, sn, None, lambda _msg: None, False, package=package)
    run.records = [FileRecord(str(detector.source))] + ([FileRecord(str(speciesnet))] if speciesnet else [])
    ok, _, _ = eligible_mask(run)
    for reason in detector.failures.values():
        summary.excluded[f"detector failure: {reason}"] += 1
    animal = (det.kind == KIND_ANIMAL) & (det.conf >= cfg.threshold) & ok[det.image]
    boxes: dict[str, list[Box]] = {}
    for image, bbox in zip(det.image[animal].tolist(), det.bbox[animal].tolist()):
        boxes.setdefault(detector.image_ids[image], []).append(tuple(bbox))
    ids = [detector.image_ids[i] for i in np.flatnonzero(ok).tolist()]
    return Collection(str(root), ids, boxes, len(detector.image_ids), dict(summary.excluded),
                      summary.problem_examples)
