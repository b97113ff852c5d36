"""Batch scoring (the Gemini Batch API): prepare, submit one keyed JSONL file, poll, collect.

The job's images are recorded under a local id before submission and under the job's name
right after it, so a process that dies at any point leaves a job that ``--resume`` can find
(by that id, through the provider's job list, in the worst case). Every provider call (the
submission, each poll, the download) goes through the same retry policy as a sync call, so
one 503 during a poll costs a retry, not the wait.
"""
from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import sqlite_utils

from hitl import retry
from hitl.config import Settings
from hitl.errors import AuthError, HitlError
from hitl.files import atomic_output
from hitl.progress import progress_bar
from hitl.score.backends.base import BATCH_DONE_STATES, BatchBackend, Outcome
from hitl.score.prompts import load_prompt
from hitl.score.record import Recorder, ScoreSummary, finish_run, start_run
from hitl.score.runner import Attempted, Caller
from hitl.score.targets import Target
from hitl.store import transaction, utc_now


def batch_dir(db_path: str | Path) -> Path:
    """Where batch input files are kept (beside the database) until their job is collected."""
    return Path(f"{db_path}.batches")


def _with_retries(settings: Settings, backend: BatchBackend, fn: Callable, *args: Any):
    """``fn(*args)`` under the retry policy; an auth failure says which key to check."""
    try:
        return retry.call(retry.retrying(settings.score), fn, *args)[0]
    except AuthError as exc:
        raise AuthError(f"{backend.name}: authentication or permission error ({exc}); check the API key "
                        f"({backend.key_hint()}) and rerun") from None


def submit_batch(db: sqlite_utils.Database, backend: BatchBackend, targets: list[Target], settings: Settings,
                 *, prompt_version: str, db_path: str | Path, skipped: int = 0, estimate: float | None = None,
                 progress: bool | None = None) -> ScoreSummary:
    """Prepare every target, write the keyed JSONL file, upload it and create the job."""
    cfg = settings.score
    prompt = load_prompt(prompt_version)
    run_id = start_run(db, backend.name, prompt_version, "batch", len(targets), estimate,
                       {"batch_discount": cfg.batch_discount, "max_side": cfg.max_side})
    summary = ScoreSummary(run_id, backend.name, prompt_version, "batch", len(targets), skipped_done=skipped,
                           estimate_usd=estimate)
    recorder = Recorder(db, summary, backend.price(settings), cfg.batch_discount,
                        uses_detections=backend.uses_detections)
    local_id = f"hitl-{run_id}-{uuid.uuid4().hex[:8]}"
    folder = batch_dir(db_path)
    jsonl = folder / f"{local_id}.jsonl"
    started = time.perf_counter()
    keys = _write_input(jsonl, folder, backend, Caller(backend, prompt, settings, threading.Event()), targets, prompt,
                        recorder, progress)
    if not keys:
        summary.elapsed_s = time.perf_counter() - started
        finish_run(db, summary, "finished")
        jsonl.unlink(missing_ok=True)
        return summary
    now = utc_now()
    pending_name = f"pending:{local_id}"
    with transaction(db):
        db["batch_jobs"].insert({"name": pending_name, "model": backend.name, "prompt_version": prompt_version,
                                 "state": "NOT_SUBMITTED", "input_file": str(jsonl), "n_requests": len(keys),
                                 "run_id": run_id, "created_at": now, "updated_at": now})
        db["batch_items"].insert_all([{"job_name": pending_name, "key": k, "image_id": t.image_id, "inputs": t.inputs}
                                      for k, t in keys.items()])
    name, uploaded = _with_retries(settings, backend, backend.submit_batch, str(jsonl), local_id)
    with transaction(db):  # the job's name, its images and the prompt version are in SQLite from here on
        db.execute("UPDATE batch_items SET job_name = ? WHERE job_name = ?", [name, pending_name])
        db.execute("UPDATE batch_jobs SET name = ?, state = 'JOB_STATE_PENDING', input_file = ?, updated_at = ? "
                   "WHERE name = ?", [name, f"{jsonl} ({uploaded})", utc_now(), pending_name])
    summary.batch_job = name
    summary.elapsed_s = time.perf_counter() - started
    finish_run(db, summary, "submitted")
    return summary


def _write_input(jsonl: Path, folder: Path, backend: BatchBackend, caller: Caller, targets: list[Target], prompt: str,
                 recorder: Recorder, progress: bool | None) -> dict[str, Target]:
    """Prepare the images on every core into the JSONL file; returns key → target of the lines."""
    keys: dict[str, Target] = {}
    with atomic_output(jsonl, folder) as out, ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool, \
            progress_bar(progress, total=len(targets), desc="Preparing batch", unit="img") as bar:
        for target, request in zip(targets, pool.map(caller.prepare, targets)):
            bar.update(1)
            if isinstance(request, Attempted):  # the image itself is unusable: recorded, not sent
                recorder.record(target.image_id, request.outcome, 0, target.inputs)
                continue
            out.write(json.dumps(backend.batch_line(request, prompt)) + "\n")
            keys[request.key] = target
    return keys


def open_batch_jobs(db: sqlite_utils.Database, model: str | None = None, name: str | None = None) -> list[dict]:
    """Jobs not yet collected (optionally one by name or one model's)."""
    sql = "SELECT * FROM batch_jobs WHERE collected_at IS NULL"
    params: list[Any] = []
    if name:
        sql += " AND name = ?"
        params.append(name)
    if model:
        sql += " AND model = ?"
        params.append(model)
    return [dict(row) for row in db.query(sql + " ORDER BY created_at", params)]


