"""hero-images label files: the JSON the seed project's scripts write, out of (and into) the store."""
from __future__ import annotations

import json
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from converters.common import RecordProblem
from converters.herolabels import DEFAULT_PROMPT_VERSION, LabelResult, is_unicode, match_results, read_label_file
from hitl.errors import HitlError, InputFormatError, NothingToDo, redact
from hitl.score.record import ScoreSummary, finish_run, score_row, start_run, write_score_rows
from hitl.store import queries, transaction, utc_now

IMPORTED = "imported"  # the error_kind of an imported failure (not transient: --retry-failed reruns it)


def export_scores(db: sqlite_utils.Database, model: str, prompt_version: str) -> dict[str, Any]:
    """The scores of one model in the layout of hero-images' label files."""
    rows = list(db.query(
        "SELECT s.*, i.root, r.mode FROM scores s LEFT JOIN images i USING (image_id) "
        "LEFT JOIN score_runs r ON r.id = s.run_id WHERE s.model = ? AND s.prompt_version = ? ORDER BY s.image_id",
        [model, prompt_version]))
    if not rows:
        raise NothingToDo(f"no scores for model {model!r} with prompt {prompt_version!r}")
    ok = [r["score"] for r in rows if r["status"] == "ok"]
    modes = sorted({r["mode"] for r in rows if r["mode"]})
    method = {"batch": "gemini-batch-api", "sync": "sync-api", "offline": "offline-baseline", "import": "imported"}
    results = [{
        "image_path": str(Path(r["root"]) / r["image_id"]) if r["root"] else r["image_id"],
        "image_filename": Path(r["image_id"]).name,
        "image_id": r["image_id"],
        "aesthetic_score": r["score"],
        "hero": bool(r["hero"]) if r["hero"] is not None else None,
        "reasoning": r["reasoning"],
        "success": r["status"] == "ok",
        "error": r["error"],
        "inputs": r["inputs"],
    } for r in rows]
    return {
        "labeling_info": {
            "model": model,
            "method": ", ".join(method.get(m, m) for m in modes) or "unknown",
            "prompt_version": prompt_version,
            "exported_at": utc_now(),
            "total_images": len(rows),
            "successful": len(ok),
            "failed": len(rows) - len(ok),
            "tokens_in": sum(r["tokens_in"] or 0 for r in rows),
            "tokens_out": sum(r["tokens_out"] or 0 for r in rows),
            "cost_usd": round(sum(r["cost_usd"] or 0 for r in rows), 6),
            "score_statistics": {
                "mean": round(statistics.fmean(ok), 3) if ok else None,
                "median": statistics.median(ok) if ok else None,
                "std": round(statistics.stdev(ok), 3) if len(ok) > 1 else None,
                "min": min(ok) if ok else None,
                "max": max(ok) if ok else None,
                "distribution": {str(b): sum(1 for s in ok if min(int(s), 9) == b) for b in range(10)} if ok else {},
            },
        },
        "results": results,
    }


@dataclass
class ImportSummary:
    """What `hitl score --import` did with a label file."""

    source: str
    model: str
    prompt_version: str
    method: str | None
    total: int  # entries of the file's results list
    scores: Counter = field(default_factory=Counter)  # new, updated, unchanged
    failures: Counter = field(default_factory=Counter)  # new, updated, unchanged
    matched_by: Counter = field(default_factory=Counter)
    bad: list[RecordProblem] = field(default_factory=list)
    unmatched: list[RecordProblem] = field(default_factory=list)
    duplicates: list[RecordProblem] = field(default_factory=list)
    run_id: int | None = None  # the score_runs row, when anything was written

    @property
    def rater(self) -> str:
        return f"{self.model}@{self.prompt_version}"

    @property
    def matched(self) -> int:
        return sum(self.scores.values()) + sum(self.failures.values())

    def as_counts(self) -> dict[str, Any]:
        problems = self.bad + self.unmatched + self.duplicates
        return {"file": self.source, "model": self.model, "prompt_version": self.prompt_version,
                "method": self.method, "results": self.total, "run_id": self.run_id,
                "scores": {k: self.scores[k] for k in ("new", "updated", "unchanged")},
                "failures": {k: self.failures[k] for k in ("new", "updated", "unchanged")},
                "unmatched": len(self.unmatched), "duplicates": len(self.duplicates), "bad_records": len(self.bad),
                "problems": dict(Counter(p.reason for p in problems).most_common()),
                "matched_by": dict(self.matched_by.most_common()),
                "examples": [{"record": p.record, "reason": p.reason, "detail": p.detail} for p in problems[:50]]}


