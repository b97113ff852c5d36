"""Decisions made in a spreadsheet (or exported from another tool) as curator decisions. Pure.

A CSV with the columns ``image_id, curator, stars, hero`` and optionally ``mode, comment``,
``updated_at``: one row per decision. ``stars`` is empty or a whole number 1-10; ``hero`` is
empty (undecided) or yes/no, true/false, 1/0, hero/not_hero. Each row goes through the one
validator (:mod:`converters.decisions`); a bad row (a field too long for a CSV reader, text that
is not UTF-8 included) is a counted problem naming its line.

A decision's identity is its curator and image, not the file it came in: every sheet's
decisions belong to one project, :data:`PROJECT`, so the same sheet under another name (or a
copy, or a later version) is the same decisions, updated where they changed.
"""
from __future__ import annotations

import csv
import io
from typing import Any

from .common import CSV_FIELD_LIMIT, HumanRating, RecordProblem
from .decisions import DecisionError, check_decision

REQUIRED = ("image_id", "curator", "stars", "hero")
OPTIONAL = ("mode", "comment", "updated_at")
PROJECT = "sheets"
_HERO = {"yes": True, "true": True, "1": True, "hero": True, "y": True,
         "no": False, "false": False, "0": False, "not_hero": False, "n": False, "": None}


class SheetError(ValueError):
    """The file as a whole is not a decisions sheet; the message says what is missing."""


def ratings_from_sheet(text: str, source: str) -> tuple[list[HumanRating], list[RecordProblem]]:
    """The decisions of a CSV sheet; ``source`` names it in problems. A row without ``updated_at``
    gives a decision without a time (the importer dates it). ``text`` may carry undecodable bytes
    as surrogates (``errors="surrogateescape"``): their rows are problems, the others are read."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))  # Excel writes a byte-order mark
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as exc:
        raise SheetError(f"{source}: the first line is not a CSV header ({exc})") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise SheetError(f"{source}: missing column(s) {', '.join(missing)}; a decisions sheet has "
                         f"{', '.join(REQUIRED)} (and optionally {', '.join(OPTIONAL)})")
    ratings, problems = [], []
    seen: dict[tuple[str, str], int] = {}
    for line, values in _rows(reader, source, problems, checked_utf8=not _not_utf8(text)):
        row = {k: v.strip() for k, v in zip(header, values)}
        where = f"line {line}"
        try:
            rating = _rating(row)
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


def listed_images(text: str, source: str) -> tuple[list[str], list[RecordProblem]]:
    """The image ids of a CSV with an ``image_id`` column (as `select --out`, `next --out` and
    `similar --out` write), each once, in order; a row without one, or unreadable, is a problem."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as exc:
        raise SheetError(f"{source}: the first line is not a CSV header ({exc})") from None
    if "image_id" not in header:
        raise SheetError(f"{source}: no image_id column; a list of images is a CSV with an image_id column "
                         f"(as `hitl similar --out` writes)")
    column = header.index("image_id")
    ids: dict[str, None] = {}
    problems: list[RecordProblem] = []
    for line, values in _rows(reader, source, problems, checked_utf8=not _not_utf8(text)):
        image_id = values[column].strip() if column < len(values) else ""
        if image_id:
            ids[image_id] = None
        else:
            problems.append(RecordProblem(source, f"line {line}", "image_id missing", "this row names no image"))
    return list(ids), problems


def _rows(reader, source: str, problems: list[RecordProblem], checked_utf8: bool):
    """(line, values) of each row after the header; a row the CSV reader cannot read, or with text
    that is not UTF-8 (unless the whole text is), is a problem and the reading goes on."""
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a field over the reader's limit (128 KiB), most likely
            problems.append(RecordProblem(source, f"line {line}", "unreadable row", str(exc)))
            continue
        if any(len(v) > CSV_FIELD_LIMIT for v in values):  # the same whatever limit the csv module has now
            problems.append(RecordProblem(source, f"line {line}", "unreadable row",
                                          f"a cell longer than {CSV_FIELD_LIMIT:,} characters"))
            continue
        if not checked_utf8 and any(_not_utf8(v) for v in values):
            problems.append(RecordProblem(source, f"line {line}", "not UTF-8 text",
                                          "save the sheet as CSV UTF-8"))
            continue
        if values:  # a blank line is no row
            yield line, values


def _not_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _rating(row: dict[str, Any]) -> HumanRating:
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
    when = row.get("updated_at") or None
    return check_decision(HumanRating(
        source="sheet", project=PROJECT, annotation_id=f"{curator}|{image_id}", image_id=image_id,
        annotator_email=curator if "@" in curator else None, annotator_id=None if "@" in curator else curator,
        stars=stars, hero=_HERO[hero_text], comment=row.get("comment") or None, mode=row.get("mode") or None,
        created_at=when, updated_at=when))
