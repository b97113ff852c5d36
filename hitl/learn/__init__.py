"""The `learn` stage: a model of the curators' taste, and the images worth reviewing next."""

LEARNED = "learned"  # the model name the learned rater's predictions are stored under
HERO_P = 0.5  # from this probability of hero on, the learned rater calls an image a hero (its flag, `next`'s words)
UNDIRECTED = ("species", "location", "hour_sin", "hour_cos")  # an effect with no "more is better"


def distinguishable_loss(item: dict) -> bool:
    """Shuffling the feature costs held-out AUC, its whole interval above zero (a record without
    the interval, from before it was computed, is not judged)."""
    ci = item.get("auc_drop_ci")
    return bool(ci) and ci[0] > 0
