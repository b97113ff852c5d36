"""The agreement report: one self-contained HTML file, agreement.json and disagreements.csv.

Everything is embedded (plots as PNG, thumbnails as JPEG data URIs), so report.html opens
from disk with no server and can be mailed to a project lead. Too little data for a
statistic is said in words; no NaN is ever shown.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlite_utils

from hitl.analyse.agreement import CONSENSUS, compute_agreement
from hitl.analyse.disagreements import rank_disagreements
from hitl.errors import NothingToDo
from hitl.publish.gallery import make_thumbnails
from hitl.store import utc_now
from hitl.store.ratings import curator_name, long_table

PAIR_COLUMNS = (("spearman", "Spearman ρ"), ("kendall_tau_b", "Kendall τ-b"), ("pearson", "Pearson r"),
                ("mae", "MAE"), ("bias", "bias (b − a)"), ("qwk", "weighted κ"), ("icc_a1", "ICC(A,1)"),
                ("icc_c1", "ICC(C,1)"))
HERO_COLUMNS = (("percent_agreement", "agreement"), ("cohen_kappa", "Cohen's κ"), ("gwet_ac1", "Gwet's AC1"),
                ("precision", "precision"), ("recall", "recall"), ("f1", "F1"))
CSV_COLUMNS = ("rank", "image_id", "species", "human_mean", "human_hero", "n_curators", "max_abs_diff",
               "model_spread", "hero_mismatch", "reason", "curators", "models")


def build_report(db: sqlite_utils.Database, out_dir: str | Path, *, hero_threshold: float = 7.0,
                 resamples: int = 1000, seed: int = 0, top: int = 24,
                 echo: Callable[[str], None] = lambda _m: None) -> dict[str, Path]:
    """Compute agreement and write report.html, agreement.json and disagreements.csv into ``out_dir``."""
    rows = long_table(db)
    if not rows:
        raise NothingToDo("nothing to report: no model scores and no curator ratings yet")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    echo(f"Computing agreement over {len({r['image_id'] for r in rows})} images ({resamples} bootstrap resamples)")
    agreement = compute_agreement(rows, hero_threshold=hero_threshold, resamples=resamples, seed=seed)
    agreement["generated_at"] = utc_now()
    ranked = rank_disagreements(rows)
    paths = {"json": out / "agreement.json", "csv": out / "disagreements.csv", "html": out / "report.html"}
    paths["json"].write_text(json.dumps(agreement, indent=2, allow_nan=False), encoding="utf-8")
    write_disagreements_csv(paths["csv"], ranked)
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
    paths["html"].write_text(render_html(agreement, rows, ranked[:top], reasoning, comments, roots), encoding="utf-8")
    return paths


def write_disagreements_csv(path: Path, ranked: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for rank, row in enumerate(ranked, start=1):
            writer.writerow({
                "rank": rank, "image_id": row["image_id"], "species": row["species"] or "",
                "human_mean": _num(row["human_mean"]), "human_hero": "" if row["human_hero"] is None else row["human_hero"],
                "n_curators": row["n_curators"], "max_abs_diff": _num(row["max_abs_diff"]),
                "model_spread": _num(row["model_spread"]), "hero_mismatch": " ".join(row["hero_mismatch"]),
                "reason": row["reason"], "curators": json.dumps(row["curators"], sort_keys=True),
                "models": json.dumps(row["models"], sort_keys=True),
            })


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}"


# ---- plots ------------------------------------------------------------------------------------------

def _figure_png(draw: Callable) -> str:
    """A matplotlib figure as an <img> tag with an embedded PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    fig = draw(plt)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img class="plot" alt="plot" src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def _per_image(rows: list[dict]) -> tuple[dict, dict]:
    """Human consensus score per image, and each model's score per image."""
    humans, models = defaultdict(list), defaultdict(dict)
    for r in rows:
        if r["score"] is None:
            continue
        if r["kind"] == "human":
            humans[r["image_id"]].append(r["score"])
        else:
            models[r["rater"]][r["image_id"]] = r["score"]
    return {k: sum(v) / len(v) for k, v in humans.items()}, models


