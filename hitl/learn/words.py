"""The learned rater's figures and taste in words, said only as far as the numbers carry them. Pure.

A figure no better than chance (hero AUC at or below 0.5, Spearman at or below 0, or a 95%
interval that reaches chance) is said as such, and then nothing is said of what the curators
reward: a model that cannot tell heroes apart has learned no taste. Otherwise a feature is named
only when shuffling it costs held-out AUC distinguishably (:func:`hitl.learn.distinguishable_loss`)
and, where "more" has a meaning, when the direction of its effect is clear of zero.
"""
from __future__ import annotations

from hitl.learn import UNDIRECTED, distinguishable_loss

TOP = 5  # features named at most

# feature -> (when more of it raises the hero probability, when it lowers it)
PHRASES = {
    "area": ("large animals", "small, distant animals"),
    "centrality": ("centred animals", "animals off centre"),
    "cut_off": ("animals cut off by the edge", "animals fully in frame"),
    "night": ("night frames", "day frames"),
    "max_conf": ("clearly visible animals (a confident detector)", "half-hidden animals"),
    "n_animals": ("several animals in one frame", "single animals"),
    "n_species": ("more than one species in a frame", "one species at a time"),
    "rarity": ("common species", "rare species"),  # rarity is the share of sequences with the species
    "assisted": ("images they rated with a model's opinion shown", "images they rated blind"),
    "baseline:sharpness_log": ("sharp animals", "soft, blurred animals"),
    "baseline:sharpness_rel": ("animals sharper than their background", "backgrounds sharper than the animal"),
    "baseline:exposure_distance": ("bold exposures", "well-exposed frames"),
    "baseline:shadows_clipped": ("deep, clipped shadows", "open shadows"),
    "baseline:highlights_clipped": ("burnt-out highlights", "held highlights"),
    "baseline:contrast_box": ("contrasty animals", "flat-lit animals"),
    "baseline:contrast_frame": ("contrasty frames", "flat-lit frames"),
    "baseline:chroma_mean": ("colourful frames", "muted, grey frames"),
    "baseline:saturation": ("saturated colour", "muted colour"),
    "baseline:thirds_distance": ("animals away from the thirds", "animals on the thirds"),
    "pixels:hero": ("the look of their heroes (what the image vectors show)",
                    "a look unlike their heroes' (what the image vectors show)"),
    "pixels:stars": ("the look of their best-starred images (what the image vectors show)",
                     "a look unlike their best-starred images' (what the image vectors show)"),
}
UNDIRECTED_PHRASES = {"species": "some species more than others", "location": "some cameras more than others",
                      "hour_sin": "some times of day", "hour_cos": "some times of day"}
CHANCE = {"hero_auc": 0.5, "spearman": 0.0}  # what a rater that knows nothing scores
JUDGED = (("hero_auc", "the hero decision", "AUC", "n_hero"), ("spearman", "the stars", "Spearman", "n_stars"))


def phrase(feature: str, direction: float) -> str:
    """What a feature rewards, for an effect in ``direction`` (its sign)."""
    if feature in UNDIRECTED_PHRASES:
        return UNDIRECTED_PHRASES[feature]
    up = direction > 0
    if feature.startswith("score:"):
        return f"what {feature[6:]} scores {'high' if up else 'low'}"
    if feature.startswith("hero:"):
        return f"what {feature[5:]} calls a hero" if up else f"what {feature[5:]} does not call a hero"
    if feature.startswith("tag:"):
        return f"frames tagged {feature[4:]!r}" if up else f"frames not tagged {feature[4:]!r}"
    name = feature.replace("_", " ")
    up_words, down_words = PHRASES.get(feature, (f"more {name}", f"less {name}"))
    return up_words if up else down_words


def beats_chance(figures: dict, key: str) -> bool | None:
    """Is the figure better than chance, its 95% interval included? None: not computed."""
    value = figures.get(key)
    if value is None:
        return None
    ci = figures.get(key + "_ci")
    return value > CHANCE[key] and (not ci or ci[0] > CHANCE[key])


