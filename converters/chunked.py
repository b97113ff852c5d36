"""Big JSON files whose ``images`` list holds one record per image, read a chunk at a time.

A detector file of a million images decodes into a gigabyte of Python objects, so one quick
pass notes where the records lie (decode_outer), and map_chunks builds them a chunk at a time,
handing each to the caller's ``work``. The image_ids of all chunks are checked as a whole
(RecordKeys).

Pure: plain data in, plain data out, and no process started here. Where the chunks are built
is the caller's choice (:class:`Workers`): in this process, in order, unless a caller passes
its own, as `hitl select` does to share a big file with a second process
(:mod:`hitl.select.two_processes`); the results are the same either way.
"""
from __future__ import annotations

import mmap
import sys
from collections.abc import Callable
from functools import cached_property
from itertools import chain
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import msgspec
import numpy as np

from .common import InputFormatError, RecordProblem, decode_json, image_keys, mend_surrogates
from .records import one_record, split_records


def pack_texts(texts: list) -> list | tuple[str]:
    """``texts`` in a form that pickles fast: one joined string, where no text holds a newline
    (and all are strings); pickling half a million small strings one by one takes a second."""
    try:
        joined = "\n".join(texts)
    except TypeError:  # None or a number among them
        return texts
    return (joined,) if texts and joined.count("\n") == len(texts) - 1 else texts


def unpack_texts(packed: list | tuple[str]) -> list:
    return packed[0].split("\n") if isinstance(packed, tuple) else packed


class KeyedChunk:
    """One chunk of records' paths: as written, as image_ids (None for a bad path), and where.

    Sent from a second process, the paths travel as one joined string, split only when asked
    for: most callers need just the hashes unless something is wrong with a path.
    """

    def __init__(self, names: list[str], keys: list[str | None] | None, errors: dict[int, str],
                 positions: np.ndarray, hashes: np.ndarray) -> None:
        self._names, self._keys = names, keys  # names may be packed (pack_texts); keys None: the same as names
        self.errors = errors  # index -> why the path is bad
        self.positions = positions  # each record's place in the file's ``images`` list, for messages
        self.hashes = hashes  # hash(key): numpy can compare a million ids without a set or dict of them

    @property
    def names(self) -> list[str]:
        self._names = unpack_texts(self._names)
        return self._names

    @property
    def keys(self) -> list[str | None]:
        if self._keys is None:
            self._keys = list(self.names)
        return self._keys

    def __getstate__(self) -> dict:
        same = self._keys is None or self._keys == self._names  # the usual case: every path was an image_id
        return {**self.__dict__, "_names": pack_texts(self.names), "_keys": None if same else self._keys}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def key_chunk(names: list[str], positions: np.ndarray, root: str | Path | None) -> KeyedChunk:
    keys, errors = image_keys(names, root)
    return KeyedChunk(names, keys, errors, positions, np.fromiter(map(hash, keys), np.int64, len(keys)))


class RecordKeys:
    """The image_ids of all of a file's records, keyed a chunk at a time, checked as a whole."""

    def __init__(self, chunks: list[KeyedChunk]) -> None:
        self._chunks = chunks
        self.errors: dict[int, str] = {}
        base = 0
        for c in chunks:
            self.errors.update((base + k, message) for k, message in c.errors.items())
            base += len(c.positions)
        self.positions = np.concatenate([c.positions for c in chunks]) if chunks else np.zeros(0, np.int64)
        self.hashes = np.concatenate([c.hashes for c in chunks]) if chunks else np.zeros(0, np.int64)

    @cached_property
    def names(self) -> list[str]:
        return list(chain.from_iterable(c.names for c in self._chunks))

    @cached_property
    def keys(self) -> list[str | None]:
        return list(chain.from_iterable(c.keys for c in self._chunks))

    def skipped(self, source: str, path_field: str, problems: list[RecordProblem]) -> set[int]:
        """Report bad paths, then repeated image_ids (the first one wins); the indexes to skip."""
        positions, errors = self.positions, self.errors

        def where(k: int) -> str:
            return f"images[{positions[k]}] ({path_field} {self.names[k]!r})"

        drop = set(errors)
        for k, message in errors.items():
            problems.append(RecordProblem(source, where(k), "bad path", message))
        hashes = np.delete(self.hashes, list(errors)) if errors else self.hashes
        if len(np.unique(hashes)) != len(hashes):  # some image_id repeats, or (rarely) two share a hash
            first: dict[str, int] = {}
            for k, key in enumerate(self.keys):
                if key is None:
                    continue
                if key in first:
                    problems.append(RecordProblem(source, where(k), f"duplicate {path_field} entry",
                                                  f"first at images[{positions[first[key]]}]; this one skipped"))
                    drop.add(k)
                else:
                    first[key] = k
        return drop


