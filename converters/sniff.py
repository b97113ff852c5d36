"""Which kind of input file is which, told from its first bytes: the one place the formats are
recognised, so that a file given for another (a MegaDetector file as --cct, a Camtrap DP table
as its datapackage.json) is refused in one line that names what it is and where it goes,
instead of being read as a file of bad records. Pure.

Only the head of a file is looked at (files run to gigabytes): the keys of its JSON objects,
or the header of a CSV table. Each kind is recognised by keys no other kind has.
"""
from __future__ import annotations

import csv
import re

from .common import InputFormatError

HEAD = 1 << 16  # bytes looked at: a few records of any of these files

# kind -> (what it is, where it goes)
KINDS: dict[str, tuple[str, str]] = {
    "megadetector": ("a MegaDetector batch output file", "pass it as --md"),
    "cct": ("a COCO Camera Traps file", "pass it as --cct"),
    "speciesnet": ("a SpeciesNet predictions file", "pass it as --speciesnet"),
    "camtrap-dp": ("a Camtrap DP datapackage.json", "pass it (or its folder) as --camtrap-dp"),
    "camtrap-dp media": ("the media table of a Camtrap DP package",
                         "pass the package's datapackage.json (or its folder) as --camtrap-dp"),
    "camtrap-dp observations": ("the observations table of a Camtrap DP package",
                                "pass the package's datapackage.json (or its folder) as --camtrap-dp"),
    "camtrap-dp deployments": ("a Camtrap DP deployments table",
                               "it goes to export --format camtrap-dp --deployments; a package is read by its "
                               "datapackage.json (select --camtrap-dp)"),
    "hero-images labels": ("a hero-images label file", "import it with score --import"),
    "labelstudio export": ("a Label Studio JSON export", "read it with sync --from-export"),
    "labelstudio delivery": ("a Label Studio webhook delivery", "the webhook service reads those"),
    "labelme": ("a Labelme file", "read a folder of them with labelme import"),
    "decisions sheet": ("a decisions sheet", "import it with ratings --import"),
}

# JSON: (kind, the top level's first character, key sets any one of which marks the kind)
_JSON_MARKS: list[tuple[str, str, list[set[str]]]] = [
    ("camtrap-dp", "{", [{"resources"}]),
    ("labelstudio delivery", "{", [{"action", "annotation"}, {"action", "task", "project"}]),
    ("speciesnet", "{", [{"predictions"}]),
    ("hero-images labels", "{", [{"results", "labeling_info"}, {"results", "checkpoint_info"},
                                 {"results", "aesthetic_score"}, {"results", "image_filename"}]),
    ("labelme", "{", [{"shapes", "imagePath"}]),
    ("cct", "{", [{"images", "file_name"}]),
    ("megadetector", "{", [{"images", "file", "detections"}, {"images", "file", "failure"},
                           {"detection_categories"}, {"images", "max_detection_conf"},
                           {"images", "format_version"}]),
    ("labelstudio export", "[", [{"data", "annotations"}, {"data", "predictions"}]),
]
# CSV: (kind, header columns that mark it)
_CSV_MARKS: list[tuple[str, set[str]]] = [
    ("camtrap-dp media", {"mediaID", "filePath"}),
    ("camtrap-dp observations", {"observationID", "observationType"}),
    ("camtrap-dp deployments", {"deploymentID", "latitude", "longitude"}),
    ("decisions sheet", {"image_id", "curator", "stars", "hero"}),
]
# A JSON string, and whether a colon follows it (then it is a key). Scanned from the start, each
# match begins at a real string's opening quote: outside strings JSON has no other quotes.
_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"(\s*:)?')


def sniff(head: bytes) -> list[str]:
    """The kinds of input file whose marks are in ``head`` (the first bytes of a file), most
    specific first; empty when it looks like none of them."""
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff \t\r\n")
    if text[:1] in ("{", "["):
        keys = {m.group(1) for m in _STRING.finditer(text) if m.group(2)}
        return [kind for kind, top, marks in _JSON_MARKS if text[0] == top and any(m <= keys for m in marks)]
    first = text.split("\n", 1)[0]
    try:
        header = {name.strip() for name in next(csv.reader([first]), [])}
    except csv.Error:
        return []
    return [kind for kind, marks in _CSV_MARKS if marks <= header]


def check_kind(data: bytes, source: str, expected: str) -> None:
    """Refuse ``data`` (a file's bytes, or its head) when it is recognisably another kind of input
    than ``expected`` (a key of KINDS): an InputFormatError saying what it is and where it goes.
    A file with the marks of ``expected``, or of no kind at all, passes: its reader judges it."""
    found = sniff(bytes(data[:HEAD]))
    if found and expected not in found:
        what, where = KINDS[found[0]]
        raise InputFormatError(f"{source} looks like {what}, not {KINDS[expected][0]}; {where}")
