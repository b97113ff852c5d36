"""hero-images label files: the JSON the seed project's scripts write, out of (and into) the store."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import sqlite_utils

from hitl.errors import NothingToDo
from hitl.store import utc_now


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
    method = {"batch": "gemini-batch-api", "sync": "sync-api", "offline": "offline-baseline"}
    results = [{
        "image_path": str(Path(r["root"]) / r["image_id"]) if r["root"] else r["image_id"],
        "image_filename": Path(r["image_id"]).name,
        "image_id": r["image_id"],
        "aesthetic_score": r["score"],
        "hero": bool(r["hero"]) if r["hero"] is not None else None,
        "reasoning": r["reasoning"],
        "success": r["status"] == "ok",
        "error": r["error"],
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
