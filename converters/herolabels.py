"""hero-images label files (what its labeling scripts and `hitl score --export` write) as plain results. Pure.

The layout::

    {"labeling_info": {"model": ..., "method": ..., "prompt_version": ...},
     "results": [{"image_path", "image_filename", "aesthetic_score", "reasoning", "success", "error"}, ...]}

hero-images' own scripts name the model ``model_used`` and the method ``processing_method`` and
give no prompt version; a vLLM checkpoint has ``checkpoint_info`` instead of ``labeling_info``;
our export adds ``image_id``, ``hero`` and ``inputs`` (what the score was computed from) to each result. A bad result is a counted
:class:`RecordProblem`; a file that is not such a file at all is an :class:`InputFormatError`.
Results are matched to known image ids by :func:`match_results`, given those ids and their roots.
"""
from __future__ import annotations

import json
import math
import mmap
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from .common import InputFormatError, RecordProblem, decode_json, image_key, read_input

WHAT = "hero-images label"
DEFAULT_PROMPT_VERSION = "imported"  # hero-images' files name no prompt version
EXPECTED = ("expected a JSON object with labeling_info and a results list of {image_path, image_filename, "
            "aesthetic_score, reasoning, success, error}, as hero-images' labeling scripts and "
            "`hitl score --export` write")
_RESULT_KEYS = frozenset({"image_path", "image_filename", "image_id", "aesthetic_score"})
_NAMES = ("image_id", "image_path", "image_filename")
_LOCAL_SERVER = re.compile(r"vllm|ollama", re.IGNORECASE)  # served to hitl as openai:<model>


@dataclass(frozen=True)
class LabelResult:
    """One usable result of a label file: a score, or a failure with its error text."""

    index: int  # position in the results list
    record: str  # where in the file, e.g. "results[3] ('cam1#IMG_0001.JPG')"
    image_id: str | None
    image_path: str | None
    image_filename: str | None
    success: bool
    score: float | None  # 0-10 when success, else None
    hero: bool | None  # None: the file does not say
    reasoning: str | None
    error: str | None
    inputs: str | None  # our export's: the digest of the detections the score was computed from
    raw: str = field(repr=False, compare=False)  # the result as the file holds it, as JSON text


@dataclass
class LabelFile:
    source: str
    model: str | None  # as hitl names it: "models/" dropped, a vLLM or Ollama model as openai:<model>
    model_in_file: str | None
    method: str | None
    prompt_version: str | None
    results: list[LabelResult]
    problems: list[RecordProblem]  # bad results, skipped
    total: int  # entries of the results list


@dataclass
class Matched:
    """Results matched to image ids: the first result of each image, and what could not be used."""

    pairs: list[tuple[str, LabelResult]] = field(default_factory=list)
    by: Counter = field(default_factory=Counter)  # how each pair was matched
    unmatched: list[RecordProblem] = field(default_factory=list)
    duplicates: list[RecordProblem] = field(default_factory=list)


def read_label_file(path: str | Path) -> LabelFile:
    """Read and check a label file; the file as a whole unusable is an InputFormatError naming it."""
    data = read_input(path, WHAT)
    try:
        return parse_label_file(_decode(data, path), str(path))
    finally:
        if isinstance(data, mmap.mmap):
            data.close()


def _decode(data: bytes | mmap.mmap, path: str | Path) -> object:
    """JSON through msgspec; what only the standard library reads (Python's json.dump writes NaN and
    Infinity; 1e999, an integer of thousands of digits, a lone surrogate's escape) through it, so such
    a value is one bad result, not a bad file."""
    try:
        return decode_json(data, path, WHAT)
    except (InputFormatError, msgspec.ValidationError) as exc:  # ValidationError: a number out of range
        try:
            return json.loads(bytes(data), parse_int=_int)
        except (ValueError, RecursionError):
            if isinstance(exc, InputFormatError):
                raise exc from None
            raise InputFormatError(f"{path}: cannot parse the {WHAT} file ({exc}); it is not valid JSON") from None


def _int(digits: str) -> int | float:
    """An integer of the file; one too long for Python's int() (thousands of digits) as the infinity it is near."""
    try:
        return int(digits)
    except ValueError:
        return float(digits)


def parse_label_file(data: object, source: str) -> LabelFile:
    """The results of decoded label-file JSON; ``source`` names the file in every message."""
    if not isinstance(data, dict):
        raise InputFormatError(f"{source}: not a hero-images label file: the JSON is a {_kind(data)}; {EXPECTED}")
    results = data.get("results")
    if not isinstance(results, list):
        raise InputFormatError(f"{source}: not a hero-images label file: {_looks_like(data)}; {EXPECTED}")
    if results and not any(isinstance(r, dict) and _RESULT_KEYS & r.keys() for r in results):
        raise InputFormatError(f"{source}: not a hero-images label file: none of its {len(results)} results has "
                               f"image_path, image_filename or aesthetic_score; {EXPECTED}")
    info = data.get("labeling_info", data.get("checkpoint_info"))
    info = info if isinstance(info, dict) else {}
    model_in_file = _text(info.get("model", info.get("model_used")))
    method = _text(info.get("method", info.get("processing_method")))
    parsed, problems = [], []
    for index, entry in enumerate(results):
        try:
            parsed.append(_result(index, entry))
        except _Bad as bad:
            problems.append(RecordProblem(source, _where(index, entry), bad.reason, bad.detail))
    return LabelFile(source=source, model=hitl_model_name(model_in_file, method), model_in_file=model_in_file,
                     method=method, prompt_version=_text(info.get("prompt_version")), results=parsed,
                     problems=problems, total=len(results))


