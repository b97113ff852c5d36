"""Agreement between curators and models: the report's figures from the long table. Pure.

Plain data in (the long table of :func:`hitl.store.ratings.long_table`), plain data out;
undefined statistics are ``None`` (never NaN), with a note in words saying why. The
statistics themselves are in :mod:`hitl.analyse.statistics`, the sentences in
:mod:`hitl.analyse.readings`.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations
from typing import Any

import numpy as np

from hitl.analyse.readings import CONSENSUS, readings
from hitl.analyse.statistics import (
    HERO_STATS,
    PAIR_STATS,
    Coincidence,
    ContingencyTable,
    alpha_from,
    block_rng,
    finite_or_none,
    hero_statistics,
    hero_table,
    pair_statistics,
    paired_values,
    percentile_ci,
    resampled_tables,
    score_labels,
)

SUBSET_STATS = ("spearman", "mae", "qwk")
ALPHA_LEVELS = ("interval", "ordinal")


# ---------------------------------------------------------------------------------------------
# Blocks of the report
# ---------------------------------------------------------------------------------------------

def _few(n: int, min_n: int, what: str) -> str:
    if n == 0:
        return f"no images {what}; at least {min_n} are needed"
    return f"only {n} {'image' if n == 1 else 'images'} {what}; at least {min_n} are needed"


def _constant_note(name: str, values: np.ndarray) -> str | None:
    u = np.unique(values)
    if u.size == 1:
        return f"{name} gave every image the same score ({u[0]:g}), so a correlation is undefined"
    return None


def _pair(a_name: str, b_name: str, kind: str, a: np.ndarray, b: np.ndarray, opts: dict,
          stats: Sequence[str] = PAIR_STATS) -> dict:
    """Two raters' score agreement with bootstrap intervals; a, b are per-image arrays with NaN."""
    a, b = paired_values(a, b)
    n = int(a.size)
    out: dict[str, Any] = {"a": a_name, "b": b_name, "kind": kind, "n": n}
    out.update({k: None for k in stats})
    out["ci"] = {k: None for k in stats}
    if n < opts["min_n"]:
        out["note"] = _few(n, opts["min_n"], "rated by both")
        return out
    tab = ContingencyTable(a, b, opts["labels"])
    point = pair_statistics(tab.batch(), tab, stats)
    for k in stats:
        out[k] = finite_or_none(point[k])
    if opts["resamples"] > 0:
        rng = block_rng(opts["seed"], "pair", opts.get("tag", ""), kind, a_name, b_name)
        parts = [pair_statistics(t, tab, stats)
                 for t in resampled_tables(tab.counts, opts["resamples"], rng, tab.cells)]
        for k in stats:
            if out[k] is not None:
                out["ci"][k] = percentile_ci(np.concatenate([p[k] for p in parts]))
    notes = [s for s in (_constant_note(a_name, a), _constant_note(b_name, b)) if s]
    undefined = [k for k in stats if out[k] is None]
    if undefined:
        why = "; ".join(notes) if notes else "the scores do not vary enough"
        notes = [f"{why} (not computed: {', '.join(undefined)})"]
    out["note"] = "; ".join(notes) or None
    return out


def _hero(model: str, via: str, threshold: float | None, pred: np.ndarray, truth: np.ndarray,
          opts: dict) -> dict:
    """Model's hero decision (pred: 1/0/-1 missing) as a predictor of the curators' (truth)."""
    ok = (pred >= 0) & (truth >= 0)
    p, t = pred[ok].astype(bool), truth[ok].astype(bool)
    n = int(ok.sum())
    out: dict[str, Any] = {"model": model, "via": via, "threshold": threshold, "n": n}
    out.update({k: None for k in HERO_STATS})
    out["confusion"] = {"tp": int((p & t).sum()), "fp": int((p & ~t).sum()), "fn": int((~p & t).sum()),
                        "tn": int((~p & ~t).sum())}
    out["ci"] = {k: None for k in HERO_STATS}
    if n < opts["min_n"]:
        what = "with both a curator hero decision and the model's flag" if via == "flag" else \
            "with both a curator hero decision and a model score"
        out["note"] = _few(n, opts["min_n"], what)
        return out
    table = hero_table(p, t)
    point = hero_statistics(table[None])
    for k in HERO_STATS:
        out[k] = finite_or_none(point[k])
    if opts["resamples"] > 0:
        rng = block_rng(opts["seed"], "hero", opts.get("tag", ""), model, via)
        parts = [hero_statistics(b) for b in resampled_tables(table, opts["resamples"], rng)]
        for k in HERO_STATS:
            if out[k] is not None:
                out["ci"][k] = percentile_ci(np.concatenate([x[k] for x in parts]))
    notes = []
    if not p.any():
        notes.append("the model called no image a hero, so precision is undefined")
    if not t.any():
        notes.append("the curators called no image a hero, so recall is undefined")
    if out["cohen_kappa"] is None:
        notes.append("both sides made the same call on every image, so Cohen's kappa is undefined")
    out["note"] = "; ".join(notes) or None
    return out