def _resolve_pending(db: sqlite_utils.Database, backend: BatchBackend, job: dict, settings: Settings) -> str:
    """A job recorded as pending whose process died before storing its name: find it by its
    display name in the provider's job list, or mark it never submitted."""
    name = job["name"]
    found = _with_retries(settings, backend, backend.find_batch, name.removeprefix("pending:"))
    if found is None:
        with transaction(db):
            db.execute("UPDATE batch_jobs SET state = 'NEVER_SUBMITTED', collected_at = ?, updated_at = ? "
                       "WHERE name = ?", [utc_now(), utc_now(), name])
        raise HitlError(f"batch {name} was never submitted (the process stopped before the upload "
                        f"finished); rerun `hitl score --model {job['model']} --batch` to submit its images")
    with transaction(db):
        db.execute("UPDATE batch_items SET job_name = ? WHERE job_name = ?", [found, name])
        db.execute("UPDATE batch_jobs SET name = ? WHERE name = ?", [found, name])
    return found


def resume_batch(db: sqlite_utils.Database, backend: BatchBackend, job: dict, settings: Settings, *,
                 progress: bool | None = None, poll: Callable[[float], None] = time.sleep,
                 echo: Callable[[str], None] = lambda _m: None) -> ScoreSummary:
    """Poll a job until it ends, then collect its results, matching each line by key."""
    cfg = settings.score
    name = job["name"]
    if name.startswith("pending:"):
        name = _resolve_pending(db, backend, job, settings)
    summary = ScoreSummary(job["run_id"] or 0, job["model"], job["prompt_version"], "batch", job["n_requests"] or 0,
                           batch_job=name)
    started = time.perf_counter()
    state, result_file, stats = _with_retries(settings, backend, backend.batch_status, name)
    with progress_bar(progress, desc=f"Batch {name}", unit="poll") as bar:
        while state not in BATCH_DONE_STATES:
            _update_job(db, name, state)
            bar.set_postfix_str(f"{state.removeprefix('JOB_STATE_').lower()} {_stats_text(stats)}")
            bar.update(1)
            poll(cfg.batch_poll_seconds)
            state, result_file, stats = _with_retries(settings, backend, backend.batch_status, name)
    _update_job(db, name, state, stats.get("error"))
    summary.elapsed_s = time.perf_counter() - started
    if state != "JOB_STATE_SUCCEEDED":
        with transaction(db):
            db.execute("UPDATE batch_jobs SET collected_at = ? WHERE name = ?", [utc_now(), name])
        summary.stopped = f"batch ended {state.removeprefix('JOB_STATE_').lower()}" + (
            f": {stats['error']}" if stats.get("error") else "") + "; its images stay unscored, rerun to resubmit"
        return summary
    _collect(db, backend, job, name, result_file, summary, settings)
    return summary


def _collect(db: sqlite_utils.Database, backend: BatchBackend, job: dict, name: str, result_file: str,
             summary: ScoreSummary, settings: Settings) -> None:
    """Record every result line by its key; a request the job never answered is a failure."""
    keys = {key: (image_id, inputs) for key, image_id, inputs in db.execute(
        "SELECT key, image_id, inputs FROM batch_items WHERE job_name = ?", [name])}
    recorder = Recorder(db, summary, backend.price(settings), settings.score.batch_discount, batch_job=name,
                        uses_detections=backend.uses_detections)
    seen: set[str] = set()
    unknown = 0
    for key, outcome in _with_retries(settings, backend, lambda: list(backend.batch_results(result_file))):
        if key not in keys or key in seen:
            unknown += 1
            continue
        seen.add(key)
        image_id, inputs = keys[key]
        recorder.record(image_id, outcome, 1, inputs)
    for key in keys.keys() - seen:
        image_id, inputs = keys[key]
        recorder.record(image_id, Outcome(None, error="no line for this key in the batch results",
                                          error_kind="batch: missing result"), 1, inputs)
    if unknown:
        summary.failed["batch: result line with an unknown or repeated key"] += unknown
    with transaction(db):
        db.execute("UPDATE batch_jobs SET collected_at = ?, output_file = ? WHERE name = ?",
                   [utc_now(), result_file, name])
    if summary.run_id:
        finish_run(db, summary, "finished")
    input_file = Path(str(job.get("input_file") or "").split(" (")[0])
    if input_file.name.endswith(".jsonl") and input_file.exists():
        input_file.unlink()


def _update_job(db: sqlite_utils.Database, name: str, state: str, error: str | None = None) -> None:
    with transaction(db):
        db.execute("UPDATE batch_jobs SET state = ?, updated_at = ?, error = COALESCE(?, error) WHERE name = ?",
                   [state, utc_now(), error, name])


def _stats_text(stats: dict) -> str:
    done = stats.get("successful_count") or stats.get("successfulCount")
    failed = stats.get("failed_count") or stats.get("failedCount")
    return f"({done or 0} done, {failed or 0} failed)" if done or failed else ""


def cancel_batch(db: sqlite_utils.Database, backend: BatchBackend, name: str, settings: Settings) -> str:
    """Cancel a job on the provider's side; its images stay unscored."""
    _with_retries(settings, backend, backend.cancel_batch, name)
    state, _, _ = _with_retries(settings, backend, backend.batch_status, name)
    with transaction(db):
        db.execute("UPDATE batch_jobs SET state = ?, updated_at = ?, collected_at = COALESCE(collected_at, ?) "
                   "WHERE name = ?", [state, utc_now(), utc_now() if state in BATCH_DONE_STATES else None, name])
    return state
