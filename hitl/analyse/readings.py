"""The report's findings in words: a sentence per finding, from the agreement figures. Pure."""
from __future__ import annotations

import numpy as np

CONSENSUS = "humans"
READING_MIN_N = 30  # a per-species figure on fewer images is too noisy to single out in a sentence
BANDS = ((0.8, "almost perfect"), (0.6, "substantial"), (0.4, "moderate"), (0.2, "fair"), (0.0, "slight"))
CONVENTION = ("Words for agreement follow Landis & Koch (1977): below 0 poor, 0-0.2 slight, 0.2-0.4 fair, "
              "0.4-0.6 moderate, 0.6-0.8 substantial, above 0.8 almost perfect; they are applied to "
              "kappa, alpha, ICC and Spearman alike.")


# ---------------------------------------------------------------------------------------------
# Readings
# ---------------------------------------------------------------------------------------------

def _band(v: float) -> str:
    if v < 0:
        return "poor"
    for cut, word in BANDS:
        if v >= cut:
            return word
    return "slight"


def _f(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _ci_text(ci: list[float] | None, digits: int = 2) -> str:
    return "" if ci is None else f", 95% CI {ci[0]:.{digits}f}–{ci[1]:.{digits}f}"


def _rank_words(r: float) -> str:
    if r >= 0.8:
        return "very much like"
    if r >= 0.6:
        return "much like"
    if r >= 0.4:
        return "somewhat like"
    if r >= 0.2:
        return "only a little like"
    return "not like"


def readings(report: dict, opts: dict) -> list[str]:
    """The sentences of the report's \"What this says\", most important first."""
    consensus = {p["b"]: p for p in report["pairs"] if p["a"] == CONSENSUS}
    if not any(kind == "human" for kind, _ in report["_raters"]):
        models = sum(1 for kind, _ in report["_raters"] if kind == "model")
        return [f"No curator ratings yet: only {models} model{'' if models == 1 else 's'} scored these images, "
                f"so nothing can be said about how far to trust {'it' if models == 1 else 'them'}."
                + (" Push the candidates to Label Studio (`hitl push`) and collect ratings." if models else ""),
                *_overall_readings(report), CONVENTION]
    out = (_score_readings(report, consensus) + _hero_readings(report) + _inter_human_readings(report, consensus)
           + _overall_readings(report) + _mode_readings(report, consensus) + _species_readings(report, consensus, opts))
    if not consensus:
        out.append("No model and curator rated the same images, so the models cannot be judged yet.")
    out.append(CONVENTION)
    return out


def _score_readings(report: dict, consensus: dict) -> list[str]:
    """How each model's scores compare with the curators' consensus."""
    out: list[str] = []
    for model, p in consensus.items():
        if p["spearman"] is None:
            out.append(f"{model}: cannot say how it ranks images against the curators ({p['note']}).")
            continue
        out.append(f"{model} ranks images {_rank_words(p['spearman'])} the curators (Spearman {_f(p['spearman'])}"
                   f"{_ci_text(p['ci']['spearman'])}, n = {p['n']}; {_band(p['spearman'])}).")
        if p["bias"] is not None and p["loa_low"] is not None:
            side = "higher" if p["bias"] > 0 else "lower"
            level = (f"{abs(p['bias']):.1f} points {side} than" if abs(p["bias"]) >= 0.25
                     else "about as high as")
            scale = ("" if p["qwk"] is None else
                     f"; on the same 0-10 scale the agreement is {_band(p['qwk'])} (quadratic-weighted kappa "
                     f"{_f(p['qwk'])}{_ci_text(p['ci']['qwk'])})")
            out.append(f"{model} scores {level} the curators on average (bias {p['bias']:+.2f}, 95% limits of "
                       f"agreement {p['loa_low']:+.1f} to {p['loa_high']:+.1f}; mean absolute difference "
                       f"{_f(p['mae'])}){scale}.")
    return out


def _hero_readings(report: dict) -> list[str]:
    """How each model's hero decisions compare with the curators'."""
    out: list[str] = []
    by_model: dict[str, dict] = {}
    for h in report["hero"]:
        by_model.setdefault(h["model"], {})[h["via"]] = h
    for model, vias in by_model.items():
        f, t = vias.get("flag"), vias.get("threshold")
        for h in (f, t):
            if h is None:
                continue
            how = "its own hero flag" if h["via"] == "flag" else f"score ≥ {h['threshold']:g} as hero"
            if h["cohen_kappa"] is None and h["percent_agreement"] is None:
                out.append(f"{model}, {how}: hero agreement cannot be measured ({h['note']}).")
                continue
            pr = ("" if h["recall"] is None or h["precision"] is None else
                  f"; it finds {h['recall']:.0%} of the curators' heroes and {h['precision']:.0%} of its picks are theirs")
            kappa = ("Cohen's kappa undefined" if h["cohen_kappa"] is None else
                     f"Cohen's kappa {_f(h['cohen_kappa'])}{_ci_text(h['ci']['cohen_kappa'])}, {_band(h['cohen_kappa'])}")
            out.append(f"{model}, {how}: agrees with the curators' hero decision on {h['percent_agreement']:.0%} "
                       f"of {h['n']} images ({kappa}; Gwet's AC1 {_f(h['gwet_ac1'])}){pr}.")
        if f and t and f["ci"]["cohen_kappa"] and t["ci"]["cohen_kappa"]:
            if t["ci"]["cohen_kappa"][0] > f["ci"]["cohen_kappa"][1]:
                out.append(f"For {model}, score ≥ {t['threshold']:g} picks heroes better than its own flag.")
            elif f["ci"]["cohen_kappa"][0] > t["ci"]["cohen_kappa"][1]:
                out.append(f"For {model}, its own hero flag picks heroes better than score ≥ {t['threshold']:g}.")
    return out


def _inter_human_readings(report: dict, consensus: dict) -> list[str]:
    """How far curators agree with each other: the ceiling for any model."""
    out: list[str] = []
    ih = report["inter_human"]
    if ih["alpha_interval"] is not None:
        out.append(f"Curators agree with each other at α = {_f(ih['alpha_interval'])}"
                   f"{_ci_text(ih['ci']['alpha_interval'])} (interval; {_band(ih['alpha_interval'])}, "
                   f"{ih['n_units']} images rated by two or more): no model can be expected to agree with them better.")
        hh = [p["spearman"] for p in ih["pairs"] if p["spearman"] is not None]
        if hh:
            ceiling = float(np.mean(hh))
            humans = {name for kind, name in report["_raters"] if kind == "human"}
            for model in consensus:
                mm = [p["spearman"] for p in report["pairs"] if p["b"] == model and p["a"] in humans
                      and p["spearman"] is not None]
                if mm:
                    v = float(np.mean(mm))
                    verdict = ("about as well as" if abs(v - ceiling) < 0.05 else
                               "better than" if v > ceiling else "less well than")
                    out.append(f"{model} agrees with individual curators (mean Spearman {v:.2f}) {verdict} "
                               f"curators agree with each other ({ceiling:.2f}).")
    elif ih["n_units"] == 0:
        out.append("No image was rated by two curators, so how far curators agree with each other — the ceiling "
                   "for any model — is unknown.")
    else:
        out.append(f"Too few images rated by two curators to measure their agreement ({ih['note']}).")
    return out


def _overall_readings(report: dict) -> list[str]:
    """Krippendorff's alpha across every rater."""
    out: list[str] = []
    ov = report["overall"]
    if ov["alpha_interval"] is not None:
        out.append(f"Across all {ov['n_raters']} raters (curators and models), α = {_f(ov['alpha_interval'])} "
                   f"(interval) and {_f(ov['alpha_ordinal'])} (ordinal) over {ov['n_units']} images.")
    return out


def _mode_readings(report: dict, consensus: dict) -> list[str]:
    """Agreement by review mode, and the anchoring warning."""
    out: list[str] = []
    modes = report["by_mode"]
    if len(modes) >= 2:
        for model in consensus:
            parts, cis = [], {}
            for mode, g in modes.items():
                for m in g["models"]:
                    if m["model"] == model and m["spearman"] is not None:
                        parts.append(f"{mode} {m['spearman']:.2f} (n = {m['n']})")
                        cis[mode] = m["ci"]["spearman"]
            if len(parts) >= 2:
                line = f"{model} against curators by review mode, Spearman: " + ", ".join(parts)
                a, b = cis.get("assisted"), cis.get("blind")
                if a and b and a[0] > b[1]:
                    line += ("; assisted curators saw the model's score, so part of their agreement may be "
                             "anchoring: trust the blind figure")
                out.append(line + ".")
    return out


def _species_readings(report: dict, consensus: dict, opts: dict) -> list[str]:
    """The species a model agrees with the curators least and most on."""
    out: list[str] = []
    species = report["by_species"]
    for model in consensus:
        vals = [(m["spearman"], sp, m["n"]) for sp, g in species.items() for m in g["models"]
                if m["model"] == model and m["spearman"] is not None and m["n"] >= max(READING_MIN_N, opts["min_n"])]
        if len(vals) >= 2:
            lo, hi = min(vals), max(vals)
            out.append(f"{model} agrees least with the curators on {lo[1]} (Spearman {lo[0]:.2f}, n = {lo[2]}) "
                       f"and most on {hi[1]} ({hi[0]:.2f}, n = {hi[2]}).")
    return out
