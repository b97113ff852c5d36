"""Shared pieces of the format converters: record problems, path keys, JSON loading.

Converters are pure: plain data in, plain data out, no database or web imports.
"""
from __future__ import annotations

import posixpath
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

import msgspec


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
            and not path.endswith(("/", "/."))):
        return path  # the common clean relative path, checked cheaply: collections have millions
    if not isinstance(path, str) or not path.strip():
        raise ValueError("empty path")
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


def read_json(path: str | Path, what: str) -> object:
    """Read a JSON file; any reason it cannot be read becomes an InputFormatError."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read the {what} file ({exc.strerror}); check the path") from exc
    return decode_json(data, path, what)


def decode_json(data: bytes, path: str | Path, what: str, type: object = object) -> object:
    """Decode JSON bytes, optionally into a msgspec type, naming the file on failure."""
    if not data.strip():
        raise InputFormatError(f"{path}: the {what} file is empty; re-run the tool that writes it")
    try:
        return msgspec.json.decode(data, type=type)
    except msgspec.ValidationError:
        raise
    except msgspec.DecodeError as exc:
        hint = "the file looks truncated; re-copy or re-run the tool that wrote it" if (
            "truncated" in str(exc) or "end of input" in str(exc)) else "it is not valid JSON"
        raise InputFormatError(f"{path}: cannot parse the {what} file: {exc} ({hint})") from exc