def scatter_and_bland_altman(rows: list[dict]) -> list[tuple[str, str]]:
    """(title, img tag) per model: curators vs model, and the Bland-Altman plot of the differences."""
    import numpy as np

    human, models = _per_image(rows)
    plots = []
    for model, scores in sorted(models.items()):
        common = sorted(set(scores) & set(human))
        if len(common) < 2:
            continue
        h = np.array([human[i] for i in common])
        m = np.array([scores[i] for i in common])
        rng = np.random.default_rng(0)
        jitter = lambda n: rng.uniform(-0.15, 0.15, n)  # noqa: E731 - integer stars overlap otherwise

        def draw(plt, h=h, m=m, model=model):
            fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
            ax1.scatter(h + jitter(len(h)), m + jitter(len(m)), s=14, alpha=0.5, color="#2b6cb0")
            ax1.plot([0, 10], [0, 10], color="#999", lw=1, ls="--")
            ax1.set(xlim=(-0.5, 10.5), ylim=(-0.5, 10.5), xlabel="curators (mean stars)", ylabel=model,
                    title=f"Curators vs {model} (n = {len(h)})")
            mean, diff = (h + m) / 2, m - h
            bias, sd = diff.mean(), diff.std(ddof=1) if len(diff) > 1 else 0.0
            ax2.scatter(mean + jitter(len(mean)), diff + jitter(len(diff)), s=14, alpha=0.5, color="#c05621")
            for y, style in ((bias, "-"), (bias + 1.96 * sd, "--"), (bias - 1.96 * sd, "--")):
                ax2.axhline(y, color="#555", lw=1, ls=style)
            ax2.set(xlabel="mean of curators and model", ylabel="model − curators",
                    title=f"Bland-Altman: bias {bias:+.2f}, limits ±{1.96 * sd:.2f}")
            fig.tight_layout()
            return fig
        plots.append((model, _figure_png(draw)))
    return plots


def hero_confusion(agreement: dict) -> list[tuple[str, str]]:
    plots = []
    entries = [h for h in agreement.get("hero", []) if h.get("n")]
    if not entries:
        return plots

    def draw(plt):
        fig, axes = plt.subplots(1, len(entries), figsize=(3.2 * len(entries), 3.2), squeeze=False)
        for ax, h in zip(axes[0], entries):
            c = h["confusion"]
            grid = [[c["tp"], c["fn"]], [c["fp"], c["tn"]]]
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
    """Score histograms per rater, and per species (curators vs each model)."""
    by_rater = defaultdict(list)
    by_species = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r["score"] is None:
            continue
        label = r["rater"] if r["kind"] == "model" else "curators"
        by_rater[label].append(r["score"])
        by_species[r.get("species") or "unknown"][label].append(r["score"])
    if not by_rater:
        return []

    def draw_raters(plt):
        names = sorted(by_rater)
        fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 2.8), squeeze=False, sharey=False)
        for ax, name in zip(axes[0], names):
            ax.hist(by_rater[name], bins=[x - 0.5 for x in range(12)], color="#4a5568", rwidth=0.85)
            ax.set(title=f"{name} (n = {len(by_rater[name])})", xlabel="score", xlim=(-0.5, 10.5))
        fig.tight_layout()
        return fig

    species = sorted(by_species, key=lambda s: -sum(len(v) for v in by_species[s].values()))[:12]
    raters = sorted(by_rater)

    def draw_species(plt):
        fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(species) * len(raters) / 2 + 3), 3.6))
        width = 0.8 / len(raters)
        for k, rater in enumerate(raters):
            data = [by_species[s][rater] or [math.nan] for s in species]
            positions = [i + (k - (len(raters) - 1) / 2) * width for i in range(len(species))]
            parts = ax.boxplot(data, positions=positions, widths=width * 0.9, patch_artist=True, showfliers=False)
            for box in parts["boxes"]:
                box.set_facecolor(f"C{k}")
                box.set_alpha(0.6)
            ax.plot([], [], color=f"C{k}", lw=6, alpha=0.6, label=rater)
        ax.set_xticks(range(len(species)), species, rotation=30, ha="right", fontsize=8)
        ax.set(ylabel="score", ylim=(-0.5, 10.5), title="Scores per species")
        ax.legend(fontsize=7, loc="upper right")
        fig.tight_layout()
        return fig
    return [("Score distributions per rater", _figure_png(draw_raters)),
            ("Score distributions per species", _figure_png(draw_species))]


