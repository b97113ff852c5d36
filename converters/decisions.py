"""The one validator of a curator's decision, whichever way it arrives. Pure.

Label Studio's API accepts ratings outside 1..maxRating (11, 0.5, 1e18), boxes with any
numbers and strings where booleans belong, so nothing that arrives is trusted: the webhook,
a sync from the API or from an export file, a Labelme folder and a spreadsheet of decisions
all end in :func:`check_decision`, and a record that fails is a :class:`DecisionError`
naming the field and what it must be (the webhook answers 400; the other paths count it
and go on).
"""
from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

from .common import HumanRating, text_problem

MAX_STARS = 10  # the review configs' Rating maxRating
HERO_CHOICES = {"hero": True, "not_hero": False}  # the review configs' Choices of the "hero" control
MODES = ("assisted", "blind")
SOURCES = ("labelstudio", "labelme", "sheet")
PREFERENCES = ("left", "right", "same")  # a comparison's answers: which of two images is better, or neither
BOX_TOLERANCE = 1e-3  # editors round, so an edge a hair outside the image is still inside
MAX_TEXT = 20_000  # characters of a comment; a longer one is not a comment
FUTURE_SLACK = timedelta(days=1)  # clocks differ and zones get lost; a decision later than this is not one


class DecisionError(ValueError):
    """A decision that cannot be stored as it is. ``reason`` is short and countable."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


_EXPECTED = re.compile(r"Expected `([^`]+)`(?:, got `([^`]+)`)?(?: - at `\$\.?([^`]*)`)?")
_UNKNOWN = re.compile(r"Object missing required field `([^`]+)`(?: - at `\$\.?([^`]*)`)?")


def describe_invalid(message: str) -> str:
    """msgspec's validation message in plain words: "'result[0].value.rating' must be float, not str"."""
    if m := _EXPECTED.match(message):
        where = f"'{m.group(3)}'" if m.group(3) else "it"
        return f"{where} must be {m.group(1)}" + (f", not {m.group(2)}" if m.group(2) else "")
    if m := _UNKNOWN.match(message):
        where = ".".join(p for p in (m.group(2), m.group(1)) if p)
        return f"'{where}' is required"
    return message


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_stars(value: Any, max_rating: int = MAX_STARS) -> int:
    """A star rating: a whole number 1..max_rating (8.0 is 8; 0.5, 11, 1e18 and "8" are not)."""
    if not _finite(value) or value != int(value) or not 1 <= value <= max_rating:
        raise DecisionError("stars out of range", f"{value!r} is not a whole number of stars 1-{max_rating}")
    return int(value)


def check_hero(choices: Any) -> bool | None:
    """The hero decision of a Choices result: exactly one configured choice (none: undecided)."""
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices):
        raise DecisionError("bad hero choice", f"choices must be a list of strings, not {choices!r}")
    if not choices:
        return None
    if len(choices) != 1 or choices[0] not in HERO_CHOICES:
        raise DecisionError("bad hero choice", f"{choices!r}: exactly one of {', '.join(HERO_CHOICES)} is allowed")
    return HERO_CHOICES[choices[0]]


def check_box(x: Any, y: Any, w: Any, h: Any, label: Any = None) -> dict:
    """A box normalised to the upright image: finite, positive, inside [0, 1] (within rounding)."""
    if not all(_finite(v) for v in (x, y, w, h)):
        raise DecisionError("bad box", f"x, y, w, h must be finite numbers, not {[x, y, w, h]!r}")
    t = BOX_TOLERANCE
    if w <= 0 or h <= 0 or x < -t or y < -t or x + w > 1 + t or y + h > 1 + t:
        raise DecisionError("box outside the image", f"x={x:g} y={y:g} w={w:g} h={h:g} (normalised) is not inside it")
    if label is not None and (not isinstance(label, str) or text_problem(label)):
        raise DecisionError("bad box", f"a box label must be Unicode text, not {label!r}")
    x0, y0 = max(float(x), 0.0), max(float(y), 0.0)
    return {"x": round(x0, 6), "y": round(y0, 6), "w": round(min(float(x) + w, 1.0) - x0, 6),
            "h": round(min(float(y) + h, 1.0) - y0, 6), "label": label}


