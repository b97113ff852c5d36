"""Walking a folder the way a collection is walked: only regular files, never out of the root.

A FIFO named ``.jpg`` would make a reader hang, a symlink could lead out of the folder the user
named, and a file name that is not UTF-8 cannot become an ``image_id``: each is skipped and
reported with the fix, and the walk goes on.
"""
from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from converters.common import RecordProblem


@dataclass
class Walk:
    """The files a walk found (absolute path, POSIX path relative to the root) and what it skipped."""

    root: Path
    files: list[tuple[Path, str]] = field(default_factory=list)
    problems: list[RecordProblem] = field(default_factory=list)

    def skip(self, rel: str, reason: str, detail: str) -> None:
        self.problems.append(RecordProblem(str(self.root), rel, reason, detail))


MISSING, NOT_REGULAR, OUTSIDE = "file missing", "not a regular file", "a link out of the folder"


def regular_file_problem(path: Path, root: Path | None = None) -> tuple[str, str] | None:
    """Why ``path`` must not be opened, as (reason, detail), or None when it is a regular file
    (inside ``root``, if given, even when reached through a link)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return MISSING, ""
    except OSError as exc:
        return "unreadable", exc.strerror or type(exc).__name__
    if not stat.S_ISREG(info.st_mode):
        return NOT_REGULAR, "a folder, FIFO, socket or device"
    if root is not None and path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
        return OUTSIDE, f"it points out of {root}"
    return None


def walk_files(folder: str | Path, suffixes: set[str], skip_hidden_dirs: bool = True) -> Walk:
    """Every regular file under ``folder`` with one of ``suffixes`` (lower case, with the dot),
    sorted. Linked folders are not walked (they may lead anywhere, or in a circle); a linked
    file is taken only when it points inside ``folder``."""
    root = Path(folder).resolve()
    walk = Walk(root)
    for path, rel in _candidates(root, suffixes, skip_hidden_dirs, walk):
        try:
            rel.encode("utf-8")
        except UnicodeEncodeError:
            walk.skip(rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace"), "file name is not UTF-8",
                      "rename it (image ids are text); skipped")
            continue
        problem = regular_file_problem(path, root)
        if problem:
            walk.skip(rel, problem[0], f"{problem[1]}; skipped" if problem[1] else "skipped")
            continue
        walk.files.append((path, rel))
    return walk


def _candidates(root: Path, suffixes: set[str], skip_hidden_dirs: bool, walk: Walk) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        kept = []
        for d in sorted(dirnames):
            if skip_hidden_dirs and d.startswith("."):
                continue
            if (here / d).is_symlink():
                walk.skip((here / d).relative_to(root).as_posix(), "linked folder", "not walked; link the files "
                          "or pass the folder it points to")
                continue
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in suffixes:
                path = here / name
                yield path, path.relative_to(root).as_posix()
