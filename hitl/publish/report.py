"""The agreement report: one self-contained HTML file, agreement.json and disagreements.csv.

Everything is embedded (plots as PNG, thumbnails as JPEG data URIs), so report.html opens
from disk with no server and can be mailed to a project lead. Too little data for a
statistic is said in words; no NaN is ever shown. This module computes plain data (cells
as strings, plots as data URIs, sentences); templates/report.html lays it out.
"""
from __future__ import annotations

import base64
import io
import json
import math
import textwrap
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils

from hitl.analyse.agreement import CONSENSUS, compute_agreement
from hitl.analyse.consensus import DEFINITION as CONSENSUS_DEFINITION
from hitl.analyse.consensus import consensus, latest_per_curator
from hitl.analyse.disagreements import rank_disagreements
from hitl.analyse.pairwise import pairwise_agreement
from hitl.compare.order import pairwise_order
from hitl.errors import NothingToDo
from hitl.files import make_output_folder, write_atomic
from hitl.publish.learning import learned_section
from hitl.publish.render import card_image, make_thumbnails, render, verdict
from hitl.score.stale import stale_marks
from hitl.store import utc_now
from hitl.store.curators import curator_name
from hitl.store.detector import Publishable, publishable
from hitl.store.embeddings import newest_model
from hitl.store.heroes import select_heroes
from hitl.store.near_duplicates import near_duplicates
from hitl.store.queries import latest_run
from hitl.store.ratings import curator_comparisons, long_table
from hitl.tables import safe_csv_text

PAIR_COLUMNS = (("spearman", "Spearman ρ"), ("kendall_tau_b", "Kendall τ-b"), ("pearson", "Pearson r"),
                ("mae", "MAE"), ("bias", "bias (b − a)"), ("qwk", "weighted κ"), ("icc_a1", "ICC(A,1)"),
                ("icc_c1", "ICC(C,1)"))
HERO_COLUMNS = (("percent_agreement", "agreement"), ("cohen_kappa", "Cohen's κ"), ("gwet_ac1", "Gwet's AC1"),
                ("precision", "precision"), ("recall", "recall"), ("f1", "F1"))
CSV_COLUMNS = ("rank", "image_id", "species", "human_mean", "human_hero", "n_curators", "max_abs_diff",
               "model_spread", "hero_mismatch", "reason", "curators", "models")


def build_report(db: sqlite_utils.Database, out_dir: str | Path, *, hero_threshold: float = 7.0,
                 resamples: int = 1000, seed: int = 0, top: int = 24, threshold: float = 0.3,
                 include_people: bool = False, include_undetected: bool = False,
                 echo: Callable[[str], None] = lambda _m: None) -> dict[str, Path]:
    """Compute agreement and write report.html, agreement.json and disagreements.csv into ``out_dir``.

    The thumbnails of the top disagreements leave out, and name, the images with a person detected
    (at ``threshold``) or with no detector record (:func:`hitl.store.detector.publishable`),
    unless ``include_people`` / ``include_undetected``; the lines that name them are echoed too.
    """
    rows = long_table(db)
    if not rows:
        raise NothingToDo("nothing to report: no model scores and no curator ratings yet")
    out = make_output_folder(out_dir)
    echo(f"Computing agreement over {len({r['image_id'] for r in rows})} images ({resamples} bootstrap resamples)")
    agreement = compute_agreement(rows, hero_threshold=hero_threshold, resamples=resamples, seed=seed)
    agreement["generated_at"] = utc_now()
    pairwise = pairwise_figures(db, rows, resamples=resamples, seed=seed)
    if pairwise is not None:  # no comparisons: agreement.json as it always was
        agreement["pairwise"] = pairwise
    groups = hero_groups(db, threshold)
    if groups is not None:  # no vectors: likewise
        agreement["near_duplicates"] = groups
    ranked = rank_disagreements(rows)
    paths = {"json": out / "agreement.json", "csv": out / "disagreements.csv", "html": out / "report.html"}
    write_atomic(paths["json"], json.dumps(agreement, indent=2, allow_nan=False), out)
    write_atomic(paths["csv"], disagreements_csv(ranked), out)
    echo("Drawing plots and thumbnails")
    reasoning = defaultdict(dict)
    for r in db.query("SELECT image_id, model, prompt_version, reasoning FROM scores WHERE status = 'ok'"):
        reasoning[r["image_id"]][f"{r['model']}@{r['prompt_version']}"] = r["reasoning"]
    comments = defaultdict(list)
    for r in db.query("SELECT image_id, source, project, annotator_email, annotator_id, comment FROM ratings "
                      "WHERE deleted = 0 AND comment IS NOT NULL AND comment != ''"):
        comments[r["image_id"]].append((curator_name(r["annotator_email"], r["annotator_id"], r["source"],
                                                     r["project"]), r["comment"]))
    roots = dict(db.execute("SELECT image_id, root FROM images").fetchall())
    learned = learned_section(latest_run(db), _figure_png)
    shown = publishable(db, [r["image_id"] for r in ranked[:top]], threshold=threshold, include_people=include_people,
                        include_undetected=include_undetected)
    for line in shown.lines():
        echo(f"Thumbnails: {line}")
    write_atomic(paths["html"], render_html(agreement, rows, ranked[:top], reasoning, comments, roots, learned, shown,
                                            stale_marks(db)), out)
    return paths


