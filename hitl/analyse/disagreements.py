"""Which images should a second curator look at? Pure: the long table in, a ranked list out.

Three reasons to look again: the curators and a model are far apart (|human − model|),
the models are far apart from each other (spread), or the hero decisions differ.
"""
from __future__ import annotations

from collections import defaultdict

from hitl.analyse.consensus import consensus, latest_per_curator


def rank_disagreements(rows: list[dict]) -> list[dict]:
    """One row per image that has at least two opinions, the most worth a second look first."""
    by_image: dict[str, dict] = defaultdict(lambda: {"humans": [], "models": {}, "species": None})
    for row in rows:
        entry = by_image[row["image_id"]]
        entry["species"] = entry["species"] or row.get("species")
        if row["kind"] == "human":
            entry["humans"].append(row)
        else:
            entry["models"][row["rater"]] = row
    ranked = []
    for image_id, entry in by_image.items():
        entry["humans"] = latest_per_curator(entry["humans"])  # each curator once: see consensus.DEFINITION
        human_mean, human_hero = consensus(entry["humans"])
        models = entry["models"]
        if len(models) + (1 if entry["humans"] else 0) < 2:
            continue
        diffs = {name: m["score"] - human_mean for name, m in models.items()
                 if human_mean is not None and m["score"] is not None}
        scores = [m["score"] for m in models.values() if m["score"] is not None]
        mismatches = sorted(name for name, m in models.items()
                            if human_hero is not None and m["hero"] is not None and m["hero"] != human_hero)
        max_abs = max((abs(d) for d in diffs.values()), default=None)
        spread = max(scores) - min(scores) if len(scores) >= 2 else None
        reasons = []
        if max_abs is not None:
            worst = max(diffs, key=lambda k: abs(diffs[k]))
            reasons.append(f"{worst} is {abs(diffs[worst]):.1f} points {'above' if diffs[worst] > 0 else 'below'} "
                           f"the curators")
        if spread is not None and spread >= 2:
            reasons.append(f"the models differ by {spread:.1f} points")
        if mismatches:
            reasons.append(f"hero decision differs: {', '.join(mismatches)}")
        ranked.append({
            "image_id": image_id, "species": entry["species"], "human_mean": human_mean,
            "human_hero": human_hero, "n_curators": len(entry["humans"]),
            "curators": {h["rater"]: {"stars": h["score"], "hero": h["hero"], "mode": h.get("mode")}
                         for h in entry["humans"]},
            "models": {name: {"score": m["score"], "hero": m["hero"]} for name, m in models.items()},
            "max_abs_diff": max_abs, "model_spread": spread, "hero_mismatch": mismatches,
            "reason": "; ".join(reasons) or "agree",
        })
    ranked.sort(key=lambda r: (-(r["max_abs_diff"] if r["max_abs_diff"] is not None else -1),
                               -len(r["hero_mismatch"]), -(r["model_spread"] or 0), r["image_id"]))
    return ranked
