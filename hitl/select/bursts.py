"""Burst members (``select --frames-per-burst K``): beside each candidate, the K best frames of its sequence.

Curators who pick the hero frame of a burst need the burst's best frames in front of them, not
just the one selection chose. The candidates do not change: the members are taken after the
pick, from the same eligible rows and by the same per-image quality the pick ranked by.

Pure apart from the ``accept`` callback (a file check, as in :func:`hitl.select.strata.pick`).
The work is proportional to the candidates' sequences: one vectorised mask over the eligible
rows finds their frames, and everything after walks only those.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from converters.cct import normalise_datetime
from hitl.select.sequences import Frames


def choose_members(seq: np.ndarray, quality: np.ndarray, chosen: Sequence[int], k: int,
                   accept: Callable[[int], bool] | None = None) -> list[np.ndarray]:
    """For each chosen row, the rows of its burst: the chosen row and the best ``k - 1`` other
    rows of its sequence (by ``quality``, ties by row), so the chosen row takes the k-th place
    when it is not among the best k. Empty where the sequence has fewer than 2 rows or k is 0.

    ``accept(row)`` may veto a row (its file is unreadable): the next best is taken instead.
    It is never asked about a chosen row, which selection has checked already.
    """
    chosen = np.asarray(chosen, dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    if k < 1 or len(chosen) == 0:
        return [empty for _ in chosen.tolist()]
    wanted = np.zeros(int(seq.max()) + 1, dtype=bool)
    wanted[seq[chosen]] = True
    rows = np.flatnonzero(wanted[seq])  # the only pass over all eligible rows
    rows = rows[np.lexsort((rows, -np.asarray(quality, dtype=np.float64)[rows], seq[rows]))]  # by sequence, best first
    s = seq[rows]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    ends = np.r_[starts[1:], len(rows)]
    runs = dict(zip(s[starts].tolist(), zip(starts.tolist(), ends.tolist())))
    out = []
    for c in chosen.tolist():
        start, end = runs[int(seq[c])]
        if end - start < 2:
            out.append(empty)
            continue
        members = [c]
        for r in rows[start:end].tolist():
            if len(members) >= k:
                break
            if r != c and (accept is None or accept(r)):
                members.append(r)
        out.append(np.array(members, dtype=np.int64))
    return out


def time_order(frame_num: Sequence[int], when: Sequence[str | None], image_id: Sequence[str]) -> list[int]:
    """Indices of a burst's frames in time order: by frame number, else capture time (ISO 8601),
    else image_id; a frame without a number (-1) or a time comes after those with one."""
    return sorted(range(len(image_id)), key=lambda j: (frame_num[j] < 0, frame_num[j], when[j] is None,
                                                       when[j] or "", image_id[j]))


def burst_rows(frames: Frames, quality: np.ndarray, chosen: Sequence[int], k: int,
               accept: Callable[[int], bool] | None,
               image_fields: Callable[[int], dict[str, Any]]) -> list[dict[str, Any]]:
    """The members of the chosen rows' bursts, burst by burst in time order: each the image's
    fields (``image_fields(row)``, as a candidate has them) plus ``_position`` (1..n),
    ``_quality`` and ``_selected`` (1 for the chosen row)."""
    out: list[dict[str, Any]] = []
    for c, members in zip(chosen, choose_members(frames.seq, quality, chosen, k, accept)):
        rows = members.tolist()
        times = [_iso(frames.time(r)) for r in rows]
        order = time_order(frames.frames[members].tolist(), times, [frames.keys[r] for r in rows])
        for position, j in enumerate(order, start=1):
            r = rows[j]
            out.append({**image_fields(r), "_position": position, "_quality": round(float(quality[r]), 4),
                        "_selected": int(r == c)})
    return out


def store_rows(members: list[dict[str, Any]], run_id: int) -> list[dict[str, Any]]:
    """The ``burst_members`` table's rows of :func:`burst_rows`' members."""
    return [{"seq_id": m["seq_id"], "image_id": m["image_id"], "position": m["_position"], "quality": m["_quality"],
             "selected": m["_selected"], "run_id": run_id} for m in members]


def _iso(text: str | None) -> str | None:
    return normalise_datetime(text) if text else None
