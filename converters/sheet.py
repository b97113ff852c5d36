"""Decisions made in a spreadsheet (or exported from another tool) as curator decisions. Pure.

A CSV with the columns ``image_id, curator, stars, hero`` and optionally ``mode, comment``,
``updated_at``: one row per decision. ``stars`` is empty or a whole number 1-10; ``hero`` is
empty (undecided) or yes/no, true/false, 1/0, hero/not_hero. Each row goes through the one
validator (:mod:`converters.decisions`); a bad row is a counted problem naming its line.
"""
from __future__ import annotations

import csv
import io
from typing import Any

from .common import HumanRating, RecordProblem
from .decisions import DecisionError, check_decision

REQUIRED = ("image_id", "curator", "stars", "hero")
OPTIONAL = ("mode", "comment", "updated_at")
_HERO = {"yes": True, "true": True, "1": True, "hero": True, "y": True,
         "no": False, "false": False, "0": False, "not_hero": False, "n": False, "": None}


class SheetError(ValueError):
    """The file as a whole is not a decisions sheet; the message says what is missing."""


def ratings_from_sheet(text: str, source: str, modified_at: str) -> tuple[list[HumanRating], list[RecordProblem]]:
    """The decisions of a CSV sheet; ``source`` names it (the project of its ratings) and
    ``modified_at`` (ISO 8601) stands for rows that give no ``updated_at``."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))  # Excel writes a byte-order mark
    header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise SheetError(f"{source}: missing column(s) {', '.join(missing)}; a decisions sheet has "
                         f"{', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)})")
    ratings, problems = [], []
    seen: dict[tuple[str, str], int] = {}
    for line, raw in enumerate(reader, start=2):
        row = {k.strip(): (v or "").strip() for k, v in raw.items() if isinstance(k, str)}
        where = f"line {line}"
        try:
            rating = _rating(row, source, modified_at)
        except DecisionError as exc:
            problems.append(RecordProblem(source, where, exc.reason, exc.detail))
            continue
        key = (rating.image_id, rating.annotation_id)
        if key in seen:
            problems.append(RecordProblem(source, where, "the same curator and image twice",
                                          f"line {seen[key]} already has them; this one skipped"))
            continue
        seen[key] = line
        ratings.append(rating)
    return ratings, problems


def _rating(row: dict[str, Any], source: str, modified_at: str) -> HumanRating:
    image_id, curator = row.get("image_id", ""), row.get("curator", "")
    if not image_id or not curator:
        raise DecisionError("image_id or curator missing", "both are required on every row")
    stars_text = row.get("stars", "")
    try:
        stars = None if stars_text == "" else float(stars_text)
    except ValueError:
        raise DecisionError("stars out of range", f"{stars_text!r} is not a number of stars 1-10") from None
    hero_text = row.get("hero", "").lower()
    if hero_text not in _HERO:
        raise DecisionError("bad hero choice", f"{row.get('hero')!r}: write yes or no (or leave it empty)")
    return check_decision(HumanRating(
        source="sheet", project=source, annotation_id=f"{curator}|{image_id}", image_id=image_id,
        annotator_email=curator if "@" in curator else None, annotator_id=None if "@" in curator else curator,
        stars=stars, hero=_HERO[hero_text], comment=row.get("comment") or None, mode=row.get("mode") or None,
        created_at=row.get("updated_at") or modified_at, updated_at=row.get("updated_at") or modified_at))
