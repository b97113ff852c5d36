"""`hitl ratings --import`: a sheet of decisions into the store, a few hundred at a time.

The sheet is read and checked whole first (:mod:`converters.sheet`, the one validator), then
stored in parts, each its own short transaction: an import of 200,000 decisions never keeps
the webhook or another command from the database for longer than one part. A rerun after a
crash finds what was stored unchanged and stores the rest; nothing is counted twice.

A decision's identity is its curator and image (see :mod:`converters.sheet`); a row without
``updated_at`` takes the file's modification time when it changes something, and keeps the
stored times when it does not, so the same sheet imported again, under any name, is unchanged.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from converters.sheet import SheetError, ratings_from_sheet
from hitl.errors import InputFormatError
from hitl.review.reconcile import SyncResult
from hitl.store import queries, write_in_parts
from hitl.store.ratings import record_ratings

NOT_IN_DATABASE = "image not in the database (select or score it first)"


def import_sheet(db: sqlite_utils.Database, path: str | Path) -> tuple[int, SyncResult]:
    """Store a sheet's decisions; returns how many named an image of the database, and what was done."""
    file = Path(path)
    try:
        data = file.read_bytes()
        modified = datetime.fromtimestamp(file.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read the sheet ({exc.strerror}); check the path") from None
    try:
        found, problems = ratings_from_sheet(data.decode("utf-8", "surrogateescape"), file.name)
    except SheetError as exc:
        raise InputFormatError(str(exc)) from None
    result = SyncResult()
    for problem in problems:
        result.bad(problem.reason, str(problem))
    known = set(queries.image_roots(db))
    stored = [r for r in found if r.image_id in known]
    for rating in found:
        if rating.image_id not in known:
            result.bad(NOT_IN_DATABASE, f"{file.name}: {rating.image_id} ({rating.annotation_id.split('|')[0]})")
    result.counts = write_in_parts(db, stored, lambda part: record_ratings(db, part, via="sheet", undated_at=modified))
    return len(stored), result
