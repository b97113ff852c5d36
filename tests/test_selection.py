"""The pure selection functions: features, categories, allocation and the pick rules."""
from __future__ import annotations

import numpy as np
import pytest

from converters.megadetector import KIND_ANIMAL, KIND_PERSON
from hitl.select import strata as selection


def features_for(dets, n_images, threshold=0.3):
    image = np.array([d[0] for d in dets], dtype=np.int32)
    kind = np.array([d[1] for d in dets], dtype=np.int8)
    conf = np.array([d[2] for d in dets], dtype=np.float32)
    bbox = np.array([d[3] for d in dets], dtype=np.float32).reshape(-1, 4)
    species = np.array([d[4] for d in dets], dtype=np.int32)
    return selection.image_features(image, kind, conf, bbox, species, n_images, threshold, 0.01)


def test_image_features():
    dets = [
        (0, KIND_ANIMAL, 0.9, (0.4, 0.4, 0.2, 0.2), 0),  # centred single animal
        (1, KIND_ANIMAL, 0.9, (0.0, 0.3, 0.3, 0.3), 0),  # touches the left edge
        (1, KIND_ANIMAL, 0.8, (0.5, 0.3, 0.1, 0.1), 1),  # second species
        (1, KIND_ANIMAL, 0.1, (0.7, 0.3, 0.1, 0.1), 2),  # below threshold: ignored
        (2, KIND_PERSON, 0.7, (0.1, 0.1, 0.2, 0.5), -1),
    ]
    f = features_for(dets, 4)
    assert list(f.n_animals) == [1, 2, 0, 0]
    assert list(f.n_people) == [0, 0, 1, 0]
    assert list(f.n_species) == [1, 2, 0, 0]
    assert f.area[0] == pytest.approx(0.04) and f.area[1] == pytest.approx(0.09)
    assert list(f.cut_off) == [False, True, False, False]
    assert f.centrality[0] == pytest.approx(1.0)
    assert list(f.main_det) == [0, 1, -1, -1]
    assert f.max_conf[1] == pytest.approx(0.9)


def test_unclassified_animals_count_as_one_species():
    f = features_for([(0, KIND_ANIMAL, 0.9, (0.1, 0.1, 0.1, 0.1), -1)] * 3, 1)
    assert f.n_animals[0] == 3 and f.n_species[0] == 1


def test_quality_prefers_big_central_whole_daylit_animals():
    q = selection.quality_score(np.array([0.15, 0.001, 0.15, 0.15]), np.array([0.9, 0.9, 0.9, 0.9]),
                                np.array([0.9, 0.9, 0.9, 0.9]), np.array([False, False, True, False]),
                                np.array([False, False, False, True]))
    assert q[0] > q[3] > q[2] and q[0] > q[1]
    assert ((q >= 0) & (q <= 1)).all()


@pytest.mark.parametrize("n", [1, 7, 100, 5000])
def test_allocate_sums_to_n(n):
    shares = {"rare_species": 0.15, "multi_species": 0.1, "group": 0.15, "close_up": 0.15,
              "well_framed": 0.3, "night": 0.05, "best_remaining": 0.1}
    counts = selection.allocate(shares, n)
    assert sum(counts.values()) == n
    if n == 100:
        assert counts["well_framed"] == 30 and counts["night"] == 5


def test_allocate_respects_zero_shares():
    counts = selection.allocate({"group": 1.0, "night": 0}, 10)
    assert counts["group"] == 10 and counts["night"] == 0


def _pick(quality, seq, species, n, cap=100, seed=0, masks=None, accept=None, shares=None):
    m = len(quality)
    masks = masks or {c: np.zeros(m, bool) for c in selection.CATEGORY_ORDER}
    masks.setdefault("best_remaining", np.ones(m, bool))
    shares = shares or {"best_remaining": 1.0}
    return selection.pick(n, np.asarray(quality, float), masks, np.asarray(seq), np.asarray(species),
                          shares, cap, seed, jitter=0.0, accept=accept)


def test_one_frame_per_sequence_and_best_frame_first():
    picks = _pick([0.5, 0.9, 0.7, 0.6], seq=[0, 0, 1, 1], species=[0, 0, 1, 1], n=4)
    assert sorted(p.row for p in picks) == [1, 2]  # the best of each sequence, never two of one


def test_species_cap_then_relaxed_to_reach_n():
    quality = [0.9, 0.8, 0.7, 0.6, 0.1]
    picks = _pick(quality, seq=[0, 1, 2, 3, 4], species=[0, 0, 0, 0, 1], n=3, cap=1)
    rows = [p.row for p in picks]
    assert rows[:2] == [0, 4]  # cap 1 for species 0 lets the weak species-1 image in
    assert picks[2].relaxed and not picks[0].relaxed and rows[2] == 1


def test_categories_are_filled_in_order_and_no_row_twice():
    m = 6
    masks = {c: np.zeros(m, bool) for c in selection.CATEGORY_ORDER}
    masks["rare_species"][5] = True
    masks["group"][[1, 2]] = True
    shares = {"rare_species": 1, "group": 1, "best_remaining": 1}
    picks = _pick([0.9, 0.8, 0.7, 0.6, 0.5, 0.1], seq=range(m), species=range(m), n=3, masks=masks, shares=shares)
    assert [(p.row, p.category) for p in picks] == [(5, "rare_species"), (1, "group"), (0, "best_remaining")]


def test_veto_takes_the_next_best_of_the_sequence():
    picks = _pick([0.9, 0.8, 0.1], seq=[0, 0, 1], species=[0, 0, 0], n=2, accept=lambda r: r != 0)
    assert sorted(p.row for p in picks) == [1, 2]


def test_deterministic_for_a_seed_and_different_for_another():
    rng = np.random.default_rng(1)
    quality = rng.random(500) * 0.05 + 0.5  # a flat field: the jitter decides
    seq, species = np.arange(500), rng.integers(0, 10, 500)
    masks = {c: np.zeros(500, bool) for c in selection.CATEGORY_ORDER}
    masks["best_remaining"][:] = True
    def run(seed):
        return [p.row for p in selection.pick(50, quality, masks, seq, species, {"best_remaining": 1}, 100, seed)]
    assert run(3) == run(3)
    assert run(3) != run(4)


def test_fewer_sequences_than_n_gives_fewer_picks():
    picks = _pick([0.9, 0.8, 0.7], seq=[0, 0, 0], species=[0, 0, 0], n=3)
    assert len(picks) == 1