def hitl_model_name(model: str | None, method: str | None) -> str | None:
    """The model as `hitl score --model` names it: Gemini without "models/", a local server's as openai:<model>."""
    if not model or model.lower() in ("unknown", "n/a", "none"):  # vLLM's script says "unknown" when unsure
        return None
    model = model.removeprefix("models/")
    if method and _LOCAL_SERVER.search(method) and not model.startswith("openai:"):
        model = f"openai:{model}"
    return model


class _Bad(ValueError):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


def _result(index: int, entry: object) -> LabelResult:
    if not isinstance(entry, dict):
        raise _Bad("result not an object", f"a {_kind(entry)}: {_short(entry)}")
    for key in ("image_id", "image_path", "image_filename", "reasoning", "error", "inputs"):
        value = entry.get(key)
        if key in _NAMES and value is not None and not isinstance(value, str):
            raise _Bad(f"{key} not text", _short(value))
        if isinstance(value, str) and not is_unicode(value):
            raise _Bad("text not valid Unicode", f"{key} has a lone surrogate: {_short(value)}")
    image_id, path, name = (_text(entry.get(k)) for k in _NAMES)
    if not (image_id or path or name):
        raise _Bad("no image named", "none of image_id, image_path, image_filename is given")
    value = entry.get("aesthetic_score", entry.get("score"))
    success = entry.get("success")
    if success is None:  # not said: a score and no error is a success
        success = value is not None and not entry.get("error")
    if not isinstance(success, bool):
        raise _Bad("success not true or false", _short(success))
    hero = entry.get("hero")
    if hero is not None and not isinstance(hero, bool):
        raise _Bad("hero not true or false", _short(hero))
    score = _score(value) if success else None
    return LabelResult(index=index, record=_where(index, entry), image_id=image_id, image_path=path,
                       image_filename=name, success=success, score=score, hero=hero if success else None,
                       reasoning=_as_text(entry.get("reasoning")), error=_as_text(entry.get("error")),
                       inputs=_text(entry.get("inputs")), raw=_as_text(entry, sort_keys=True))


def _score(value: object) -> float:
    if value is None:
        raise _Bad("score missing", "a successful result needs aesthetic_score")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise _Bad("score not a number", _short(value))
    try:
        number = float(value.strip() if isinstance(value, str) else value)
    except ValueError:
        raise _Bad("score not a number", _short(value)) from None
    except OverflowError:  # an integer past any float
        raise _Bad("score out of range", f"{_short(value)} is outside 0-10") from None
    if not math.isfinite(number):
        raise _Bad("score not a number", _short(value))
    if not 0 <= number <= 10:
        raise _Bad("score out of range", f"{number:g} is outside 0-10")
    return number


