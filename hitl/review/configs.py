"""The review configs: read from the ``label_config`` resource package, extended with an XML parser.

``hitl push`` adds one rectangle label per species after "animal". Label values are read and
written by the parser, never by pattern matching, so any species name (quotes, ampersands,
newlines) round-trips and a second push finds the config it wrote unchanged.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from importlib import resources

from hitl.errors import HitlError

MODES = ("assisted", "blind")
BOXES = "boxes"  # the RectangleLabels control the detector's boxes and the species labels live in
DEFAULT_LABEL = "animal"


def template(mode: str) -> str:
    """The shipped config of ``mode``, as text."""
    if mode not in MODES:
        raise HitlError(f"--mode must be assisted or blind, not {mode!r}")
    return resources.files("label_config").joinpath(f"{mode}.xml").read_text(encoding="utf-8")


def burst_config() -> str:
    """The burst review's config: the frames of a sequence as one multi-image task."""
    return resources.files("label_config").joinpath("burst.xml").read_text(encoding="utf-8")


def _parse(xml: str) -> ET.Element:
    try:
        # comments kept: the shipped configs explain themselves to whoever opens them in Label Studio
        return ET.fromstring(xml, parser=ET.XMLParser(target=ET.TreeBuilder(insert_comments=True)))
    except ET.ParseError as exc:
        raise HitlError(f"the project's label config is not valid XML ({exc}); fix it in Label Studio "
                        f"(Settings > Labeling Interface) or push to a new project title") from None


def _boxes(root: ET.Element) -> ET.Element | None:
    return next((e for e in root.iter("RectangleLabels") if e.get("name") == BOXES), None)


def config_labels(xml: str) -> list[str]:
    """The rectangle labels a config's ``boxes`` control has, in order."""
    control = _boxes(_parse(xml)) if xml else None
    return [] if control is None else [e.get("value", "") for e in control.iter("Label")]


def label_config(mode: str, labels: list[str]) -> str:
    """The review config of ``mode`` with one rectangle label per species (sorted, after "animal")."""
    return with_labels(template(mode), labels)


def with_labels(xml: str, labels: list[str]) -> str:
    """``xml`` with the labels it lacks appended to its ``boxes`` control (sorted); unchanged text
    when it has them all."""
    root = _parse(xml)
    control = _boxes(root)
    if control is None:
        raise HitlError(f"the label config has no RectangleLabels named {BOXES!r}; push to a new project title")
    have = [e.get("value", "") for e in control.iter("Label")]
    missing = sorted(set(labels) - set(have) - {DEFAULT_LABEL})
    if not missing:
        return xml
    inner = control.text or "\n        "
    closing = control[-1].tail if len(control) else "\n      "
    for label in missing:
        if len(control):
            control[-1].tail = inner
        ET.SubElement(control, "Label", {"value": label}).tail = closing
    return ET.tostring(root, encoding="unicode")
