"""Shared pieces of the format converters: record problems, path keys, JSON loading.

Converters are pure: plain data in, plain data out, no database or web imports.
"""
from __future__ import annotations

import gc
import mmap
import os
import posixpath
import re
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

import msgspec

# characters in one CSV cell: Python's csv module's default limit (a global others may raise, frictionless
# and sqlite-utils' CLI do); every reader checks it itself, so what is refused never depends on who imported what
CSV_FIELD_LIMIT = 131_072


class InputFormatError(ValueError):
    """A whole input file is unusable. The message names the file and the fix."""


@dataclass(frozen=True)
class RecordProblem:
    """One bad record in an otherwise usable file: counted, reported, skipped."""

    source: str  # the file it came from
    record: str  # where in the file, e.g. "images[17] (file 'cam1/IMG_0001.JPG')"
    reason: str  # short and countable, e.g. "bbox outside [0,1]"
    detail: str = ""

    def __str__(self) -> str:
        extra = f": {self.detail}" if self.detail else ""
        return f"{self.source}: {self.record}: {self.reason}{extra}"


def image_key(path: str, root: str | Path | None = None) -> str:
    """Return the image_id for a path: POSIX, relative to the collection root.

    Windows separators are accepted. An absolute path is made relative to ``root``
    when it lies inside it. Raises ValueError for an absolute path outside the root,
    for ``..`` components and for empty paths.
    """
    if (isinstance(path, str) and path and "\\" not in path and ".." not in path and "//" not in path
            and "/./" not in path and not path.startswith(("/", "./")) and path[1:2] != ":"
            and not path.endswith(("/", "/.")) and "\0" not in path):
        return path  # the common clean relative path, checked cheaply: collections have millions
    if not isinstance(path, str) or not path.strip():
        raise ValueError("empty path")
    if "\0" in path:
        raise ValueError(f"path {path!r} holds a NUL character, which no file name can")
    text = path.replace("\\", "/") if "\\" in path else path
    if PureWindowsPath(path).drive:
        raise ValueError(f"absolute Windows path {path!r}; paths must be relative to the image root")
    if text.startswith("/"):
        if root is None:
            raise ValueError(f"absolute path {path!r}; paths must be relative to the image root")
        root_posix = Path(root).resolve().as_posix().rstrip("/") + "/"
        if not text.startswith(root_posix):
            raise ValueError(f"absolute path {path!r} is outside the image root {str(root)!r}")
        text = text[len(root_posix):]
    parts = PurePosixPath(text).parts
    if ".." in parts:
        raise ValueError(f"path {path!r} contains '..'")
    key = posixpath.normpath(text)
    if key in (".", ""):
        raise ValueError(f"path {path!r} names no file")
    return key


def image_keys(paths: list[str], root: str | Path | None = None) -> tuple[list[str | None], dict[int, str]]:
    """image_key for many paths at once: (keys with None where bad, {position: error}).

    One scan of the joined text rules out every unusual path for a clean file of millions,
    so the per-path checks run only where something looks odd.
    """
    joined = "\n" + "\n".join(paths) + "\n"
    odd = ("\\", "..", "//", "/./", "\n/", "\n./", "/\n", "/.\n", "\n\n", "\0")
    # ':' first: a plain substring test is far quicker than the regular expression
    if not any(mark in joined for mark in odd) and not (":" in joined and _DRIVE.search(joined)):
        return list(paths), {}
    keys: list[str | None] = []
    errors: dict[int, str] = {}
    for i, path in enumerate(paths):
        try:
            keys.append(image_key(path, root))
        except ValueError as exc:
            keys.append(None)
            errors[i] = str(exc)
    return keys, errors


_DRIVE = re.compile(r"\n[A-Za-z]:")