# ---- html -------------------------------------------------------------------------------------------

def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _cell(entry: dict, key: str) -> str:
    value = entry.get(key)
    if value is None:
        return '<td class="na" title="not computed">–</td>'
    ci = (entry.get("ci") or {}).get(key)
    interval = f'<div class="ci">{_fmt(ci[0])} – {_fmt(ci[1])}</div>' if ci else ""
    if key == "bias" and entry.get("loa_low") is not None:
        interval += f'<div class="ci">limits {_fmt(entry["loa_low"])} … {_fmt(entry["loa_high"])}</div>'
    return f"<td>{_fmt(value)}{interval}</td>"


def _pair_table(pairs: list[dict], title: str, empty: str) -> str:
    if not pairs:
        return f"<h3>{html.escape(title)}</h3><p class='note'>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in PAIR_COLUMNS)
    body = []
    for p in pairs:
        note = f"<div class='note'>{html.escape(p['note'])}</div>" if p.get("note") else ""
        body.append(f"<tr><th class='row'>{html.escape(p['a'])} vs {html.escape(p['b'])}{note}</th>"
                    f"<td>{p['n']}</td>" + "".join(_cell(p, k) for k, _ in PAIR_COLUMNS) + "</tr>")
    return (f"<h3>{html.escape(title)}</h3><table><tr><th>pair</th><th>n</th>{head}</tr>{''.join(body)}</table>"
            "<p class='small'>Cells show the estimate and its 95% bootstrap interval (images resampled). "
            "MAE and bias are in score points; weighted κ is quadratic-weighted on integer bins 0-10.</p>")


def _hero_table(entries: list[dict]) -> str:
    if not entries:
        return "<p class='note'>No model hero decisions to compare with the curators yet.</p>"
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in HERO_COLUMNS)
    body = []
    for h in entries:
        how = "its own hero flag" if h["via"] == "flag" else f"score ≥ {h.get('threshold')}"
        note = f"<div class='note'>{html.escape(h['note'])}</div>" if h.get("note") else ""
        body.append(f"<tr><th class='row'>{html.escape(h['model'])} ({html.escape(how)}){note}</th><td>{h['n']}</td>"
                    + "".join(_cell(h, k) for k, _ in HERO_COLUMNS) + "</tr>")
    return f"<table><tr><th>model</th><th>n</th>{head}</tr>{''.join(body)}</table>"


def _alpha(block: dict | None, who: str) -> str:
    if not block:
        return f"<p class='note'>No {who} agreement to report.</p>"
    parts = []
    for level in ("interval", "ordinal"):
        value = block.get(f"alpha_{level}")
        ci = (block.get("ci") or {}).get(f"alpha_{level}")
        parts.append(f"{level} α = <b>{_fmt(value)}</b>" + (f" ({_fmt(ci[0])} – {_fmt(ci[1])})" if ci else "")
                     if value is not None else f"{level} α: not computed")
    note = f"<div class='note'>{html.escape(block['note'])}</div>" if block.get("note") else ""
    n = block.get("n_units")
    return f"<p>Krippendorff's {'; '.join(parts)}{f' over {n} images' if n is not None else ''}.</p>{note}"


def _thumbnail(thumb) -> str:
    if thumb is None:
        return "<div class='noimg'>no preview: unknown file</div>"
    if thumb.error:
        return f"<div class='noimg'>no preview: {html.escape(thumb.error)}</div>"
    return f'<img class="thumb" alt="" src="{thumb.data_uri()}">'