def check_text(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise DecisionError(f"bad {what}", f"must be text of at most {MAX_TEXT} characters")
    return value


def check_time(value: Any, what: str, now: datetime | None = None) -> str | None:
    """An ISO 8601 time no later than a day after ``now`` (default: the clock's), kept as written (None
    stays None). A decision dated 9999-12-31 would be newer than every update it ever gets."""
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
        # UTC when it names no zone, as the store reads it; years 1 and 9999 can overflow on the way
        when = when.astimezone(timezone.utc) if when.tzinfo else when.replace(tzinfo=timezone.utc)
    except (TypeError, ValueError, OverflowError):
        raise DecisionError(f"bad {what}", f"{value!r} is not an ISO 8601 time") from None
    if when - (now or datetime.now(timezone.utc)) > FUTURE_SLACK:
        raise DecisionError(f"bad {what}", f"{value!r} is more than a day in the future; check the clock that wrote it")
    return value


def check_decision(rating: HumanRating) -> HumanRating:
    """Every field of a decision checked; returns it, or raises DecisionError naming the field."""
    if rating.source not in SOURCES:
        raise DecisionError("bad source", repr(rating.source))
    for name in _TEXT_FIELDS:  # Python's JSON reader lets lone surrogates through; SQLite cannot store them
        value = getattr(rating, name)
        if isinstance(value, str) and (problem := text_problem(value)):
            raise DecisionError(f"bad {name}", problem)
    for name in ("project", "annotation_id"):
        if not isinstance(getattr(rating, name), str) or not getattr(rating, name):
            raise DecisionError(f"bad {name}", f"must be non-empty text, not {getattr(rating, name)!r}")
    if rating.image_id is not None and (not isinstance(rating.image_id, str) or not rating.image_id):
        raise DecisionError("bad image_id", repr(rating.image_id))
    if rating.task_id is not None and (not isinstance(rating.task_id, int) or isinstance(rating.task_id, bool)
                                       or rating.task_id < 0):
        raise DecisionError("bad task id", repr(rating.task_id))
    if rating.annotator_id is not None and (not isinstance(rating.annotator_id, str) or not rating.annotator_id):
        raise DecisionError("bad annotator id", repr(rating.annotator_id))
    if rating.annotator_email is not None and (not isinstance(rating.annotator_email, str)
                                               or "@" not in rating.annotator_email):
        raise DecisionError("bad annotator email", f"{rating.annotator_email!r} is not an email address")
    if not isinstance(rating.skipped, bool):
        raise DecisionError("bad skipped flag", f"must be true or false, not {rating.skipped!r}")
    if rating.stars is not None:
        rating.stars = check_stars(rating.stars)
    if rating.hero is not None and not isinstance(rating.hero, bool):
        raise DecisionError("bad hero choice", f"must be true, false or none, not {rating.hero!r}")
    rating.comment = check_text(rating.comment, "comment")
    rating.boxes = [check_box(b.get("x"), b.get("y"), b.get("w"), b.get("h"), b.get("label"))
                    if isinstance(b, dict) else _not_a_box(b) for b in rating.boxes]
    if rating.lead_time is not None and (not _finite(rating.lead_time) or rating.lead_time < 0):
        raise DecisionError("bad lead time", f"{rating.lead_time!r} is not a finite number of seconds >= 0")
    if rating.mode is not None and rating.mode not in MODES:
        raise DecisionError("bad mode", f"{rating.mode!r}; known: {', '.join(MODES)}")
    rating.created_at = check_time(rating.created_at, "created_at")
    rating.updated_at = check_time(rating.updated_at, "updated_at")
    _check_burst_and_comparison(rating)
    return rating


_TEXT_FIELDS = ("project", "annotation_id", "image_id", "annotator_id", "annotator_email", "comment", "mode",
                "created_at", "updated_at", "burst_of", "other_image_id", "preference")


def _check_burst_and_comparison(rating: HumanRating) -> None:
    """A burst pick names a frame; a comparison names two different images, and only a preference
    (a curator compares there, she does not rate or draw boxes)."""
    for name in ("burst_of", "other_image_id"):
        value = getattr(rating, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise DecisionError(f"bad {name}", f"must be an image id, not {value!r}")
    if rating.other_image_id is None:
        if rating.preference is not None:
            raise DecisionError("bad preference", "a preference needs two images (other_image_id)")
        return
    if rating.burst_of is not None:
        raise DecisionError("bad comparison", "a comparison cannot also be a burst pick")
    if rating.other_image_id == rating.image_id:
        raise DecisionError("bad comparison", f"{rating.image_id!r} compared with itself")
    if rating.preference is not None and rating.preference not in PREFERENCES:
        raise DecisionError("bad preference", f"{rating.preference!r}; known: {', '.join(PREFERENCES)}")
    if rating.stars is not None or rating.hero is not None or rating.boxes:
        raise DecisionError("bad comparison", "a comparison carries a preference, not stars, hero or boxes")


def _not_a_box(value: Any) -> dict:
    raise DecisionError("bad box", f"a box must be an object with x, y, w, h, not {value!r}")
