"""The vector maths the loop shares: cosine neighbours in chunks, the near-duplicate rule and its
calibrated threshold, near-duplicate groups, and rounds spread over the vector space (maximal
marginal relevance). Pure numpy: vectors in, indices and numbers out; nothing here reads a file.

Vectors are unit length (:mod:`hitl.store.embeddings` stores them so), so a cosine similarity is a
dot product. A matrix may be float16, float32 or a memory map of either: it is read a chunk of
rows at a time, each chunk turned into float32 once, so a million rows never need a second copy.

**Near-duplicates.** Two images are near-duplicates when a curator would not want both in a hero
set or a review round: the same photograph however it was stored (re-encoded, brightened, cropped a
little, greyscale or CMYK), or the same camera's frames showing the same scene with the subject
where it was (a resting animal, a bird on its nest, a burst). :func:`near_duplicate` says it:

1. **the same camera** (:attr:`Subject.camera`: the image's location where one is known, else its
   folder; an image whose location is unknown is of its folder's camera, so the copies in one folder
   are one camera's), and
2. their vectors are at least as similar as the model's **threshold** (:func:`copy_threshold`:
   calibrated on planted copies of the collection's own photos), and
3. **the same moment or the same place**: frames of one sequence (moments apart), or the same
   animals in the same places: every animal box of each overlaps one of the other's by at least
   :data:`SAME_PLACE_IOU` (intersection over union), or neither has an animal.

Rule 3 is what "the same camera minutes apart" needs: a fixed camera's view is most of what a
whole-image vector describes (the classical baseline especially: two frames of one camera with
different animals in different places were 0.98 similar, closer than a photo and its 95% crop),
so the detector's boxes say whether the subject stayed. A frame whose boxes are unknown (no
detector record) is judged by rules 1 and 2 alone.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

CHUNK_ROWS = 32768  # rows turned into float32 at once: 64 MB of a 512-d matrix
SAME_PLACE_IOU = 0.5  # boxes overlapping this much hold the same subject in the same place
THRESHOLD_FLOOR = 0.5  # no threshold below this, whatever the copies say: cosine 0.5 is not "a copy"
DEFAULT_THRESHOLD = 0.95  # for vectors of a model never calibrated (`hitl embed` calibrates)
Box = tuple[float, float, float, float]  # x, y, width, height as shares of the frame


def chunks(matrix: np.ndarray, size: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, rows as float32) of ``matrix``, ``size`` rows at a time."""
    for start in range(0, len(matrix), size):
        yield start, np.asarray(matrix[start:start + size], dtype=np.float32)


