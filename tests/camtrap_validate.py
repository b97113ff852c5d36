"""Validate a Camtrap DP package offline: the profile's own rules with jsonschema, the tables
against the 1.0.2 table schemas (types, constraints, keys, foreign keys) with frictionless.

The package names its profile and schemas by their public URLs; with no network they are
read from ``../shared/camtrap_dp/schemas`` instead (the profile's references to the generic
Data Package and GeoJSON schemas, which are not there, are left out).
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
from frictionless import Package, system

from .conftest import SHARED

SCHEMAS = SHARED / "camtrap_dp" / "schemas"
TABLES = ("deployments", "media", "observations")


def _without_remote_refs(node):
    if isinstance(node, dict):
        return {k: _without_remote_refs(v) for k, v in node.items() if not (k == "$ref" and str(v).startswith("http"))}
    if isinstance(node, list):
        return [_without_remote_refs(v) for v in node]
    return node


def camtrap_dp_errors(folder: Path) -> list[str]:
    """Every error found; an empty list is a valid package."""
    descriptor = json.loads((folder / "datapackage.json").read_text(encoding="utf-8"))
    profile = json.loads((SCHEMAS / "camtrap-dp-profile.json").read_text(encoding="utf-8"))
    rules = {"$defs": profile["$defs"], **_without_remote_refs(profile["allOf"][1])}
    errors = [f"datapackage.json: {e.message}" for e in jsonschema.Draft7Validator(rules).iter_errors(descriptor)]
    local = {k: v for k, v in descriptor.items() if k != "profile"}
    local["resources"] = [
        {**r, "schema": json.loads((SCHEMAS / f"{r['name']}-table-schema.json").read_text(encoding="utf-8"))}
        if r.get("name") in TABLES else r for r in descriptor["resources"]]
    with system.use_context(trusted=True):
        report = Package(local, basepath=str(folder)).validate()
    errors += [f"{task.name}: {e.message}" for task in report.tasks for e in task.errors]
    errors += [e.message for e in report.errors]
    return errors
