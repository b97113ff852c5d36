"""The Labelme review path: candidate JSON files out of the store, curator decisions back in.

One curator, files on disk. Labelme opens ``<folder>/<image stem>.json`` beside each image
(or in the folder given by its ``--output``), so the default export writes beside the
images and a curator runs ``labelme <image root> --flags hero,not_hero``.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import sqlite_utils

from converters.common import HumanRating, RecordProblem
from converters.decisions import DecisionError
from converters.labelme import MODES, LabelmeFormatError, labelme_document, rating_from_labelme
from hitl.config import Settings
from hitl.errors import HitlError, NothingToDo
from hitl.files import OutputError, link_on_the_way, make_output_folder, walk_files, write_atomic
from hitl.imageprep import read_upright_size
from hitl.review import bursts
from hitl.store import queries, write_in_parts
from hitl.store.ratings import record_ratings

KEPT_HINT = "exists and was edited since, kept: `hitl labelme export --overwrite` replaces it"
LINK_HINT = "a link is on the way (it may lead anywhere); not written: remove the link or use another --out"
MAX_EXAMPLES = 20


class LabelmeExportError(HitlError, ValueError):
    """A bad export request (unknown mode or model); the message says what is allowed."""


def export_labelme(db: sqlite_utils.Database, out_dir: str | Path | None, mode: str = "assisted",
                   prefill_model: str | None = None, threshold: float = 0.3, overwrite: bool = False,
                   with_bursts: bool = False, settings: Settings | None = None) -> dict[str, Any]:
    """Write one Labelme JSON per candidate image; return the counts.

    ``out_dir`` None writes beside each image (``<root>/<image_id>`` with a .json suffix);
    otherwise the files go under ``out_dir`` in the image_id's folders, pointing back at the
    images by relative path. Animal boxes at or above ``threshold`` are drawn. In assisted
    mode the flags are pre-ticked from ``prefill_model`` (default: the model with most ok
    scores). A file that exists with other content is a curator's work and is kept unless
    ``overwrite``. With ``with_bursts`` every frame a candidate's burst shows gets its file (see
    :mod:`hitl.review.bursts`); the ``best_frame`` flag, ticked on the candidate's, marks the pick.
    """
    if mode not in MODES:
        raise LabelmeExportError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "blind" and prefill_model:
        raise LabelmeExportError("blind mode shows no model opinion; leave prefill_model out")
    images = queries.candidates(db)
    if not images:
        raise NothingToDo("no candidates yet: run `select` first")
    burst_of: dict[str, dict] = {}
    left_out: dict[str, int] = {}
    if with_bursts:
        rows, left_out = bursts.burst_rows(db, images, settings)
        if not rows:
            raise NothingToDo(f"no candidate has burst frames to show: {bursts.NO_BURST}")
        images = []
        for row in rows:
            for k, frame in enumerate(row["frames"], start=1):
                images.append(frame)
                burst_of[frame["image_id"]] = {"burst_of": row["image_id"], "frame": k, "frames": len(row["frames"])}
    ids = [i["image_id"] for i in images]
    # the most confident box first: Labelme lists shapes in file order
    detections = {k: sorted(v, key=lambda d: (-d["conf"], d["det_index"]))
                  for k, v in queries.animal_boxes(db, threshold, ids).items()}
    scores: dict[str, list[dict]] = {}
    if mode == "assisted":  # blind mode never even reads them
        scores = queries.scores_by_image(db)
        prefill_model = _prefill_model({k: v for k, v in scores.items() if k in set(ids)}, prefill_model)
    export = _Export(make_output_folder(out_dir).resolve() if out_dir is not None else None, mode, prefill_model,
                     overwrite)
    for image in images:
        export.write(image, detections.get(image["image_id"], []), scores.get(image["image_id"], []),
                     burst_of.get(image["image_id"]))
    if export.failed and not any(export.counts[k] for k in ("written", "replaced", "unchanged", "kept_existing")):
        raise OutputError(f"no Labelme file could be written ({export.counts['write_failed']} failed), e.g. "
                          f"{export.failed}; check that you may write there, or choose another --out")
    return {
        "mode": mode, "prefill_model": prefill_model, "out_dir": str(export.base) if export.base else None,
        "candidates": len(images) - len(burst_of) + len({b["burst_of"] for b in burst_of.values()}),
        "burst_frames": len(burst_of), "left_out": dict(left_out),
        **{key: export.counts[key] for key in ("written", "unchanged", "kept_existing", "replaced",
                                               "skipped_missing_image", "skipped_unreadable_image",
                                               "skipped_name_clash", "skipped_link", "write_failed",
                                               "size_from_file",
                                               "no_prefill_verdict", "boxes")},
        "notes": export.notes,
    }


class _Export:
    """One export run: where files go, what was written, and the notes for the summary."""

    def __init__(self, base: Path | None, mode: str, prefill_model: str | None, overwrite: bool):
        self.base, self.mode, self.prefill_model, self.overwrite = base, mode, prefill_model, overwrite
        self.counts: Counter = Counter()
        self.notes: list[str] = []
        self.taken: set[Path] = set()
        self.failed = ""  # the first file that could not be written, and why

    def write(self, image: dict, detections: list[dict], scores: list[dict], burst: dict | None = None) -> None:
        counts, notes, image_id = self.counts, self.notes, image["image_id"]
        image_file = Path(image["root"]) / image_id
        # The file's own header, EXIF orientation applied: Labelme refuses a JSON whose
        # imageWidth/imageHeight differ from the upright image it loads.
        reason, size = read_upright_size(image_file)
        if reason:
            counts["skipped_missing_image" if reason == "image file missing" else "skipped_unreadable_image"] += 1
            _note(notes, f"{image_file}: {reason}; no JSON written")
            return
        width, height = size
        if image["width"] and image["height"] and (image["width"], image["height"]) != size:
            counts["size_from_file"] += 1
            _note(notes, f"{image_id}: the database says {image['width']}x{image['height']}, the upright image "
                         f"is {width}x{height}; the file's size is used")
        root = self.base or Path(image["root"])
        json_path = root / PurePosixPath(image_id).with_suffix(".json")
        if json_path in self.taken:  # IMG_1.JPG and IMG_1.png: Labelme looks for IMG_1.json for both
            counts["skipped_name_clash"] += 1
            _note(notes, f"{image_id}: {json_path} is already written for another image with the same stem")
            return
        self.taken.add(json_path)
        doc = labelme_document(
            image_id, _relative(image_file, json_path.parent), width, height, detections, scores, self.mode,
            self.prefill_model, species=image["species"], extra={"sequence": image["seq_id"]}, burst=burst)
        if self.mode == "assisted" and doc["hero_hitl"]["prefill_hero"] is None:
            counts["no_prefill_verdict"] += 1
        counts["boxes"] += len(doc["shapes"])
        outcome, why = _write(json_path, root, json.dumps(doc, indent=2, ensure_ascii=False) + "\n", self.overwrite)
        counts[outcome] += 1
        if outcome == "kept_existing":
            _note(notes, f"{json_path}: {KEPT_HINT}")
        elif outcome == "skipped_link":
            _note(notes, f"{json_path}: {LINK_HINT}")
        elif outcome == "write_failed":
            _note(notes, f"{json_path}: could not be written ({why})")
            self.failed = self.failed or f"{json_path} ({why})"


def _prefill_model(scores: dict[str, list[dict]], wanted: str | None) -> str | None:
    """The model whose verdict pre-ticks the flags: ``wanted`` if known, else the one with most ok scores."""
    per_model = Counter(row["model"] for rows in scores.values() for row in rows)
    known = ", ".join(sorted(per_model)) or "none: run `score` first"
    if wanted is not None:
        if wanted not in per_model:
            raise LabelmeExportError(f"no ok scores from model {wanted!r} for the candidates; known models: {known}")
        return wanted
    if not per_model:
        return None
    return min(per_model, key=lambda model: (-per_model[model], model))  # ties: alphabetical, so runs agree


def _relative(image_file: Path, json_dir: Path) -> str:
    """imagePath: the image seen from the JSON's folder, POSIX, as Labelme writes it."""
    try:
        return Path(os.path.relpath(image_file, json_dir)).as_posix()
    except ValueError:  # another Windows drive: no relative path exists
        return image_file.as_posix()


