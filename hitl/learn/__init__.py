"""The `learn` stage: a model of the curators' taste, and the images worth reviewing next."""

LEARNED = "learned"  # the model name the learned rater's predictions are stored under
