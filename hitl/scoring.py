"""The `score` step: every candidate gets each model's verdict, once.

Results are keyed by (image_id, model, prompt_version) and committed one by one as they
arrive, so a run killed at any point loses only the calls in flight, and a rerun skips
every finished key: nothing is paid for twice.
"""
from __future__ import annotations

import json
import os
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils
from tqdm import tqdm

from .backends.base import BATCH_DONE_STATES, AuthError, CallError, Outcome, RetryableError, ScoreRequest
from .errors import HitlError, NothingToDo
from .imageprep import ImagePrepError, prepare_image, read_upright_size
from .prompts import load_prompt
from .store import transaction, upsert_many, utc_now

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".bmp"}


@dataclass
class Target:
    image_id: str
    path: Path
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)


@dataclass
class ScoreSummary:
    run_id: int
    model: str
    prompt_version: str
    mode: str
    targets: int
    scored: int = 0
    failed: Counter = field(default_factory=Counter)
    skipped_done: int = 0
    scores: list[float] = field(default_factory=list)
    heroes: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    estimate_usd: float | None = None
    elapsed_s: float = 0.0
    stopped: str | None = None  # why the run ended early, if it did
    batch_job: str | None = None

    def as_counts(self) -> dict[str, Any]:
        spread = {}
        if self.scores:
            spread = {"mean": round(statistics.fmean(self.scores), 3), "min": min(self.scores),
                      "max": max(self.scores), "median": statistics.median(self.scores),
                      "stdev": round(statistics.stdev(self.scores), 3) if len(self.scores) > 1 else 0.0}
        return {"targets": self.targets, "scored": self.scored, "failed": dict(self.failed),
                "heroes": self.heroes, "scores": spread, "tokens_in": self.tokens_in, "tokens_out": self.tokens_out,
                "cost_usd": round(self.cost_usd, 6), "estimate_usd": self.estimate_usd,
                "elapsed_s": round(self.elapsed_s, 3),
                "images_per_s": round(self.done / self.elapsed_s, 2) if self.elapsed_s > 0 else None,
                "stopped": self.stopped, "batch_job": self.batch_job}

    @property
    def done(self) -> int:
        return self.scored + sum(self.failed.values())


# ---- what to score ------------------------------------------------------------------------------

def candidate_targets(db: sqlite_utils.Database, model: str, prompt_version: str, retry_failed: bool,
                      threshold: float, image_ids: list[str] | None = None) -> tuple[list[Target], int]:
    """The images to score now, and how many are skipped because they are already done.

    By default: every candidate with no result for (model, prompt_version). With
    ``retry_failed``: only those whose result is a failure. ``image_ids`` narrows the set
    (the images of a folder scored without a selection step).
    """
    if image_ids is None:
        rows = db.execute("SELECT c.image_id, i.root FROM candidates c JOIN images i USING (image_id) "
                          "ORDER BY c.rank").fetchall()
    else:
        wanted = set(image_ids)
        rows = [r for r in db.execute("SELECT image_id, root FROM images ORDER BY image_id").fetchall()
                if r[0] in wanted]
    status = dict(db.execute("SELECT image_id, status FROM scores WHERE model = ? AND prompt_version = ?",
                             [model, prompt_version]).fetchall())
    boxes: dict[str, list] = {}
    for image_id, x, y, w, h in db.execute(
            "SELECT image_id, x, y, w, h FROM detections WHERE kind = 'animal' AND conf >= ? "
            "ORDER BY image_id, det_index", [threshold]):
        boxes.setdefault(image_id, []).append((x, y, w, h))
    targets, skipped = [], 0
    for image_id, root in rows:
        state = status.get(image_id)
        if (state == "failed") if retry_failed else (state is None):
            targets.append(Target(image_id, Path(root) / image_id, boxes.get(image_id, [])))
        else:
            skipped += 1
    return targets, skipped


