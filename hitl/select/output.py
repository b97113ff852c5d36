"""What a selection run leaves behind: its summary and the candidates CSV."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hitl.tables import SafeDictWriter

CSV_COLUMNS = ("rank", "image_id", "category", "score", "reason", "species", "seq_id", "location",
               "datetime", "night", "n_animals", "area", "width", "height")


@dataclass
class SelectionSummary:
    run_id: int
    images_read: int
    eligible: int
    sequences: int
    selected: int
    requested: int
    failed: Counter = field(default_factory=Counter)  # detector failures and unreadable picks
    excluded: Counter = field(default_factory=Counter)
    problems: Counter = field(default_factory=Counter)  # bad records by "file: reason"
    problem_examples: list[str] = field(default_factory=list)
    by_category: Counter = field(default_factory=Counter)
    by_species: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def as_counts(self) -> dict[str, Any]:
        return {
            "images_read": self.images_read, "eligible": self.eligible, "sequences": self.sequences,
            "selected": self.selected, "requested": self.requested, "failed": dict(self.failed),
            "excluded": dict(self.excluded), "problems": dict(self.problems),
            "problem_examples": self.problem_examples, "by_category": dict(self.by_category),
            "by_species": dict(self.by_species), "notes": self.notes,
        }


def write_candidates_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write the candidates to a CSV file (the columns in CSV_COLUMNS)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = SafeDictWriter(fh, fieldnames=CSV_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS})