def pairwise_figures(db: sqlite_utils.Database, rows: list[dict], *, resamples: int = 1000, seed: int = 0,
                     policy: str = "majority") -> dict[str, Any] | None:
    """The curators' pairwise order of the hero set (``policy``) against the curators' mean stars
    and each model's scores: counts and one Kendall τ-b per rater (:mod:`hitl.analyse.pairwise`);
    None when no comparison was made. ``rows``: the long table."""
    comparisons = curator_comparisons(db)
    if not comparisons:
        return None
    heroes = [h["image_id"] for h in select_heroes(db, policy)]
    order = pairwise_order(heroes, comparisons)
    stars, models = _per_image(rows)
    references = {"curators' mean stars": stars, **{name: models[name] for name in sorted(models)}}
    return {"policy": policy, "comparisons": len(comparisons), "used": order.n_used, "outside": order.n_outside,
            "curators": order.n_curators, "hero_images": len(heroes), "compared_images": len(order.ranked()),
            "level": order.level, "resamples": resamples,
            "agreement": pairwise_agreement(order.strengths(), references, resamples=resamples, seed=seed)
            if order.n_used else []}


def hero_groups(db: sqlite_utils.Database, threshold: float = 0.3, policy: str = "majority") -> dict[str, Any] | None:
    """The near-duplicate groups of the hero set (``policy``; :mod:`hitl.store.near_duplicates`) with
    the policy, or None when the store has no vectors."""
    if newest_model(db) is None:  # no vectors: the hero set (seconds for 100,000 images) is not needed
        return None
    found = near_duplicates(db, [h["image_id"] for h in select_heroes(db, policy)], threshold)
    return None if found is None else {"policy": policy, **found.counts(),
                                       "threshold_words": found.calibration.words()}


def disagreements_csv(ranked: list[dict]) -> str:
    """disagreements.csv: the ranked disagreements, one row each (CSV_COLUMNS)."""
    return safe_csv_text(CSV_COLUMNS, ({
        "rank": rank, "image_id": row["image_id"], "species": row["species"] or "",
        "human_mean": _num(row["human_mean"]), "human_hero": "" if row["human_hero"] is None else row["human_hero"],
        "n_curators": row["n_curators"], "max_abs_diff": _num(row["max_abs_diff"]),
        "model_spread": _num(row["model_spread"]), "hero_mismatch": " ".join(row["hero_mismatch"]),
        "reason": row["reason"], "curators": json.dumps(row["curators"], sort_keys=True),
        "models": json.dumps(row["models"], sort_keys=True),
    } for rank, row in enumerate(ranked, start=1)))


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


# ---- plots ------------------------------------------------------------------------------------------

