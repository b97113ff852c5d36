"""Label Studio tasks, predictions and annotations, both ways. Pure functions.

Out: a candidate with its detections and every model's score becomes a task whose
predictions carry the rating (model score rounded and clamped to 1-10 stars; the raw float
stays in the task data), the hero choice and the detector's boxes. In: an annotation's
result becomes a HumanRating.

Facts that shape this: a Rating of 0 stores no result (stars are 1..maxRating); only the
prediction whose model_version equals the project's is prefilled; boxes are percentages of
the image as Label Studio shows it, which is the EXIF-upright image, as MegaDetector's.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlparse

import msgspec

from .common import HumanRating
from .decisions import MAX_STARS, DecisionError, check_box, check_decision, check_hero, check_stars, describe_invalid

FROM_RATING, FROM_HERO, FROM_COMMENT, FROM_BOXES, TO_IMAGE = "aesthetic", "hero", "comment", "boxes", "image"
FROM_PICK, TO_FRAMES = "best_frame", "frames"  # a burst task: the frame picked, 1-based, of data.frames
FROM_COMPARISON, FROM_SAME = "comparison", "same"  # a pairwise task: Pairwise's side, or the "same" choice
MAX_FRAMES = 10  # a burst task shows at most this many frames (its choices come from the task)
DETECTOR_VERSION = "detector"  # the blind-mode prediction: boxes only, no opinion
MODES = ("assisted", "blind")
MAX_ID = 2 ** 63 - 1  # SQLite's largest integer
_Id = Annotated[int, msgspec.Meta(ge=0, le=MAX_ID)]


def is_id(value: object) -> bool:
    """Is ``value`` an id Label Studio can give (a task's, a project's): an integer, not a bool, in
    0..MAX_ID (a larger one would not bind in SQLite), as the webhook's ``_Id`` checks."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def model_version(model: str, prompt_version: str) -> str:
    """How a model's predictions are named in Label Studio: ``model@prompt_version``."""
    return f"{model}@{prompt_version}"


def stars(score: float) -> int:
    """A 0-10 model score as 1-10 stars (0 stars cannot be stored, so 0 becomes 1)."""
    return min(MAX_STARS, max(1, int(math.floor(score + 0.5))))


def local_files_url(path: str | Path, document_root: str | Path) -> str:
    """The URL Label Studio serves a local file at, when local-files serving is on.

    Raises ValueError for a file outside the document root: Label Studio would refuse it.
    """
    path, root = Path(path).resolve(), Path(document_root).resolve()
    try:
        relative = path.relative_to(root)
    except ValueError:
        raise ValueError(f"{path} is outside the document root {root} "
                         f"(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); serve it by URL template instead") from None
    return "/data/local-files/?d=" + quote(relative.as_posix(), safe="/")


def default_document_root(roots: list[str]) -> str:
    """The folder above the images' common root: Label Studio serves a local storage only from a
    subfolder of its document root, never the root itself."""
    return os.path.dirname(os.path.commonpath(roots))


def region(detection: dict, label: str, width: int, height: int) -> dict:
    """A MegaDetector box (normalised x, y, w, h, upright) as a rectanglelabels result."""
    return {
        "id": f"det{detection['det_index']}",
        "from_name": FROM_BOXES, "to_name": TO_IMAGE, "type": "rectanglelabels",
        "original_width": width, "original_height": height, "image_rotation": 0,
        "value": {"x": detection["x"] * 100, "y": detection["y"] * 100, "width": detection["w"] * 100,
                  "height": detection["h"] * 100, "rotation": 0, "rectanglelabels": [label]},
    }