def register_folder(db: sqlite_utils.Database, folder: str | Path) -> list[str]:
    """Record every image file under ``folder`` (recursively) in the images table; return their ids.

    This is the hero-images way: score a folder as it is, with no selection step.
    """
    root = Path(folder).resolve()
    if not root.is_dir():
        raise HitlError(f"{folder} is not a folder; pass --images with a folder of images")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise NothingToDo(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) under {folder}")
    now = utc_now()
    rows = []
    for path in paths:
        _, size = read_upright_size(path)  # an unreadable file is recorded as failed when it is scored
        rows.append({"image_id": path.relative_to(root).as_posix(), "root": str(root),
                     "width": size[0] if size else None, "height": size[1] if size else None, "updated_at": now})
    with transaction(db):
        db.conn.executemany(
            "INSERT INTO images (image_id, root, width, height, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (image_id) DO UPDATE SET root = excluded.root, width = COALESCE(excluded.width, width), "
            "height = COALESCE(excluded.height, height), updated_at = excluded.updated_at",
            [(r["image_id"], r["root"], r["width"], r["height"], r["updated_at"]) for r in rows])
    return [r["image_id"] for r in rows]


# ---- cost ------------------------------------------------------------------------------------------

def price_of(model: str, settings: dict[str, Any]) -> dict[str, float] | None:
    prices = settings["score"]["prices"]
    return prices.get(model) or prices.get(model.removeprefix("models/"))


def estimate_cost(model: str, n: int, settings: dict[str, Any], batch: bool) -> float | None:
    """Expected USD for ``n`` images, or None when the model's price is unknown."""
    price = price_of(model, settings)
    if price is None:
        return None
    cfg = settings["score"]
    per_image = (cfg["expected_tokens_in"] * price["input"] + cfg["expected_tokens_out"] * price["output"]) / 1e6
    return n * per_image * (cfg["batch_discount"] if batch else 1.0)


def call_cost(outcome: Outcome, price: dict[str, float] | None, discount: float) -> float | None:
    if price is None or outcome.tokens_in is None:
        return None
    return ((outcome.tokens_in or 0) * price["input"] + (outcome.tokens_out or 0) * price["output"]) / 1e6 * discount


# ---- one image ------------------------------------------------------------------------------------

@dataclass
class Attempted:
    target: Target
    outcome: Outcome | None  # None: the run stopped before this image was finished
    attempts: int


