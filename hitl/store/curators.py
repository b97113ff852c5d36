"""Who made a rating and when: the curator's name and the order of decisions in time.

One place for both, read by the ratings (:mod:`hitl.store.ratings`), the burst picks
(:mod:`hitl.store.bursts`) and the exports, so that "the most recent decision" and a
curator's name mean the same everywhere; it imports nothing of the store, so neither of
those two modules needs the other to know them.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import PurePath


def parse_time(stamp: str | None) -> datetime | None:
    """An ISO 8601 time as an aware datetime (UTC when it names no zone); None when absent or unreadable."""
    if not stamp:
        return None
    try:
        value = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


EARLIEST = datetime.min.replace(tzinfo=timezone.utc)


def time_key(stamp: str | None) -> datetime:
    """Sort key of a timestamp; unparseable or missing ones sort first."""
    return parse_time(stamp) or EARLIEST


def decision_time(row: Mapping) -> tuple[datetime, datetime]:
    """Sort key of a rating row: the decision's own time (updated, else created), then when it reached us."""
    return time_key(row["updated_at"] or row["created_at"]), time_key(row["received_at"])


def curator_name(email: str | None, annotator_id: str | None, source: str, project: str) -> str:
    """How a curator is named wherever raters are: email, else the Label Studio user id, else (Labelme)
    the name given at import or the folder's name, never a path."""
    if email:
        return email
    if source in ("labelme", "sheet"):  # names given at import, not Label Studio user ids
        return annotator_id or PurePath(project).name or project
    return f"user {annotator_id}" if annotator_id else f"{source}:{project}"
