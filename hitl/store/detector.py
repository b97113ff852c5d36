"""What the detector files said about every image they name, and the one rule of what may be published.

A selection reads a detector file of perhaps a million images and keeps a few thousand, but an
image it did not keep can reach the store later (``score --images`` a folder) and be rated hero.
So each run records, for every image the file names, whether it has a usable detector record
(their ids in one compressed blob per file) and, for the few with a person at or above the
threshold, a person flag (``detector_people``). :func:`publishable` reads both: an image with a
person detected, or with no detector record at all, leaves in no export, comparison or report
thumbnail unless the user asks for it, and every image left out is counted and named.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

import sqlite_utils

from hitl.store.db import in_chunks, upsert_many, utc_now

SEPARATOR = "\0"  # no file name holds a NUL
NAMED = 10  # images named in a "left out" line; the rest are counted
PERSON, UNDETECTED = "a person detected", "no detector record"  # why an image is left out


def pack_ids(image_ids: Iterable[str]) -> bytes:
    """Image ids as one compressed blob (level 1: a million ids in a fifth of a second, ~3 MB)."""
    return zlib.compress(SEPARATOR.join(image_ids).encode("utf-8", "surrogatepass"), 1)


def unpack_ids(blob: bytes) -> set[str]:
    text = zlib.decompress(blob).decode("utf-8", "surrogatepass")
    return set(text.split(SEPARATOR)) if text else set()


def record_detector_file(db: sqlite_utils.Database, run_id: int, source: str, images_root: str, n_images: int,
                         packed_ids: bytes, people: list[tuple[str, float, str]]) -> None:
    """Record what the detector file ``source`` (of the collection at ``images_root``) said, replacing
    an earlier reading of it: ``packed_ids`` (:func:`pack_ids`) the images with a usable record,
    ``people`` (image_id, confidence, who said so) those with a person. Inside the caller's transaction."""
    old = db.execute("SELECT id FROM detector_files WHERE source = ? AND images_root = ?",
                     [source, images_root]).fetchone()
    if old:
        db.execute("DELETE FROM detector_people WHERE file_id = ?", [old[0]])
        db.execute("DELETE FROM detector_files WHERE id = ?", [old[0]])
    file_id = db.execute(
        "INSERT INTO detector_files (run_id, source, images_root, n_images, image_ids, recorded_at) "
        "VALUES (?, ?, ?, ?, ?, ?)", [run_id, source, images_root, n_images, packed_ids, utc_now()]).lastrowid
    upsert_many(db, "detector_people", [{"file_id": file_id, "image_id": image_id, "conf": conf, "said_by": by}
                                        for image_id, conf, by in people], ("file_id", "image_id"))


def people_images(db: sqlite_utils.Database, threshold: float) -> set[str]:
    """The images with a person detected: a stored detection at or above ``threshold``, or flagged by
    a detector file when it was read (at that selection's threshold, selected or not)."""
    return {r[0] for r in db.execute(
        "SELECT image_id FROM detections WHERE kind = 'person' AND conf >= ? "
        "UNION SELECT image_id FROM detector_people", [threshold])}


def recorded_images(db: sqlite_utils.Database, image_ids: Iterable[str]) -> set[str]:
    """Of ``image_ids``, those a detector file of their collection root has a usable record of."""
    wanted = sorted(set(image_ids))
    roots: dict[str, str] = {}
    selected: set[str] = set()
    for marks, part in in_chunks(wanted):
        roots.update(db.execute(f"SELECT image_id, root FROM images WHERE image_id IN ({marks})", part).fetchall())
        selected.update(r[0] for r in db.execute(
            f"SELECT DISTINCT image_id FROM detections WHERE image_id IN ({marks})", part))
    # A selected image has its detections stored: read from a file of the root it was selected
    # from (a database from before detector_files was kept has only these).
    selection_roots = {r[0] for r in db.execute("SELECT DISTINCT images_root FROM selection_runs "
                                                "WHERE status = 'finished'")}
    found = {i for i in selected if roots.get(i) in selection_roots}
    rest = {i for i in wanted if i not in found and i in roots}
    if rest:  # images that came in another way (score --images): look them up in the files' records
        for images_root, blob in db.execute("SELECT images_root, image_ids FROM detector_files ORDER BY id"):
            mine = {i for i in rest if roots[i] == images_root}
            if mine:
                hits = mine & unpack_ids(blob)
                found |= hits
                rest -= hits
    return found


@dataclass
class Publishable:
    """Which of some images may be published (:func:`publishable`), and which are left out, why."""

    asked: list[str]
    people: set[str]  # a person detected (left out unless include_people)
    undetected: set[str]  # no detector record (left out unless include_undetected)
    include_people: bool = False
    include_undetected: bool = False
    left_out_people: list[str] = field(init=False)
    left_out_undetected: list[str] = field(init=False)

    def __post_init__(self) -> None:
        reasons = {i: self.reason(i) for i in set(self.asked)}
        self.left_out_people = sorted(i for i, why in reasons.items() if why == PERSON)
        self.left_out_undetected = sorted(i for i, why in reasons.items() if why == UNDETECTED)

    def reason(self, image_id: str) -> str | None:
        """Why ``image_id`` is left out (a person first), or None when it is not."""
        if image_id in self.people and not self.include_people:
            return PERSON
        if image_id in self.undetected and not self.include_undetected:
            return UNDETECTED
        return None

    def allows(self, image_id: str) -> bool:
        return self.reason(image_id) is None

    @property
    def left_out(self) -> int:
        return len(self.left_out_people) + len(self.left_out_undetected)

    def counts(self) -> dict[str, int]:
        return {"left_out_people": len(self.left_out_people), "left_out_undetected": len(self.left_out_undetected)}

    def lines(self) -> list[str]:
        """One line per reason with any image left out, naming them (the first NAMED) and the flag."""
        return [line for line in (
            left_out_line(self.left_out_people, f"with {PERSON}", "--include-people"),
            left_out_line(self.left_out_undetected, f"with {UNDETECTED}", "--include-undetected")) if line]


def left_out_line(image_ids: list[str], why: str, flag: str) -> str | None:
    """"left out 2 images with a person detected: a.jpg, b.jpg (--include-people to include them)"."""
    if not image_ids:
        return None
    one = len(image_ids) == 1
    names = ", ".join(image_ids[:NAMED]) + (f" and {len(image_ids) - NAMED} more" if len(image_ids) > NAMED else "")
    return (f"left out {len(image_ids)} image{'' if one else 's'} {why}: {names} "
            f"({flag} to include {'it' if one else 'them'})")


def publishable(db: sqlite_utils.Database, image_ids: Iterable[str], *, threshold: float,
                include_people: bool = False, include_undetected: bool = False) -> Publishable:
    """The one rule of what may leave in an export, a comparison or the report's thumbnails: no
    person detected (:func:`people_images` at ``threshold``) and a detector record
    (:func:`recorded_images`), unless ``include_people`` / ``include_undetected``."""
    asked = list(dict.fromkeys(image_ids))
    people = people_images(db, threshold) & set(asked)
    undetected = set(asked) - recorded_images(db, asked)
    return Publishable(asked, people, undetected, include_people, include_undetected)