def build_task(candidate: dict, image_url: str, width: int, height: int, detections: list[dict],
               scores: list[dict], mode: str) -> dict:
    """One Label Studio task with one prediction per model (assisted) or boxes only (blind).

    ``candidate``: image_id, species, seq_id, frame_num, category. ``detections``: the animal
    boxes to show (det_index, x, y, w, h, species). ``scores``: one per model with model,
    prompt_version, score, hero, reasoning. A score that is not a finite 0-10 number raises
    ValueError naming the image, so the caller can count and skip it.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if not width or not height:
        raise ValueError(f"{candidate['image_id']}: image size unknown; boxes need it")
    for s in scores:
        if not isinstance(s["score"], (int, float)) or not math.isfinite(s["score"]) or not 0 <= s["score"] <= 10:
            raise ValueError(f"{candidate['image_id']}: {s['model']} score {s['score']!r} is not a number in 0-10")
    species = candidate.get("species") or "animal"
    boxes = [region(d, d.get("species") or species, width, height) for d in detections]
    sequence = candidate.get("seq_id") or ""
    if candidate.get("frame_num") is not None:
        sequence += f" (frame {candidate['frame_num']})"
    data = {"image": image_url, "image_id": candidate["image_id"], "species": species, "sequence": sequence,
            "mode": mode}
    if mode == "blind":
        predictions = [{"model_version": DETECTOR_VERSION, "result": boxes}] if boxes else []
        return {"data": data, "predictions": predictions}
    data["model_scores"] = {model_version(s["model"], s["prompt_version"]): s["score"] for s in scores}
    data["model_opinions"] = "\n".join(
        f"{s['model']}: {s['score']:.1f}/10, {'hero' if s['hero'] else 'not hero'}. {s.get('reasoning') or ''}".strip()
        for s in scores) or "No model has scored this image yet."
    data["category"] = candidate.get("category") or ""
    predictions = []
    for s in scores:
        result = [
            {"from_name": FROM_RATING, "to_name": TO_IMAGE, "type": "rating", "value": {"rating": stars(s["score"])}},
            {"from_name": FROM_HERO, "to_name": TO_IMAGE, "type": "choices",
             "value": {"choices": ["hero" if s["hero"] else "not_hero"]}},
            *boxes,
        ]
        predictions.append({"model_version": model_version(s["model"], s["prompt_version"]),
                            "score": round(s["score"] / 10, 4), "result": result})
    return {"data": data, "predictions": predictions}


BURST_VERSION = "burst"  # the burst task's prediction: the frame proposed as the pick


def build_burst_task(candidate: dict, frames: list[dict], mode: str, proposal: dict | None = None) -> dict:
    """One multi-image task of a candidate's burst, the candidate's frame marked.

    ``frames``: 2-10, in time order, each image_id, url and (assisted mode) scores, one per model
    with model, prompt_version, score. ``proposal``: a model's best-scoring frame (image_id,
    model, score), said in the task and prefilled as the pick; without one, the marked frame is.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    ids = [f["image_id"] for f in frames]
    if not 2 <= len(ids) <= MAX_FRAMES or candidate["image_id"] not in ids:
        raise ValueError(f"{candidate['image_id']}: a burst task shows 2-{MAX_FRAMES} frames, the candidate's among them")
    marked = ids.index(candidate["image_id"]) + 1
    text = f"{len(ids)} frames in time order; frame {marked} is the one selection chose."
    lines = []
    if mode == "assisted":
        for k, f in enumerate(frames, start=1):
            said = ", ".join(f"{s['model']} {s['score']:.1f}" for s in f.get("scores") or [])
            lines.append(f"frame {k}: {said or 'not scored yet'}")
        if proposal is not None:
            text += (f" {proposal['model']} proposes frame {ids.index(proposal['image_id']) + 1} "
                     f"({proposal['score']:.1f}/10), prefilled.")
    pick = ids.index(proposal["image_id"]) + 1 if proposal is not None else marked
    data = {"image": frames[marked - 1]["url"], "image_id": candidate["image_id"], "frames": [f["url"] for f in frames],
            "frame_ids": ids, "frame_choices": [{"value": str(k)} for k in range(1, len(ids) + 1)],
            "marked": marked, "species": candidate.get("species") or "animal", "burst": text,
            "sequence": candidate.get("seq_id") or "", "mode": mode,
            "model_opinions": "\n".join(lines) if mode == "assisted" else "Not shown: blind review."}
    result = [{"from_name": FROM_PICK, "to_name": TO_FRAMES, "type": "choices", "value": {"choices": [str(pick)]}}]
    return {"data": data, "predictions": [{"model_version": BURST_VERSION, "result": result}]}


def task_data(task: object) -> dict:
    """A task's ``data`` object, or {} when the task or its data is not an object."""
    data = task.get("data") if isinstance(task, dict) else None
    return data if isinstance(data, dict) else {}


