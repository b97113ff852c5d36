"""The records of a JSON list read one by one, for when a chunk of them fails as a whole: each
record that cannot be read alone (a number out of range, text that is not UTF-8, a mistyped
field) becomes a counted problem, and the others are read. Pure."""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import msgspec

from .common import InputFormatError, RecordProblem, decode_json, mend_surrogates


def split_records(array: bytes, source: str, what: str) -> list[msgspec.Raw]:
    """The records of a JSON array, undecoded. A lone surrogate escape is mended first (see
    common.mend_surrogates), so that the record holding it fails alone."""
    return decode_json(mend_surrogates(array) or array, source, what, type=list[msgspec.Raw])


def one_record(raw: msgspec.Raw | bytes, i: int, source: str, name_field: str, record: type,
               problems: list[RecordProblem]):
    """Record ``i`` of the file's ``images`` list as ``record``; or None, and a problem naming it
    (by its ``name_field`` where that can be read)."""
    try:
        return msgspec.json.decode(raw, type=record)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
        reason, detail = fault(exc)
    name = _field(raw, name_field)
    where = f"images[{i}] ({name_field} {name!r})" if isinstance(name, str) else f"images[{i}]"
    problems.append(RecordProblem(source, where, reason, detail))
    return None


def fault(exc: Exception) -> tuple[str, str]:
    """Why a record could not be decoded alone, as (reason, detail)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, msgspec.ValidationError) and "out of range" in text:
        return "number out of range", f"{text}; no tool writes such a number"
    if isinstance(exc, msgspec.DecodeError) and "UTF-8" in text:
        return "text not UTF-8", "a string holds bytes that are not UTF-8, or a lone \\uD800-\\uDFFF escape"
    return "malformed image record", text


def _field(raw: msgspec.Raw | bytes, name: str) -> object:
    """One field of a record that may not decode as a whole, or None."""
    try:
        value = msgspec.json.decode(raw, type=dict[str, msgspec.Raw]).get(name)
        return None if value is None else msgspec.json.decode(value)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None


class Unreadable(NamedTuple):
    """A record that cannot be decoded on its own, in place of its value (see decode_records)."""

    reason: str
    detail: str


def decode_records(data: bytes, source: str | Path, what: str, key: str | None) -> object:
    """Decode a JSON file whose records are the list under ``key`` (the top level itself when None).
    Where the whole will not decode, the records are decoded one by one and each that cannot be
    (a number out of range, text that is not Unicode) is an :class:`Unreadable` in its place; a
    fault outside the records is the whole file's, an InputFormatError."""
    try:
        return decode_json(data, source, what)
    except InputFormatError as exc:
        whole = str(exc)  # not the exception: its traceback would keep the Raws into ``data`` alive
    decoded = _one_by_one(data, source, what, key)
    if decoded is None:
        raise InputFormatError(whole)
    return decoded


def _one_by_one(data: bytes, source: str | Path, what: str, key: str | None) -> object | None:
    """decode_records' records one by one; None where the fault is outside them."""
    mended = mend_surrogates(data) or data
    try:
        if key is None:
            return _each(decode_json(mended, source, what, type=list[msgspec.Raw]))
        top = decode_json(mended, source, what, type=dict[str, msgspec.Raw])
        decoded = {name: decode_json(bytes(value), source, what) for name, value in top.items() if name != key}
        if key in top:
            try:
                decoded[key] = _each(msgspec.json.decode(top[key], type=list[msgspec.Raw]))
            except msgspec.ValidationError:  # not a list: the reader says what it should be
                decoded[key] = decode_json(bytes(top[key]), source, what)
        return decoded
    except (InputFormatError, msgspec.ValidationError, msgspec.DecodeError):
        return None


def _each(raws: list[msgspec.Raw]) -> list:
    values: list = []
    for raw in raws:
        try:
            values.append(msgspec.json.decode(raw))
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError) as exc:
            values.append(Unreadable(*fault(exc)))
    return values
