"""Putting files into an export folder: safe names, copies and hard links that never go through a
link or over a different file, and files of our own (manifests, labels, crops) replaced only
where an earlier export of ours wrote them."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from collections import defaultdict
from collections.abc import Collection
from pathlib import Path, PurePosixPath
from typing import Any

from converters.common import Confined
from hitl.files import copy_new, link_on_the_way, write_atomic
from hitl.imageprep import read_upright_size
from hitl.progress import progress_bar

MAX_NAME = 180  # bytes of a flat name before the hash suffix; file systems allow 255
# os.link errors that mean "no hard link here" (another file system, not allowed, too many
# links, not supported), where a copy is the right answer rather than a failure.
LINK_FALLBACK_ERRNOS = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
STATE = ".hero-hitl-export.json"  # what this export wrote last, so it replaces only its own files
# names an image never takes in an export folder: the hero set's own files beside the images
RESERVED = {"manifest.csv", "manifest.json", "index.html", STATE}


# ---- file names --------------------------------------------------------------------------------

def _short_hash(image_id: str, n: int = 8) -> str:
    return hashlib.sha256(image_id.encode("utf-8")).hexdigest()[:n]


def _with_suffix(name: str, tag: str) -> str:
    stem, ext = os.path.splitext(name)
    return f"{stem}-{tag}{ext}"


def _flat_base(image_id: str) -> tuple[str, bool]:
    """``cam_a/IMG_0001.JPG`` -> ``cam_a__IMG_0001.JPG``; the flag says the mapping lost information."""
    parts = image_id.split("/")
    clean = [_UNSAFE.sub("_", part) for part in parts]
    lossy = any(c != p or "__" in p or p in ("", ".", "..") for c, p in zip(clean, parts))
    name = "__".join(clean)
    if name.startswith("."):  # no hidden files
        name, lossy = "_" + name[1:], True
    if len(name.encode()) > MAX_NAME:
        stem, ext = os.path.splitext(name)
        name, lossy = stem[: MAX_NAME - len(ext)] + ext, True
    if name in RESERVED:
        lossy = True
    return name, lossy


def flat_names(image_ids: list[str]) -> dict[str, str]:
    """A safe, unique flat file name per image_id ([A-Za-z0-9._-], folders joined by ``__``).

    A name that had to be changed beyond that, or that would clash with another one (case
    blind, for case-insensitive file systems), gets a short hash of the image_id: the same
    image_id always gets the same name, whatever order the ids come in.
    """
    bases = {i: _flat_base(i) for i in sorted(set(image_ids))}
    groups: dict[str, list[str]] = defaultdict(list)
    for image_id, (name, _) in bases.items():
        groups[name.casefold()].append(image_id)
    names = {}
    for image_id, (name, lossy) in bases.items():
        clash = len(groups[name.casefold()]) > 1
        names[image_id] = _with_suffix(name, _short_hash(image_id)) if lossy or clash else name
    # hash suffixes colliding is next to impossible; a longer hash settles it if it happens
    seen: dict[str, list[str]] = defaultdict(list)
    for image_id, name in names.items():
        seen[name.casefold()].append(image_id)
    for ids in seen.values():
        if len(ids) > 1:
            for image_id in ids:
                names[image_id] = _with_suffix(bases[image_id][0], _short_hash(image_id, 24))
    return names


def tree_name(image_id: str) -> str | None:
    """The image_id as a relative path inside the export, or None when it cannot safely be one."""
    path = PurePosixPath(image_id)
    if (not image_id or path.is_absolute() or "\\" in image_id or "\x00" in image_id
            or any(part in ("", ".", "..") for part in image_id.split("/")) or image_id in RESERVED):
        return None
    return path.as_posix()


# ---- placing files -----------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _same_content(src: Path, target: Path) -> bool:
    """Is ``target`` a regular file (not a link or folder) with exactly ``src``'s bytes?"""
    info = os.lstat(target)
    if not stat.S_ISREG(info.st_mode):
        return False
    if os.path.samefile(src, target):
        return True
    return info.st_size == os.stat(src).st_size and _sha256(src) == _sha256(target)


def place(src: Path, target: Path, link: str, out: Path) -> tuple[str, str | None]:
    """Put ``src`` at ``target`` inside the export folder ``out``: ("exported" | "unchanged" |
    "conflict", why a hard link fell back)."""
    if link_on_the_way(target.parent, out) is not None:
        return "conflict", None  # a linked folder inside the export: never written through
    if os.path.lexists(target):
        return ("unchanged" if _same_content(src, target) else "conflict"), None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        return "conflict", None  # a file sits where a folder of the tree should be
    fallback = None
    try:
        if link == "hardlink":
            try:
                os.link(src, target)
                return "exported", None
            except FileExistsError:
                raise
            except OSError as exc:
                if exc.errno not in LINK_FALLBACK_ERRNOS:
                    raise
                fallback = errno.errorcode.get(exc.errno or 0, str(exc.errno))
        copy_new(src, target)
    except FileExistsError:  # someone else put a file there meanwhile
        return ("unchanged" if _same_content(src, target) else "conflict"), None
    return "exported", fallback




