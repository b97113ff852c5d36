"""The Labelme review path: candidate JSON files out of the store, curator decisions back in.

One curator, files on disk. Labelme opens ``<folder>/<image stem>.json`` beside each image
(or in the folder given by its ``--output``), so the default export writes beside the
images and a curator runs ``labelme <image root> --flags hero,not_hero``.
"""
from __future__ import annotations

import json
import os
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import sqlite_utils

from converters.common import HumanRating, RecordProblem
from converters.labelme import MODES, LabelmeFormatError, labelme_document, rating_from_labelme

from .errors import HitlError, NothingToDo
from .imageprep import read_upright_size

KEPT_HINT = "exists, kept: pass overwrite=True to replace"
MAX_EXAMPLES = 20


class LabelmeExportError(HitlError, ValueError):
    """A bad export request (unknown mode or model); the message says what is allowed."""


def export_labelme(db: sqlite_utils.Database, out_dir: str | Path | None, mode: str = "assisted",
                   prefill_model: str | None = None, threshold: float = 0.3, overwrite: bool = False
                   ) -> dict[str, Any]:
    """Write one Labelme JSON per candidate image; return the counts.

    ``out_dir`` None writes beside each image (``<root>/<image_id>`` with a .json suffix);
    otherwise the files go under ``out_dir`` in the image_id's folders, pointing back at the
    images by relative path. Animal boxes at or above ``threshold`` are drawn. In assisted
    mode the flags are pre-ticked from ``prefill_model`` (default: the model with most ok
    scores). A file that exists with other content is a curator's work and is kept unless
    ``overwrite``.
    """
    if mode not in MODES:
        raise LabelmeExportError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "blind" and prefill_model:
        raise LabelmeExportError("blind mode shows no model opinion; leave prefill_model out")
    images = [dict(zip(("image_id", "root", "width", "height", "species", "seq_id"), row)) for row in db.execute(
        "SELECT c.image_id, i.root, i.width, i.height, i.species, i.seq_id FROM candidates c "
        "JOIN images i USING (image_id) ORDER BY c.rank, c.image_id")]
    if not images:
        raise NothingToDo("no candidates yet: run `select` first")

    detections: dict[str, list[dict]] = defaultdict(list)
    for row in db.execute(
            "SELECT d.image_id, d.kind, d.conf, d.x, d.y, d.w, d.h, d.species FROM detections d "
            "JOIN candidates c USING (image_id) WHERE d.kind = 'animal' AND d.conf >= ? "
            "ORDER BY d.image_id, d.conf DESC, d.det_index", [threshold]):
        detections[row[0]].append(dict(zip(("kind", "conf", "x", "y", "w", "h", "species"), row[1:])))

    scores: dict[str, list[dict]] = defaultdict(list)
    if mode == "assisted":  # blind mode never even reads them
        for row in db.execute(
                "SELECT s.image_id, s.model, s.prompt_version, s.score, s.hero, s.reasoning, s.updated_at "
                "FROM scores s JOIN candidates c USING (image_id) WHERE s.status = 'ok' "
                "ORDER BY s.image_id, s.model, s.prompt_version"):
            scores[row[0]].append(dict(zip(("model", "prompt_version", "score", "hero", "reasoning", "updated_at"),
                                           row[1:])))
        prefill_model = _prefill_model(scores, prefill_model)

    counts: Counter = Counter()
    notes: list[str] = []
    base = Path(out_dir).resolve() if out_dir is not None else None
    taken: set[Path] = set()
    for image in images:
        image_id = image["image_id"]
        image_file = Path(image["root"]) / image_id
        # The file's own header, EXIF orientation applied: Labelme refuses a JSON whose
        # imageWidth/imageHeight differ from the upright image it loads.
        reason, size = read_upright_size(image_file)
        if reason:
            counts["skipped_missing_image" if reason == "image file missing" else "skipped_unreadable_image"] += 1
            _note(notes, f"{image_file}: {reason}; no JSON written")
            continue
        width, height = size
        if image["width"] and image["height"] and (image["width"], image["height"]) != size:
            counts["size_from_file"] += 1
            _note(notes, f"{image_id}: the database says {image['width']}x{image['height']}, the upright image "
                         f"is {width}x{height}; the file's size is used")
        json_path = (base or Path(image["root"])) / PurePosixPath(image_id).with_suffix(".json")
        if json_path in taken:  # IMG_1.JPG and IMG_1.png: Labelme looks for IMG_1.json for both
            counts["skipped_name_clash"] += 1
            _note(notes, f"{image_id}: {json_path} is already written for another image with the same stem")
            continue
        taken.add(json_path)
        doc = labelme_document(
            image_id, _relative(image_file, json_path.parent), width, height, detections.get(image_id, []),
            scores.get(image_id, []), mode, prefill_model, species=image["species"],
            extra={"sequence": image["seq_id"]})
        if mode == "assisted" and doc["hero_hitl"]["prefill_hero"] is None:
            counts["no_prefill_verdict"] += 1
        counts["boxes"] += len(doc["shapes"])
        text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
        outcome = _write(json_path, text, overwrite)
        counts[outcome] += 1
        if outcome == "kept_existing":
            _note(notes, f"{json_path}: {KEPT_HINT}")
        elif outcome == "write_failed":
            _note(notes, f"{json_path}: could not be written")
    return {
        "mode": mode, "prefill_model": prefill_model, "out_dir": str(base) if base else None,
        "candidates": len(images),
        **{key: counts[key] for key in ("written", "unchanged", "kept_existing", "replaced",
                                        "skipped_missing_image", "skipped_unreadable_image",
                                        "skipped_name_clash", "write_failed", "size_from_file",
                                        "no_prefill_verdict", "boxes")},
        "notes": notes,
    }


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


