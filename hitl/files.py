"""Files in and out: walking a collection the way it is walked, and the one way every file is written.

Reading: only regular files, never out of the root. A FIFO named ``.jpg`` would make a reader
hang, a symlink could lead out of the folder the user named, and a file name that is not UTF-8
cannot become an ``image_id``: each is skipped and reported with the fix, and the walk goes on.

Writing (:func:`atomic_output`, :func:`write_atomic`, :func:`copy_new`): a file is written under
a temporary name made exclusively (``O_EXCL``, an unguessable name: a link planted beside it is
never followed), flushed to disk, then renamed over the target, so a reader never sees half a
file and a crash leaves the old one. Nothing is written through a link: neither the target nor
a folder between the output folder the user named and the target may be one.
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from converters.common import RecordProblem
from hitl.errors import HitlError


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


# ---- writing ------------------------------------------------------------------------------------

TEMP_SUFFIX = ".part"  # a file being written; an export's listing skips these


class OutputError(HitlError):
    """An output path that cannot or must not be written (a file where a folder should be, a link,
    a place the user cannot write to, the image collection itself); the message names it and the fix."""


def make_output_folder(folder: str | Path, option: str = "--out", target: str | Path | None = None) -> Path:
    """``folder`` made if missing (with its parents), as given; an OutputError naming the path when
    it cannot be (a file in the way, no permission, a place like /proc where nothing can be made).
    ``target``: the file the user named, when ``folder`` is only its folder (for the message)."""
    folder = Path(folder)
    what = f"cannot write {target}" if target is not None else f"cannot use {folder} as a folder"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (folder, *folder.parents) if os.path.lexists(p) and not p.is_dir()), folder)
        raise OutputError(f"{what}: {blocker} is a file, not a folder; choose another {option}") from None
    except OSError as exc:
        raise OutputError(f"{what}: cannot make the folder {folder} ({exc.strerror or exc}); choose a place you "
                          f"may write to for {option}") from None
    try:  # a folder that is there but takes no file (/proc, a read-only mount) is refused before any work
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise OutputError(f"{what}: nothing can be written in {folder} ({exc.strerror or exc}); choose a place "
                          f"you may write to for {option}") from None
    return folder


def make_file_folder(path: str | Path, option: str = "--out") -> Path:
    """The folder of the output file ``path``, made if missing, as :func:`make_output_folder` does."""
    return make_output_folder(Path(path).parent, option, path)


def refuse_inside(out: Path, roots: list[str | Path], option: str = "--out") -> None:
    """An OutputError when ``out`` is one of ``roots`` (the exported images' collections) or inside one:
    an export must not write its manifest and pages into the collection it reads."""
    where = Path(out).resolve()
    for root in sorted({str(r) for r in roots if r}):
        if where.is_relative_to(Path(root).resolve()):
            raise OutputError(f"{option} {out} is inside the image collection {root}; choose a folder outside it")


def link_on_the_way(path: Path, root: Path | None = None) -> Path | None:
    """The first link among the folders between ``root`` and ``path`` and ``path`` itself, or None.
    ``root`` itself may be a link: the user named it."""
    between = [] if root is None else [root / p for p in reversed(path.relative_to(root).parents) if p != Path(".")]
    return next((p for p in (*between, path) if os.path.islink(p)), None)


def refuse_links(path: Path, root: Path | None = None) -> None:
    """An OutputError when writing ``path`` would go through a link (see :func:`link_on_the_way`)."""
    link = link_on_the_way(path, root)
    if link is not None:
        raise OutputError(f"{link} is a link; hero-hitl never writes through a link (it may lead anywhere): "
                          f"remove it or choose another output folder")


def _exclusive_temp(path: Path) -> tuple[int, Path]:
    """A new file beside ``path`` under an unguessable hidden name, created exclusively: an existing
    file or a link planted under the name makes the open fail instead of being followed. Mode 0666
    less the umask, as any new file (tempfile's 0600 would hide an export from a web server)."""
    stem = path.name if len(path.name.encode()) <= 200 else path.name[:40]
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.with_name(f".{stem}.{secrets.token_hex(6)}{TEMP_SUFFIX}")
        try:
            with _naming_errors(path):
                return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary name", str(path))


@contextmanager
def _naming_errors(path: Path) -> Iterator[None]:
    """An OSError of the temporary file's (disk full, ...) raised again naming ``path``, the file the user knows."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


@contextmanager
def atomic_output(path: str | Path, root: Path | None = None, binary: bool = False) -> Iterator[IO]:
    """A file object whose content replaces ``path`` at once when the block ends without an error
    (text is UTF-8, newlines as written). ``root``: the output folder ``path`` is in; folders
    missing between them are made, and none of them nor ``path`` may be a link. Without ``root``
    (a single file the user named) only ``path`` is checked, and its folder is made if missing."""
    path = Path(path)
    refuse_links(path, root)
    if root is None:
        make_file_folder(path, "output path")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _exclusive_temp(path)
    try:
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            yield fh
            with _naming_errors(path):
                fh.flush()
                os.fsync(fh.fileno())  # on disk before the rename: a crash never leaves an empty file
        with _naming_errors(path):
            os.replace(tmp, path)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


def write_atomic(path: str | Path, content: str | bytes, root: Path | None = None) -> None:
    """Write text (UTF-8) or bytes to ``path`` as :func:`atomic_output` does."""
    with atomic_output(path, root, binary=isinstance(content, bytes)) as fh, _naming_errors(Path(path)):
        fh.write(content)


def copy_new(src: Path, target: Path) -> None:
    """Copy ``src`` to ``target`` without ever replacing a file there (FileExistsError), and never
    leave half a file: the copy goes to an exclusive temporary file first, then is hard-linked into
    place, which fails when the target exists."""
    fd, tmp = _exclusive_temp(target)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(src, tmp)
        try:
            os.link(tmp, target)
        except FileExistsError:
            raise
        except OSError:
            # no hard links on this file system: a rename is next best (only a file created in
            # the instant between this check and the rename could be replaced)
            if os.path.lexists(target):
                raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
            os.rename(tmp, target)
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
