"""The shared vector maths (hitl.analyse.neighbours), against brute force: chunked top-k, the nearest
photo of another camera, the calibrated threshold, the near-duplicate rule and its groups, rounds
spread by maximal marginal relevance, and a selection's taken images."""
from __future__ import annotations

import numpy as np
import pytest

from hitl.analyse.neighbours import (
    THRESHOLD_FLOOR,
    Subject,
    Taken,
    copy_threshold,
    groups,
    near_duplicate,
    near_duplicate_pairs,
    nearest_other,
    same_place,
    spread,
    top_k,
)


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_top_k_in_chunks_is_brute_force(dtype):
    rng = np.random.default_rng(0)
    matrix = unit(rng.standard_normal((1000, 24))).astype(dtype)
    queries = unit(rng.standard_normal((3, 24)))
    rows, sims = top_k(matrix, queries, 7, exclude=[5, 999], size=64)  # chunks that split the best
    full = queries @ matrix.astype(np.float32).T
    full[:, [5, 999]] = -np.inf
    expected = np.argsort(-full, axis=1, kind="stable")[:, :7]
    assert np.array_equal(rows, expected)
    assert np.allclose(sims, np.take_along_axis(full, expected, axis=1), atol=1e-5)
    assert (np.diff(sims, axis=1) <= 0).all()  # best first
    few, _ = top_k(matrix[:4], queries[0], 10, exclude=[1])
    assert sorted(few[0].tolist()) == [0, 2, 3]  # fewer rows than asked: every one not excluded


def test_nearest_other_looks_only_at_other_cameras():
    matrix = unit(np.array([[1, 0], [1, 0.01], [0, 1], [0.6, 0.8]], dtype=np.float64))
    cameras = np.array(["a", "a", "b", "b"])
    nearest = nearest_other(matrix, [0, 2], cameras, size=1)
    assert nearest[0] == pytest.approx(0.6, abs=1e-6)  # its twin in camera a does not count
    assert nearest[1] == pytest.approx(float(matrix[2] @ matrix[1]), abs=1e-6)
    assert nearest_other(matrix, [0], np.array(["a"] * 4))[0] == -np.inf


def test_the_threshold_is_the_weakest_copy_lowered_by_its_kinds_spread():
    copies = {"re-encoded": [0.999, 0.998, 0.997], "cropped": [0.96, 0.95, 0.94, 0.97, 0.99]}
    assert copy_threshold(copies) == pytest.approx(0.94 - (0.96 - 0.94))
    assert copy_threshold({"cropped": [0.3, 0.6]}) == THRESHOLD_FLOOR
    with pytest.raises(ValueError):
        copy_threshold({"cropped": []})


BOX = (0.40, 0.50, 0.20, 0.20)
MOVED = (0.70, 0.50, 0.20, 0.20)


def test_the_rule_same_camera_close_and_the_same_moment_or_place():
    here = Subject("cam", "seq1", (BOX,))
    assert near_duplicate(0.99, here, Subject("cam", None, ((0.41, 0.50, 0.20, 0.21),)), 0.95)  # in place
    assert not near_duplicate(0.99, here, Subject("cam", "seq2", (MOVED,)), 0.95)  # the animal moved
    assert near_duplicate(0.99, here, Subject("cam", "seq1", (MOVED,)), 0.95)  # ... within its burst
    assert not near_duplicate(0.99, here, Subject("other cam", None, (BOX,)), 0.95)
    assert not near_duplicate(0.94, here, Subject("cam", None, (BOX,)), 0.95)
    assert not near_duplicate(float("nan"), here, here, 0.95)  # no vector
    assert near_duplicate(0.99, here, Subject("cam", None, None), 0.95)  # boxes unknown: vectors decide
    # the same animals in the same places: a second animal in one of them is another photo
    assert not same_place((BOX,), (BOX, MOVED))
    assert same_place((), ()) and not same_place((BOX,), ())


def test_pairs_and_groups_are_brute_force():
    rng = np.random.default_rng(1)
    base = unit(rng.standard_normal((6, 16)))
    vectors = np.concatenate([base, unit(base[:3] + 0.05 * rng.standard_normal((3, 16)))])  # 6-8 copy 0-2
    vectors[4] = np.nan  # no vector
    subjects = [Subject("cam" if k % 3 else "cam0", None, (BOX,)) for k in range(9)]
    sims = vectors @ vectors.T
    expected = [(i, j) for i in range(9) for j in range(i + 1, 9)
                if near_duplicate(float(sims[i, j]), subjects[i], subjects[j], 0.9)]
    found = near_duplicate_pairs(vectors, subjects, 0.9, size=2)
    assert [(i, j) for i, j, _ in found] == expected and {(0, 6), (1, 7), (2, 8)} <= set(expected)
    labels = groups(5, [(0, 1), (1, 2), (3, 4)])  # a near-duplicate of a near-duplicate: one group
    assert labels.tolist() == [0, 0, 0, 3, 3]


def test_a_round_is_spread_over_the_vector_space():
    # the eight best ranked are one tight cluster; the others are spread over three more
    rng = np.random.default_rng(2)
    centres = unit(rng.standard_normal((4, 32)))
    cluster = [0] * 8 + [1, 2, 3] * 4
    vectors = unit(centres[cluster] + 0.02 * rng.standard_normal((len(cluster), 32)))
    ranked = list(range(len(cluster)))
    anything = lambda _row, _taken: True  # noqa: E731
    assert spread(ranked, vectors, 4, anything, trade_off=1.0) == [0, 1, 2, 3]  # the ranked order
    round_ = spread(ranked, vectors, 4, anything)
    assert round_[0] == 0 and len({cluster[r] for r in round_}) >= 3  # the ranked order: one cluster
    assert max(round_) < 16  # within the best 4 n
    no_vectors = np.full_like(vectors, np.nan)
    assert spread(ranked, no_vectors, 4, anything) == [0, 1, 2, 3]
    odd_only = spread(ranked, vectors, 3, lambda row, _taken: row % 2 == 1, trade_off=1.0)
    assert odd_only == [1, 3, 5]


def test_taken_refuses_a_near_duplicate_of_a_pick():
    taken = Taken(0.95)
    v = unit(np.array([[1.0, 0.0, 0.0]]))[0]
    twin = unit(np.array([[1.0, 0.05, 0.0]]))[0]
    taken.add(v, Subject("cam", "s1", (BOX,)), "a.jpg")
    assert taken.duplicate_of(twin, Subject("cam", "s2", (BOX,)))[0] == "a.jpg"
    assert taken.duplicate_of(twin, Subject("cam", "s2", (MOVED,))) is None
    assert taken.duplicate_of(twin, Subject("elsewhere", "s2", (BOX,))) is None
    assert taken.duplicate_of(None, Subject("cam", "s2", (BOX,))) is None