def image_id_of(task: dict) -> str | None:
    """The image a task is about: ``data.image_id`` as push writes it, else from the image URL."""
    data = task_data(task)
    if isinstance(data.get("image_id"), str) and data["image_id"]:
        return data["image_id"]
    url = data.get("image")
    if not isinstance(url, str) or not url:
        return None
    parsed = urlparse(url)
    if parsed.path.endswith("/data/local-files/") or parsed.path == "/data/local-files":
        d = parse_qs(parsed.query).get("d")
        return d[0] if d else None
    return parsed.path.lstrip("/") or None


class _User(msgspec.Struct):
    id: _Id | None = None
    email: str | None = None


class _TaskRef(msgspec.Struct):
    id: _Id


class _Result(msgspec.Struct):
    type: str = ""
    from_name: str | None = None
    value: dict[str, Any] = {}
    original_width: float | None = None
    original_height: float | None = None


class _Annotation(msgspec.Struct):
    """The parts of an annotation (webhook, API or export) a decision is read from, typed."""

    id: _Id
    result: list[_Result] | None = None
    was_cancelled: bool | None = False
    lead_time: float | None = None
    completed_by: _Id | _User | None = None
    task: _Id | _TaskRef | None = None
    created_at: str | None = None
    updated_at: str | None = None


class _Rating(msgspec.Struct):
    rating: float


class _Choices(msgspec.Struct):
    choices: list[str]


class _Text(msgspec.Struct):
    text: str | list[str]


class _Pairwise(msgspec.Struct):
    selected: str


class _BurstData(msgspec.Struct):
    frame_ids: list[str]
    marked: Annotated[int, msgspec.Meta(ge=1, le=MAX_FRAMES)]


class _PairData(msgspec.Struct):
    left_id: Annotated[str, msgspec.Meta(min_length=1)]
    right_id: Annotated[str, msgspec.Meta(min_length=1)]


class _Rectangle(msgspec.Struct):
    x: float
    y: float
    width: float
    height: float
    rotation: float = 0.0
    rectanglelabels: list[str] = []


def _typed(data: Any, kind: type, where: str):
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        raise DecisionError(f"bad {where}", describe_invalid(str(exc))) from None
    except UnicodeEncodeError:  # a lone surrogate, which Python's JSON reader lets through
        raise DecisionError(f"bad {where}", "holds text that is not Unicode (a lone UTF-16 surrogate)") from None


def rating_from_annotation(annotation: dict, task: dict | None, project: int | str,
                           mode: str | None = None, annotator_email: str | None = None) -> HumanRating:
    """An annotation (as the API, an export or a webhook gives it) as a checked HumanRating.

    A skipped task (``was_cancelled``) is a skip, not a rating. Boxes come back normalised
    on the upright image, like the detector's. Anything malformed or impossible (a rating
    of 11 or 0.5, two hero choices, a box outside the image, a string where a boolean
    belongs) raises DecisionError naming it.
    """
    a = _typed(annotation, _Annotation, "annotation")
    stars_value = hero = comment = pick = side = None
    same = False
    boxes = []
    for item in a.result or []:
        if item.type == "rating" and item.from_name == FROM_RATING:
            stars_value = check_stars(_typed(item.value, _Rating, "rating").rating, MAX_STARS)
        elif item.type == "choices" and item.from_name == FROM_HERO:
            hero = check_hero(_typed(item.value, _Choices, "hero choice").choices)
        elif item.type == "textarea" and item.from_name == FROM_COMMENT:
            text = _typed(item.value, _Text, "comment").text
            comment = "\n".join(text) if isinstance(text, list) else text
        elif item.type == "rectanglelabels":
            boxes.append(_box(item))
        elif item.type == "choices" and item.from_name == FROM_PICK:
            pick = _one_choice(_typed(item.value, _Choices, "frame pick").choices, "frame pick")
        elif item.type == "pairwise" and item.from_name == FROM_COMPARISON:
            side = _typed(item.value, _Pairwise, "comparison").selected
        elif item.type == "choices" and item.from_name == FROM_SAME:
            same = _one_choice(_typed(item.value, _Choices, "'same' choice").choices, "'same' choice") == FROM_SAME
    email = annotator_email
    completed_by = a.completed_by
    if isinstance(completed_by, _User):
        email = completed_by.email or email
        completed_by = completed_by.id
    task_id = a.task.id if isinstance(a.task, _TaskRef) else a.task
    if task_id is None and isinstance(task, dict) and isinstance(task.get("id"), int):
        task_id = task["id"]
    skipped = bool(a.was_cancelled)
    data = task_data(task)
    task_mode = data.get("mode")
    image_id = image_id_of(task) if isinstance(task, dict) else None
    burst_of = other = preference = None
    if "frame_ids" in data:  # a burst task: stars and hero go to the frame picked
        burst_of = image_id
        image_id = _picked_frame(data, pick, boxes)
    elif "right_id" in data:  # a pairwise task: image_id is the left image
        pair = _typed(data, _PairData, "pairwise task data")
        image_id, other = pair.left_id, pair.right_id
        preference = None if skipped else _preference(side, same)
    elif pick is not None or side is not None or same:
        raise DecisionError("bad result", "a frame pick or a comparison in a task that is neither a burst nor a pair")
    return check_decision(HumanRating(
        source="labelstudio", project=str(project), annotation_id=str(a.id),
        image_id=image_id, task_id=task_id, burst_of=burst_of, other_image_id=other, preference=preference,
        annotator_id=None if completed_by is None else str(completed_by), annotator_email=email,
        stars=None if skipped else stars_value, hero=None if skipped else hero, comment=comment,
        boxes=[] if skipped else boxes, lead_time=a.lead_time, skipped=skipped,
        mode=mode or task_mode, created_at=a.created_at, updated_at=a.updated_at,
    ))