def _figure_png(draw: Callable) -> str:
    """A matplotlib figure as a PNG data URI, to embed in the page."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    fig = draw(plt)
    buffer = io.BytesIO()
    # every figure is laid out by its tight_layout(): bbox_inches="tight" would draw it a second time to
    # measure the same margins, and so does savefig while the figure keeps the placeholder layout engine
    # that tight_layout() leaves (a third of the saving's time; the same pixels without it)
    fig.set_layout_engine(None)
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _per_image(rows: list[dict]) -> tuple[dict, dict]:
    """The curators' consensus score per image (consensus.DEFINITION), and each model's score per image."""
    humans, models = defaultdict(list), defaultdict(dict)
    for r in rows:
        if r["kind"] == "human":
            humans[r["image_id"]].append(r)
        elif r["score"] is not None:
            models[r["rater"]][r["image_id"]] = r["score"]
    means = {image_id: consensus(latest_per_curator(rs))[0] for image_id, rs in humans.items()}
    return {k: v for k, v in means.items() if v is not None}, models


def scatter_and_bland_altman(rows: list[dict], agreement: dict) -> list[tuple[str, str]]:
    """(title, PNG data URI) per model: curators vs model, and the Bland-Altman plot of the differences.

    The bias and its limits are the agreement table's (``agreement["pairs"]``, the curators'
    consensus against the model), so the title and the lines say what the table says, and nothing
    where the table could not compute them."""
    import numpy as np

    human, models = _per_image(rows)
    against = {p["b"]: p for p in agreement.get("pairs", []) if p["a"] == CONSENSUS}
    plots = []
    for model, scores in sorted(models.items()):
        common = sorted(set(scores) & set(human))
        if len(common) < 2:
            continue
        h = np.array([human[i] for i in common])
        m = np.array([scores[i] for i in common])
        rng = np.random.default_rng(0)
        jitter = lambda n: rng.uniform(-0.15, 0.15, n)  # noqa: E731 - integer stars overlap otherwise
        title, lines = bland_altman_lines(against.get(model) or {})

        def draw(plt, h=h, m=m, model=model, title=title, lines=lines):
            fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
            ax1.scatter(h + jitter(len(h)), m + jitter(len(m)), s=14, alpha=0.5, color="#2b6cb0")
            ax1.plot([0, 10], [0, 10], color="#999", lw=1, ls="--")
            ax1.set(xlim=(-0.5, 10.5), ylim=(-0.5, 10.5), xlabel="curators (mean stars)", ylabel=model,
                    title=f"Curators vs {model} (n = {len(h)})")
            mean, diff = (h + m) / 2, m - h
            ax2.scatter(mean + jitter(len(mean)), diff + jitter(len(diff)), s=14, alpha=0.5, color="#c05621")
            for y, style in lines:
                ax2.axhline(y, color="#555", lw=1, ls=style)
            ax2.set(xlabel="mean of curators and model", ylabel="model − curators")
            ax2.set_title(title, fontsize=10)
            fig.tight_layout()
            return fig
        plots.append((model, _figure_png(draw)))
    return plots


def bland_altman_lines(entry: dict) -> tuple[str, list[tuple[float, str]]]:
    """The Bland-Altman plot's title and lines (bias solid, limits dashed) from an agreement pair
    entry (bias = b − a, model − curators); no line and the table's reason when it has no bias."""
    if entry.get("bias") is None or entry.get("loa_low") is None:
        why = entry.get("note") or "not computed"
        return "\n".join(textwrap.wrap(f"Bland-Altman: no bias computed ({why})", 60)), []
    return (f"Bland-Altman: bias {entry['bias']:+.2f}, limits {entry['loa_low']:+.2f} to {entry['loa_high']:+.2f}",
            [(entry["bias"], "-"), (entry["loa_low"], "--"), (entry["loa_high"], "--")])


def confusion_grid(c: dict[str, int]) -> list[list[int]]:
    """Rows: the model's decision (hero, not hero); columns: the curators' (hero, not hero). So each
    row adds up to how many images the model called hero, or not."""
    return [[c["tp"], c["fp"]], [c["fn"], c["tn"]]]


def hero_confusion(agreement: dict) -> list[tuple[str, str]]:
    """("Hero decisions", PNG data URI): one confusion matrix per model, or nothing without decisions."""
    plots = []
    entries = [h for h in agreement.get("hero", []) if h.get("n")]
    if not entries:
        return plots

    def draw(plt):
        fig, axes = plt.subplots(1, len(entries), figsize=(3.2 * len(entries), 3.2), squeeze=False)
        for ax, h in zip(axes[0], entries):
            c = h["confusion"]
            grid = confusion_grid(c)
            ax.imshow(grid, cmap="Blues")
            for i in range(2):
                for j in range(2):
                    ax.text(j, i, str(grid[i][j]), ha="center", va="center", fontsize=13)
            ax.set_xticks([0, 1], ["curators: hero", "not hero"])
            ax.set_yticks([0, 1], ["model: hero", "not hero"])
            how = "its flag" if h["via"] == "flag" else f"score ≥ {h.get('threshold')}"
            ax.set_title(f"{h['model']}\n({how})", fontsize=9)
        fig.tight_layout()
        return fig
    plots.append(("Hero decisions", _figure_png(draw)))
    return plots


