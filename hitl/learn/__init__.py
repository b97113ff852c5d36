"""The `learn` stage: a model of the curators' taste, and the images worth reviewing next."""
