"""The `compare` stage: pairwise comparisons of hero-set images, and a Bradley-Terry strength for each."""
