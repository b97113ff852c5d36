"""Export the validated hero set: the images curators marked hero, with a manifest and a contact sheet.

Which images are heroes is the store's rule (:mod:`hitl.store.heroes`). Files are copied or
hard-linked into a folder, never over a different file: a rerun skips what is already there
with the same content, and anything else in the way is reported as a conflict and left alone. ``manifest.csv``, ``manifest.json`` and a
self-contained ``index.html`` contact sheet describe what the folder holds.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import sqlite_utils

from hitl.compare.order import pairwise_order
from hitl.files import TEMP_SUFFIX, make_output_folder, refuse_inside
from hitl.publish.placing import RESERVED, flat_names, place_images, write_own_files
from hitl.publish.render import card_image, make_thumbnails, render, verdict
from hitl.store import queries, utc_now
from hitl.store.detector import publishable
from hitl.store.heroes import HerosetError, check_policy, latest_drawn, select_with_counts
from hitl.store.ratings import curator_comparisons
from hitl.tables import safe_csv_text

__all__ = ["LINKS", "LAYOUTS", "HerosetError", "export_heroset", "flat_names", "ranked_by_comparisons"]

LINKS = ("copy", "hardlink")
LAYOUTS = ("tree", "flat")
MANIFEST_CSV, MANIFEST_JSON, INDEX_HTML = "manifest.csv", "manifest.json", "index.html"
# the manifest's columns of the pairwise order, there only when two exported heroes were compared
PAIRWISE_COLUMNS = ("rank", "strength", "strength_low", "strength_high", "n_compared")


def _model_results(db: sqlite_utils.Database) -> tuple[list[str], dict[str, dict[str, dict]]]:
    """Every rater ``model@prompt_version`` with ok scores, and their results per image."""
    results: dict[str, dict[str, dict]] = defaultdict(dict)
    names: set[str] = set()
    for image_id, model, pv, score, hero, reasoning in db.execute(
            "SELECT image_id, model, prompt_version, score, hero, reasoning FROM scores WHERE status = 'ok'"):
        name = f"{model}@{pv}"
        names.add(name)
        results[image_id][name] = {"score": score, "hero": None if hero is None else bool(hero),
                                   "reasoning": reasoning}
    return sorted(names), results


def _detector_boxes(db: sqlite_utils.Database, image_ids: set[str], threshold: float) -> dict[str, list[dict]]:
    return {image_id: [{"x": round(b["x"], 6), "y": round(b["y"], 6), "w": round(b["w"], 6), "h": round(b["h"], 6),
                        "label": b["species"] or "animal"} for b in boxes]
            for image_id, boxes in queries.animal_boxes(db, threshold, image_ids).items()}


def _boxes(hero: dict, detected: list[dict]) -> tuple[str, list[dict]]:
    """The curators' boxes when one edited them (the most recent such curator), else the detector's."""
    latest = latest_drawn(hero["curators"])
    if latest is not None:
        return f"curator {latest['curator']}", latest["boxes"]
    return ("detector" if detected else "none"), detected


def export_heroset(db: sqlite_utils.Database, out_dir: str | Path, *, policy: str = "majority",
                   min_stars: float | None = None, link: str = "copy", layout: str = "tree",
                   progress: bool | None = None, threshold: float = 0.3, include_people: bool = False,
                   include_undetected: bool = False) -> dict[str, Any]:
    """Copy (or hard-link) the hero set into ``out_dir`` with manifest.csv, manifest.json and index.html.

    ``layout`` ``tree`` keeps the image_id's folders; ``flat`` uses one folder and
    :func:`flat_names`. ``link`` ``hardlink`` shares the original's inode (editing the
    export edits the original); where hard links are impossible it copies and counts it.
    A target already there with the same bytes is ``unchanged``; anything else there is a
    conflict: left untouched, its path reported, that image not exported (and not in the
    manifest). Detector boxes (animal, conf >= ``threshold``) stand in when no curator
    drew any. When curators compared exported heroes, the manifest and the contact sheet
    follow their pairwise order (:func:`ranked_by_comparisons`) and ``counts["pairwise"]``
    says what it rests on. A hero with a person detected or with no detector record is left
    out, counted and named in ``counts["left_out"]`` (:func:`hitl.store.detector.publishable`),
    unless ``include_people`` / ``include_undetected``. Returns the counts, also written in
    manifest.json's header.
    """
    check_policy(policy, min_stars)
    if link not in LINKS:
        raise HerosetError(f"link must be one of {', '.join(LINKS)}, not {link!r}")
    if layout not in LAYOUTS:
        raise HerosetError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    heroes, selected = select_with_counts(db, policy, min_stars)
    rule = publishable(db, [h["image_id"] for h in heroes], threshold=threshold, include_people=include_people,
                       include_undetected=include_undetected)
    heroes = [h for h in heroes if rule.allows(h["image_id"])]
    refuse_inside(out_dir, [h["root"] for h in heroes])
    out = make_output_folder(out_dir).resolve()
    models, model_results = _model_results(db)
    detected = _detector_boxes(db, {h["image_id"] for h in heroes}, threshold)
    counts: dict[str, Any] = {**selected, **rule.counts(), "left_out": rule.lines(), "exported": 0, "unchanged": 0,
                              "conflicts": [], "missing_files": 0, "missing": [], "hardlink_fallbacks": 0,
                              "failed": [], "notes": []}
    placed = place_images(heroes, out, layout, link, counts, progress, desc="Exporting heroes",
                          confined=queries.package_images(db))

    curators = sorted({o["curator"] for h, _, _ in placed for o in h["curators"]})
    rows = _manifest_rows(placed, detected, model_results)
    placed, rows, pairwise = ranked_by_comparisons(placed, rows, curator_comparisons(db))
    if pairwise:
        counts["pairwise"] = pairwise
    counts["in_manifest"] = len(rows)
    counts["not_in_manifest"] = _leftovers(out, {r["file"] for r in rows}, set(counts["conflicts"]))

    header = {"exported_at": utc_now(), "policy": policy, "min_stars": min_stars, "link": link, "layout": layout,
              "threshold": threshold, "models": models, "curators": curators, "counts": counts}
    thumbs = make_thumbnails([target for _, _, target in placed], 320, progress, desc="Contact sheet")
    files = {MANIFEST_JSON: json.dumps({"header": header, "images": rows}, indent=2, ensure_ascii=False),
             MANIFEST_CSV: _manifest_csv(rows, models, curators, ranked=pairwise is not None),
             INDEX_HTML: _contact_sheet(rows, thumbs, header, pairwise)}
    counts["written"] = write_own_files(out, files, counts)
    return counts


def _manifest_rows(placed: list[tuple[dict, str, Path]], detected: dict[str, list[dict]],
                   model_results: dict[str, dict[str, dict]]) -> list[dict]:
    """One manifest entry per placed hero: its metadata, votes, boxes, model results and curators."""
    rows = []
    for hero, name, target in placed:
        source, boxes = _boxes(hero, detected.get(hero["image_id"], []))
        rows.append({
            "image_id": hero["image_id"], "file": name, "species": hero["species"], "seq_id": hero["seq_id"],
            "datetime": hero["datetime"], "location": hero["location"], "width": hero["width"],
            "height": hero["height"], "bytes": target.stat().st_size,
            "mean_stars": hero["mean_stars"], "n_stars": hero["n_stars"], "votes": hero["votes"],
            "hero_votes": hero["hero_votes"], "decided": hero["decided"],
            "comments": [f"{o['curator']}: {o['comment']}" for o in hero["curators"] if o["comment"]],
            "boxes_source": source, "boxes": boxes,
            "models": model_results.get(hero["image_id"], {}),
            "curators": [{k: o[k] for k in ("curator", "stars", "hero", "comment", "mode", "updated_at")}
                         for o in hero["curators"]],
        })
    return rows


def ranked_by_comparisons(placed: list[tuple[dict, str, Path]], rows: list[dict], comparisons: list[dict]
                          ) -> tuple[list[tuple[dict, str, Path]], list[dict], dict[str, Any] | None]:
    """The manifest rows (and their placed files, alike) in the curators' pairwise order.

    The Bradley-Terry fit of :func:`hitl.compare.order.pairwise_order` over the rows' images:
    each row gets rank, strength (the log-strength, mean 0 over the compared images),
    strength_low and strength_high (its 95% interval) and n_compared, None for an image never
    compared; ranked rows come first, strongest first, the others after in their order. With
    no comparison between two of the rows' images, everything is returned as it was, and None
    for the summary (comparisons, outside, curators, compared_images, level).
    """
    order = pairwise_order([row["image_id"] for row in rows], comparisons)
    if not order.n_used:
        return placed, rows, None
    strengths = order.by_id()
    for row in rows:
        s = strengths[row["image_id"]]
        row.update(rank=s.rank, strength=_rounded(s.log_strength), strength_low=_rounded(s.low),
                   strength_high=_rounded(s.high), n_compared=s.n_compared)
    ordered = sorted(range(len(rows)), key=lambda k: (rows[k]["rank"] is None, rows[k]["rank"] or 0))
    summary = {"comparisons": order.n_used, "outside": order.n_outside, "curators": order.n_curators,
               "compared_images": len(order.ranked()), "level": order.level}
    return [placed[k] for k in ordered], [rows[k] for k in ordered], summary


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4) + 0.0  # + 0.0: no "-0.0"


def _leftovers(out: Path, files: set[str], conflicts: set[str]) -> list[str]:
    """Files in the folder that this export did not write nor report (earlier exports' heroes)."""
    extra = []
    for path in sorted(out.rglob("*")):
        rel = path.relative_to(out).as_posix()
        if path.is_dir() or rel in files or rel in RESERVED or str(path) in conflicts or path.name.endswith(TEMP_SUFFIX):
            continue
        extra.append(rel)
    return extra


def _manifest_csv(rows: list[dict], models: list[str], curators: list[str], ranked: bool = False) -> str:
    columns = ["image_id", "file", "species", "seq_id", "datetime", "location", "width", "height", "bytes",
               "mean_stars", "n_stars", "votes", *(PAIRWISE_COLUMNS if ranked else ()), "comments", "boxes_source",
               "boxes"]
    columns += [f"score_{m}" for m in models] + [f"hero_{m}" for m in models]
    columns += [f"stars_{c}" for c in curators] + [f"hero_{c}" for c in curators]
    lines = []
    for row in rows:
        line = {k: row[k] for k in columns if k in row}
        line["comments"] = " | ".join(row["comments"])
        line["boxes"] = json.dumps(row["boxes"])
        for m in models:
            result = row["models"].get(m) or {}
            line[f"score_{m}"] = result.get("score")
            line[f"hero_{m}"] = _yes_no(result.get("hero"))
        for o in row["curators"]:
            line[f"stars_{o['curator']}"] = o["stars"]
            line[f"hero_{o['curator']}"] = _yes_no(o["hero"])
        lines.append(line)
    return safe_csv_text(columns, lines, lineterminator="\n")


def _by_name(item: tuple[str, Any]) -> str:
    return item[0].lower()  # the order Jinja's dictsort gave the contact sheet: case-blind


def _yes_no(value: bool | None) -> str:
    return "" if value is None else ("yes" if value else "no")


def _contact_sheet(rows: list[dict], thumbs: list, header: dict, pairwise: dict | None = None) -> str:
    """templates/contact_sheet.html over the manifest rows: a card per exported hero (with its
    rank and interval when ``pairwise``, the summary of :func:`ranked_by_comparisons`)."""
    cards = [{**row, "image": card_image(thumb, alt=row["image_id"], boxes=row["boxes"]),
              "verdicts": [verdict(name, **m) for name, m in sorted(row["models"].items(), key=_by_name)]}
             for row, thumb in zip(rows, thumbs)]
    return render("contact_sheet.html", cards=cards, header=header, counts=header["counts"], pairwise=pairwise)