def _one_choice(choices: list[str], what: str) -> str:
    if len(choices) != 1:
        raise DecisionError(f"bad {what}", f"exactly one choice, not {choices!r}")
    return choices[0]


def _picked_frame(data: dict, pick: str | None, boxes: list[dict]) -> str:
    """The frame a burst annotation picked (``pick`` is its 1-based number); no pick keeps the marked one."""
    burst = _typed(data, _BurstData, "burst task data")
    if not 2 <= len(burst.frame_ids) <= MAX_FRAMES or not all(burst.frame_ids) or burst.marked > len(burst.frame_ids):
        raise DecisionError("bad burst task", f"frame_ids must name 2-{MAX_FRAMES} frames and marked one of them")
    if boxes:
        raise DecisionError("bad frame pick", "a burst task takes no boxes: they are drawn in the review task")
    if pick is None:
        return burst.frame_ids[burst.marked - 1]
    if not (pick.isascii() and pick.isdigit()) or not 1 <= int(pick) <= len(burst.frame_ids):
        raise DecisionError("bad frame pick", f"{pick!r} is not a frame of this burst (1-{len(burst.frame_ids)})")
    return burst.frame_ids[int(pick) - 1]


def _preference(side: str | None, same: bool) -> str | None:
    """A pairwise answer: the side picked, or "same"; None when the curator gave neither."""
    if side is not None and side not in ("left", "right"):
        raise DecisionError("bad comparison", f"selected must be 'left' or 'right', not {side!r}")
    if side is not None and same:
        raise DecisionError("bad comparison", f"both {side!r} and 'same' were chosen")
    return "same" if same else side


def _box(item: _Result) -> dict:
    """A rectangle (percent of the shown, upright image) as a normalised box; a rotated one as the
    upright box around it (Label Studio rotates about the top-left corner, in pixels)."""
    r = _typed(item.value, _Rectangle, "box")
    label = r.rectanglelabels[0] if r.rectanglelabels else None
    x, y, w, h = r.x / 100, r.y / 100, r.width / 100, r.height / 100
    if r.rotation and math.isfinite(r.rotation):
        iw, ih = item.original_width or 1.0, item.original_height or 1.0
        theta = math.radians(r.rotation)
        corners = [(dx * w * iw, dy * h * ih) for dx, dy in ((0, 0), (1, 0), (1, 1), (0, 1))]
        xs = [x + (cx * math.cos(theta) - cy * math.sin(theta)) / iw for cx, cy in corners]
        ys = [y + (cx * math.sin(theta) + cy * math.cos(theta)) / ih for cx, cy in corners]
        x0, y0 = max(min(xs), 0.0), max(min(ys), 0.0)
        x, y, w, h = x0, y0, min(max(xs), 1.0) - x0, min(max(ys), 1.0) - y0
    return check_box(x, y, w, h, label)