class Caller:
    """Prepare an image and call the backend, retrying what is worth retrying."""

    def __init__(self, backend, prompt: str, settings: dict[str, Any], stop: threading.Event,
                 sleep: Callable[[threading.Event, float], bool] | None = None):
        self.backend = backend
        self.prompt = prompt
        self.cfg = settings["score"]
        self.stop = stop
        # waiting on the stop event lets an auth failure elsewhere end a backoff at once
        self.sleep = sleep or (lambda event, seconds: event.wait(seconds))

    def request(self, target: Target) -> ScoreRequest:
        prepared = prepare_image(target.path, self.cfg["max_side"], self.cfg["jpeg_quality"])
        return ScoreRequest(image_id=target.image_id, key=target.image_id, jpeg=prepared.jpeg,
                            width=prepared.width, height=prepared.height, boxes=target.boxes, path=str(target.path))

    def prepare(self, target: Target) -> ScoreRequest | Attempted:
        """The request for ``target``, or a finished failure if the image itself is unusable."""
        try:
            return self.request(target)
        except ImagePrepError as exc:
            return Attempted(target, Outcome(None, error=str(exc), error_kind=f"prepare: {exc.reason}"), 0)

    def call(self, target: Target, request: ScoreRequest) -> Attempted:
        attempts = self.cfg["attempts"]
        for attempt in range(1, attempts + 1):
            if self.stop.is_set():
                return Attempted(target, None, attempt - 1)
            try:
                return Attempted(target, self.backend.score(request, self.prompt), attempt)
            except CallError as exc:
                return Attempted(target, Outcome(None, error=str(exc), error_kind=exc.kind), attempt)
            except RetryableError as exc:
                if attempt == attempts:
                    return Attempted(target, Outcome(None, error=f"{exc} (after {attempt} attempts)",
                                                     error_kind=exc.kind), attempt)
                if self.sleep(self.stop, self.delay(attempt, exc.retry_after)):
                    return Attempted(target, None, attempt)
        raise AssertionError("unreachable")

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds before the next attempt: the server's Retry-After if it gave one, else
        exponential backoff; both with jitter so parallel workers do not retry in step."""
        if retry_after is not None:
            return retry_after * random.uniform(1.0, 1.1)
        backoff = min(self.cfg["retry_max_seconds"], self.cfg["retry_base_seconds"] * 2 ** (attempt - 1))
        return backoff * random.uniform(0.5, 1.0)


# ---- a run ------------------------------------------------------------------------------------------

class Recorder:
    """Writes each result the moment it exists, in its own short transaction."""

    def __init__(self, db: sqlite_utils.Database, summary: ScoreSummary, price, discount: float,
                 batch_job: str | None = None):
        self.db = db
        self.summary = summary
        self.price = price
        self.discount = discount
        self.batch_job = batch_job

    def record(self, image_id: str, outcome: Outcome, attempts: int) -> None:
        s = self.summary
        cost = call_cost(outcome, self.price, self.discount)
        v = outcome.verdict
        now = utc_now()
        row = {
            "image_id": image_id, "model": s.model, "prompt_version": s.prompt_version,
            "status": "ok" if v is not None else "failed",
            "score": v.score if v else None, "hero": int(v.hero) if v else None,
            "reasoning": v.reasoning if v else None, "tags": json.dumps(list(v.tags)) if v else None,
            "raw_response": outcome.raw, "latency_ms": outcome.latency_ms, "tokens_in": outcome.tokens_in,
            "tokens_out": outcome.tokens_out, "cost_usd": cost, "error": outcome.error,
            "error_kind": outcome.error_kind, "attempts": attempts, "run_id": s.run_id,
            "batch_job": self.batch_job, "created_at": now, "updated_at": now,
        }
        with transaction(self.db):
            upsert_many(self.db, "scores", [row], ("image_id", "model", "prompt_version"))
        if v is not None:
            s.scored += 1
            s.scores.append(v.score)
            s.heroes += v.hero
        else:
            s.failed[outcome.error_kind or "error"] += 1
        s.tokens_in += outcome.tokens_in or 0
        s.tokens_out += outcome.tokens_out or 0
        s.cost_usd += cost or 0.0


def start_run(db: sqlite_utils.Database, model: str, prompt_version: str, mode: str, n: int,
              estimate: float | None, parameters: dict[str, Any]) -> int:
    return db["score_runs"].insert({
        "model": model, "prompt_version": prompt_version, "mode": mode, "started_at": utc_now(),
        "status": "running", "n_targets": n, "estimate_usd": estimate,
        "parameters": json.dumps(parameters, sort_keys=True, default=str),
    }).last_pk


def finish_run(db: sqlite_utils.Database, summary: ScoreSummary, status: str) -> None:
    db["score_runs"].update(summary.run_id, {"finished_at": utc_now(), "status": status,
                                             "counts": json.dumps(summary.as_counts(), sort_keys=True)})


def run_sync(db: sqlite_utils.Database, backend, targets: list[Target], settings: dict[str, Any], *,
             prompt_version: str, skipped: int = 0, estimate: float | None = None, progress: bool | None = None,
             sleep: Callable[[threading.Event, float], bool] | None = None) -> ScoreSummary:
    """Score ``targets`` with ``backend``, ``concurrency`` calls in flight, writing as results arrive.

    An authentication or permission error stops the run at once: no new call starts, the
    images not done stay unscored (a rerun with the right key does them), and HitlError says why.
    """
    cfg = settings["score"]
    prompt = load_prompt(prompt_version)
    mode = "offline" if not backend.paid and backend.name == "baseline" else "sync"
    run_id = start_run(db, backend.name, prompt_version, mode, len(targets), estimate,
                       {k: cfg[k] for k in ("concurrency", "attempts", "timeout_seconds", "max_side")})
    summary = ScoreSummary(run_id, backend.name, prompt_version, mode, len(targets), skipped_done=skipped,
                           estimate_usd=estimate)
    recorder = Recorder(db, summary, price_of(backend.name, settings), 1.0)
    stop = threading.Event()
    caller = Caller(backend, prompt, settings, stop, sleep)
    auth_error: AuthError | None = None
    started = time.perf_counter()
    status = "finished"
    bar = tqdm(total=len(targets), desc=f"Scoring with {backend.name}", unit="img",
               disable=None if progress is None else not progress)
    pending = iter(targets)
    concurrency = max(1, cfg["concurrency"])
    # Images are prepared on every core while the calls wait on the network, a few ahead
    # of the callers, so neither starves the other and memory stays bounded.
    ahead = concurrency * 2
    ready: list[tuple[Target, ScoreRequest]] = []
    try:
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="prepare") as prep_pool, \
                ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="score") as call_pool:
            preparing: dict[Future, Target] = {}
            calling: set[Future] = set()
            try:
                while True:
                    if not stop.is_set():
                        for target in _take(pending, ahead - len(preparing) - len(ready)):
                            preparing[prep_pool.submit(caller.prepare, target)] = target
                        while ready and len(calling) < concurrency:
                            target, request = ready.pop(0)
                            calling.add(call_pool.submit(caller.call, target, request))
                    if not preparing and not calling:
                        break
                    done, _ = wait(set(preparing) | calling, return_when=FIRST_COMPLETED)
                    for future in done:
                        if future in preparing:
                            target = preparing.pop(future)
                            prepared = future.result()
                            if isinstance(prepared, Attempted):  # unusable image: recorded, never sent
                                recorder.record(target.image_id, prepared.outcome, 0)
                                bar.update(1)
                            elif not stop.is_set():
                                ready.append((target, prepared))
                            continue
                        calling.discard(future)
                        try:
                            result = future.result()
                        except AuthError as exc:
                            auth_error = auth_error or exc
                            stop.set()
                            continue
                        if result.outcome is not None:
                            recorder.record(result.target.image_id, result.outcome, result.attempts)
                            bar.update(1)
            except KeyboardInterrupt:
                # The calls in flight are being paid for: wait for them and keep their results,
                # so a rerun does not pay again for them. A second Ctrl+C abandons them.
                stop.set()
                status = "stopped"
                summary.stopped = "interrupted: rerun the same command to continue where it stopped"
                for future in as_completed(calling):
                    try:
                        result = future.result()
                    except AuthError:
                        continue
                    if result.outcome is not None:
                        recorder.record(result.target.image_id, result.outcome, result.attempts)
    except KeyboardInterrupt:
        stop.set()
        status = "stopped"
        summary.stopped = "interrupted: rerun the same command to continue where it stopped"
    finally:
        bar.close()
        summary.elapsed_s = time.perf_counter() - started
        if auth_error is not None:
            status = "stopped"
            summary.stopped = f"authentication failed: {auth_error}"
        finish_run(db, summary, status)
    if auth_error is not None:
        raise HitlError(f"{backend.name}: authentication or permission error, run stopped after "
                        f"{summary.done} results ({auth_error}). Check the API key "
                        f"({key_hint(backend.name)}) and rerun: finished images are not called again.")
    return summary


def _take(iterator: Iterator[Target], n: int) -> list[Target]:
    out = []
    for _ in range(max(0, n)):
        try:
            out.append(next(iterator))
        except StopIteration:
            break
    return out


def key_hint(model: str) -> str:
    if model.startswith("openai:"):
        return "HITL_OPENAI_API_KEY or OPENAI_API_KEY"
    return "GEMINI_API_KEY or GOOGLE_API_KEY"


# ---- Gemini Batch API -----------------------------------------------------------------------------

def batch_dir(db_path: str | Path) -> Path:
    """Where batch input files are kept (beside the database) until their job is collected."""
    return Path(f"{db_path}.batches")


def submit_batch(db: sqlite_utils.Database, backend, targets: list[Target], settings: dict[str, Any], *,
                 prompt_version: str, db_path: str | Path, skipped: int = 0, estimate: float | None = None,
                 progress: bool | None = None) -> ScoreSummary:
    """Prepare every target, write the keyed JSONL file, upload it and create the job.

    The job's images are recorded under a local id before submission and under the job's
    name right after it, so a process that dies at any point leaves a job that
    ``--resume`` can find (by that id, through the API's job list, in the worst case).
    """
    cfg = settings["score"]
    prompt = load_prompt(prompt_version)
    run_id = start_run(db, backend.name, prompt_version, "batch", len(targets), estimate,
                       {"batch_discount": cfg["batch_discount"], "max_side": cfg["max_side"]})
    summary = ScoreSummary(run_id, backend.name, prompt_version, "batch", len(targets), skipped_done=skipped,
                           estimate_usd=estimate)
    recorder = Recorder(db, summary, price_of(backend.name, settings), cfg["batch_discount"])
    local_id = f"hitl-{run_id}-{uuid.uuid4().hex[:8]}"
    folder = batch_dir(db_path)
    folder.mkdir(parents=True, exist_ok=True)
    jsonl = folder / f"{local_id}.jsonl"
    caller = Caller(backend, prompt, settings, threading.Event())
    keys: dict[str, str] = {}
    started = time.perf_counter()
    with jsonl.open("w", encoding="utf-8") as out, ThreadPoolExecutor(max_workers=max(1, os.cpu_count() or 1)) as pool, \
            tqdm(total=len(targets), desc="Preparing batch", unit="img",
                 disable=None if progress is None else not progress) as bar:
        for target, request in zip(targets, pool.map(caller.prepare, targets)):
            bar.update(1)
            if isinstance(request, Attempted):  # the image itself is unusable: recorded, not sent
                recorder.record(target.image_id, request.outcome, 0)
                continue
            out.write(json.dumps(backend.batch_line(request, prompt)) + "\n")
            keys[request.key] = target.image_id
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
        db["batch_items"].insert_all([{"job_name": pending_name, "key": k, "image_id": v} for k, v in keys.items()])
    name, uploaded = backend.submit_batch(str(jsonl), local_id)
    with transaction(db):  # the job's name, its images and the prompt version are in SQLite from here on
        db.execute("UPDATE batch_items SET job_name = ? WHERE job_name = ?", [name, pending_name])
        db.execute("UPDATE batch_jobs SET name = ?, state = 'JOB_STATE_PENDING', input_file = ?, updated_at = ? "
                   "WHERE name = ?", [name, f"{jsonl} ({uploaded})", utc_now(), pending_name])
    summary.batch_job = name
    summary.elapsed_s = time.perf_counter() - started
    finish_run(db, summary, "submitted")
    return summary


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


def find_submitted(backend, job: dict) -> str | None:
    """A job recorded as pending whose process died before storing its name: look it up by
    its display name in the provider's job list."""
    local_id = job["name"].removeprefix("pending:")
    try:
        for remote in backend.client.batches.list(config={"page_size": 100}):
            if remote.display_name == local_id:
                return remote.name
    except Exception:  # noqa: BLE001 - listing is a best effort; the caller reports not found
        return None
    return None


def resume_batch(db: sqlite_utils.Database, backend, job: dict, settings: dict[str, Any], *,
                 progress: bool | None = None, poll: Callable[[float], None] = time.sleep,
                 echo: Callable[[str], None] = lambda _m: None) -> ScoreSummary:
    """Poll a job until it ends, then collect its results, matching each line by key."""
    cfg = settings["score"]
    name = job["name"]
    if name.startswith("pending:"):
        found = find_submitted(backend, job)
        if found is None:
            with transaction(db):
                db.execute("UPDATE batch_jobs SET state = 'NEVER_SUBMITTED', collected_at = ?, updated_at = ? "
                           "WHERE name = ?", [utc_now(), utc_now(), name])
            raise HitlError(f"batch {name} was never submitted (the process stopped before the upload "
                            f"finished); rerun `hitl score --model {job['model']} --batch` to submit its images")
        with transaction(db):
            db.execute("UPDATE batch_items SET job_name = ? WHERE job_name = ?", [found, name])
            db.execute("UPDATE batch_jobs SET name = ? WHERE name = ?", [found, name])
        name = found
    summary = ScoreSummary(job["run_id"] or 0, job["model"], job["prompt_version"], "batch", job["n_requests"] or 0,
                           batch_job=name)
    started = time.perf_counter()
    state, result_file, stats = backend.batch_status(name)
    with tqdm(desc=f"Batch {name}", unit="poll", disable=None if progress is None else not progress) as bar:
        while state not in BATCH_DONE_STATES:
            _update_job(db, name, state)
            bar.set_postfix_str(f"{state.removeprefix('JOB_STATE_').lower()} {_stats_text(stats)}")
            bar.update(1)
            poll(cfg["batch_poll_seconds"])
            state, result_file, stats = backend.batch_status(name)
    _update_job(db, name, state, stats.get("error"))
    summary.elapsed_s = time.perf_counter() - started
    if state != "JOB_STATE_SUCCEEDED":
        with transaction(db):
            db.execute("UPDATE batch_jobs SET collected_at = ? WHERE name = ?", [utc_now(), name])
        summary.stopped = f"batch ended {state.removeprefix('JOB_STATE_').lower()}" + (
            f": {stats['error']}" if stats.get("error") else "") + "; its images stay unscored, rerun to resubmit"
        return summary
    keys = dict(db.execute("SELECT key, image_id FROM batch_items WHERE job_name = ?", [name]).fetchall())
    recorder = Recorder(db, summary, price_of(job["model"], settings), cfg["batch_discount"], batch_job=name)
    seen: set[str] = set()
    unknown = 0
    for key, outcome in backend.batch_results(result_file):
        image_id = keys.get(key)
        if image_id is None or key in seen:
            unknown += 1
            continue
        seen.add(key)
        recorder.record(image_id, outcome, 1)
    for key in keys.keys() - seen:  # a request the job never answered is a failure, not a silence
        recorder.record(keys[key], Outcome(None, error="no line for this key in the batch results",
                                           error_kind="batch: missing result"), 1)
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
    return summary


def _update_job(db: sqlite_utils.Database, name: str, state: str, error: str | None = None) -> None:
    with transaction(db):
        db.execute("UPDATE batch_jobs SET state = ?, updated_at = ?, error = COALESCE(?, error) WHERE name = ?",
                   [state, utc_now(), error, name])


def _stats_text(stats: dict) -> str:
    done = stats.get("successful_count") or stats.get("successfulCount")
    failed = stats.get("failed_count") or stats.get("failedCount")
    return f"({done or 0} done, {failed or 0} failed)" if done or failed else ""


def cancel_batch(db: sqlite_utils.Database, backend, name: str) -> str:
    """Cancel a job on the provider's side; its images stay unscored."""
    backend.cancel_batch(name)
    state, _, _ = backend.batch_status(name)
    with transaction(db):
        db.execute("UPDATE batch_jobs SET state = ?, updated_at = ?, collected_at = COALESCE(collected_at, ?) "
                   "WHERE name = ?", [state, utc_now(), utc_now() if state in BATCH_DONE_STATES else None, name])
    return state


# ---- export ---------------------------------------------------------------------------------------

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