def distributions(rows: list[dict]) -> list[tuple[str, str]]:
    """(title, PNG data URI): score histograms per rater, and per species (curators vs each model)."""
    by_rater = defaultdict(list)
    by_species = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["score"] is None:
            continue
        label = r["rater"] if r["kind"] == "model" else CURATORS
        by_rater[label].append(r["score"])
        by_species[r.get("species") or "unknown"][label].append(r["score"])
    if not by_rater:
        return []

    def draw_raters(plt):
        names = sorted(by_rater)
        colours = rater_colours(names)
        fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 2.8), squeeze=False, sharey=False)
        for ax, name in zip(axes[0], names):
            ax.hist(by_rater[name], bins=[x - 0.5 for x in range(12)], color=colours[name], rwidth=0.85)
            ax.set(title=f"{name} (n = {len(by_rater[name])})", xlabel="score", xlim=(-0.5, 10.5))
        fig.tight_layout()
        return fig

    species = sorted(by_species, key=lambda s: -sum(len(v) for v in by_species[s].values()))[:12]
    return [("Score distributions per rater", _figure_png(draw_raters)),
            ("Score distributions per species",
             _figure_png(lambda plt: species_figure(plt, {s: by_species[s] for s in species})))]


CURATORS = "curators"  # the label of the curators' scores in the distribution plots
CURATORS_COLOUR = "#1a202c"  # near black; no model's colour (matplotlib's tab10 cycle)
MIN_BOX = 5  # fewer scores than this are drawn as points: a box of two scores says nothing


def rater_colours(raters: list[str]) -> dict[str, str]:
    """One colour per rater, the same in every plot: the curators theirs, each model its own."""
    models = sorted(r for r in raters if r != CURATORS)
    return {CURATORS: CURATORS_COLOUR, **{m: f"C{k % 10}" for k, m in enumerate(models)}}


def species_figure(plt, by_species: dict[str, dict[str, list[float]]]):
    """Scores per species (``by_species``: species -> rater -> scores), one box per rater, in the
    rater's colour throughout (box, median, whiskers); a rater with few scores there gets points."""
    species = list(by_species)
    raters = sorted({r for scores in by_species.values() for r in scores}, key=lambda r: (r != CURATORS, r))
    colours = rater_colours(raters)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(species) * len(raters) / 2 + 3), 3.6))
    width = 0.8 / len(raters)
    for k, rater in enumerate(raters):
        colour = colours[rater]
        for i, name in enumerate(species):
            scores = by_species[name].get(rater) or []
            x = i + (k - (len(raters) - 1) / 2) * width
            if len(scores) >= MIN_BOX:
                line = {"color": colour}
                ax.boxplot([scores], positions=[x], widths=width * 0.9, patch_artist=True, showfliers=False,
                           boxprops={"facecolor": colour, "edgecolor": colour, "alpha": 0.6}, medianprops=line,
                           whiskerprops=line, capprops=line)
            elif scores:
                ax.scatter([x] * len(scores), scores, s=18, color=colour, zorder=3)
        ax.plot([], [], color=colour, lw=6, alpha=0.6, label=rater)
    ax.set_xticks(range(len(species)), species, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="score", ylim=(-0.5, 10.5), title="Scores per species")
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


# ---- the page's data: plain strings and lists, laid out by templates/report.html -------------------

