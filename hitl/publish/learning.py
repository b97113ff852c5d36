"""The report's section on the learned rater: its figures beside every single model's, its
learning curve and, in words, what the curators reward."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hitl.learn.words import chance_words, learned_rows, vector_words, what_curators_reward

FIGURES = (("spearman", "Spearman ρ"), ("qwk", "weighted κ"), ("mae", "MAE"), ("hero_auc", "hero AUC"),
           ("precision_at_k", "precision@k"), ("ece", "calibration error"))


def learned_section(run: dict | None, figure_png: Callable) -> dict[str, Any] | None:
    """Plain data for the template, or None when no learned rater was fitted yet."""
    if not run:
        return None
    figures = run["figures"] or {}
    raters = [*learned_rows(f"learned@{run['version']}", figures.get("learned") or {}, figures.get("without_vectors")),
              *sorted((figures.get("singles") or {}).items())]
    rows = [{"name": name, **_cells(f)} for name, f in raters]
    params = run["parameters"] or {}
    return {
        "version": run["version"], "n_decisions": run["n_decisions"], "n_images": run["n_images"],
        "grouped_by": params.get("grouped_by"), "split": params.get("split") or {},
        # a run stored before the vectors were read says nothing of them
        "vectors": vector_words(params["vectors"], params.get("grouped_by")) if params.get("vectors") else [],
        "columns": [label for _, label in FIGURES], "rows": rows,
        "k": (figures.get("learned") or {}).get("k"),
        # said again from the stored numbers, so a run stored before a figure was judged says no more than they carry
        "chance": [sentence for name, f in raters for sentence in chance_words(name, f)],
        "words": what_curators_reward((run["importance"] or {}).get("features") or [], figures.get("learned") or {}),
        "curve": _curve_png(run["curve"] or [], figure_png),
    }


def _cells(f: dict) -> dict[str, list[str]]:
    """Each figure as text, with its 95% interval where one was computed."""
    cells = []
    for key, _ in FIGURES:
        text = "–" if f.get(key) is None else f"{f[key]:.2f}"
        ci = f.get(key + "_ci")
        cells.append(text + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci and f.get(key) is not None else ""))
    return {"cells": cells}


def _curve_png(curve: list[dict], figure_png: Callable) -> str | None:
    points = [c for c in curve if c.get("spearman") is not None or c.get("hero_auc") is not None]
    if len(points) < 2:
        return None

    def draw(plt):
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        n = [c["decisions"] for c in points]
        for key, label in (("spearman", "Spearman ρ with the curators"), ("hero_auc", "hero AUC")):
            ax.plot(n, [c.get(key) for c in points], marker="o", label=label)
        ax.set(xlabel="curator decisions used", ylabel="out of fold", ylim=(0, 1),
               title="Learning curve: more decisions, better agreement?")
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig
    return figure_png(draw)