def top_k(matrix: np.ndarray, queries: np.ndarray, k: int, exclude: Sequence[int] = (),
          size: int = CHUNK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` rows of ``matrix`` most similar to each query (rows of ``queries``), best first:
    (indices, similarities), each queries x k (fewer columns when the matrix is smaller). Rows in
    ``exclude`` are never returned. One pass over the matrix, a chunk at a time."""
    queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
    n_q = len(queries)
    k = max(0, min(k, len(matrix) - len(set(exclude))))
    best_sim = np.full((n_q, k), -np.inf, np.float32)
    best_idx = np.full((n_q, k), -1, np.int64)
    if k == 0:
        return best_idx, best_sim
    excluded = np.asarray(sorted(set(exclude)), dtype=np.int64)
    for start, rows in chunks(matrix, size):
        sims = (rows @ queries.T).T  # n_q x chunk (rows first: one pass over the chunk, as a matrix-vector product)
        hit = excluded[(excluded >= start) & (excluded < start + len(rows))] - start
        sims[:, hit] = -np.inf
        take = min(k, sims.shape[1])
        part = np.argpartition(-sims, take - 1, axis=1)[:, :take]
        cand_sim = np.concatenate([best_sim, np.take_along_axis(sims, part, axis=1)], axis=1)
        cand_idx = np.concatenate([best_idx, part + start], axis=1)
        keep = np.argsort(-cand_sim, axis=1, kind="stable")[:, :k]
        best_sim = np.take_along_axis(cand_sim, keep, axis=1)
        best_idx = np.take_along_axis(cand_idx, keep, axis=1)
    return best_idx, best_sim


def nearest_other(matrix: np.ndarray, rows: Sequence[int], groups: np.ndarray, size: int = CHUNK_ROWS) -> np.ndarray:
    """For each of ``rows``, the similarity of its nearest neighbour in ``matrix`` among the rows of
    another group (``groups``: one label per row, a camera say); -inf when there is none."""
    rows = np.asarray(rows, dtype=np.int64)
    queries = np.asarray(matrix[rows], dtype=np.float32) if len(rows) else np.zeros((0, 1), np.float32)
    best = np.full(len(rows), -np.inf, np.float32)
    own = np.asarray(groups)[rows]
    for start, chunk in chunks(matrix, size):
        sims = queries @ chunk.T
        sims[own[:, None] == np.asarray(groups)[start:start + len(chunk)][None, :]] = -np.inf
        if sims.size:
            best = np.maximum(best, sims.max(axis=1))
    return best


def copy_threshold(copies: dict[str, Sequence[float]]) -> float:
    """The near-duplicate threshold from planted copies (kind of copy -> each copy's similarity to its
    photo): for each kind its lowest similarity, lowered again by as much as that kind spreads (its
    median minus its lowest), room for photos harder to copy than the few that were; the lowest of
    those, never under :data:`THRESHOLD_FLOOR` nor above 0.999. Bounded by what copies do, not by
    how close distinct photos come: the camera and place rules keep those apart."""
    bounds = []
    for sims in copies.values():
        values = np.asarray(sims, dtype=np.float64)
        if values.size:
            low = float(values.min())
            bounds.append(low - (float(np.median(values)) - low))
    if not bounds:
        raise ValueError("no planted copies to calibrate on")
    return float(np.clip(min(bounds), THRESHOLD_FLOOR, 0.999))


@dataclass(frozen=True)
class Subject:
    """What the near-duplicate rule knows of an image besides its vector: its camera, its sequence
    (None: unknown) and its animal boxes (None: unknown, no detector record; empty: no animal)."""

    camera: str
    sequence: str | None = None
    boxes: tuple[Box, ...] | None = None


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes (x, y, width, height)."""
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def same_place(a: tuple[Box, ...] | None, b: tuple[Box, ...] | None, min_iou: float = SAME_PLACE_IOU) -> bool:
    """Whether two images show their animals in the same places: every box of each overlaps one of the
    other's by ``min_iou``. Two images without an animal agree; unknown boxes agree with anything."""
    if a is None or b is None:
        return True
    if not a or not b:
        return not a and not b
    return (all(max(iou(x, y) for y in b) >= min_iou for x in a)
            and all(max(iou(y, x) for x in a) >= min_iou for y in b))


def near_duplicate(similarity: float, a: Subject, b: Subject, threshold: float) -> bool:
    """The module docstring's rule: same camera, vectors this close, the same moment or place."""
    if not similarity >= threshold or a.camera != b.camera:  # NaN (no vector) is never a near-duplicate
        return False
    if a.sequence is not None and a.sequence == b.sequence:
        return True
    return same_place(a.boxes, b.boxes)


def near_duplicate_pairs(vectors: np.ndarray, subjects: Sequence[Subject], threshold: float,
                         size: int = 4096) -> list[tuple[int, int, float]]:
    """Every near-duplicate pair (i < j, similarity) of a set of images, compared camera by camera.
    ``vectors`` row i is image i's (a row of NaN: no vector, never a near-duplicate)."""
    cameras: dict[str, list[int]] = {}
    for k, subject in enumerate(subjects):
        if np.isfinite(vectors[k]).all():
            cameras.setdefault(subject.camera, []).append(k)
    pairs: list[tuple[int, int, float]] = []
    for rows in cameras.values():
        block = np.asarray(vectors[rows], dtype=np.float32)
        for start in range(0, len(rows), size):
            sims = block[start:start + size] @ block.T
            a_idx, b_idx = np.nonzero(sims >= threshold)
            for a, b in zip(a_idx.tolist(), b_idx.tolist()):
                i, j = rows[start + a], rows[b]
                if i < j and near_duplicate(float(sims[a, b]), subjects[i], subjects[j], threshold):
                    pairs.append((i, j, float(sims[a, b])))
    return sorted(pairs)


def groups(n: int, pairs: Sequence[tuple[int, int, float] | tuple[int, int]]) -> np.ndarray:
    """Connected components of ``n`` items joined by ``pairs``: one label per item (the smallest
    member's index), so a near-duplicate of a near-duplicate is in the same group."""
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for pair in pairs:
        a, b = root(int(pair[0])), root(int(pair[1]))
        if a != b:
            parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(n)], dtype=np.int64)


def spread(ranked: Sequence[int], vectors: np.ndarray, n: int, allowed: Callable[[int, list[int]], bool],
           trade_off: float = 0.5, window: int | None = None) -> list[int]:
    """Up to ``n`` of ``ranked`` (best first) by maximal marginal relevance: each step takes the row
    with the highest ``trade_off * relevance - (1 - trade_off) * (its largest similarity to a row
    taken)``, among the rows ``allowed(row, taken)`` accepts (no sequence twice, no near-duplicate,
    ...). Relevance falls linearly from 1 (the first ranked) to 0 at ``window`` (default: 4 n), and
    below 0 after it, so a round spreads over the best few times n rather than the whole list. A
    row without a vector (NaN) costs nothing in similarity. With ``trade_off`` 1 it is the ranked order."""
    order = np.asarray(ranked, dtype=np.int64)
    if n <= 0 or not len(order):
        return []
    relevance = 1.0 - np.arange(len(order)) / max(1, window or 4 * n)
    rows = np.asarray(vectors[order], dtype=np.float32)
    known = np.isfinite(rows).all(axis=1)
    rows[~known] = 0.0
    closest = np.zeros(len(order), np.float32)
    open_ = np.ones(len(order), dtype=bool)
    taken: list[int] = []
    while len(taken) < n and open_.any():
        score = np.where(open_, trade_off * relevance - (1.0 - trade_off) * closest, -np.inf)
        k = int(np.argmax(score))
        open_[k] = False
        row = int(order[k])
        if not allowed(row, taken):
            continue
        taken.append(row)
        if known[k]:
            closest = np.maximum(closest, rows @ rows[k])
    return taken


class Taken:
    """Images taken one by one (a selection's picks), to refuse an image that is a near-duplicate of
    one already taken. Compares with the taken images of the same camera only."""

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._cameras: dict[str, tuple[list[np.ndarray], list[Subject], list[str]]] = {}

    def duplicate_of(self, vector: np.ndarray | None, subject: Subject) -> tuple[str, float] | None:
        """(the taken image's key, similarity) of the first one ``vector`` duplicates, or None."""
        if vector is None or subject.camera not in self._cameras:
            return None
        vectors, subjects, keys = self._cameras[subject.camera]
        sims = np.asarray(vectors, dtype=np.float32) @ np.asarray(vector, dtype=np.float32)
        for k in np.flatnonzero(sims >= self.threshold).tolist():
            if near_duplicate(float(sims[k]), subject, subjects[k], self.threshold):
                return keys[k], float(sims[k])
        return None

    def add(self, vector: np.ndarray | None, subject: Subject, key: str) -> None:
        if vector is not None:
            vectors, subjects, keys = self._cameras.setdefault(subject.camera, ([], [], []))
            vectors.append(np.asarray(vector, dtype=np.float32))
            subjects.append(subject)
            keys.append(key)
