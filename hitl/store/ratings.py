"""Human ratings in the store: every curator decision, kept with its history.

One row per (source, project, annotation_id): several curators per image are all kept. An
update older than what is stored never overwrites it (deliveries arrive out of order), a
repeated one changes nothing, and every replaced or deleted version goes to rating_history.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timezone

import sqlite_utils

from converters.common import HumanRating
from converters.decisions import DecisionError
from hitl.store import bursts
from hitl.store.curators import curator_name, decision_time, parse_time, time_key
from hitl.store.db import in_chunks, insert_row, utc_now

KEY = ("source", "project", "annotation_id")
# What a curator decided; a change in any of these is a new version.
DECISION = ("image_id", "task_id", "annotator_id", "annotator_email", "stars", "hero", "comment", "boxes",
            "lead_time", "skipped", "deleted", "deleted_because", "mode", "created_at", "updated_at", "burst_of",
            "other_image_id", "preference")
EXPLICIT, ABSENT = "event", "absent"  # why a rating is deleted: Label Studio said so, or a sync did not see it


def rating_row(rating: HumanRating, via: str, received_at: str) -> dict:
    return {
        "source": rating.source, "project": str(rating.project), "annotation_id": str(rating.annotation_id),
        "task_id": rating.task_id, "image_id": rating.image_id, "annotator_id": rating.annotator_id,
        "annotator_email": rating.annotator_email, "stars": rating.stars,
        "hero": None if rating.hero is None else int(rating.hero), "comment": rating.comment,
        "boxes": json.dumps(rating.boxes, sort_keys=True, allow_nan=False), "lead_time": rating.lead_time,
        "skipped": int(rating.skipped), "deleted": 0, "deleted_because": None, "absent_since": None,
        "mode": rating.mode, "created_at": rating.created_at, "updated_at": rating.updated_at,
        "received_at": received_at, "via": via,
        "burst_of": rating.burst_of, "other_image_id": rating.other_image_id, "preference": rating.preference,
    }


def record_ratings(db: sqlite_utils.Database, ratings: Iterable[HumanRating], via: str,
                   seen_at: datetime | None = None, undated_at: str | None = None) -> Counter:
    """Upsert ratings; returns counts of new, updated, restored, unchanged, older (ignored) and
    kept deleted.

    ``seen_at``: when the source these ratings come from was taken (a sync's start, an export's
    time); without it, each rating's own time stands for it. A rating a sync found missing comes
    back only when seen by a source newer than the one that proved it gone.
    ``undated_at``: the time of ratings that carry none (a sheet's rows without updated_at take
    the file's): used when the rating changes something, while an unchanged one keeps its times.
    The caller owns the transaction, so a webhook delivery and its event row commit together.
    """
    counts: Counter = Counter()
    ratings = list(ratings)
    now = utc_now()
    rows = [rating_row(rating, via, now) for rating in ratings]
    stored = _stored(db, rows)
    created: list[dict] = []  # inserted together at the end: one statement for a whole part of an import
    for row in rows:
        key = tuple(row[k] for k in KEY)
        old = stored.get(key)
        if old is None:
            _undated(row, undated_at)
            created.append(row)
            stored[key] = row
            counts["new"] += 1
            continue
        if old["deleted"] and old["deleted_because"] != EXPLICIT and not _seen_after_absent(old, row, seen_at):
            counts["kept deleted"] += 1  # an older source than the one that proved it gone
            continue
        restored = bool(old["deleted"]) and old["deleted_because"] != EXPLICIT
        # deleted in Label Studio stays deleted (its ids are never reused); only missing from a
        # sync comes back when a newer source sees it again
        if not restored:
            row.update({k: old[k] for k in ("deleted", "deleted_because", "absent_since")})
        if row["updated_at"] is None and undated_at and not restored and _same_decision(old, row, times=False):
            row["created_at"], row["updated_at"] = old["created_at"], old["updated_at"]
        _undated(row, undated_at)
        if _older(row["updated_at"], old["updated_at"]):
            counts["older"] += 1
            continue
        if not restored and _same_decision(old, row):
            counts["unchanged"] += 1
            continue
        # fill what this delivery does not know (a webhook has no email) from what we had
        for k in ("annotator_email", "mode", "image_id", "task_id"):
            if row[k] is None:
                row[k] = old[k]
        _insert_new(db, created)  # the same annotation twice in one call: its first version goes in first
        changes = [k for k in row if k not in KEY]
        db.execute(f"UPDATE ratings SET {', '.join(f'[{k}] = ?' for k in changes)} "
                   f"WHERE source = ? AND project = ? AND annotation_id = ?",
                   [row[k] for k in changes] + [row[k] for k in KEY])
        _history(db, row, "restored" if restored else "updated")
        stored[key] = row
        counts["restored" if restored else "updated"] += 1
    _insert_new(db, created)
    _settle_bursts(db, [r.burst_of for r in ratings if r.burst_of], counts)
    return counts


def _stored(db: sqlite_utils.Database, rows: list[dict]) -> dict[tuple, dict]:
    """The stored version of each of ``rows`` that has one, by key, read in a few queries."""
    wanted: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        wanted.setdefault((row["source"], row["project"]), []).append(row["annotation_id"])
    found = {}
    for (source, project), ids in wanted.items():
        for marks, part in in_chunks(sorted(set(ids))):
            for values in db.execute(f"SELECT annotation_id, {', '.join(STORED)} FROM ratings WHERE source = ? "
                                     f"AND project = ? AND annotation_id IN ({marks})", [source, project, *part]):
                found[(source, project, values[0])] = dict(zip(STORED, values[1:]))
    return found


def _insert_new(db: sqlite_utils.Database, created: list[dict]) -> None:
    """Insert the new ratings waiting in ``created`` (emptied), each with its "created" history row."""
    if not created:
        return
    columns = list(created[0])
    names = ", ".join(f"[{c}]" for c in columns)
    db.conn.executemany(f"INSERT INTO ratings ({names}) VALUES ({', '.join('?' * len(columns))})",
                        [[row[c] for c in columns] for row in created])
    db.conn.executemany(f"INSERT INTO rating_history ({names}, change) VALUES ({', '.join('?' * len(columns))}, "
                        f"'created')", [[row[c] for c in columns] for row in created])
    created.clear()


STORED = (*DECISION, "absent_since")
TIMES = ("created_at", "updated_at")


def _same_decision(old: dict, row: dict, times: bool = True) -> bool:
    """Does ``row`` say what ``old`` says (a delivery that does not know the email or mode says nothing
    about them)? With ``times=False`` its times are not compared."""
    return all(old[k] == row[k] for k in DECISION if k not in ("annotator_email", "mode") and (times or k not in TIMES)
               ) and row["annotator_email"] in (None, old["annotator_email"]) and row["mode"] in (None, old["mode"])


def _undated(row: dict, undated_at: str | None) -> None:
    if row["updated_at"] is None and undated_at:
        row["updated_at"] = undated_at
        row["created_at"] = row["created_at"] or undated_at


def _seen_after_absent(old: dict, row: dict, seen_at: datetime | None) -> bool:
    """Was this rating seen after the source that found it missing was taken? Unknown times say yes
    (as before such times were kept)."""
    proven = parse_time(old["absent_since"])
    seen = seen_at or parse_time(row["updated_at"] or row["created_at"])
    return proven is None or seen is None or seen > proven


def check_pushed_pair(db: sqlite_utils.Database, rating: HumanRating) -> None:
    """A comparison answer must name the pair its task was pushed with, as the task map recorded it
    (a task's data can be edited in Label Studio, and a delivery forged), and images of this
    database; else DecisionError. A pair pushed before the map kept right images is checked by its
    left image until `hitl compare` records the right one."""
    row = db.execute("SELECT image_id, other_image_id FROM ls_tasks WHERE project_id = ? AND task_id = ?",
                     [int(rating.project), rating.task_id]).fetchone() if rating.task_id is not None else None
    answered = (rating.image_id, rating.other_image_id)
    if row is None or row[0] is None:
        raise DecisionError(NOT_PUSHED, f"task {rating.task_id} of project {rating.project} is not a comparison "
                                        f"`hitl compare` pushed; answer {answered[0]!r} vs {answered[1]!r} refused")
    if row[0] != answered[0] or row[1] not in (None, answered[1]):
        raise DecisionError(NOT_PUSHED, f"task {rating.task_id} was pushed as {row[0]!r} vs {row[1]!r}, the answer "
                                        f"names {answered[0]!r} vs {answered[1]!r}")
    missing = [i for i in answered if db.execute("SELECT 1 FROM images WHERE image_id = ?", [i]).fetchone() is None]
    if missing:
        raise DecisionError(NOT_PUSHED, f"{missing[0]!r} (task {rating.task_id}) is not an image of this database")


NOT_PUSHED = "comparison of a pair not pushed"


def _settle_bursts(db: sqlite_utils.Database, marked: list[str], counts: Counter) -> None:
    """A burst pick moves its sequence's candidate (see :mod:`hitl.store.bursts`)."""
    if marked:
        moved = bursts.settle(db, bursts.sequences_of(db, marked))
        if moved:
            counts["candidates moved to the frame picked"] += moved


def mark_deleted(db: sqlite_utils.Database, source: str, project: str, annotation_ids: Iterable[str],
                 via: str, tombstone: bool = False, explicit: bool = True, proven_at: datetime | None = None
                 ) -> Counter:
    """Mark annotations deleted (history kept).

    ``explicit``: the source said so (a delete delivery, a deleted task); otherwise the rating
    was only missing from a sync, taken at ``proven_at``, and comes back when a source newer
    than that sees it. With ``tombstone`` an id not seen yet is remembered as deleted, so its
    creation, if that delivery arrives later, is stored as deleted rather than brought back.
    """
    because = EXPLICIT if explicit else ABSENT
    since = None if explicit or proven_at is None else proven_at.astimezone(timezone.utc).isoformat()
    counts: Counter = Counter()
    now = utc_now()
    marked: list[str] = []
    for annotation_id in annotation_ids:
        key = [source, str(project), str(annotation_id)]
        row = db.execute("SELECT * FROM ratings WHERE source = ? AND project = ? AND annotation_id = ?", key).fetchone()
        if row is None:
            if tombstone:
                stone = {"source": source, "project": str(project), "annotation_id": str(annotation_id), "deleted": 1,
                         "deleted_because": because, "skipped": 0, "boxes": "[]", "received_at": now, "via": via}
                insert_row(db, "ratings", stone)
                _history(db, stone, "deleted")
            counts["deleted before seen" if tombstone else "unknown"] += 1
            continue
        row = dict(zip([c[0] for c in db.execute("SELECT * FROM ratings LIMIT 0").description], row))
        if row["deleted"] and (row["deleted_because"] == EXPLICIT or not explicit):
            if row["deleted_because"] == ABSENT and since and time_key(since) > time_key(row["absent_since"]):
                db.execute("UPDATE ratings SET absent_since = ? WHERE source = ? AND project = ? AND annotation_id = ?",
                           [since, *key])  # still missing from a newer source: it is gone since then at least
            counts["unchanged"] += 1
            continue
        db.execute("UPDATE ratings SET deleted = 1, deleted_because = ?, absent_since = ?, received_at = ?, via = ? "
                   "WHERE source = ? AND project = ? AND annotation_id = ?", [because, since, now, via, *key])
        _history(db, {**row, "deleted": 1, "deleted_because": because, "absent_since": since, "received_at": now,
                      "via": via}, "deleted")
        counts["deleted"] += 1
        if row.get("burst_of"):
            marked.append(row["burst_of"])
    _settle_bursts(db, marked, counts)
    return counts


def _history(db: sqlite_utils.Database, row: dict, change: str) -> None:
    insert_row(db, "rating_history", {**{k: v for k, v in row.items() if k != "id"}, "change": change})


def _older(new: str | None, old: str | None) -> bool:
    """Is ``new`` strictly older than ``old``? Unparseable or missing times never count as older."""
    a, b = parse_time(new), parse_time(old)
    return a is not None and b is not None and a < b


def curator_decisions(db: sqlite_utils.Database) -> list[dict]:
    """Every live, non-skipped curator decision on an image, oldest first (by the decision's own
    time, then by when it reached us): the input of every "one opinion per curator" view.

    Each: image_id, source, curator, stars, hero (bool or None), comment, mode, boxes (decoded), updated_at.
    """
    rows = []
    for r in db.query("SELECT source, project, annotator_id, annotator_email, image_id, stars, hero, comment, "
                      "boxes, mode, created_at, updated_at, received_at FROM ratings "
                      "WHERE deleted = 0 AND skipped = 0 AND image_id IS NOT NULL AND other_image_id IS NULL"):
        try:
            boxes = json.loads(r["boxes"] or "[]")
        except json.JSONDecodeError:
            boxes = []
        rows.append({"image_id": r["image_id"], "source": r["source"],
                     "curator": curator_name(r["annotator_email"], r["annotator_id"], r["source"], str(r["project"])),
                     "stars": r["stars"], "hero": None if r["hero"] is None else bool(r["hero"]),
                     "comment": r["comment"] or None, "mode": r["mode"], "updated_at": r["updated_at"],
                     "boxes": boxes if isinstance(boxes, list) else [],
                     "_when": decision_time(r)})
    rows.sort(key=lambda row: row["_when"])
    for row in rows:
        del row["_when"]
    return rows


def long_table(db: sqlite_utils.Database) -> list[dict]:
    """Every opinion on every image as one long table, the input of the agreement statistics.

    One row per (image, rater) opinion: ``image_id, rater, kind ("human" or "model"), score,
    hero, mode, species``. Humans: every live decision that gave stars or a hero choice, oldest
    first, so a curator's later one comes after (see :mod:`hitl.analyse.consensus`); rater is
    :func:`curator_name`. Models: every ok score (0-10), rater = ``model@prompt_version``.
    """
    species = dict(db.execute("SELECT image_id, species FROM images").fetchall())
    rows = [{"image_id": d["image_id"], "rater": d["curator"], "kind": "human",
             "score": None if d["stars"] is None else float(d["stars"]), "hero": d["hero"], "mode": d["mode"],
             "species": species.get(d["image_id"])}
            for d in curator_decisions(db) if d["stars"] is not None or d["hero"] is not None]
    for r in db.query("SELECT image_id, model, prompt_version, score, hero FROM scores WHERE status = 'ok' "
                      "ORDER BY image_id"):
        rows.append({"image_id": r["image_id"], "rater": f"{r['model']}@{r['prompt_version']}", "kind": "model",
                     "score": r["score"], "hero": None if r["hero"] is None else bool(r["hero"]), "mode": None,
                     "species": species.get(r["image_id"])})
    return rows


def list_ratings(db: sqlite_utils.Database, include_deleted: bool = False) -> list[dict]:
    """Every curator rating as plain JSON-ready dicts (booleans as booleans, boxes decoded),
    with ``annotator`` the email, else the user id."""
    sql = ("SELECT source, project, annotation_id, task_id, image_id, annotator_id, annotator_email, stars, hero, "
           "comment, boxes, lead_time, skipped, deleted, mode, created_at, updated_at, via FROM ratings "
           + ("" if include_deleted else "WHERE deleted = 0 ") + "ORDER BY image_id, updated_at")
    rows = []
    for r in db.query(sql):
        r = dict(r)
        r["annotator"] = r["annotator_email"] or r["annotator_id"]
        r["curator"] = curator_name(r["annotator_email"], r["annotator_id"], r["source"], r["project"])
        r["hero"] = None if r["hero"] is None else bool(r["hero"])
        r["skipped"], r["deleted"] = bool(r["skipped"]), bool(r["deleted"])
        r["boxes"] = json.loads(r["boxes"] or "[]")
        rows.append(r)
    return rows


def curator_comparisons(db: sqlite_utils.Database) -> list[dict]:
    """Every live, answered comparison, oldest first: one per curator and pair (her latest answer
    on a pair replaces an earlier one, whichever side each image was shown on).

    Each: left, right (image ids), preference ("left", "right" or "same"), curator, source, updated_at.
    """
    latest: dict[tuple[str, frozenset[str]], dict] = {}
    for r in db.query("SELECT source, project, annotator_id, annotator_email, image_id, other_image_id, preference, "
                      "created_at, updated_at, received_at FROM ratings WHERE deleted = 0 AND skipped = 0 "
                      "AND other_image_id IS NOT NULL AND preference IS NOT NULL AND image_id IS NOT NULL"):
        row = {"left": r["image_id"], "right": r["other_image_id"], "preference": r["preference"],
               "curator": curator_name(r["annotator_email"], r["annotator_id"], r["source"], str(r["project"])),
               "source": r["source"], "updated_at": r["updated_at"],
               "_when": decision_time(r)}
        key = (row["curator"], frozenset((row["left"], row["right"])))
        if key not in latest or latest[key]["_when"] <= row["_when"]:
            latest[key] = row
    rows = sorted(latest.values(), key=lambda row: row["_when"])
    for row in rows:
        del row["_when"]
    return rows
