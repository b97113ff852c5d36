"""CSV files the tool writes, safe to open in a spreadsheet.

A cell that begins with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets; a file named ``=HYPERLINK(...).jpg`` or a species typed
as ``=cmd|' /C calc'!A0`` would run when a curator opens the CSV. Such cells get a leading
apostrophe (OWASP's advice), which spreadsheets hide and which keeps the text; numbers,
negative ones included, are written as they are.

Every CSV the tool writes for people goes through :func:`safe_csv_text` (or :class:`SafeDictWriter`).
The one exception is a Camtrap DP package's tables (:mod:`converters.camtrapdp`): exchange data
for R and Python, whose values stay exactly as the standard defines them.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def csv_cell(value: Any) -> Any:
    """``value`` as it may stand in a CSV cell: text that a spreadsheet would run is neutralised."""
    if isinstance(value, str) and value.startswith(FORMULA_START) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


class SafeDictWriter(csv.DictWriter):
    """csv.DictWriter whose every cell goes through :func:`csv_cell`, by ``writerow`` and
    ``writerows`` alike (the base class's ``writerows`` does not call ``writerow``)."""

    def writerow(self, rowdict: dict[str, Any]):
        return super().writerow({k: csv_cell(v) for k, v in rowdict.items()})

    def writerows(self, rowdicts: Iterable[dict[str, Any]]):
        return super().writerows({k: csv_cell(v) for k, v in row.items()} for row in rowdicts)


def safe_csv_text(fieldnames: Sequence[str], rows: Iterable[dict[str, Any]], **options: Any) -> str:
    """A whole CSV table as text, header first, every cell safe (:class:`SafeDictWriter`; ``options``
    go to it, e.g. ``extrasaction="ignore"`` or ``lineterminator="\\n"``)."""
    out = io.StringIO()
    writer = SafeDictWriter(out, fieldnames=list(fieldnames), **options)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