def import_scores(db: sqlite_utils.Database, path: str | Path, *, model: str | None = None,
                  prompt_version: str | None = None, roots: Sequence[str] = (), replace: bool = False) -> ImportSummary:
    """Store a hero-images label file's results as ``model``'s scores (default: the model the file names).

    Each result is matched to an image already in the store (see
    :func:`converters.herolabels.match_results`; ``roots``: folders its image_path values are under);
    a failure is stored as one (status failed, its error kept). Rows already holding the same
    result are left alone, so importing a file again changes nothing. A score of another origin
    (a scoring run here, an import of another file) is replaced only with ``replace``: otherwise
    the file is refused whole (ReplaceRefused), nothing written.
    """
    labels = read_label_file(path)
    model = model or labels.model
    if not model:
        raise InputFormatError(f"{path}: its labeling_info names no model; pass --model NAME "
                               f"(the rater its scores are stored as)")
    pv = prompt_version or labels.prompt_version or DEFAULT_PROMPT_VERSION
    for name, option in ((model, "--model"), (pv, "--prompt-version")):
        if not is_unicode(name):
            raise InputFormatError(f"{path}: the rater name {name!r} is not valid Unicode text (a lone surrogate); "
                                   f"pass {option} NAME")
    if not labels.total:
        raise NothingToDo(f"{path}: its results list is empty; nothing to import")
    known = queries.image_roots(db)
    if not known:
        raise NothingToDo("no images in the database yet: run `python -m hitl select` first; "
                          "a label file's results are matched to the selected images")
    matched = match_results(labels.results, known, roots, str(path))
    summary = ImportSummary(str(path), model, pv, labels.method, labels.total, matched_by=matched.by,
                            bad=labels.problems, unmatched=matched.unmatched, duplicates=matched.duplicates)
    rows = _changed_rows(db, summary, matched.pairs, origin_of(path), replace)
    if rows:
        summary.run_id = _write(db, summary, rows, labels.model_in_file, origin_of(path))
    return summary


class ReplaceRefused(HitlError):
    """An import would overwrite scores that came from somewhere else; ``--replace`` allows it."""


def origin_of(path: str | Path) -> str:
    """A label file as the origin of the scores imported from it: its absolute path."""
    return str(Path(path).resolve())


def _changed_rows(db: sqlite_utils.Database, summary: ImportSummary, pairs: list[tuple[str, LabelResult]],
                  origin: str, replace: bool) -> list[dict[str, Any]]:
    """The rows to write (new or changed results), counting each change in ``summary``; refused when one
    would overwrite a score of another origin and ``replace`` is not given."""
    model, pv = summary.model, summary.prompt_version
    stored = {r["image_id"]: r for r in db.query(
        "SELECT s.image_id, s.status, s.score, s.hero, s.reasoning, s.error, s.created_at, r.mode, r.parameters "
        "FROM scores s LEFT JOIN score_runs r ON r.id = s.run_id WHERE s.model = ? AND s.prompt_version = ?",
        [model, pv])}
    rows, foreign = [], []
    for image_id, result in pairs:
        row = _row(image_id, model, pv, result)
        old = stored.get(image_id)
        change = "new" if old is None else "unchanged" if all(
            old[k] == row[k] for k in ("status", "score", "hero", "reasoning", "error")) else "updated"
        (summary.scores if result.success else summary.failures)[change] += 1
        if change == "updated" and old["status"] == "ok" and _origin(old) != origin:  # a failure is no score
            foreign.append(old)
        if change != "unchanged":
            row["created_at"] = old["created_at"] if old else row["created_at"]
            rows.append(row)
    if foreign and not replace:
        first = foreign[0]
        made = (f"imported from {_origin(first)}" if first["mode"] == "import" and _origin(first)
                else "made by a scoring run here" if first["mode"] else "of unknown origin")
        raise ReplaceRefused(f"{summary.source}: {len(foreign)} of its results would replace {summary.rater} scores "
                             f"{made} (e.g. {first['image_id']}); pass --replace to overwrite them, or --model or "
                             f"--prompt-version to import the file as another rater")
    return rows


def _origin(row: dict[str, Any]) -> str | None:
    """The label file a stored score was imported from (None: scored here, or unknown)."""
    if row["mode"] != "import":
        return None
    parameters = json.loads(row["parameters"] or "{}")
    return parameters.get("origin") or (origin_of(parameters["file"]) if parameters.get("file") else None)


def _row(image_id: str, model: str, pv: str, result: LabelResult) -> dict[str, Any]:
    error = redact(result.error) if result.error is not None else None
    return score_row(image_id, model, pv, status="ok" if result.success else "failed", score=result.score,
                     hero=result.hero, reasoning=result.reasoning, tags=() if result.success else None,
                     raw=redact(result.raw), error=error,
                     error_kind=None if result.success else IMPORTED, inputs=result.inputs)


def _write(db: sqlite_utils.Database, summary: ImportSummary, rows: list[dict[str, Any]],
           model_in_file: str | None, origin: str) -> int:
    """The changed rows in one transaction, recorded as a score run of mode ``import``."""
    run_id = start_run(db, summary.model, summary.prompt_version, "import", len(rows), None,
                       {"file": summary.source, "origin": origin, "method": summary.method,
                        "model_in_file": model_in_file})
    run = ScoreSummary(run_id, summary.model, summary.prompt_version, "import", len(rows))
    for row in rows:
        row["run_id"] = run_id
        if row["status"] == "ok":
            run.scored += 1
            run.scores.append(row["score"])
            run.heroes += row["hero"] or 0
        else:
            run.failed[IMPORTED] += 1
    try:
        with transaction(db):
            write_score_rows(db, rows)
    except BaseException:
        finish_run(db, run, "failed")
        raise
    finish_run(db, run, "finished")
    return run_id
