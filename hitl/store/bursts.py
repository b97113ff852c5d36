"""Bursts in the store: the frames kept beside each candidate, and the curator's pick of one.

A burst pick is a rating whose ``image_id`` is the frame picked and whose ``burst_of`` is the
frame the task marked. The sequence's candidate is the frame of its most recent live pick
(by the decision's own time, then by when it reached us), else the frame selection chose; it
is settled again whenever a pick of the sequence arrives, changes or is deleted, so webhook,
sync, replay and Labelme give the same candidate whatever order the decisions came in.
"""
from __future__ import annotations

from collections.abc import Iterable

import sqlite_utils

from converters.labelstudio import MAX_FRAMES
from hitl.store.curators import curator_name, decision_time
from hitl.store.db import in_chunks

PICKED = " | picked from its burst by "  # how a moved candidate's reason says so (and is undone)


def members(db: sqlite_utils.Database, seq_ids: Iterable[str] | None = None) -> dict[str, list[dict]]:
    """Per sequence, its burst frames in time order: image_id, position, quality, selected."""
    columns = "SELECT seq_id, image_id, position, quality, selected FROM burst_members"
    if seq_ids is None:
        rows = list(db.query(f"{columns} ORDER BY seq_id, position, image_id"))
    else:
        rows = []
        for marks, part in in_chunks(sorted(set(seq_ids))):  # by the primary key: no scan of every burst
            rows += db.query(f"{columns} WHERE seq_id IN ({marks})", part)
        rows.sort(key=lambda r: (r["seq_id"], r["position"], r["image_id"]))
    out: dict[str, list[dict]] = {}
    for r in rows:
        out.setdefault(r["seq_id"], []).append(dict(r))
    return out


def shown_frames(frames: list[dict], candidate: str) -> list[str]:
    """The frames a burst shows: the MAX_FRAMES best by quality (the candidate's kept), in time order."""
    if len(frames) > MAX_FRAMES:
        best = sorted(frames, key=lambda f: (f["image_id"] != candidate, -(f["quality"] or 0.0), f["position"]))
        keep = {f["image_id"] for f in best[:MAX_FRAMES]}
        frames = [f for f in frames if f["image_id"] in keep]
    return [f["image_id"] for f in frames]


def candidate_frames(db: sqlite_utils.Database) -> list[str]:
    """Every candidate and the frames its burst shows (what `hitl score --bursts` scores)."""
    rows = db.execute("SELECT c.image_id, i.seq_id FROM candidates c JOIN images i USING (image_id) "
                      "ORDER BY c.rank, c.image_id").fetchall()
    kept = members(db, {seq for _, seq in rows if seq})
    out: list[str] = []
    for image_id, seq in rows:
        frames = kept.get(seq or "", [])
        out.extend(shown_frames(frames, image_id) if any(f["image_id"] == image_id for f in frames) else [image_id])
    return list(dict.fromkeys(out))


def sequences_of(db: sqlite_utils.Database, image_ids: Iterable[str]) -> set[str]:
    """The sequences (with burst frames) the given images belong to."""
    ids = sorted({i for i in image_ids if i})
    found: set[str] = set()
    for marks, part in in_chunks(ids):
        found.update(r[0] for r in db.execute(f"SELECT DISTINCT seq_id FROM burst_members WHERE image_id IN ({marks})",
                                              part))
    return found


def picked_sequences(db: sqlite_utils.Database) -> set[str]:
    """The sequences with a live burst pick (what a new selection must settle again)."""
    return {r[0] for r in db.execute(
        "SELECT DISTINCT b.seq_id FROM ratings r JOIN burst_members b ON b.image_id = r.burst_of "
        "WHERE r.burst_of IS NOT NULL AND r.deleted = 0 AND r.skipped = 0")}


def settle(db: sqlite_utils.Database, seq_ids: Iterable[str]) -> int:
    """Make each sequence's candidate the frame its latest live pick chose (else selection's own);
    inside the caller's transaction. Returns how many candidates moved."""
    moved = 0
    for seq_id, frames in members(db, seq_ids).items():
        by_id = {f["image_id"]: f for f in frames}
        # the candidate is always a frame of its burst (selection's or the one picked)
        current = db.execute("SELECT c.image_id, c.run_id, c.rank, c.category, c.score, c.reason FROM candidates c "
                             "JOIN burst_members b USING (image_id) WHERE b.seq_id = ?", [seq_id]).fetchone()
        if current is None:
            continue  # no longer a candidate (a later selection replaced the set): nothing to move
        pick = _latest_pick(db, list(by_id))
        selected = next((f["image_id"] for f in frames if f["selected"]), current[0])
        chosen = pick["image_id"] if pick and pick["image_id"] in by_id else selected
        if chosen == current[0]:
            continue
        reason = (current[5] or "").split(PICKED)[0]
        if pick and chosen != selected:
            reason += (f"{PICKED}{pick['curator']}: frame {by_id[chosen]['position']} of {len(frames)} "
                       f"(selection chose frame {by_id[selected]['position'] if selected in by_id else '?'})")
        db.execute("DELETE FROM candidates WHERE image_id = ?", [current[0]])
        db.execute("INSERT OR REPLACE INTO candidates (image_id, run_id, rank, category, score, reason) "
                   "VALUES (?, ?, ?, ?, ?, ?)", [chosen, current[1], current[2], current[3], current[4], reason])
        moved += 1
    return moved


def _latest_pick(db: sqlite_utils.Database, frame_ids: list[str]) -> dict | None:
    marks = ",".join("?" * len(frame_ids))
    picks = [dict(r) for r in db.query(
        f"SELECT image_id, source, project, annotator_id, annotator_email, created_at, updated_at, received_at "
        f"FROM ratings WHERE deleted = 0 AND skipped = 0 AND burst_of IN ({marks})", frame_ids)]
    if not picks:
        return None
    latest = max(picks, key=decision_time)
    latest["curator"] = curator_name(latest["annotator_email"], latest["annotator_id"], latest["source"],
                                     str(latest["project"]))
    return latest
