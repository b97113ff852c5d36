"""What a selection run leaves behind: its summary, the candidates' reasons and their CSV."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hitl.files import write_atomic
from hitl.select.strata import CATEGORY_LABELS, ImageFeatures, Pick
from hitl.tables import safe_csv_text

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
    frames_per_burst: int = 0  # --frames-per-burst K; 0: no bursts kept
    burst_frames: int = 0  # burst_members rows written, the candidates' own frames included
    bursts: int = 0  # candidates with a burst (their sequence has 2 or more eligible frames)

    def as_counts(self) -> dict[str, Any]:
        return {
            "images_read": self.images_read, "eligible": self.eligible, "sequences": self.sequences,
            "selected": self.selected, "requested": self.requested, "failed": dict(self.failed),
            "excluded": dict(self.excluded), "problems": dict(self.problems),
            "problem_examples": self.problem_examples, "by_category": dict(self.by_category),
            "by_species": dict(self.by_species), "notes": self.notes,
            "frames_per_burst": self.frames_per_burst, "burst_frames": self.burst_frames, "bursts": self.bursts,
        }


def candidate_reason(p: Pick, feats: ImageFeatures, i: int, species: str, night: bool, rare: bool,
                     when: str | None, cap: int) -> str:
    """A sentence a curator can read: why this image is here."""
    n = int(feats.n_animals[i])
    who = species if n == 1 else f"{n} animals of {int(feats.n_species[i])} species (mostly {species})"
    if rare and p.category != "rare_species":
        who += ", a rare species here"
    c = float(feats.centrality[i])
    framing = [f"largest animal covers {feats.area[i] * 100:.1f}% of the frame",
               "cut off by the frame edge or the data strip" if feats.cut_off[i] else "fully in frame",
               "centred" if c >= 0.7 else "off-centre" if c >= 0.4 else "near the edge"]
    text = (f"{CATEGORY_LABELS[p.category]}: {who}; {', '.join(framing)}; "
            f"detector confidence {feats.max_conf[i]:.2f}")
    if night:
        text += f"; night/IR ({when[11:16]})" if when else "; night/IR"
    if p.relaxed:
        text += f"; added beyond the per-species cap of {cap} because too few other sequences are left"
    return text


def write_candidates_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Write the candidates to a CSV file (the columns in CSV_COLUMNS)."""
    write_atomic(path, safe_csv_text(CSV_COLUMNS, ({k: ("" if row.get(k) is None else row[k]) for k in CSV_COLUMNS}
                                                   for row in rows)))
