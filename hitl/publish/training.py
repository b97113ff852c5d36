"""`hitl export --format coco|yolo|crops`: the curators' corrections as training data.

Per image, one box set: the curators' when one reviewed the boxes (in Label Studio or Labelme,
where the detector's boxes are shown to be moved, added, deleted or relabelled), else the
detector's animals at or above the threshold. Several curators: the most recent decision wins
and the disagreement is counted. A box's label is a known one (the detector's or a species
the selection knew) or a new one, recorded as such. Boxes are normalised to the upright image
everywhere; the formats convert.
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from converters.cct import cct_document
from hitl.errors import HitlError
from hitl.files import make_output_folder, refuse_inside
from hitl.imageprep import read_upright_size
from hitl.progress import progress_bar
from hitl.publish.placing import OwnFiles, flat_names, place_images, refusal
from hitl.store import queries
from hitl.store.detector import publishable
from hitl.store.heroes import curator_opinions, latest_opinion
from hitl.tables import safe_csv_text

BOX_SOURCES = ("labelstudio", "labelme")  # where curators see and edit the boxes (a sheet has none)
FORMATS = ("coco", "yolo", "crops")


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float
    label: str
    reviewed: bool  # the curator's box set, not the detector's
    curator: str | None = None
    conf: float | None = None  # the detector's confidence
    new_label: bool = False  # a label no detector or selection used


@dataclass
class TrainingImage:
    image_id: str
    root: str  # the collection root image_id is relative to
    path: Path
    width: int
    height: int
    location: str | None
    datetime: str | None
    seq_id: str | None
    boxes: list[Box]
    reviewed: bool


@dataclass
class TrainingSet:
    images: list[TrainingImage]
    counts: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # the images the publishing rule left out, named

    def summary(self) -> dict[str, Any]:
        boxes = [b for i in self.images for b in i.boxes]
        return {"images": len(self.images), "reviewed_images": sum(i.reviewed for i in self.images),
                "boxes": len(boxes), "reviewed_boxes": sum(b.reviewed for b in boxes),
                "detector_boxes": sum(not b.reviewed for b in boxes),
                "per_species": dict(sorted(Counter(b.label for b in boxes).items())),
                "new_labels": sorted({b.label for b in boxes if b.new_label}), "left_out": self.left_out,
                **self.counts}


def training_set(db: sqlite_utils.Database, *, threshold: float = 0.3, reviewed_only: bool = False,
                 include_people: bool = False, include_undetected: bool = False) -> TrainingSet:
    """Every image in the store with its box set (see the module's docstring); those with a person
    detected or no detector record left out and named (:func:`hitl.store.detector.publishable`)
    unless ``include_people`` / ``include_undetected``."""
    result = TrainingSet([])
    opinions = curator_opinions(db)
    detector = _detector_boxes(db, threshold)
    known = _known_labels(db)
    rows = list(db.query("SELECT image_id, root, width, height, location, datetime, seq_id, species FROM images "
                         "ORDER BY image_id"))
    if reviewed_only:  # before the rule, so that it names only images that would have gone out
        rows = [r for r in rows if any(o.get("source") in BOX_SOURCES for o in opinions.get(r["image_id"], []))]
    rule = publishable(db, [r["image_id"] for r in rows], threshold=threshold, include_people=include_people,
                       include_undetected=include_undetected)
    result.left_out = rule.lines()
    for row in rows:
        image_id = row["image_id"]
        if not rule.allows(image_id):
            continue
        reviewed = _reviewed_boxes(opinions.get(image_id, []), row["species"], known, result.counts)
        boxes = reviewed if reviewed is not None else detector.get(image_id, [])
        path = Path(row["root"]) / image_id
        size = (row["width"], row["height"]) if row["width"] and row["height"] else read_upright_size(path)[1]
        if size is None:
            result.counts["left out: image unreadable or missing"] += 1
            result.notes.append(f"{path}: unreadable or missing; left out")
            continue
        result.images.append(TrainingImage(image_id, row["root"], path, size[0], size[1], row["location"], row["datetime"],
                                           row["seq_id"], boxes, reviewed is not None))
    return result


def _known_labels(db: sqlite_utils.Database) -> set[str]:
    names = {r[0] for r in db.execute("SELECT DISTINCT species FROM detections WHERE species IS NOT NULL")}
    names |= {r[0] for r in db.execute("SELECT DISTINCT species FROM images WHERE species IS NOT NULL")}
    return {n.lower() for n in names} | {"animal"}


def _detector_boxes(db: sqlite_utils.Database, threshold: float) -> dict[str, list[Box]]:
    return {image_id: [Box(r["x"], r["y"], r["w"], r["h"], r["species"] if r["species"] and
                           r["species"] != "unidentified animal" else "animal", False, conf=r["conf"]) for r in rows]
            for image_id, rows in queries.animal_boxes(db, threshold).items()}


def _reviewed_boxes(opinions: list[dict], species: str | None, known: set[str], counts: Counter) -> list[Box] | None:
    """The box set of the most recent curator who reviewed boxes, or None when nobody did."""
    reviews = [o for o in opinions if o.get("source") in BOX_SOURCES]
    if not reviews:
        return None
    latest = latest_opinion(reviews)
    if len({_key(o["boxes"]) for o in reviews}) > 1:
        counts["images where curators' boxes disagree (the most recent wins)"] += 1
    default = species if species and species != "unidentified animal" else "animal"
    return [Box(b["x"], b["y"], b["w"], b["h"], b.get("label") or default, True, latest["curator"],
                new_label=(b.get("label") or default).lower() not in known) for b in latest["boxes"]]


def _key(boxes: list[dict]) -> tuple:
    return tuple(sorted((round(b["x"], 3), round(b["y"], 3), round(b["w"], 3), round(b["h"], 3), b.get("label") or "")
                        for b in boxes))


# ---- the three formats -------------------------------------------------------------------------

def export_training(db: sqlite_utils.Database, out_dir: str | Path, fmt: str, *, threshold: float = 0.3,
                    reviewed_only: bool = False, include_people: bool = False, include_undetected: bool = False,
                    link: str = "copy", val_share: float = 0.2, seed: int = 0, margin: float = 0.1,
                    min_size: int = 32, progress: bool | None = None) -> dict[str, Any]:
    """Write the training set in ``fmt`` (coco, yolo or crops) into ``out_dir``; a rerun writes
    nothing that is already identical, and never replaces a file it did not write."""
    if fmt not in FORMATS:
        raise HitlError(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    data = training_set(db, threshold=threshold, reviewed_only=reviewed_only, include_people=include_people,
                        include_undetected=include_undetected)
    if not data.images:
        if data.left_out:
            raise HitlError(f"no image to export: {'; '.join(data.left_out)}")
        raise HitlError("no image to export" + (" with reviewed boxes: rate (and correct) some in Label Studio or "
                                                "Labelme first, or leave out --reviewed-only" if reviewed_only else
                                                ": run `python -m hitl select` first"))
    refuse_inside(out_dir, [i.root for i in data.images])
    out = make_output_folder(out_dir).resolve()
    counts: dict[str, Any] = {**data.summary(), "exported": 0, "unchanged": 0, "conflicts": [], "notes": data.notes,
                              "missing_files": 0, "missing": [], "failed": [], "hardlink_fallbacks": 0}
    own = OwnFiles(out, counts)
    confined = queries.package_images(db)  # their files must not lead out of their package
    if fmt == "coco":
        own.write("coco_camera_traps.json", _coco_json(data))
    elif fmt == "yolo":
        _yolo(data, out, link, val_share, seed, own, progress, confined)
    else:
        _crops(data, margin, min_size, own, progress, confined)
    counts["written"] = own.finish()
    return counts


def _coco_json(data: TrainingSet) -> str:
    images = [{"id": i.image_id, "file_name": i.image_id, "width": i.width, "height": i.height, "location": i.location,
               "datetime": i.datetime, "seq_id": i.seq_id,
               "boxes": [{"label": b.label, "x": b.x, "y": b.y, "w": b.w, "h": b.h, "reviewed": b.reviewed,
                          **({"curator": b.curator} if b.curator else {}),
                          **({"detector_conf": round(b.conf, 4)} if b.conf is not None else {}),
                          **({"new_label": True} if b.new_label else {})} for b in i.boxes]} for i in data.images]
    roots = sorted({i.root for i in data.images})
    info = {"description": "hero-hitl: curator-reviewed and detector boxes (reviewed: true where a curator "
                           "left the box set as it is)", "version": "1.0", "images_root": roots[0] if len(roots) == 1
            else roots}
    return json.dumps(cct_document(images, info), indent=1, ensure_ascii=False)


def _yolo(data: TrainingSet, out: Path, link: str, val_share: float, seed: int, own: OwnFiles,
          progress: bool | None, confined: set[str]) -> None:
    from converters.yolo import data_yaml, label_lines, split_by_sequence

    names = sorted({b.label for i in data.images for b in i.boxes})
    index = {name: k for k, name in enumerate(names)}
    split = split_by_sequence([(i.image_id, i.seq_id) for i in data.images], val_share, seed)
    flat = flat_names([i.image_id for i in data.images])
    counts = own.counts
    own.write("data.yaml", data_yaml(names))
    for side in ("train", "val"):
        items = [{"image_id": i.image_id, "root": i.root, "image": i} for i in data.images if split[i.image_id] == side]
        # a label file only beside an image that is there: a conflict or a missing file gets none
        for item, name, _ in place_images(items, out / "images" / side, "flat", link, counts, progress, names=flat,
                                          desc=f"YOLO {side}", confined=confined, root=out):
            own.write(f"labels/{side}/{Path(name).stem}.txt",
                      label_lines([(index[b.label], b.x, b.y, b.w, b.h) for b in item["image"].boxes]))
    counts["train"] = sum(1 for s in split.values() if s == "train")
    counts["val"] = len(split) - counts["train"]
    if not counts["val"] and val_share > 0:
        counts["notes"].append("val is empty: all images are of one sequence (a burst is never split); "
                               "ultralytics needs a val set to validate")


def _crops(data: TrainingSet, margin: float, min_size: int, own: OwnFiles, progress: bool | None,
           confined: set[str]) -> None:
    """Each box cut from its upright image, written as it is cut (a collection's crops do not fit in memory)."""
    from converters.yolo import safe_names
    from hitl.imageprep import ImagePrepError, load_upright_rgb
    from hitl.publish.crops import crop_box, crop_pixels, encode_crop

    folders = safe_names(sorted({b.label for i in data.images for b in i.boxes}))
    flat = flat_names([i.image_id for i in data.images])
    counts = own.counts
    rows = []
    for image in progress_bar(progress, data.images, desc="Crops", unit="img", leave=False):
        if not image.boxes:
            continue
        if refused := refusal(image.root, image.image_id, confined):
            counts["notes"].append(f"{image.path}: {refused}; its boxes are not cropped")
            continue
        try:
            upright, _ = load_upright_rgb(image.path, max_side=1_000_000)
        except ImagePrepError as exc:
            counts["notes"].append(f"{exc}; its boxes are not cropped")
            continue
        for k, b in enumerate(image.boxes):
            crop = crop_box(upright, (b.x, b.y, b.w, b.h), margin, min_size)
            if crop is None:
                counts["crops smaller than --min-size"] = counts.get("crops smaller than --min-size", 0) + 1
                continue
            name = f"{folders[b.label]}/{Path(flat[image.image_id]).stem}_{k}.jpg"
            own.write(name, encode_crop(crop))
            left, top, right, bottom = crop_pixels(upright.size, (b.x, b.y, b.w, b.h), margin)
            rows.append({"crop": name, "image_id": image.image_id, "label": b.label, "left": left, "top": top,
                         "right": right, "bottom": bottom, "reviewed": "yes" if b.reviewed else "no",
                         "curator": b.curator or "", "new_label": "yes" if b.new_label else "no"})
    counts["crops"] = len(rows)
    own.write("crops.csv", safe_csv_text(["crop", "image_id", "label", "left", "top", "right", "bottom", "reviewed",
                                          "curator", "new_label"], rows, lineterminator="\n"))
