"""The `learn` stage: a model of the curators' taste, and the images worth reviewing next."""

LEARNED = "learned"  # the model name the learned rater's predictions are stored under
HERO_P = 0.5  # from this probability of hero on, the learned rater calls an image a hero (its flag, `next`'s words)