def _alpha_block(matrix: np.ndarray, opts: dict, label: str, who: str) -> dict:
    """Krippendorff's alpha (interval and ordinal) with unit-bootstrap intervals."""
    c = Coincidence(matrix)
    out: dict[str, Any] = {"alpha_interval": None, "alpha_ordinal": None,
                           "ci": {"alpha_interval": None, "alpha_ordinal": None},
                           "n_units": c.n_units, "n_raters": c.n_raters, "note": None}
    if c.n_units < opts["min_n"]:
        out["note"] = _few(c.n_units, opts["min_n"], f"rated by two or more {who}")
        return out
    o = c.matrix()
    for level in ALPHA_LEVELS:
        out[f"alpha_{level}"] = alpha_from(o, c.values, level)
    if out["alpha_interval"] is None:
        out["note"] = f"the {who} gave every image the same score, so alpha is undefined"
        return out
    if opts["resamples"] > 0:
        rng = block_rng(opts["seed"], "alpha", label)
        samples = np.full((len(ALPHA_LEVELS), opts["resamples"]), np.nan)
        for i in range(opts["resamples"]):
            w = np.bincount(rng.integers(0, c.n_units, c.n_units), minlength=c.n_units).astype(float)
            o = c.matrix(w)
            for j, level in enumerate(ALPHA_LEVELS):
                v = alpha_from(o, c.values, level)
                samples[j, i] = np.nan if v is None else v
        for j, level in enumerate(ALPHA_LEVELS):
            out["ci"][f"alpha_{level}"] = percentile_ci(samples[j])
    return out


# ---------------------------------------------------------------------------------------------
# The long table as matrices
# ---------------------------------------------------------------------------------------------

