"""Curators' decisions with a known taste, for the learned rater to find."""
from __future__ import annotations

from pathlib import Path

from ..conftest import CliProject
from .near_duplicates import copy_of

CURATORS = ("ana@example.org", "ben@example.org", "cy@example.org")


def sheet_for(project: CliProject, path, curators=CURATORS, images: int | None = None) -> list[str]:
    """A sheet of decisions whose taste is: large, centred animals are heroes."""
    rows = list(project.db.query("SELECT image_id FROM candidates ORDER BY rank"))[:images]
    lines = ["image_id,curator,stars,hero,mode"]
    for k, row in enumerate(rows):
        for c, curator in enumerate(curators):
            stars = 1 + (k * 3 + c) % 10
            lines.append(f"{row['image_id']},{curator},{stars},{'yes' if stars >= 7 else 'no'},"
                         f"{'blind' if c else 'assisted'}")
    path.write_text("\n".join(lines) + "\n")
    return [r["image_id"] for r in rows]


def copied_project(db: Path, tmp_path: Path) -> CliProject:
    """A project in a copy of the database ``db`` (a module's store, made once) under ``tmp_path``."""
    copy = copy_of(db, tmp_path)
    return CliProject(copy, {"HITL_DB": str(copy)})
