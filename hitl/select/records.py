"""What a selection keeps of every image the detector file names, selected or not (issue 22):
which images have a usable record, and which show a person. Stored by
:func:`hitl.store.detector.record_detector_file`; read by the publishing rule."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import compress

import numpy as np
import sqlite_utils

from converters.camtrapdp import CamtrapPackage
from converters.megadetector import KIND_PERSON, MegaDetectorFile
from hitl.store.detector import pack_ids, record_detector_file


@dataclass
class FileRecord:
    """What one input file said of every image it names, to be stored with the run: the people it
    flags and, for a detector file, its images with a usable record (packed, see
    :func:`pack_in_background`; None: a file with no record of its own, such as SpeciesNet's)."""

    source: str  # the file's absolute path
    people: dict[str, tuple[float | None, str]] = field(default_factory=dict)  # image_id -> (confidence, said by)
    packed: Future[tuple[int, bytes]] | None = None

    def write(self, db: sqlite_utils.Database, run_id: int, images_root: str) -> None:
        """Store it (inside the caller's transaction), replacing an earlier reading of the file."""
        n_recorded, packed = self.packed.result() if self.packed is not None else (0, pack_ids([]))
        record_detector_file(db, run_id, self.source, images_root, n_recorded, packed,
                             [(image_id, conf, by) for image_id, (conf, by) in self.people.items()])


def person_flags(md: MegaDetectorFile, threshold: float, package: CamtrapPackage | None = None
                 ) -> dict[str, tuple[float | None, str]]:
    """Each image with a person detected at or above ``threshold`` (or, in a Camtrap DP package, in an
    event with a human observed): the most confident person, and who said so."""
    det = md.detections
    hit = (det.kind == KIND_PERSON) & (det.conf >= threshold)
    image, conf = det.image[hit], det.conf[hit]
    order = np.lexsort((-conf, image))  # each image's most confident person first
    image, conf = image[order], conf[order]
    first = np.r_[True, image[1:] != image[:-1]] if len(image) else np.zeros(0, dtype=bool)
    said_by = "megadetector" if package is None else "camtrap-dp"
    flags: dict[str, tuple[float | None, str]] = dict(zip(
        map(md.image_ids.__getitem__, image[first].tolist()),
        ((c, said_by) for c in np.round(conf[first].astype(np.float64), 4).tolist())))
    for key in package.event_people if package is not None else ():
        flags.setdefault(key, (None, "camtrap-dp event"))
    return flags


def in_people_events(md: MegaDetectorFile, package: CamtrapPackage | None) -> np.ndarray:
    """Which of the file's images are in a Camtrap DP event with a human observed at event level."""
    mask = np.zeros(len(md.image_ids), dtype=bool)
    if package is not None and package.event_people:
        index = md.index()
        mask[[index[k] for k in package.event_people if k in index]] = True
    return mask


def recorded_ids(md: MegaDetectorFile, package: CamtrapPackage | None) -> list[str]:
    """The images the detector file has a usable record of: not a detector failure; of a Camtrap DP
    package, the media someone or something classified (an unclassified media may show anyone)."""
    if package is not None:
        return [k for k in md.image_ids if k in package.classified]
    if not md.failures:
        return md.image_ids
    usable = np.ones(len(md.image_ids), dtype=bool)
    usable[list(md.failures)] = False
    return list(compress(md.image_ids, usable.tolist()))


def pack_in_background(md: MegaDetectorFile, package: CamtrapPackage | None) -> Future[tuple[int, bytes]]:
    """How many images have a record, and their ids packed, computed in a thread (zlib lets go of
    the GIL, so a million ids pack while the selection chooses). Start it only once the files are
    read: a process with a second thread does not fork to read a file in two halves."""
    packing = ThreadPoolExecutor(1, thread_name_prefix="pack-ids")
    try:
        return packing.submit(_packed, md, package)
    finally:
        packing.shutdown(wait=False)


def _packed(md: MegaDetectorFile, package: CamtrapPackage | None) -> tuple[int, bytes]:
    ids = recorded_ids(md, package)
    return len(ids), pack_ids(ids)