def is_unicode(text: str) -> bool:
    """Whether ``text`` can be stored and printed: JSON's escapes can spell a lone surrogate, which UTF-8 cannot."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def match_results(results: Sequence[LabelResult], known: Mapping[str, str], roots: Sequence[str] = (),
                  source: str = "") -> Matched:
    """Match each result to a known image id (``known``: image_id -> its root) by the most specific thing it says:

    its ``image_id``; else its ``image_path`` under a root (``roots`` first, then the images' own)
    or relative (to a root); else its file name with ``#`` read as ``/`` (hero-images copies
    ``a/b/c.jpg`` to ``a#b#c.jpg``), or a shorter tail of that; else a file name only one known
    image has. A result whose ``image_id``, or whose path under a root, names an image that is
    not known is unmatched: a weaker key would put its score on another image (another camera's
    ``IMG_0006.JPG``). A second result for an image is a duplicate: the first one counts.
    """
    all_roots = list(dict.fromkeys([*roots, *sorted(set(known.values()))]))
    by_name: dict[str, list[str]] = {}
    for image_id in known:
        by_name.setdefault(image_id.rsplit("/", 1)[-1], []).append(image_id)
    matched, first = Matched(), {}
    for result in results:
        image_id, how, why = _match(result, known, all_roots, by_name)
        if image_id is None:
            matched.unmatched.append(RecordProblem(source, result.record, *why))
            continue
        if image_id in first:
            matched.duplicates.append(RecordProblem(source, result.record, "the same image twice",
                                                    f"{image_id} is already results[{first[image_id]}]; this one "
                                                    f"skipped"))
            continue
        first[image_id] = result.index
        matched.pairs.append((image_id, result))
        matched.by[how] += 1
    return matched


def _match(result: LabelResult, known: Mapping[str, str], roots: list[str],
           by_name: dict[str, list[str]]) -> tuple[str | None, str, tuple[str, str]]:
    named = ", ".join(f"{k} {v!r}" for k, v in (("image_id", result.image_id), ("image_path", result.image_path),
                                                ("image_filename", result.image_filename)) if v)
    claimed = _path_keys(result.image_path, roots) if result.image_path else []
    if result.image_id:
        if result.image_id not in known:
            return None, "", ("image_id not in the database", named)
        if claimed and result.image_id not in claimed and any(k in known for k in claimed):
            return None, "", ("image_id and image_path name different images", named)
        return result.image_id, "image_id", ("", "")
    if claimed:  # a path that says where the image is: that image or none
        found = next((k for k in claimed if k in known), None)
        if found:
            return found, "image_path", ("", "")
        return None, "", ("image_path names no image in the database", named)
    names = list(dict.fromkeys(n for n in (result.image_filename, _base(result.image_path)) if n))
    for name in names:
        found = _by_flat_name(name, known)
        if found:
            return found, "file name with # for /", ("", "")
    for name in names:
        ids = by_name.get(_base(name.replace("#", "/")) or "", [])
        if len(ids) == 1:
            return ids[0], "unique file name", ("", "")
        if len(ids) > 1:
            return None, "", ("file name matches several images",
                              f"{len(ids)} images are called {_base(name)!r}, e.g. {ids[0]}, {ids[1]}")
    return None, "", ("no image in the database matches", named)


def _path_keys(path: str, roots: list[str]) -> list[str]:
    """The image ids an ``image_path`` names: relative to each root it lies under, or as a relative path.

    None for a path that says only a file name: one outside every root (the scripts ran
    elsewhere), a bare name, or a ``#``-flattened copy's name (the copy's folder is not the image's).
    """
    text = path.replace("\\", "/")
    if "#" in (_base(text) or ""):
        return []
    keys = []
    for root in roots:
        prefix = root.replace("\\", "/").rstrip("/") + "/"
        if prefix != "/" and text.startswith(prefix):
            keys.append(_key(text[len(prefix):]))
    if not keys and "/" in text.strip("/"):
        keys.append(_key(text))  # None when absolute: outside every root
    return list(dict.fromkeys(k for k in keys if k))


def _by_flat_name(name: str, known: Mapping[str, str]) -> str | None:
    parts = [p for p in name.replace("\\", "/").rsplit("/", 1)[-1].split("#") if p]
    for start in range(len(parts) - 1):  # a/b/c.jpg, then b/c.jpg: flattened from a folder above the root
        candidate = "/".join(parts[start:])
        if candidate in known:
            return candidate
    return None


def _key(text: str) -> str | None:
    try:
        return image_key(text)
    except ValueError:
        return None


def _base(path: str | None) -> str | None:
    return (path.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or None) if path else None


def _looks_like(data: dict) -> str:
    """What a JSON object without a results list seems to be, for the one-line refusal."""
    images = data.get("images")
    first = images[0] if isinstance(images, list) and images and isinstance(images[0], dict) else {}
    if "detections" in first or "detection_categories" in data:
        return "it looks like a MegaDetector results file (images with detections)"
    if "annotations" in data or "categories" in data:
        return "it looks like a COCO (Camera Traps) file (images, annotations, categories)"
    if "batch_info" in data and "image_list" in data:
        return ("it is a Gemini batch metadata file (the job, not its labels); collect the labels with "
                "gemini_batch_labeling.py --resume first")
    if "predictions" in data:
        return "it looks like a SpeciesNet predictions file"
    if "results" in data:
        return f"its results is a {_kind(data['results'])}, not a list"
    keys = ", ".join(list(map(str, data))[:5])
    return f"it has no results list (its keys: {keys or 'none'})"


def _text(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _as_text(value: object, sort_keys: bool = False) -> str | None:
    """A text field as it is, anything else as its JSON (escaped to ASCII, so any string in it can be stored)."""
    if value is None or isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=sort_keys)
    except (ValueError, RecursionError) as exc:  # an integer too long to print, nesting past the stack
        raise _Bad("value cannot be stored", f"{type(exc).__name__}: {_short(str(exc))}") from None


def _where(index: int, entry: object) -> str:
    name = None
    if isinstance(entry, dict):
        name = (_text(entry.get("image_filename")) or _base(_text(entry.get("image_path")))
                or _text(entry.get("image_id")))
    return f"results[{index}]" + (f" ({name!r})" if name else "")


def _kind(value: object) -> str:
    return {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if isinstance(value, (int, float)) else type(value).__name__)


def _short(value: object) -> str:
    try:
        text = repr(value)
    except ValueError:  # an integer too long to print
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    return text if len(text) <= 80 else text[:77] + "..."