class _Data:
    """Raters x images matrices from the long table; a rater's later row for an image wins."""

    def __init__(self, rows: list[dict]):
        # One pass per column (comprehensions) is several times faster than one loop over the dicts.
        kinds = [r.get("kind") for r in rows]
        bad = set(kinds) - {"human", "model"}
        if bad:
            raise ValueError(f"row kind must be 'human' or 'model', not {sorted(map(repr, bad))[0]}")
        images: dict[Any, int] = {}
        img = [images.setdefault(r["image_id"], len(images)) for r in rows]
        raters: dict[tuple[str, str], int] = {}
        rat = [raters.setdefault((k, str(r["rater"])), len(raters)) for k, r in zip(kinds, rows)]
        score = [r.get("score") for r in rows]
        hero = [r.get("hero") for r in rows]
        modes: dict[str, int] = {}
        mode = [-1 if k != "human" or r.get("mode") is None else modes.setdefault(str(r["mode"]), len(modes))
                for k, r in zip(kinds, rows)]
        species: dict[int, str] = {}
        for i, r in zip(img, rows):
            sp = r.get("species")
            if sp is not None:
                species.setdefault(i, str(sp))
        self.n_images = len(images)
        self.raters = list(raters)  # (kind, name)
        self.modes = list(modes)
        self.img = np.asarray(img, dtype=np.int64)
        self.rat = np.asarray(rat, dtype=np.int64)
        self.score = np.array([np.nan if s is None else s for s in score], dtype=float)
        self.score[~np.isfinite(self.score)] = np.nan
        self.hero = np.array([-1 if h is None else bool(h) for h in hero], dtype=np.int8)
        self.mode = np.asarray(mode, dtype=np.int64)
        names = sorted(set(species.values()))
        code = {s: k for k, s in enumerate(names)}
        self.species_names = names
        self.species = np.full(self.n_images, -1, dtype=np.int64)
        if species:
            idx = np.fromiter(species.keys(), dtype=np.int64, count=len(species))
            self.species[idx] = [code[species[i]] for i in idx.tolist()]
        self.humans = [k for k, (kind, _) in enumerate(self.raters) if kind == "human"]
        self.models = [k for k, (kind, _) in enumerate(self.raters) if kind == "model"]
        self.S, self.H, self.rated = self.matrices(np.ones(self.img.size, dtype=bool))

    def matrices(self, select: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Score (NaN missing), hero (-1 missing) and rated-at-all matrices from the selected rows."""
        r, n = len(self.raters), self.n_images
        S = np.full((r, n), np.nan)
        H = np.full((r, n), -1, dtype=np.int8)
        rated = np.zeros((r, n), dtype=bool)
        idx = np.flatnonzero(select)
        if idx.size:
            key = self.rat[idx] * n + self.img[idx]
            _, last = np.unique(key[::-1], return_index=True)  # the last row of each (rater, image)
            keep = idx[::-1][last]
            S[self.rat[keep], self.img[keep]] = self.score[keep]
            H[self.rat[keep], self.img[keep]] = self.hero[keep]
            rated[self.rat[keep], self.img[keep]] = True
        return S, H, rated

    def name(self, k: int) -> str:
        return self.raters[k][1]


def _consensus(S: np.ndarray, H: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image: mean of the curators' stars, hero by majority (a tie or no vote: -1)."""
    if S.shape[0] == 0:
        return np.full(S.shape[1], np.nan), np.full(S.shape[1], -1, dtype=np.int8)
    cnt = np.isfinite(S).sum(0)
    total = np.where(np.isfinite(S), S, 0.0).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(cnt > 0, total / np.maximum(cnt, 1), np.nan)
    yes, no = (H == 1).sum(0), (H == 0).sum(0)
    hero = np.where(yes > no, 1, np.where(no > yes, 0, -1)).astype(np.int8)
    return score, hero


def _model_subset(d: _Data, S: np.ndarray, H: np.ndarray, cols: np.ndarray | None, opts: dict, label: str) -> dict:
    """Curators' consensus vs each model on a subset: Spearman, MAE, QWK and hero kappa."""
    cs, ch = _consensus(S[d.humans], H[d.humans])
    if cols is not None:
        mask = np.zeros(d.n_images, dtype=bool)
        mask[cols] = True
        cs, ch = np.where(mask, cs, np.nan), np.where(mask, ch, -1)
    n_images = int(np.isfinite(cs).sum())
    opts = opts | {"tag": label}
    models = []
    for m in sorted(d.models, key=d.name):
        name = d.name(m)
        p = _pair(CONSENSUS, name, "human-model", cs, d.S[m], opts, SUBSET_STATS)
        flag = _hero(name, "flag", None, d.H[m], ch, opts)
        thr = _threshold_pred(d.S[m], opts["hero_threshold"])
        by_thr = _hero(name, "threshold", opts["hero_threshold"], thr, ch, opts)
        models.append({"model": name, "n": p["n"], **{k: p[k] for k in SUBSET_STATS},
                       "hero_kappa": flag["cohen_kappa"], "hero_kappa_threshold": by_thr["cohen_kappa"],
                       "ci": {**p["ci"], "hero_kappa": flag["ci"]["cohen_kappa"],
                              "hero_kappa_threshold": by_thr["ci"]["cohen_kappa"]},
                       "note": p["note"]})
    return {"n_images": n_images, "models": models,
            "note": None if n_images else "no curator score in this group"}


def _threshold_pred(scores: np.ndarray, threshold: float) -> np.ndarray:
    return np.where(np.isfinite(scores), (scores >= threshold).astype(np.int8), -1).astype(np.int8)


def _human_block(d: _Data, S: np.ndarray, opts: dict, label: str, min_pair_n: int = 1) -> dict:
    """Curator-vs-curator pairs and alpha among curators (the ceiling for any model)."""
    Sh = S[d.humans]
    opts = opts | {"tag": label}
    pairs = []
    for i, j in combinations(range(len(d.humans)), 2):
        both = int((np.isfinite(Sh[i]) & np.isfinite(Sh[j])).sum())
        if both >= min_pair_n:
            a, b = sorted([(d.name(d.humans[i]), i), (d.name(d.humans[j]), j)])
            pairs.append(_pair(a[0], b[0], "human-human", Sh[a[1]], Sh[b[1]], opts))
    block = _alpha_block(Sh, opts, label, "curators")
    if block["n_units"] == 0:
        block["note"] = "no image was rated by two curators, so their agreement cannot be measured"
    return {"pairs": pairs, **block}

# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------

def compute_agreement(rows: list[dict], *, hero_threshold: float = 7.0, resamples: int = 1000, seed: int = 0,
                      labels: Sequence[int] = tuple(range(0, 11)), min_n: int = 5) -> dict:
    """Agreement between curators and models from the long table; a JSON-ready dict.

    Keys: raters, pairs, overall, hero, inter_human, by_mode, by_species, readings, parameters.
    Intervals are 95% percentile bootstraps over images with ``resamples`` resamples, seeded.
    """
    lab = score_labels(labels)
    opts = {"hero_threshold": float(hero_threshold), "resamples": max(0, int(resamples)), "seed": int(seed),
            "labels": lab, "min_n": max(1, int(min_n))}
    d = _Data(rows)
    report: dict[str, Any] = {}

    report["raters"] = _raters(d)
    report["pairs"], report["hero"] = _pairs_and_hero(d, opts)
    report["overall"] = _alpha_block(d.S, opts, "overall", "raters")
    report["inter_human"], report["by_mode"], report["by_species"], left_out = _subsets(d, opts)
    report["by_species_note"] = (f"{left_out} species left out: fewer than {opts['min_n']} images with a curator "
                                 f"score" if left_out else None)
    report["_raters"] = d.raters
    report["readings"] = readings(report, opts)
    del report["_raters"]
    report["parameters"] = {"hero_threshold": opts["hero_threshold"], "resamples": opts["resamples"],
                            "seed": opts["seed"], "labels": [int(x) for x in lab], "min_n": opts["min_n"]}
    return _clean(report)


def _raters(d: _Data) -> list[dict]:
    raters = []
    for k, (kind, name) in enumerate(d.raters):
        s, h = d.S[k][np.isfinite(d.S[k])], d.H[k][d.H[k] >= 0]
        raters.append({"name": name, "kind": kind, "n_images": int(d.rated[k].sum()),
                       "mean_score": float(s.mean()) if s.size else None,
                       "hero_share": float(h.mean()) if h.size else None})
    return sorted(raters, key=lambda r: (r["kind"] != "human", r["name"]))


def _pairs_and_hero(d: _Data, opts: dict) -> tuple[list[dict], list[dict]]:
    """Every pair of raters that share images, each model against the curators' consensus, and
    each model's hero decisions (its flag, and its score above the threshold) against theirs."""
    pairs = []
    order = sorted(range(len(d.raters)), key=lambda k: (d.raters[k][0] != "human", d.name(k)))
    for i, j in combinations(order, 2):
        both = np.isfinite(d.S[i]) & np.isfinite(d.S[j])
        if not both.any():
            continue
        kind = {("human", "human"): "human-human", ("model", "model"): "model-model"}.get(
            (d.raters[i][0], d.raters[j][0]), "human-model")
        pairs.append(_pair(d.name(i), d.name(j), kind, d.S[i], d.S[j], opts))
    cs, ch = _consensus(d.S[d.humans], d.H[d.humans])
    hero = []
    if d.humans:
        for m in sorted(d.models, key=d.name):
            pairs.append(_pair(CONSENSUS, d.name(m), "human-model", cs, d.S[m], opts))
            hero.append(_hero(d.name(m), "flag", None, d.H[m], ch, opts))
            hero.append(_hero(d.name(m), "threshold", opts["hero_threshold"],
                              _threshold_pred(d.S[m], opts["hero_threshold"]), ch, opts))
    return pairs, hero


def _subsets(d: _Data, opts: dict) -> tuple[dict, dict, dict, int]:
    """Curators among themselves, and the models against them, overall, by mode and by species;
    and how many species were left out for too few images."""
    inter = _human_block(d, d.S, opts, "humans")
    inter["by_mode"] = {}
    inter["by_species"] = {}
    mode_order = sorted(d.modes, key=lambda m: ({"assisted": 0, "blind": 1}.get(m, 2), m))
    by_mode = {}
    for mode in mode_order:
        sel = d.mode == d.modes.index(mode)
        S, H, _ = d.matrices(sel)
        by_mode[mode] = _model_subset(d, S, H, None, opts, f"mode {mode}")
        if len(d.humans) >= 2:
            inter["by_mode"][mode] = _human_block(d, S, opts, f"humans mode {mode}", opts["min_n"])
    by_species = {}
    left_out = 0
    human_any = np.isfinite(d.S[d.humans]).any(0) if d.humans else np.zeros(d.n_images, dtype=bool)
    two_humans = (np.isfinite(d.S[d.humans]).sum(0) >= 2) if d.humans else human_any
    counts = []
    for code, sp in enumerate(d.species_names):
        cols = np.flatnonzero(d.species == code)
        counts.append((-int(human_any[cols].sum()), sp, code, cols))
    for neg, sp, code, cols in sorted(counts):
        if -neg < opts["min_n"] or not d.models:
            left_out += 1
        else:
            by_species[sp] = _model_subset(d, d.S, d.H, cols, opts, f"species {sp}")
        if len(d.humans) >= 2 and two_humans[cols].sum() >= opts["min_n"]:
            sub = np.full_like(d.S, np.nan)
            sub[:, cols] = d.S[:, cols]
            inter["by_species"][sp] = _human_block(d, sub, opts, f"humans species {sp}", opts["min_n"])
    return inter, by_mode, by_species, left_out


def _clean(x: Any) -> Any:
    """Plain JSON types only; any non-finite float becomes None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        v = float(x)
        return v if math.isfinite(v) else None
    return x
