"""The Camtrap DP 1.0.2 example package of ../shared, copied where a test may change it."""
from __future__ import annotations

import csv
import shutil
from pathlib import Path

from ..conftest import SHARED

EXAMPLE = SHARED / "camtrap_dp" / "example"
HERON_MEDIA = 10  # the example's one sequence with local files: a heron


def copy_example(where: Path) -> Path:
    shutil.copytree(EXAMPLE, where)
    for path in [where, *where.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)  # the shared copy is read-only
    return where


def table(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))
