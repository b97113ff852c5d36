"""What the curators reward, in words, from the learned rater's permutation importance. Pure."""
from __future__ import annotations

# feature -> (when more of it raises the hero probability, when it lowers it)
PHRASES = {
    "area": ("large animals", "small, distant animals"),
    "centrality": ("centred animals", "animals off centre"),
    "cut_off": ("animals cut off by the edge", "animals fully in frame"),
    "night": ("night frames", "day frames"),
    "max_conf": ("clearly visible animals (a confident detector)", "half-hidden animals"),
    "n_animals": ("several animals in one frame", "single animals"),
    "n_species": ("more than one species in a frame", "one species at a time"),
    "rarity": ("common species", "rare species"),
    "hour_sin": ("some times of day", "some times of day"),
    "hour_cos": ("some times of day", "some times of day"),
    "assisted": ("images they rated with a model's opinion shown", "images they rated blind"),
    "baseline:sharpness_log": ("sharp animals", "soft, blurred animals"),
    "baseline:sharpness_rel": ("animals sharper than their background", "backgrounds sharper than the animal"),
    "baseline:exposure_distance": ("bold exposures", "well-exposed frames"),
    "baseline:contrast_box": ("contrasty animals", "flat-lit animals"),
    "baseline:chroma_mean": ("colourful frames", "muted, grey frames"),
    "baseline:saturation": ("saturated colour", "muted colour"),
}


def phrase(feature: str, direction: float | None) -> str:
    if feature == "species":
        return "some species more than others"
    if feature == "location":
        return "some cameras more than others"
    if feature.startswith("score:"):
        return f"what {feature[6:]} scores high" if (direction or 0) >= 0 else f"what {feature[6:]} scores low"
    if feature.startswith("hero:"):
        return f"what {feature[5:]} calls a hero"
    if feature.startswith("tag:"):
        return f"frames tagged {feature[4:]!r}" if (direction or 0) >= 0 else f"frames not tagged {feature[4:]!r}"
    up, down = PHRASES.get(feature, (feature.replace("_", " "), f"less {feature.replace('_', ' ')}"))
    return up if (direction or 0) >= 0 else down


def what_curators_reward(importance: list[dict]) -> str:
    """A sentence: "The curators reward sharp animals, large animals, centred animals; night
    frames neither count for nor against an image.", or "" when nothing stands out."""
    if not importance:
        return ""
    seen, parts = set(), []
    for item in importance:
        text = phrase(item["feature"], item.get("direction"))
        if text not in seen:
            seen.add(text)
            parts.append(text)
    sentence = f"The curators reward {', '.join(parts[:-1]) + ' and ' + parts[-1] if len(parts) > 1 else parts[0]}"
    if not any(i["feature"] == "night" for i in importance):
        sentence += "; night frames neither count for nor against an image"
    return sentence + " (permutation importance of the learned rater)."