def read_input(path: str | Path, what: str) -> bytes | mmap.mmap:
    """The bytes of an input file; a file that cannot be read is an InputFormatError.

    The file is mapped rather than copied into memory: copying hundreds of megabytes
    costs more than decoding straight from the page cache.
    """
    try:
        with open(path, "rb") as fh:
            info = os.fstat(fh.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > 0:  # not a pipe, not empty
                try:
                    return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
                except (OSError, ValueError):  # a file system that cannot map: read it instead
                    pass
            return fh.read()
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read the {what} file ({exc.strerror}); check the path") from None


def decode_json(data: bytes, path: str | Path, what: str, type: object = object) -> object:
    """Decode JSON bytes, optionally into a msgspec type, naming the file on failure."""
    if not bytes(data[:4096]).strip() and not bytes(data).strip():  # strip() copies: look at the head first
        raise InputFormatError(f"{path}: the {what} file is empty; re-run the tool that writes it")
    try:
        return msgspec.json.decode(data, type=type)
    except msgspec.ValidationError as exc:
        if type is object:  # nothing fails an untyped decode but a number out of range
            raise InputFormatError(f"{path}: the {what} file holds a number out of range ({exc}); no tool writes "
                                   f"such a number: fix or re-create the file") from None
        raise
    except msgspec.DecodeError as exc:
        hint = "the file looks truncated; re-copy or re-run the tool that wrote it" if (
            "truncated" in str(exc) or "end of input" in str(exc)) else "it is not valid JSON"
        raise InputFormatError(f"{path}: cannot parse the {what} file: {exc} ({hint})") from exc
    except RecursionError:
        raise InputFormatError(f"{path}: the {what} file nests deeper than any real {what} file does; "
                               f"it is not the file the tool wrote") from None


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored (SQLite and files hold UTF-8): a lone UTF-16 surrogate, which
    Python's JSON reader lets through; None when it can."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"a lone UTF-16 surrogate (U+{ord(text[exc.start]):04X}) at character {exc.start}: not Unicode text"
    return None


# A JSON string escape: an escaped backslash, a surrogate pair, or a lone surrogate (the third).
_ESCAPE = re.compile(rb"\\\\|\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(\\u[dD][89a-fA-F][0-9a-fA-F]{2})")
NOT_TEXT = b"\xff" * 6  # bytes that are never UTF-8, as long as a \uXXXX escape


def mend_surrogates(data: bytes) -> bytes | None:
    """``data`` (JSON) with each lone UTF-16 surrogate escape (``\\ud800`` with no pair) replaced by
    bytes of the same length that are not UTF-8, or None when it has none. msgspec refuses such an
    escape wherever it is, even in a record it is only told to skip; it lets bytes that are not
    UTF-8 through until it decodes the record they are in, which is then a bad record."""
    found = [m.start(1) for m in _ESCAPE.finditer(data) if m.start(1) >= 0]
    if not found:
        return None
    mended = bytearray(data)
    for start in found:
        mended[start:start + 6] = NOT_TEXT
    return bytes(mended)


class Confined:
    """Paths under ``root`` that must stay in it, whatever links lie on the way: a file (or a folder
    above it) that is a link out of the root is refused. Each folder is resolved once."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self._folders: dict[str, Path] = {}

    def escape(self, key: str) -> str | None:
        """Where ``key`` (an image_id, relative to the root) really leads when that is outside the
        root, as a one-line reason; None when it stays inside (or does not exist)."""
        folder, _, name = key.rpartition("/")
        real = self._folders.get(folder)
        if real is None:  # realpath, not Path.resolve: a loop of links is no error here, only not inside
            real = self._folders[folder] = Path(os.path.realpath(self.root / folder)) if folder else self.root
        path = real / name
        try:
            if stat.S_ISLNK(os.lstat(path).st_mode):
                path = Path(os.path.realpath(path))
        except OSError:  # not there (or a name too long): nothing to follow
            pass
        if path == self.root or not path.is_relative_to(self.root):
            return f"a link out of {self.root} (to {path})"
        return None


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building millions of small objects.

    Decoding a large detector file allocates millions of containers, each of which can
    trigger a full collection that walks all the others: with the collector on, parsing a
    million-image file takes three times as long. Nothing built here forms cycles.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@dataclass
class HumanRating:
    """One curator's decision on one image, whichever tool it was made in.

    Label Studio annotations and Labelme files both become this; the store keeps every
    one, keyed by (source, project, annotation_id), so several curators per image are kept.
    """

    source: str  # "labelstudio" or "labelme"
    project: str  # Label Studio project id, or the Labelme folder
    annotation_id: str  # Label Studio annotation id, or the Labelme file relative to its folder
    image_id: str | None
    task_id: int | None = None
    annotator_id: str | None = None
    annotator_email: str | None = None
    stars: int | None = None  # 1-10; None when not given (Label Studio stores no result for 0 stars)
    hero: bool | None = None  # None: the curator did not decide
    comment: str | None = None
    boxes: list[dict] = field(default_factory=list)  # {"x", "y", "w", "h"} normalised, upright; "label"
    lead_time: float | None = None  # seconds the curator spent
    skipped: bool = False
    mode: str | None = None  # "assisted" or "blind": was a model's opinion shown?
    created_at: str | None = None  # ISO 8601, as the source reports it
    updated_at: str | None = None
    burst_of: str | None = None  # a burst pick: the frame the task marked (image_id is the frame picked)
    other_image_id: str | None = None  # a comparison: the right image (image_id is the left one)
    preference: str | None = None  # a comparison: "left", "right" or "same"; None when not answered
