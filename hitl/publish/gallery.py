"""A self-contained HTML gallery of the models' verdicts, to look at before anyone reviews.

One page, one card per candidate (or per scored image when no selection was made): the
thumbnail with the detector's boxes, the species, why it was picked, and every model's
score, hero flag and reasoning. A little vanilla JS sorts and filters; a summary with a
histogram per model (inline SVG) sits on top. Nothing is fetched from the network, so the
page opens straight from disk, and it can be mailed or archived as one file.

The page is templates/gallery.html, drawn through hitl.publish.render like the hero set's
contact sheet and the agreement report.
"""
from __future__ import annotations

import hashlib
import statistics
from collections import defaultdict
from pathlib import Path

import sqlite_utils

from hitl.errors import HitlError, NothingToDo
from hitl.files import make_output_folder, write_atomic
from hitl.publish.render import card_image, make_thumbnails, render, verdict
from hitl.score.stale import stale_marks
from hitl.store import queries, utc_now

__all__ = ["build_gallery", "GalleryError", "EMBED_MAX_IMAGES"]

# Up to this many cards the thumbnails go inside the page (~15-25 kB each at 320 px), so it
# is one file; beyond it the page would grow past ~40 MB and they go to thumbs/ instead.
EMBED_MAX_IMAGES = 2000
THUMBS_DIR = "thumbs"


class GalleryError(HitlError, ValueError):
    """A bad gallery request (an unknown model, say); the message lists what exists."""


# ---- the gallery -------------------------------------------------------------------------------

def build_gallery(db: sqlite_utils.Database, out_dir: str | Path, *, models: list[str] | None = None,
                  thumb_side: int = 320, progress: bool | None = None, embed: bool | None = None,
                  threshold: float = 0.3) -> Path:
    """Write ``out_dir/index.html``, a gallery of every model's verdict per image; return its path.

    Cards are the candidates in rank order, or every scored image when there are no
    candidates. ``models`` picks raters by ``model`` or ``model@prompt_version`` (default:
    all). Thumbnails are embedded up to EMBED_MAX_IMAGES cards, else written to
    ``out_dir/thumbs/`` (``embed`` forces either). Animal boxes at or above ``threshold``
    are drawn on the thumbnails.
    """
    if thumb_side < 16:
        raise GalleryError("thumb_side must be at least 16 pixels")
    cards = _cards(db)
    if not cards:
        raise NothingToDo("nothing to show: no candidates and no scores yet; run `select` or `score` first")
    raters = _pick_models(db, models)
    stale, notes = stale_marks(db)
    _attach_scores(db, cards, raters, stale)
    _attach_boxes(db, cards, threshold)

    out = make_output_folder(out_dir)
    embed = len(cards) <= EMBED_MAX_IMAGES if embed is None else embed
    thumbs = make_thumbnails([Path(c["root"] or "") / c["image_id"] for c in cards], thumb_side, progress)
    for card, thumb in zip(cards, thumbs):
        src = None  # None: card_image embeds the thumbnail as a data URI
        if not embed and not thumb.error:
            # named by the image_id's hash: unique, stable across runs, and safe as a file name
            name = hashlib.sha256(card["image_id"].encode()).hexdigest()[:20] + ".jpg"
            write_atomic(out / THUMBS_DIR / name, thumb.jpeg or b"", out)
            src = f"{THUMBS_DIR}/{name}"
        card["image"] = card_image(thumb, alt=card["image_id"], boxes=card["boxes"], src=src, lazy=True)

    species = sorted({c["species"] for c in cards if c["species"]})
    html = render("gallery.html", cards=cards, raters=raters, summaries=_summaries(cards, raters),
                  species=species, generated_at=utc_now(), n_cards=len(cards),
                  stale_notes=[n for n in notes if n["rater"] in raters],
                  from_candidates=cards[0]["rank"] is not None)
    index = out / "index.html"
    write_atomic(index, html, out)
    return index


def _cards(db: sqlite_utils.Database) -> list[dict]:
    fields = ("image_id", "rank", "category", "reason", "root", "species", "seq_id", "datetime", "location")
    rows = db.execute("SELECT c.image_id, c.rank, c.category, c.reason, i.root, i.species, i.seq_id, i.datetime, "
                      "i.location FROM candidates c JOIN images i USING (image_id) ORDER BY c.rank, c.image_id"
                      ).fetchall()
    if not rows:  # a folder scored without selection: show what was scored
        rows = db.execute("SELECT i.image_id, NULL, NULL, NULL, i.root, i.species, i.seq_id, i.datetime, i.location "
                          "FROM images i WHERE i.image_id IN (SELECT image_id FROM scores) ORDER BY i.image_id"
                          ).fetchall()
    return [dict(zip(fields, row)) for row in rows]