def _text(value: Any, digits: int = 2) -> str:
    """A number as the report prints it: floats with ``digits`` decimals, nothing for None or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _cell(entry: dict, key: str) -> dict:
    """One table cell: the estimate, its 95% interval and for bias the limits of agreement (None: not computed)."""
    value = entry.get(key)
    if value is None:
        return {"value": None}
    ci = (entry.get("ci") or {}).get(key)
    limits = None
    if key == "bias" and entry.get("loa_low") is not None:
        limits = f"{_text(entry['loa_low'])} … {_text(entry['loa_high'])}"
    return {"value": _text(value), "ci": f"{_text(ci[0])} – {_text(ci[1])}" if ci else None, "limits": limits}


def _estimates(label: str, entry: dict, columns: tuple[tuple[str, str], ...]) -> dict:
    return {"label": label, "note": entry.get("note"), "n": entry["n"], "cells": [_cell(entry, k) for k, _ in columns]}


def _pair_table(pairs: list[dict], title: str, empty: str) -> dict:
    return {"title": title, "empty": empty, "columns": [label for _, label in PAIR_COLUMNS],
            "rows": [_estimates(f"{p['a']} vs {p['b']}", p, PAIR_COLUMNS) for p in pairs]}


def _hero_table(entries: list[dict]) -> dict:
    rows = []
    for h in entries:
        how = "its own hero flag" if h["via"] == "flag" else f"score ≥ {h.get('threshold')}"
        rows.append(_estimates(f"{h['model']} ({how})", h, HERO_COLUMNS))
    return {"columns": [label for _, label in HERO_COLUMNS], "rows": rows}


def _alpha(block: dict | None, who: str) -> dict:
    """Krippendorff's alpha per level (value and interval as text); no levels when there is no block."""
    if not block:
        return {"who": who, "levels": [], "n": None, "note": None}
    levels = []
    for level in ("interval", "ordinal"):
        value = block.get(f"alpha_{level}")
        ci = (block.get("ci") or {}).get(f"alpha_{level}")
        levels.append({"level": level, "value": None if value is None else _text(value),
                       "ci": f"{_text(ci[0])} – {_text(ci[1])}" if ci else None})
    return {"who": who, "levels": levels, "n": block.get("n_units"), "note": block.get("note")}


def _subsets(title: str, human_block: dict | None, model_block: dict | None) -> dict:
    """The per-subset figures (modes or species) as one line of words per subset; no groups when data is thin."""
    groups = []
    for label, block in (("curators among themselves", human_block), ("models vs curators", model_block)):
        if not isinstance(block, dict) or not block:
            continue
        rows = []
        for name, entry in block.items():
            if not isinstance(entry, dict):
                continue
            text = []
            for key, name_ in (("alpha_interval", "α (interval)"), ("n_images", "images")):
                if entry.get(key) is not None:
                    text.append(f"{name_} {_text(entry[key])}")
            for m in entry.get("models", []) if isinstance(entry.get("models"), list) else []:
                bits = [f"{k} {_text(m.get(k))}" for k in ("spearman", "mae", "qwk", "hero_kappa") if m.get(k) is not None]
                text.append(f"{m.get('model', m.get('b', ''))}: {', '.join(bits) or m.get('note') or 'not computed'}")
            if entry.get("note"):
                text.append(entry["note"])
            rows.append({"name": str(name), "text": "; ".join(text) or "too little data"})
        if rows:
            groups.append({"label": label, "rows": rows})
    return {"title": title, "groups": groups}


def _pairwise_table(block: dict | None) -> dict | None:
    """The pairwise section's counts and a row per rater (τ-b, its interval, n, why there is none)."""
    if block is None:
        return None
    rows = []
    for entry in block["agreement"]:
        ci = entry["ci"]
        cell = {"value": None if entry["tau"] is None else _text(entry["tau"]), "limits": None,
                "ci": f"{_text(ci[0])} – {_text(ci[1])}" if ci else None}
        rows.append({"label": entry["against"], "note": entry["note"], "n": entry["n"], "cells": [cell]})
    return {**{k: v for k, v in block.items() if k != "agreement"}, "columns": ["Kendall τ-b"], "rows": rows}