CHUNK_RECORDS = 50_000  # enough to amortise a decoder call, few enough to keep a chunk's objects small


class Span(NamedTuple):
    """A chunk of consecutive records: where they are in the ``images`` list and in the bytes."""

    first: int  # the first record's place in the ``images`` list
    count: int
    start: int  # the records' bytes (without the list's brackets); -1 where not known
    end: int
    raws: list | None  # the records' raw JSON, kept only where their bytes are not known


def decode_outer(data: bytes, source: str, what: str, outer: type, not_this_format: Callable[[Exception], str],
                 size: int = CHUNK_RECORDS) -> tuple[Any, list[Span]]:
    """Decode a file whose ``images`` list holds one record per image, but not the records.

    ``outer`` types ``images`` as ``list[msgspec.Raw]``: one quick pass checks the JSON and
    the file's shape (a whole-file problem raises InputFormatError) and notes where each
    record lies without building it; map_chunks builds them, ``size`` at a time. Returns the
    decoded file (``images`` emptied) and the chunks' spans.
    """
    try:
        parsed = _decode_outer(data, source, what, outer, not_this_format)
    except InputFormatError as exc:
        # A lone surrogate escape fails the pass wherever it is; mended into bytes that are not UTF-8
        # (of the same length: the spans hold), a record holding one fails alone, as a bad record.
        mended = mend_surrogates(data)
        if mended is None:
            raise
        try:
            parsed = _decode_outer(mended, source, what, outer, not_this_format)
        except InputFormatError:
            raise exc from None
        data = mended
    raws, parsed.images = parsed.images, []
    spans = []
    for first in range(0, len(raws), size):
        part = raws[first:first + size]
        where = _span(data, part)
        spans.append(Span(first, len(part), *where, None) if where else Span(first, len(part), -1, -1, part))
    return parsed, spans  # a million Raw objects go: a second process would copy every page they are on


def _decode_outer(data: bytes, source: str, what: str, outer: type, not_this_format: Callable[[Exception], str]):
    try:
        return decode_json(data, source, what, type=outer)
    except msgspec.ValidationError as exc:
        if "out of range" in str(exc):  # outside the records, where a bad record would be counted
            raise InputFormatError(f"{source}: the {what} file holds a number out of range ({exc}); "
                                   f"fix or re-create the file") from None
        raise InputFormatError(not_this_format(exc)) from None


T = TypeVar("T")


def map_chunks(data: bytes, spans: list[Span], source: str, what: str, record: type, name_field: str,
               work: Callable[[np.ndarray, list], T], workers: Workers | None = None
               ) -> list[tuple[list[RecordProblem], T]]:
    """Build the records of each span (from decode_outer) and pass them to ``work(positions,
    records)`` (the records that decoded, and the place of each in the file's ``images`` list);
    returns each chunk's problems and result.

    Only one chunk of records is alive at once (in each process): a million-image file's whole
    tree takes about a gigabyte. A chunk holding a mistyped record is redone record by record,
    and each bad one becomes a counted problem and None, instead of failing a file of millions.
    ``workers`` may build chunks in another process, so ``work`` must return plain data (it
    may be pickled).
    """
    typed, text = list[record], _ArrayText()

    def one(span: Span) -> tuple[list[RecordProblem], T]:
        problems: list[RecordProblem] = []
        _map_pages(data, span.start, span.end)
        array = text(data, span)
        try:
            records = msgspec.json.decode(array, type=typed)
            positions = np.arange(span.first, span.first + len(records), dtype=np.int64)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            raws = span.raws or split_records(bytes(array), source, what)
            records = [one_record(raw, span.first + k, source, name_field, record, problems)
                       for k, raw in enumerate(raws)]
            positions = np.array([span.first + k for k, rec in enumerate(records) if rec is not None], np.int64)
            records = [rec for rec in records if rec is not None]  # the bad ones are problems now
        drop_pages(data, span.start, span.end)
        return problems, work(positions, records)

    return (workers or Workers()).map(one, spans, data)


