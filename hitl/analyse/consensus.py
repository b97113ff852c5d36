"""The one definition of "the curators' consensus", used by every table, plot, CSV and queue. Pure."""
from __future__ import annotations

import statistics
from collections.abc import Iterable

DEFINITION = ("The curators' consensus on an image: each curator counts once, with their most recent live "
              "decision (a rating in a second project, or an update, replaces the earlier one); its stars "
              "are the mean of those curators' stars, its hero decision that of a strict majority of the "
              "curators who decided (a tie is no decision). Skipped and deleted ratings do not count.")


def latest_per_curator(humans: Iterable[dict], key: str = "rater") -> list[dict]:
    """One row per curator: the last of their rows (rows come in time order, oldest first)."""
    latest: dict[str, dict] = {}
    for row in humans:
        latest.pop(row[key], None)  # re-insert: the order of the result is the order of last decisions
        latest[row[key]] = row
    return list(latest.values())


def consensus(humans: Iterable[dict], score: str = "score", hero: str = "hero") -> tuple[float | None, bool | None]:
    """Mean stars and majority hero decision of curators' rows already one per curator."""
    rows = list(humans)
    scores = [h[score] for h in rows if h[score] is not None]
    votes = [h[hero] for h in rows if h[hero] is not None]
    mean = statistics.fmean(scores) if scores else None
    yes = sum(votes)
    decided = True if yes * 2 > len(votes) else False if (len(votes) - yes) * 2 > len(votes) else None
    return mean, decided
