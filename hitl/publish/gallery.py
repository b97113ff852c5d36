"""A self-contained HTML gallery of the models' verdicts, to look at before anyone reviews.

One page, one card per candidate (or per scored image when no selection was made): the
thumbnail with the detector's boxes, the species, why it was picked, and every model's
score, hero flag and reasoning. A little vanilla JS sorts and filters; a summary with a
histogram per model (inline SVG) sits on top. Nothing is fetched from the network, so the
page opens straight from disk, and it can be mailed or archived as one file.

The thumbnail and page helpers here are shared with the hero set's contact sheet.
"""
from __future__ import annotations

import base64
import hashlib
import os
import statistics
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jinja2
import sqlite_utils
from tqdm import tqdm

from hitl.errors import HitlError, NothingToDo
from hitl.imageprep import ImagePrepError, encode_jpeg, load_upright_rgb
from hitl.store import utc_now

__all__ = ["build_gallery", "GalleryError", "EMBED_MAX_IMAGES", "Thumb", "make_thumbnails", "render_page",
           "box_styles", "score_colour"]

# Up to this many cards the thumbnails go inside the page (~15-25 kB each at 320 px), so it
# is one file; beyond it the page would grow past ~40 MB and they go to thumbs/ instead.
EMBED_MAX_IMAGES = 2000
THUMB_QUALITY = 80
THUMBS_DIR = "thumbs"


class GalleryError(HitlError, ValueError):
    """A bad gallery request (an unknown model, say); the message lists what exists."""


# ---- shared helpers: thumbnails and pages -----------------------------------------------------

class Thumb:
    """A thumbnail's JPEG bytes and size, or why there is none."""

    __slots__ = ("jpeg", "width", "height", "error")

    def __init__(self, jpeg: bytes | None = None, width: int = 0, height: int = 0, error: str | None = None):
        self.jpeg, self.width, self.height, self.error = jpeg, width, height, error

    def data_uri(self) -> str:
        return "data:image/jpeg;base64," + base64.b64encode(self.jpeg or b"").decode("ascii")


def _thumb(path: Path, side: int) -> Thumb:
    try:
        # load_upright_rgb applies the EXIF orientation, so a rotated photo shows upright
        image, _ = load_upright_rgb(path, max_side=side)
    except ImagePrepError as exc:
        return Thumb(error=exc.reason)
    return Thumb(encode_jpeg(image, THUMB_QUALITY), image.width, image.height)


def make_thumbnails(paths: Sequence[Path], side: int = 320, progress: bool | None = None,
                    desc: str = "Thumbnails") -> list[Thumb]:
    """Thumbnails of ``paths``, in order; an unreadable file gives a Thumb with ``error`` set.

    Threads pay off: Pillow releases the GIL while it decodes.
    """
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: _thumb(Path(p), side), paths)
        return list(tqdm(results, total=len(paths), desc=desc, unit="img", leave=False,
                         disable=None if progress is None else not progress))


def box_styles(boxes: list[dict]) -> list[dict]:
    """CSS positions (percent of the upright image) of normalised x, y, w, h boxes, clipped to it."""
    styles = []
    for box in boxes:
        try:
            x, y, w, h = (float(box[k]) for k in ("x", "y", "w", "h"))
        except (KeyError, TypeError, ValueError):
            continue  # a malformed box is not worth losing the page over
        x0, y0 = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)
        x1, y1 = min(max(x + w, 0.0), 1.0), min(max(y + h, 0.0), 1.0)
        styles.append({"style": f"left:{x0 * 100:.2f}%;top:{y0 * 100:.2f}%;"
                                f"width:{(x1 - x0) * 100:.2f}%;height:{(y1 - y0) * 100:.2f}%",
                       "label": str(box.get("label") or ""),
                       # a label hanging off the right edge would be cut: anchor it right there
                       "side": "r" if x0 > 0.5 else "l"})
    return styles


def score_colour(score: float | None, top: float = 10.0) -> str:
    """A red-to-green badge colour for a score on 0..top (grey when there is none)."""
    if score is None:
        return "hsl(0,0%,55%)"
    share = min(max(score / top, 0.0), 1.0)
    return f"hsl({share * 120:.0f},55%,38%)"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


_ENV = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
_ENV.filters["fmt"] = _fmt
_ENV.filters["colour"] = score_colour


def render_page(template: str, **context: Any) -> str:
    """Render a page template with the shared CSS; every value is HTML-escaped."""
    return _ENV.from_string(template).render(base_css=BASE_CSS, **context)