def _write(path: Path, root: Path, text: str, overwrite: bool) -> tuple[str, str]:
    """Write ``text`` (atomically: Labelme never opens a half-written file) unless the file already
    holds it, holds something else a curator may have made, or the way from ``root`` goes through a
    link; the outcome, and why when it failed."""
    data = text.encode("utf-8")
    if link_on_the_way(path, root) is not None:
        return "skipped_link", ""
    existed = os.path.lexists(path)
    try:
        if existed:
            if path.read_bytes() == data:
                return "unchanged", ""
            if not overwrite:
                return "kept_existing", ""
        write_atomic(path, data, root)
    except OSError as exc:
        return "write_failed", exc.strerror or str(exc)
    return ("replaced" if existed else "written"), ""


def _note(notes: list[str], text: str) -> None:
    if len(notes) < MAX_EXAMPLES:
        notes.append(text)


def read_labelme_folder(folder: str | Path, curator: str | None = None) -> tuple[list[HumanRating], list[RecordProblem]]:
    """Every Labelme JSON under ``folder`` (recursively) as a HumanRating, plus the problems.

    A file's modification time (UTC) is its edit time. Nothing is fatal for one file: a file
    that is not JSON, that Labelme could not open or whose decision fails the validator
    becomes a problem naming it. JSON files that are not Labelme files (no ``shapes`` and no
    ``imagePath``) are skipped but still listed as "not a Labelme file", so a wrong folder
    shows up. Hidden folders (``.git``, ``.venv``) are not searched, hidden files are (the
    export writes ``.x.json`` for ``.x.jpg``); only regular files inside the folder are opened.
    Notes on usable files (both flags ticked, non-rectangle shapes) are problems too; their
    rating is still returned. A file nobody changed since the export is no decision: it is
    listed as "not reviewed yet" and gives no rating.
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise HitlError(f"{folder} is not a folder; pass the folder the Labelme JSON files are in")
    project = root.as_posix()
    walk = walk_files(root, {".json"})
    ratings: list[HumanRating] = []
    problems: list[RecordProblem] = list(walk.problems)
    for path, rel in walk.files:
        try:
            # stat before reading: a save in between then shows up as newer on the next read
            mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="milliseconds")
            doc = json.loads(path.read_bytes())
        except OSError as exc:
            problems.append(RecordProblem(rel, "file", "cannot read the file", exc.strerror or str(exc)))
            continue
        except (ValueError, RecursionError) as exc:  # bad JSON, bad UTF-8, absurd nesting
            problems.append(RecordProblem(rel, "file", "not valid JSON", f"{type(exc).__name__}: {str(exc)[:120]}"))
            continue
        if not isinstance(doc, dict) or not ({"shapes", "imagePath"} & doc.keys()):
            problems.append(RecordProblem(rel, "file", "not a Labelme file", "no shapes or imagePath; skipped"))
            continue
        try:
            rating = rating_from_labelme(doc, rel, project, mtime, problems)
        except (LabelmeFormatError, DecisionError) as exc:
            problems.append(RecordProblem(rel, "document", exc.reason, exc.detail))
            continue
        if rating is not None:
            if curator:  # else the curator is named by the folder's name
                rating.annotator_email, rating.annotator_id = (curator, None) if "@" in curator else (None, curator)
            ratings.append(rating)
    return ratings, problems


def record_labelme_folder(db: sqlite_utils.Database, folder: str | Path, curator: str | None = None, *,
                          via: str = "labelme", read_at: datetime | None = None
                          ) -> tuple[list[HumanRating], list[RecordProblem], Counter]:
    """Store the decisions of a folder of Labelme files (:func:`read_labelme_folder`), part by part;
    the ratings read, the problems and the counts.

    The one reader of `labelme import` and `sync --labelme`: the same folder gives the same ratings
    either way. The folder is the source as it is at ``read_at`` (default now): a decision a sync
    found missing comes back when its file is there again.
    """
    ratings, problems = read_labelme_folder(folder, curator)
    seen_at = read_at or datetime.now(timezone.utc)
    counts = write_in_parts(db, ratings, lambda part: record_ratings(db, part, via=via, seen_at=seen_at))
    return ratings, problems, counts