def _write(path: Path, text: str, overwrite: bool) -> str:
    """Write ``text`` unless the file already holds it or holds something else a curator may have made."""
    data = text.encode("utf-8")
    existed = path.exists()
    if existed:
        try:
            if path.read_bytes() == data:
                return "unchanged"
        except OSError:
            return "write_failed"
        if not overwrite:
            return "kept_existing"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: Labelme never opens a half-written file
    except OSError:
        return "write_failed"
    return "replaced" if existed else "written"


def _note(notes: list[str], text: str) -> None:
    if len(notes) < MAX_EXAMPLES:
        notes.append(text)


def read_labelme_folder(folder: str | Path) -> tuple[list[HumanRating], list[RecordProblem]]:
    """Every Labelme JSON under ``folder`` (recursively) as a HumanRating, plus the problems.

    A file's modification time (UTC) is its edit time. Nothing is fatal for one file: a file
    that is not JSON or that Labelme could not open becomes a problem naming it. JSON files
    that are not Labelme files (no ``shapes`` and no ``imagePath``) are skipped but still
    listed as "not a Labelme file", so a wrong folder shows up. Hidden folders (``.git``,
    ``.venv``) are not searched. Notes on usable files (both flags ticked, non-rectangle
    shapes) are problems too; their rating is still returned. A file nobody changed since
    the export is no decision: it is listed as "not reviewed yet" and gives no rating.
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise HitlError(f"{folder} is not a folder; pass the folder the Labelme JSON files are in")
    project = root.as_posix()
    ratings: list[HumanRating] = []
    problems: list[RecordProblem] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(".json"):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            try:
                # stat before reading: a save in between then shows up as newer on the next read
                mtime = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="milliseconds")
                doc = json.loads(path.read_bytes())
            except OSError as exc:
                problems.append(RecordProblem(rel, "file", "cannot read the file", exc.strerror or str(exc)))
                continue
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
                problems.append(RecordProblem(rel, "file", "not valid JSON", str(exc)))
                continue
            if not isinstance(doc, dict) or not ({"shapes", "imagePath"} & doc.keys()):
                problems.append(RecordProblem(rel, "file", "not a Labelme file", "no shapes or imagePath; skipped"))
                continue
            try:
                rating = rating_from_labelme(doc, rel, project, mtime, problems)
            except LabelmeFormatError as exc:
                problems.append(RecordProblem(rel, "document", exc.reason, exc.detail))
                continue
            if rating is not None:
                ratings.append(rating)
    return ratings, problems