def _cards(ranked: list[dict], reasoning: dict, comments: dict, roots: dict, shown: Publishable | None = None,
           stale: set[tuple[str, str]] = frozenset()) -> list[dict]:
    """One card per top disagreement: thumbnail (none where ``shown``, the publishing rule, leaves
    the image out), what each curator and model said (``stale``: scores computed from other detections),
    the curators' comments."""
    # the same thumbnails as the gallery and the contact sheet: upright, made on every core
    known = [r for r in ranked if roots.get(r["image_id"]) and (shown is None or shown.allows(r["image_id"]))]
    made = dict(zip((r["image_id"] for r in known),
                    make_thumbnails([Path(roots[r["image_id"]]) / r["image_id"] for r in known], 320, False)))
    cards = []
    for rank, row in enumerate(ranked, start=1):
        image_id = row["image_id"]
        curators = [{"name": name, "stars": _text(v["stars"], 0) or "–", "mode": v["mode"] or "",
                     "hero": "hero" if v["hero"] else "not hero" if v["hero"] is False else ""}
                    for name, v in row["curators"].items()]
        verdicts = [verdict(name, v["score"], v["hero"], reasoning.get(image_id, {}).get(name),
                            stale=(image_id, name) in stale) for name, v in row["models"].items()]
        cards.append({"rank": rank, "image_id": image_id, "species": row["species"] or "", "reason": row["reason"],
                      "image": card_image(made.get(image_id), alt=image_id,
                                          left_out=shown.reason(image_id) if shown is not None else None),
                      "curators": curators,
                      "comments": [{"who": who, "text": text} for who, text in comments.get(image_id, [])],
                      "verdicts": verdicts})
    return cards


def render_html(agreement: dict, rows: list[dict], ranked: list[dict], reasoning: dict, comments: dict,
                roots: dict, learned: dict | None = None, shown: Publishable | None = None,
                stale: tuple[set[tuple[str, str]], list[dict]] = (frozenset(), [])) -> str:
    """The report page: ``ranked`` are the disagreements shown as cards (their thumbnails as
    ``shown`` allows), the rest is in ``agreement``; ``stale``: the stale scores and a note per rater
    (:func:`hitl.score.stale.stale_marks`)."""
    params = agreement.get("parameters", {})
    raters = agreement.get("raters", [])
    pairs = agreement.get("pairs", [])
    vs_humans = [p for p in pairs if p["a"] == CONSENSUS or p["b"] == CONSENSUS]
    model_model = [p for p in pairs if p["kind"] == "model-model"]
    human_model = [p for p in pairs if p["kind"] == "human-model" and p not in vs_humans]
    inter = agreement.get("inter_human") or {}
    return render(
        "report.html",
        generated_at=agreement.get("generated_at", ""),
        params={k: params.get(k) for k in ("resamples", "seed", "hero_threshold")},
        totals={"images": len({r["image_id"] for r in rows}),
                "curators": sum(1 for r in raters if r["kind"] == "human"),
                "models": sum(1 for r in raters if r["kind"] == "model"),
                "ratings": sum(1 for r in rows if r["kind"] == "human")},
        readings=agreement.get("readings", []),
        consensus_definition=CONSENSUS_DEFINITION,
        learned=learned,
        pairwise=_pairwise_table(agreement.get("pairwise")),
        near_duplicates=agreement.get("near_duplicates"),
        raters=[{"name": r["name"], "kind": r["kind"], "n_images": r["n_images"],
                 "mean_score": _text(r.get("mean_score")), "hero_share": _text(r.get("hero_share"))} for r in raters],
        model_tables=[
            _pair_table(vs_humans, "Each model vs the curators' consensus (mean stars per image)",
                        "No image has both a curator rating and a model score yet."),
            _pair_table(human_model, "Each model vs each curator", "No curator has rated images a model scored."),
            _pair_table(model_model, "Model vs model", "Only one model has scored these images."),
        ],
        overall=_alpha(agreement.get("overall"), "overall"),
        hero=_hero_table(agreement.get("hero", [])),
        confusion=[src for _, src in hero_confusion(agreement)],
        inter_table=_pair_table(inter.get("pairs", []), "Curator vs curator", inter.get("note") or
                                "No two curators rated the same images yet: the ceiling is unknown."),
        inter_alpha=_alpha(inter, "inter-curator"),
        subset_tables=[_subsets("By review mode", inter.get("by_mode"), agreement.get("by_mode")),
                       _subsets("By species", inter.get("by_species"), agreement.get("by_species"))],
        plots=[{"title": title, "src": src} for title, src in scatter_and_bland_altman(rows, agreement)
               + distributions(rows)],
        cards=_cards(ranked, reasoning, comments, roots, shown, stale[0]),
        stale_notes=stale[1],
        left_out=shown.lines() if shown is not None else [],
    )