def _pick_models(db: sqlite_utils.Database, wanted: list[str] | None) -> list[str]:
    """The raters ``model@prompt_version`` to show; a name without @ takes every prompt version."""
    known = [f"{m}@{pv}" for m, pv in db.execute(
        "SELECT DISTINCT model, prompt_version FROM scores ORDER BY model, prompt_version")]
    if wanted is None:
        return known
    picked: list[str] = []
    for name in wanted:
        hits = [k for k in known if k == name or k.split("@", 1)[0] == name]
        if not hits:
            raise GalleryError(f"no scores from model {name!r}; scored so far: {', '.join(known) or 'none'}")
        picked += [h for h in hits if h not in picked]
    return picked


def _attach_scores(db: sqlite_utils.Database, cards: list[dict], raters: list[str],
                   stale: set[tuple[str, str]]) -> None:
    by_image: dict[str, dict[str, dict]] = defaultdict(dict)
    for image_id, model, pv, status, score, hero, reasoning, error_kind in db.execute(
            "SELECT image_id, model, prompt_version, status, score, hero, reasoning, error_kind FROM scores"):
        by_image[image_id][f"{model}@{pv}"] = {"status": status, "score": score, "reasoning": reasoning,
                                               "hero": None if hero is None else bool(hero), "error": error_kind}
    for card in cards:
        mine = by_image.get(card["image_id"], {})
        card["scores"] = [mine.get(r) for r in raters]
        card["verdicts"] = [verdict(r, **(s or {"status": None}), stale=(card["image_id"], r) in stale)
                            for r, s in zip(raters, card["scores"])]
        # what the page's script sorts and filters by; "" where a model has no ok answer
        card["data"] = {"id": card["image_id"], "rank": "" if card["rank"] is None else card["rank"],
                        "species": card["species"] or ""}
        for i, s in enumerate(card["scores"]):
            ok = s is not None and s["status"] == "ok"
            card["data"][f"score-{i}"] = s["score"] if ok and s["score"] is not None else ""
            card["data"][f"hero-{i}"] = ("1" if s["hero"] else "0") if ok and s["hero"] is not None else ""


def _attach_boxes(db: sqlite_utils.Database, cards: list[dict], threshold: float) -> None:
    boxes = queries.animal_boxes(db, threshold, [c["image_id"] for c in cards])
    for card in cards:
        card["boxes"] = [{"x": b["x"], "y": b["y"], "w": b["w"], "h": b["h"],
                          "label": f"{b['species'] or 'animal'} {b['conf']:.2f}"} for b in boxes.get(card["image_id"], [])]


def _summaries(cards: list[dict], raters: list[str]) -> list[dict]:
    """Per model over the cards: counts, mean, hero share and an 11-bin histogram (scores rounded)."""
    out = []
    for i, rater in enumerate(raters):
        results = [c["scores"][i] for c in cards if c["scores"][i]]
        ok = [r for r in results if r["status"] == "ok" and r["score"] is not None]
        values = [float(r["score"]) for r in ok]
        bins = [0] * 11
        for v in values:
            bins[min(max(round(v), 0), 10)] += 1
        heroes = sum(1 for r in ok if r["hero"])
        out.append({"name": rater, "ok": len(ok), "failed": sum(1 for r in results if r["status"] != "ok"),
                    "missing": len(cards) - len(results),
                    "mean": statistics.fmean(values) if values else None,
                    "median": statistics.median(values) if values else None,
                    "heroes": heroes, "hero_share": heroes / len(ok) if ok else None,
                    "histogram": _histogram(bins)})
    return out


def _histogram(bins: list[int], width: int = 231, height: int = 76) -> dict:
    """Bar geometry for an inline SVG (no plotting library needed)."""
    top = max(bins) or 1
    step = width / len(bins)
    head, foot = 11, 14  # room for the counts above the bars and the axis labels below
    plot = height - head - foot
    bars = []
    for i, count in enumerate(bins):
        h = plot * count / top
        y = head + plot - h
        bars.append({"x": f"{i * step + 1:.1f}", "y": f"{y:.1f}", "w": f"{step - 2:.1f}", "h": f"{h:.1f}",
                     "count": count, "cy": f"{y - 2:.1f}", "label": str(i), "lx": f"{i * step + step / 2:.1f}"})
    return {"width": width, "height": height, "bars": bars, "axis_y": height - 2}