class OwnFiles:
    """Files an export writes into ``out``, each replaced only if an earlier export of ours wrote
    exactly it; anything else there (a curator's notes.csv, a JPEG named manifest.json, a folder
    linked from elsewhere) is a conflict, reported in ``counts["conflicts"]`` and left alone. A
    file already holding the same content is not written again. What was written is recorded
    in ``.hero-hitl-export.json`` by :meth:`finish`."""

    def __init__(self, out: Path, counts: dict[str, Any]):
        self.out, self.counts, self.written = out, counts, []
        self.state_path = out / STATE
        try:
            ours = json.loads(self.state_path.read_text(encoding="utf-8")) if _regular(self.state_path) else {}
        except (OSError, ValueError):
            ours = {}
        self.ours = ours if isinstance(ours, dict) else {}

    def write(self, name: str, content: str | bytes) -> None:
        """Write one file (``name`` relative to ``out``, text as UTF-8) unless it is a conflict or unchanged."""
        path = self.out / name
        data = content.encode("utf-8") if isinstance(content, str) else content
        digest = hashlib.sha256(data).hexdigest()
        if link_on_the_way(path.parent, self.out) is not None:
            self.counts["conflicts"].append(str(path))  # never written through a link
            return
        if os.path.lexists(path) and not (_regular(path) and self.ours.get(name) == _sha256(path)):
            if _regular(path) and _sha256(path) == digest:  # already what we would write
                self.ours[name] = digest
            else:
                self.counts["conflicts"].append(str(path))
            return
        if self.ours.get(name) == digest and _regular(path):
            return  # unchanged since our last export: nothing to write
        write_atomic(path, data, self.out)
        self.ours[name] = digest
        self.written.append(name)

    def finish(self) -> list[str]:
        """Record what is ours; the names written."""
        if os.path.lexists(self.state_path) and not _regular(self.state_path):
            self.counts["conflicts"].append(str(self.state_path))
        else:
            write_atomic(self.state_path, json.dumps(self.ours, indent=2, sort_keys=True), self.out)
        return self.written


def write_own_files(out: Path, files: dict[str, str | bytes], counts: dict[str, Any]) -> list[str]:
    """Write ``files`` (name relative to ``out`` -> text or bytes) as :class:`OwnFiles` does; the names written."""
    own = OwnFiles(out, counts)
    for name, content in files.items():
        own.write(name, content)
    return own.finish()


def _regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def refusal(root: str | Path, image_id: str, confined: Collection[str]) -> str | None:
    """Why the file of ``image_id`` under ``root``, though it is there, never goes into an export: it
    is not an image, or it leads out of the Camtrap DP package it was selected from (``confined``:
    the image_ids from packages; a package may have changed since). None when it may go."""
    if image_id in confined and (escape := Confined(root).escape(image_id)):
        return escape
    return read_upright_size(Path(root) / image_id)[0]


def place_images(images: list[dict], out: Path, layout: str, link: str, counts: dict[str, Any],
                 progress: bool | None, names: dict[str, str] | None = None,
                 desc: str = "Exporting images", confined: Collection[str] = frozenset(),
                 root: Path | None = None) -> list[tuple[dict, str, Path]]:
    """Put each image's file (dicts with image_id and root) into ``out``, ``layout`` tree or flat,
    counting what happened in ``counts`` (exported, unchanged, conflicts, missing_files, missing,
    failed, hardlink_fallbacks, notes); (image, name in the export, target) of those placed.
    ``names``: the flat names to use (of a larger set the images belong to), else their own.
    A file that is not an image, or leads out of its package (see :func:`refusal`), is failed.
    ``root``: the export folder ``out`` is in (no link is written through below it), else ``out``."""
    flat = names if names is not None else flat_names([h["image_id"] for h in images])
    placed: list[tuple[dict, str, Path]] = []
    for image in progress_bar(progress, images, desc=desc, unit="img", leave=False):
        image_id = image["image_id"]
        if image["root"] is None:
            counts["missing_files"] += 1
            counts["missing"].append(f"{image_id} (not in the images table)")
            continue
        src = Path(image["root"]) / image_id
        if not src.is_file():
            counts["missing_files"] += 1
            counts["missing"].append(str(src))
            continue
        if refused := refusal(image["root"], image_id, confined):
            counts["failed"].append(f"{src}: {refused}")
            counts["notes"].append(f"{src}: {refused}; not exported")
            continue
        name = flat[image_id] if layout == "flat" else tree_name(image_id)
        if name is None:
            name = flat[image_id]
            counts["notes"].append(f"{image_id}: not a safe relative path, exported as {name}")
        target = out / name
        try:
            outcome, fallback = place(src, target, link, root or out)
        except OSError as exc:
            counts["failed"].append(f"{target}: {exc.strerror or exc}")
            continue
        if outcome == "conflict":
            counts["conflicts"].append(str(target))
            continue
        counts[outcome] += 1
        if fallback:
            counts["hardlink_fallbacks"] += 1
            if counts["hardlink_fallbacks"] == 1:
                counts["notes"].append(f"hard link impossible ({fallback}) for {image_id}; copied instead")
        placed.append((image, name, target))
    return placed