def _gallery(ranked: list[dict], reasoning: dict, comments: dict, roots: dict) -> str:
    if not ranked:
        return "<p class='note'>No image has both a curator rating and a model score, or two model scores, yet.</p>"
    # the same thumbnails as the gallery and the contact sheet: upright, made on every core
    known = [r for r in ranked if roots.get(r["image_id"])]
    made = dict(zip((r["image_id"] for r in known),
                    make_thumbnails([Path(roots[r["image_id"]]) / r["image_id"] for r in known], 320, False)))
    cards = []
    for rank, row in enumerate(ranked, start=1):
        image_id = row["image_id"]
        thumb = _thumbnail(made.get(image_id))
        curators = "".join(
            f"<li>{html.escape(name)}: {_fmt(v['stars'], 0) or '–'}★ "
            f"{'hero' if v['hero'] else 'not hero' if v['hero'] is False else ''} <span class='small'>{html.escape(v['mode'] or '')}</span></li>"
            for name, v in row["curators"].items())
        models = "".join(
            f"<li><b>{html.escape(name)}</b>: {_fmt(v['score'], 1)}{' ★ hero' if v['hero'] else ''}"
            f"<div class='reason'>{html.escape(reasoning.get(image_id, {}).get(name) or '')}</div></li>"
            for name, v in row["models"].items())
        notes = "".join(f"<li class='comment'>“{html.escape(text)}” — {html.escape(who)}</li>"
                        for who, text in comments.get(image_id, []))
        cards.append(f"<div class='card'>{thumb}<div class='body'><div class='title'>#{rank} {html.escape(image_id)}</div>"
                     f"<div class='small'>{html.escape(row['species'] or '')} · {html.escape(row['reason'])}</div>"
                     f"<ul>{curators}{notes}</ul><ul>{models}</ul></div></div>")
    return f"<div class='cards'>{''.join(cards)}</div>"


STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1em 2em;color:#1a202c}
h1{margin-bottom:.1em} h2{border-bottom:2px solid #e2e8f0;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px} th,td{border:1px solid #e2e8f0;padding:4px 7px;text-align:right;vertical-align:top}
th{background:#f7fafc} th.row{text-align:left;max-width:260px} td.na{color:#a0aec0;text-align:center}
.ci{color:#718096;font-size:11px} .note{color:#975a16;font-size:12px} .small{color:#718096;font-size:12px}
.readings li{margin:.3em 0} img.plot{max-width:100%;display:block;margin:.6em 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(330px,1fr));gap:12px}
.card{border:1px solid #e2e8f0;border-radius:8px;overflow:hidden;background:#fff} .card ul{margin:.3em 0;padding-left:1.1em}
.card .body{padding:8px 10px} .thumb{width:100%;display:block} .title{font-weight:600;word-break:break-all}
.reason{color:#4a5568;font-size:12px} .comment{font-style:italic;color:#2c5282} .noimg{padding:3em 1em;background:#edf2f7;color:#718096;text-align:center}
.summary{display:flex;gap:2em;flex-wrap:wrap} .summary div{background:#f7fafc;border-radius:8px;padding:.5em 1em}
"""


def render_html(agreement: dict, rows: list[dict], ranked: list[dict], reasoning: dict, comments: dict,
                roots: dict) -> str:
    params = agreement.get("parameters", {})
    raters = agreement.get("raters", [])
    humans = [r for r in raters if r["kind"] == "human"]
    models = [r for r in raters if r["kind"] == "model"]
    pairs = agreement.get("pairs", [])
    vs_humans = [p for p in pairs if p["a"] == CONSENSUS or p["b"] == CONSENSUS]
    model_model = [p for p in pairs if p["kind"] == "model-model"]
    human_model = [p for p in pairs if p["kind"] == "human-model" and p not in vs_humans]
    inter = agreement.get("inter_human") or {}
    readings = "".join(f"<li>{html.escape(s)}</li>" for s in agreement.get("readings", []))
    rater_rows = "".join(
        f"<tr><th class='row'>{html.escape(r['name'])}</th><td>{html.escape(r['kind'])}</td><td>{r['n_images']}</td>"
        f"<td>{_fmt(r.get('mean_score'))}</td><td>{_fmt(r.get('hero_share'))}</td></tr>" for r in raters)
    sections = [
        f"<h1>hero-hitl agreement report</h1><p class='small'>Generated {html.escape(agreement.get('generated_at', ''))}; "
        f"{params.get('resamples')} bootstrap resamples (seed {params.get('seed')}); model hero by threshold = score ≥ "
        f"{params.get('hero_threshold')}.</p>",
        f"<div class='summary'><div><b>{len({r['image_id'] for r in rows})}</b> images</div>"
        f"<div><b>{len(humans)}</b> curators</div><div><b>{len(models)}</b> models</div>"
        f"<div><b>{sum(1 for r in rows if r['kind'] == 'human')}</b> curator ratings</div></div>",
        f"<h2>What this says</h2><ul class='readings'>{readings or '<li>Not enough data for any statement yet.</li>'}</ul>",
        f"<h2>Raters</h2><table><tr><th>rater</th><th>kind</th><th>images</th><th>mean score</th><th>hero share</th></tr>"
        f"{rater_rows}</table>",
        "<h2>Models against the curators</h2>",
        _pair_table(vs_humans, "Each model vs the curators' consensus (mean stars per image)",
                    "No image has both a curator rating and a model score yet."),
        _pair_table(human_model, "Each model vs each curator", "No curator has rated images a model scored."),
        _pair_table(model_model, "Model vs model", "Only one model has scored these images."),
        "<h2>Across all raters</h2>", _alpha(agreement.get("overall"), "overall"),
        "<h2>Hero decisions</h2>", _hero_table(agreement.get("hero", [])),
        *[img for _, img in hero_confusion(agreement)],
        "<h2>Curators among themselves: the ceiling a model can reach</h2>",
        _pair_table(inter.get("pairs", []), "Curator vs curator", inter.get("note") or
                    "No two curators rated the same images yet: the ceiling is unknown."),
        _alpha(inter, "inter-curator"),
        _subsets("By review mode", inter.get("by_mode"), agreement.get("by_mode")),
        _subsets("By species", inter.get("by_species"), agreement.get("by_species")),
        "<h2>Plots</h2>",
        *[f"<h3>{html.escape(title)}</h3>{img}" for title, img in scatter_and_bland_altman(rows)],
        *[f"<h3>{html.escape(title)}</h3>{img}" for title, img in distributions(rows)],
        "<h2>Top disagreements</h2><p class='small'>The images most worth a second look: the curators and a model far apart, "
        "the models far apart, or different hero decisions. All of them are in disagreements.csv; "
        "<code>hitl queue</code> sends them to a blind adjudication project.</p>",
        _gallery(ranked, reasoning, comments, roots),
    ]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>hero-hitl agreement report</title>"
            f"<style>{STYLE}</style></head><body>{''.join(sections)}</body></html>")


def _subsets(title: str, human_block: dict | None, model_block: dict | None) -> str:
    """A compact table of the per-subset figures (modes or species), words where data is thin."""
    parts = [f"<h3>{html.escape(title)}</h3>"]
    shown = False
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
                    text.append(f"{name_} {_fmt(entry[key])}")
            for m in entry.get("models", []) if isinstance(entry.get("models"), list) else []:
                bits = [f"{k} {_fmt(m.get(k))}" for k in ("spearman", "mae", "qwk", "hero_kappa") if m.get(k) is not None]
                text.append(f"{m.get('model', m.get('b', ''))}: {', '.join(bits) or m.get('note') or 'not computed'}")
            if entry.get("note"):
                text.append(entry["note"])
            rows.append(f"<tr><th class='row'>{html.escape(str(name))}</th><td style='text-align:left'>"
                        f"{html.escape('; '.join(text) or 'too little data')}</td></tr>")
        if rows:
            shown = True
            parts.append(f"<p class='small'>{html.escape(label)}</p><table>{''.join(rows)}</table>")
    if not shown:
        parts.append("<p class='note'>Too little data to split.</p>")
    return "".join(parts)
