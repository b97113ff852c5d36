"""A planted ranking of a hero set and the simulated curator who compares its pairs (measured in
tests/test_compare_push.py's test_planted_ranking_choice), and the answers Label Studio saves."""
from __future__ import annotations

import math

import numpy as np

N_HEROES, SPREAD, PER_ROUND, COMPARISONS = 40, 20.0, 20, 120  # see test_planted_ranking_choice

# What Label Studio 1.23.2's frontend saves: Pairwise names itself as to_name (its createResult is
# given the control's own name as the object), the "same" choice its alias.
LEFT = {"type": "pairwise", "from_name": "comparison", "to_name": "comparison", "value": {"selected": "left"}}
RIGHT = {**LEFT, "value": {"selected": "right"}}
SAME = {"type": "choices", "from_name": "same", "to_name": "left", "value": {"choices": ["same"]}}


def planted(seed: int, n: int = N_HEROES, spread: float = SPREAD) -> np.ndarray:
    """Known log-strengths evenly over [-spread, spread], in a random order of the items."""
    return np.random.default_rng([seed, 1]).permutation(np.linspace(-spread, spread, n))


def beats(coin: np.random.Generator, t_left: float, t_right: float) -> bool:
    """A simulated curator: the left image wins with its Bradley-Terry probability."""
    return bool(coin.random() < 1 / (1 + math.exp(-(t_left - t_right))))