def write_atomic(path: Path, text: str) -> None:
    """Write text so a reader never sees half a file (and a crash leaves the old one)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


BASE_CSS = """
:root { --ink:#1d2428; --muted:#5f6b73; --line:#d9dee2; --bg:#f3f5f6; --card:#fff; --accent:#b7791f; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       background: var(--bg); }
header.top { padding: 16px 24px 8px; background: var(--card); border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0 0 4px; }
.sub { color: var(--muted); margin: 0 0 10px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 14px; padding: 16px 24px;
        align-items: start; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; overflow: hidden;
        box-shadow: 0 1px 2px rgba(0,0,0,.05); }
.card[hidden] { display: none; }
.thumb { position: relative; background: #222; line-height: 0; }
.thumb img { width: 100%; height: auto; display: block; }
.nothumb { display: flex; align-items: center; justify-content: center; height: 180px; color: #ddd;
           background: repeating-linear-gradient(45deg,#333,#333 10px,#3a3a3a 10px,#3a3a3a 20px); line-height: 1.4; }
.box { position: absolute; border: 2px solid #ffd84d; box-shadow: 0 0 0 1px rgba(0,0,0,.5); pointer-events: none; }
.box span { position: absolute; left: 0; top: 0; font: 11px/15px system-ui, sans-serif; background: #ffd84d;
            color: #000; padding: 0 3px; white-space: nowrap; }
.box.r span { left: auto; right: 0; }
body.noboxes .box { display: none; }
.body { padding: 8px 10px 10px; }
.title { display: flex; justify-content: space-between; gap: 8px; align-items: baseline; }
.species { font-weight: 600; font-size: 15px; text-transform: capitalize; }
.id { color: var(--muted); font: 12px ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
.meta { color: var(--muted); font-size: 12px; margin: 2px 0 6px; }
.badge { display: inline-block; min-width: 34px; text-align: center; color: #fff; border-radius: 10px;
         padding: 0 7px; font-weight: 600; font-size: 12px; }
.hero { color: var(--accent); font-weight: 700; }
.models { margin: 6px 0 0; padding: 0; list-style: none; }
.models li { border-top: 1px solid var(--line); padding: 5px 0 3px; }
.mname { font-weight: 600; font-size: 12px; }
.reason { color: #39444b; font-size: 12px; margin: 2px 0 0; display: -webkit-box; -webkit-line-clamp: 4;
          -webkit-box-orient: vertical; overflow: hidden; cursor: pointer; }
.reason.open { display: block; }
.failed { color: #a33; font-size: 12px; }
.summary { display: flex; flex-wrap: wrap; gap: 12px; margin: 6px 0 10px; }
.stat { border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px; background: #fafbfb; }
.stat h2 { font-size: 13px; margin: 0 0 4px; }
.stat .nums { font-size: 12px; color: var(--muted); margin-bottom: 4px; }
.hist rect { fill: #4a7c8c; }
.hist text { font-size: 9px; fill: var(--muted); }
.hist text.n { fill: var(--ink); }
.controls { display: flex; flex-wrap: wrap; gap: 14px; align-items: center; padding: 4px 0 6px; }
.controls label { font-size: 13px; color: var(--muted); }
.controls select { font: inherit; padding: 2px 4px; }
table.people { width: 100%; border-collapse: collapse; font-size: 12px; margin-top: 4px; }
table.people td { border-top: 1px solid var(--line); padding: 3px 2px; vertical-align: top; }
.comment { font-style: italic; color: #39444b; }
"""


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
    _attach_scores(db, cards, raters)
    _attach_boxes(db, cards, threshold)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    embed = len(cards) <= EMBED_MAX_IMAGES if embed is None else embed
    thumbs = make_thumbnails([Path(c["root"] or "") / c["image_id"] for c in cards], thumb_side, progress)
    if not embed:
        (out / THUMBS_DIR).mkdir(exist_ok=True)
    for card, thumb in zip(cards, thumbs):
        card["thumb_error"] = thumb.error
        card["thumb_w"], card["thumb_h"] = thumb.width, thumb.height
        if thumb.error:
            card["src"] = None
        elif embed:
            card["src"] = thumb.data_uri()
        else:
            # named by the image_id's hash: unique, stable across runs, and safe as a file name
            name = hashlib.sha256(card["image_id"].encode()).hexdigest()[:20] + ".jpg"
            (out / THUMBS_DIR / name).write_bytes(thumb.jpeg or b"")
            card["src"] = f"{THUMBS_DIR}/{name}"

    species = sorted({c["species"] for c in cards if c["species"]})
    html = render_page(GALLERY_TEMPLATE, cards=cards, raters=raters, summaries=_summaries(cards, raters),
                       species=species, generated_at=utc_now(), n_cards=len(cards),
                       from_candidates=cards[0]["rank"] is not None)
    index = out / "index.html"
    write_atomic(index, html)
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


def _attach_scores(db: sqlite_utils.Database, cards: list[dict], raters: list[str]) -> None:
    by_image: dict[str, dict[str, dict]] = defaultdict(dict)
    for image_id, model, pv, status, score, hero, reasoning, error_kind in db.execute(
            "SELECT image_id, model, prompt_version, status, score, hero, reasoning, error_kind FROM scores"):
        by_image[image_id][f"{model}@{pv}"] = {"status": status, "score": score, "reasoning": reasoning,
                                               "hero": None if hero is None else bool(hero), "error": error_kind}
    for card in cards:
        mine = by_image.get(card["image_id"], {})
        card["scores"] = [mine.get(r) for r in raters]


def _attach_boxes(db: sqlite_utils.Database, cards: list[dict], threshold: float) -> None:
    boxes: dict[str, list[dict]] = defaultdict(list)
    for image_id, x, y, w, h, conf, species in db.execute(
            "SELECT image_id, x, y, w, h, conf, species FROM detections WHERE kind = 'animal' AND conf >= ? "
            "ORDER BY image_id, det_index", [threshold]):
        boxes[image_id].append({"x": x, "y": y, "w": w, "h": h, "label": f"{species or 'animal'} {conf:.2f}"})
    for card in cards:
        card["boxes"] = box_styles(boxes.get(card["image_id"], []))


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


GALLERY_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Model scores: {{ n_cards }} images</title>
<style>{{ base_css | safe }}</style>
</head>
<body>
<header class="top">
  <h1>Model scores before review</h1>
  <p class="sub">{{ n_cards }} {{ "candidates" if from_candidates else "scored images" }} ·
    {{ raters | length }} model{{ "" if raters | length == 1 else "s" }} · generated {{ generated_at }}</p>
  <div class="summary">
  {% for s in summaries %}
    <div class="stat">
      <h2>{{ s.name }}</h2>
      <div class="nums">mean {{ s.mean | fmt(2) }} · median {{ s.median | fmt(1) }} ·
        hero {{ s.heroes }}/{{ s.ok }}{% if s.hero_share is not none %} ({{ "%.0f" | format(s.hero_share * 100) }}%){% endif %}
        {% if s.failed %} · <span class="failed">{{ s.failed }} failed</span>{% endif %}
        {% if s.missing %} · {{ s.missing }} not scored{% endif %}</div>
      <svg class="hist" width="{{ s.histogram.width }}" height="{{ s.histogram.height }}" role="img"
           aria-label="Histogram of {{ s.name }} scores, 0 to 10">
      {% for b in s.histogram.bars %}
        <rect x="{{ b.x }}" y="{{ b.y }}" width="{{ b.w }}" height="{{ b.h }}"><title>score {{ b.label }}: {{ b.count }}</title></rect>
        <text x="{{ b.lx }}" y="{{ s.histogram.axis_y }}" text-anchor="middle">{{ b.label }}</text>
        {% if b.count %}<text class="n" x="{{ b.lx }}" y="{{ b.cy }}" text-anchor="middle">{{ b.count }}</text>{% endif %}
      {% endfor %}
      </svg>
    </div>
  {% else %}
    <div class="stat">No model scores yet.</div>
  {% endfor %}
  </div>
  <div class="controls">
    <label>Sort <select id="sort">
      {% if from_candidates %}<option value="rank">rank</option>{% endif %}
      <option value="id">image id</option>
      <option value="species">species</option>
      {% for r in raters %}
      <option value="score-{{ loop.index0 }}:desc">{{ r }} score, high first</option>
      <option value="score-{{ loop.index0 }}:asc">{{ r }} score, low first</option>
      {% endfor %}
    </select></label>
    <label>Species <select id="species">
      <option value="">all</option>
      {% for sp in species %}<option value="{{ sp }}">{{ sp }}</option>{% endfor %}
    </select></label>
    <label>Hero <select id="hero">
      <option value="">any</option>
      {% for r in raters %}
      <option value="hero-{{ loop.index0 }}:1">hero by {{ r }}</option>
      <option value="hero-{{ loop.index0 }}:0">not hero by {{ r }}</option>
      {% endfor %}
      {% if raters | length > 1 %}<option value="disagree">models disagree</option>{% endif %}
    </select></label>
    <label><input type="checkbox" id="boxes" checked> detector boxes</label>
    <span id="count" class="sub"></span>
  </div>
</header>
<main class="grid" id="grid">
{% for c in cards %}
  <article class="card" data-id="{{ c.image_id }}" data-rank="{{ c.rank if c.rank is not none else '' }}"
           data-species="{{ c.species or '' }}"
           {% for s in c.scores %}data-score-{{ loop.index0 }}="{{ s.score if s and s.status == 'ok' and s.score is not none else '' }}" data-hero-{{ loop.index0 }}="{{ ('1' if s.hero else '0') if s and s.status == 'ok' and s.hero is not none else '' }}" {% endfor %}>
    <div class="thumb">
    {% if c.src %}
      <img src="{{ c.src }}" width="{{ c.thumb_w }}" height="{{ c.thumb_h }}" loading="lazy" alt="{{ c.image_id }}">
      {% for b in c.boxes %}<div class="box {{ b.side }}" style="{{ b.style }}"><span>{{ b.label }}</span></div>{% endfor %}
    {% else %}
      <div class="nothumb">no preview: {{ c.thumb_error }}</div>
    {% endif %}
    </div>
    <div class="body">
      <div class="title">{% if c.species %}<span class="species">{{ c.species }}</span>{% else %}<span class="meta">species unknown</span>{% endif %}
        {% if c.rank is not none %}<span class="meta">#{{ c.rank }}</span>{% endif %}</div>
      <div class="id">{{ c.image_id }}</div>
      <div class="meta">{% if c.reason or c.category %}{{ c.reason or c.category | replace("_", " ") }} · {% endif %}{{ c.datetime or "" }}{% if c.location %} · {{ c.location }}{% endif %}</div>
      <ul class="models">
      {% for s in c.scores %}
        <li><span class="mname">{{ raters[loop.index0] }}</span>
        {% if s and s.status == "ok" %}
          <span class="badge" style="background:{{ s.score | colour }}">{{ s.score | fmt(1) }}</span>
          {% if s.hero %}<span class="hero">★ hero</span>{% endif %}
          {% if s.reasoning %}<p class="reason" title="click to expand">{{ s.reasoning }}</p>{% endif %}
        {% elif s %}
          <span class="failed">failed: {{ s.error or "unknown error" }}</span>
        {% else %}
          <span class="meta">not scored</span>
        {% endif %}
        </li>
      {% endfor %}
      </ul>
    </div>
  </article>
{% endfor %}
</main>
<script>
(function () {
  var grid = document.getElementById("grid");
  var cards = Array.prototype.slice.call(grid.children);
  var sortSel = document.getElementById("sort"), speciesSel = document.getElementById("species");
  var heroSel = document.getElementById("hero"), count = document.getElementById("count");
  var nModels = {{ raters | length }};
  function num(card, attr) {
    var v = card.getAttribute(attr);
    return v === null || v === "" ? null : parseFloat(v);
  }
  function keep(card) {
    if (speciesSel.value && card.getAttribute("data-species") !== speciesSel.value) return false;
    var h = heroSel.value;
    if (!h) return true;
    if (h === "disagree") {
      var seen = {};
      for (var i = 0; i < nModels; i++) { var v = card.getAttribute("data-hero-" + i); if (v) seen[v] = 1; }
      return Object.keys(seen).length > 1;
    }
    var parts = h.split(":");
    return card.getAttribute("data-" + parts[0]) === parts[1];
  }
  function compare(a, b) {
    var key = sortSel.value, parts = key.split(":");
    if (parts[0] === "rank") return (num(a, "data-rank") || 0) - (num(b, "data-rank") || 0);
    if (parts[0] === "id") return a.getAttribute("data-id").localeCompare(b.getAttribute("data-id"));
    if (parts[0] === "species") {
      return a.getAttribute("data-species").localeCompare(b.getAttribute("data-species")) ||
             (num(a, "data-rank") || 0) - (num(b, "data-rank") || 0) ||
             a.getAttribute("data-id").localeCompare(b.getAttribute("data-id"));
    }
    var x = num(a, "data-" + parts[0]), y = num(b, "data-" + parts[0]);
    if (x === null && y === null) return 0;
    if (x === null) return 1;  // unscored images last, whichever the direction
    if (y === null) return -1;
    return parts[1] === "asc" ? x - y : y - x;
  }
  function apply() {
    var shown = 0;
    cards.slice().sort(compare).forEach(function (card) {
      card.hidden = !keep(card);
      if (!card.hidden) shown++;
      grid.appendChild(card);
    });
    count.textContent = "showing " + shown + " of " + cards.length;
  }
  [sortSel, speciesSel, heroSel].forEach(function (el) { el.addEventListener("change", apply); });
  document.getElementById("boxes").addEventListener("change", function (e) {
    document.body.classList.toggle("noboxes", !e.target.checked);
  });
  grid.addEventListener("click", function (e) {
    if (e.target.classList.contains("reason")) e.target.classList.toggle("open");
  });
  apply();
})();
</script>
</body>
</html>
"""