class OuterPass:
    """decode_outer of a file read now and decoded when result() asks for it (a subclass may
    begin the pass meanwhile elsewhere: :class:`Workers`).

    A file that cannot be read, or is not of the kind, raises from result(), not here, so
    that the caller meets its errors in the order it would have without a head start.
    """

    def __init__(self, read: Callable[[], bytes], source: str, what: str, outer: type,
                 not_this_format: Callable[[Exception], str]) -> None:
        self._args = (source, what, outer, not_this_format)
        self._done: tuple[bool, Any] | None = None
        try:
            self.data = read()
        except InputFormatError as exc:
            self.data, self._done = b"", (False, exc)

    def decoded(self) -> tuple[Any, list[Span]]:
        """decode_outer of the file, done here and now."""
        return decode_outer(self.data, *self._args)

    def result(self) -> tuple[bytes, Any, list[Span]]:
        """(the file's bytes, the decoded file without its records, the records' spans)."""
        if self._done is None:
            self._done = (True, self.decoded())
        ok, value = self._done
        if not ok:
            raise value
        return (self.data, *value)

    def close(self) -> None:
        """Stop what result() was not asked for (nothing here)."""


class Workers:
    """Where a chunked read does its work: here all of it in this process, in order. A caller
    that may start processes passes a subclass; the results must be the same."""

    def map(self, build: Callable[[Span], T], spans: list[Span], data: bytes) -> list[T]:
        """``[build(span) for span in spans]``; ``data``: the file the spans are of."""
        return [build(span) for span in spans]

    def outer_pass(self, read: Callable[[], bytes], source: str, what: str, outer: type,
                   not_this_format: Callable[[Exception], str]) -> OuterPass:
        """The file read, its decode_outer to come (see OuterPass)."""
        return OuterPass(read, source, what, outer, not_this_format)


def _span(data: bytes, raws: list) -> tuple[int, int] | None:
    """Where in ``data`` the consecutive records ``raws`` lie, from the first's and the last's
    addresses (msgspec.Raw values point into the buffer they were decoded from)."""
    base = np.frombuffer(data, np.uint8).ctypes.data
    start = np.frombuffer(raws[0], np.uint8).ctypes.data - base
    end = np.frombuffer(raws[-1], np.uint8).ctypes.data - base + len(raws[-1])
    return (start, end) if 0 <= start <= end <= len(data) else None  # None: not views of ``data``


class _ArrayText:
    """The JSON array of a chunk of records: their span of ``data`` in brackets (or else a join),
    written into one buffer used again for every chunk: a fresh copy of megabytes per chunk
    would be fresh memory each time, a page fault every 4 KiB."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def __call__(self, data: bytes, span: Span) -> memoryview:
        if span.raws is not None:
            return memoryview(b"[" + b",".join(span.raws) + b"]")
        n = span.end - span.start + 2
        if len(self.buffer) < n:
            self.buffer = bytearray(n + n // 4)
        self.buffer[0], self.buffer[n - 1] = ord("["), ord("]")
        self.buffer[1:n - 1] = memoryview(data)[span.start:span.end]
        return memoryview(self.buffer)[:n]


def drop_pages(data: bytes, start: int, end: int) -> None:
    """Unmap the pages of a mapped file between ``start`` and ``end``: they stay in the page
    cache (a later read maps them again) but stop counting as this process's memory."""
    if isinstance(data, mmap.mmap) and hasattr(mmap, "MADV_DONTNEED") and end > start >= 0:
        start -= start % mmap.PAGESIZE
        data.madvise(mmap.MADV_DONTNEED, start, end - start)


_MADV_POPULATE_READ = 22  # Linux 5.14 and later; not in Python's mmap module before 3.13


def _map_pages(data: bytes, start: int, end: int) -> None:
    """Map the pages of a mapped file between ``start`` and ``end`` in one call rather than
    one page fault per 4 KiB (a forked child starts with none of them mapped)."""
    if isinstance(data, mmap.mmap) and sys.platform.startswith("linux") and end > start >= 0:
        start -= start % mmap.PAGESIZE
        try:
            data.madvise(_MADV_POPULATE_READ, start, end - start)
        except OSError:  # an older kernel: the pages fault in as they are read
            pass