def chance_words(name: str, figures: dict) -> list[str]:
    """A sentence for each of the rater's figures that is no better than chance."""
    out = []
    for key, what, label, n_key in JUDGED:
        if beats_chance(figures, key) is False:
            ci = figures.get(key + "_ci")
            interval = f", 95% interval {ci[0]:.2f} to {ci[1]:.2f}" if ci else ""
            out.append(f"{name} on {what}: no better than chance yet: {figures.get(n_key)} decisions "
                       f"({label} {figures[key]:.2f}{interval}; chance is {CHANCE[key]:g}).")
    return out


def said(item: dict) -> bool:
    """Is the feature's effect distinguishable from zero: its loss, and its direction where it has one?"""
    if not distinguishable_loss(item):
        return False
    if item["feature"] in UNDIRECTED:
        return True
    ci = item.get("direction_ci")
    return bool(ci) and (ci[0] > 0 or ci[1] < 0) and item.get("direction") is not None


def what_curators_reward(importance: list[dict], figures: dict) -> str:
    """A sentence such as "The curators reward sharp animals and large animals (...)." from the
    features whose effect is distinguishable from zero; "" when the learned rater's hero decision is
    no better than chance (or not judged), which :func:`chance_words` says instead."""
    if not importance or not beats_chance(figures, "hero_auc"):
        return ""
    parts: list[str] = []
    for item in importance:
        if said(item) and (text := phrase(item["feature"], item.get("direction") or 0.0)) not in parts:
            parts.append(text)
    if not parts:
        return (f"No feature's effect on the hero decision is distinguishable from zero yet "
                f"({figures.get('n_hero')} decisions), so nothing is said of what the curators reward.")
    parts = parts[:TOP]
    listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    return f"The curators reward {listed} (held-out permutation importance of the learned rater)."


def learned_rows(name: str, figures: dict, without: dict | None) -> list[tuple[str, dict]]:
    """The learned rater's rows of a table of figures: with and without the vectors when it read them."""
    if without is None:
        return [(name, figures)]
    return [(f"{name}, with vectors", figures), (f"{name}, without vectors", without)]


def vector_words(facts: dict, grouped_by: str) -> list[str]:
    """What a learn run did with the image vectors, and whether they help, as far as the numbers carry it."""
    model = facts.get("model")
    if model is None:
        if facts.get("asked") == "none":
            return ["Image vectors: not read (--embeddings none); the rater reads the detector record and the "
                    "models' opinions."]
        return ["No image vectors in the store: the rater reads the detector record and the models' opinions "
                "(`python -m hitl embed --model baseline` computes vectors offline)."]
    counts = f"{facts['decisions']} of {facts['of_decisions']} decisions"
    if not facts.get("used"):
        return [f"Image vectors of {model}: {counts} have one, fewer than the {facts['needed']} the vector-aware "
                f"rater needs: the detector-only rater is used (`python -m hitl embed --model {model}` embeds the "
                f"candidates)."]
    out = [f"Image vectors of {model}: {counts} and {facts['images']:,} of {facts['of_images']:,} images have one; "
           f"the rater reads them through a ridge head stacked with its trees, and rates an image without one on "
           f"the detector record and the models' opinions alone."]
    if model == "baseline":
        out.append("The baseline vector describes how a photo looks (layout, edges, blur, colour); it is not a "
                   "learned representation.")
    gain = facts.get("gain") or {}
    parts, better, worse = [], False, False
    for key, label in (("hero_auc", "hero AUC"), ("spearman", "Spearman")):
        if gain.get(key) is None:
            continue
        ci = gain.get(key + "_ci")
        parts.append(f"{label} {gain[key]:+.3f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else ""))
        better |= bool(ci) and ci[0] > 0
        worse |= bool(ci) and ci[1] < 0
    if parts:
        verdict = ("the pixels help on this collection" if better and not worse else
                   "the vectors do worse here (--embeddings none learns without them)" if worse and not better else
                   "better on one figure, worse on the other" if better else
                   "no difference distinguishable from zero yet")
        out.append(f"With the vectors against without: {', '.join(parts)} (95% intervals resampling whole "
                   f"{grouped_by}s): {verdict}.")
    return out
