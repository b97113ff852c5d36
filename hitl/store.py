"""The SQLite store: the single source of truth of a hero-hitl project.

Opened through sqlite-utils in WAL mode with a busy timeout, so the webhook service, a
reconcile run and the CLI can use one database at once. The schema grows by small named
migrations, each applied once and recorded in the ``_migrations`` table.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT_MS = 10_000

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration; its name is its identity, so never rename one."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_selection(db: sqlite_utils.Database) -> None:
    """Selection runs, the selected images, their detections and the candidates."""
    db["selection_runs"].create(
        {
            "id": int,
            "started_at": str,
            "finished_at": str,
            "status": str,  # running, finished, failed
            "md_path": str,
            "speciesnet_path": str,
            "cct_path": str,
            "images_root": str,
            "n_requested": int,
            "n_selected": int,
            "parameters": str,  # JSON
            "counts": str,  # JSON: read, eligible, failed/excluded/problems by reason
        },
        pk="id",
    )
    db["images"].create(
        {
            "image_id": str,  # POSIX path relative to the collection root, as MegaDetector's `file`
            "root": str,  # absolute collection root the image_id is relative to
            "width": int,  # upright (EXIF-rotated) size in pixels, when known
            "height": int,
            "datetime": str,  # ISO 8601 capture time, when known
            "location": str,
            "seq_id": str,
            "frame_num": int,
            "seq_num_frames": int,
            "species": str,  # readable name of the image's main species
            "species_score": float,
            "species_source": str,  # speciesnet, megadetector-classifier, none
            "night": int,
            "updated_at": str,
        },
        pk="image_id",
    )
    db["detections"].create(
        {
            "image_id": str,
            "det_index": int,  # position in the detector file, so boxes can be matched later
            "kind": str,  # animal, person, vehicle, other
            "category": str,  # the detector's category id
            "conf": float,
            "x": float,  # MegaDetector box: normalised [x_min, y_min, width, height], upright image
            "y": float,
            "w": float,
            "h": float,
            "species": str,
            "species_conf": float,
        },
        pk=("image_id", "det_index"),
        foreign_keys=[("image_id", "images", "image_id")],
    )
    db["candidates"].create(
        {
            "image_id": str,
            "run_id": int,
            "rank": int,
            "category": str,
            "score": float,
            "reason": str,
        },
        pk="image_id",
        foreign_keys=[("image_id", "images", "image_id"), ("run_id", "selection_runs", "id")],
    )
    db["candidates"].create_index(["run_id"])


@migration
def m002_scoring(db: sqlite_utils.Database) -> None:
    """Model scores keyed by (image_id, model, prompt_version), scoring runs and Gemini batch jobs."""
    db["score_runs"].create(
        {
            "id": int,
            "model": str,
            "prompt_version": str,
            "mode": str,  # sync, batch, offline
            "started_at": str,
            "finished_at": str,
            "status": str,  # running, finished, stopped, failed
            "n_targets": int,
            "estimate_usd": float,
            "parameters": str,  # JSON
            "counts": str,  # JSON summary
        },
        pk="id",
    )
    db["scores"].create(
        {
            "image_id": str,
            "model": str,
            "prompt_version": str,
            "status": str,  # ok or failed
            "score": float,
            "hero": int,
            "reasoning": str,
            "tags": str,  # JSON list
            "raw_response": str,  # kept whatever happened, so a parse failure can be read
            "latency_ms": float,
            "tokens_in": int,
            "tokens_out": int,
            "cost_usd": float,
            "error": str,
            "error_kind": str,  # short and countable: parse: ..., http 500, timeout, prepare: ...
            "attempts": int,
            "run_id": int,
            "batch_job": str,
            "created_at": str,
            "updated_at": str,
        },
        pk=("image_id", "model", "prompt_version"),
    )
    db["scores"].create_index(["model", "prompt_version", "status"])
    db["batch_jobs"].create(
        {
            "name": str,  # the provider's job name, e.g. batches/abc123
            "model": str,
            "prompt_version": str,
            "state": str,
            "input_file": str,
            "output_file": str,
            "n_requests": int,
            "run_id": int,
            "created_at": str,
            "updated_at": str,
            "collected_at": str,
            "error": str,
        },
        pk="name",
    )
    db["batch_items"].create({"job_name": str, "key": str, "image_id": str}, pk=("job_name", "key"))
    db["batch_items"].create_index(["image_id"])


@migration
def m003_review(db: sqlite_utils.Database) -> None:
    """Label Studio projects and tasks we pushed, and every human rating with its history."""
    db["ls_projects"].create(
        {"id": int, "url": str, "title": str, "mode": str, "model_version": str, "images_root": str,
         "created_at": str, "updated_at": str},
        pk="id",
    )
    db["ls_tasks"].create({"project_id": int, "task_id": int, "image_id": str, "pushed_at": str, "deleted_at": str},
                          pk=("project_id", "task_id"))
    db["ls_tasks"].create_index(["project_id", "image_id"])
    db["ls_tasks"].create_index(["task_id"])
    rating_columns = {
        "source": str,  # labelstudio or labelme
        "project": str,  # Label Studio project id, or the Labelme folder
        "annotation_id": str,
        "task_id": int,
        "image_id": str,
        "annotator_id": str,
        "annotator_email": str,
        "stars": int,  # 1-10, NULL when not given
        "hero": int,  # 1, 0, NULL when undecided
        "comment": str,
        "boxes": str,  # JSON list of {x, y, w, h, label}, normalised on the upright image
        "lead_time": float,
        "skipped": int,
        "deleted": int,
        "mode": str,  # assisted or blind
        "created_at": str,  # as the source reports it
        "updated_at": str,
        "received_at": str,  # when it reached us
        "via": str,  # webhook, sync, export, labelme
    }
    db["ratings"].create(rating_columns, pk=("source", "project", "annotation_id"))
    db["ratings"].create_index(["image_id"])
    # Every version a rating had, so an update or a delete never erases what a curator did.
    db["rating_history"].create({"id": int, **rating_columns, "change": str}, pk="id")
    db["rating_history"].create_index(["source", "project", "annotation_id"])


@migration
def m004_events(db: sqlite_utils.Database) -> None:
    """Every accepted webhook delivery, raw, before it is processed; Label Studio's users."""
    db["events"].create(
        {
            "id": int,
            "received_at": str,
            "action": str,
            "project": str,
            "body": str,  # the raw delivery, so a processing failure loses nothing
            "outcome": str,  # ok, ignored, failed
            "detail": str,
            "processed_at": str,
            "attempts": int,
        },
        pk="id",
    )
    db["events"].create_index(["outcome"])
    db["ls_users"].create({"id": int, "email": str, "updated_at": str}, pk="id")
    db["ls_projects"].add_column("webhook_url", str)


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One write transaction, taken with BEGIN IMMEDIATE.

    sqlite-utils commits every write statement made outside an open transaction, so a
    ``with db.conn:`` block is no transaction at all; this is. IMMEDIATE takes the write
    lock at the start (waiting up to the busy timeout) instead of failing later when a
    read would have to become a write while another process writes. Nested: a savepoint.
    """
    conn = db.conn
    if conn.in_transaction:
        with db.atomic():
            yield db
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def utc_now() -> str:
    """Now as an ISO 8601 UTC timestamp (what every *_at column holds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: str | Path, migrate_schema: bool = True) -> sqlite_utils.Database:
    """Open (creating if needed) the database at ``path`` and bring its schema up to date.

    A service that opens a connection per request passes ``migrate_schema=False`` after
    migrating once at start.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
    db = sqlite_utils.Database(conn)
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    db.execute("PRAGMA foreign_keys = ON")
    if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        db.enable_wal()
    db.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a crash loses no committed txn
    if migrate_schema:
        migrate(db)
    return db


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations not yet recorded; return their names.

    All of it happens in one IMMEDIATE transaction: two processes opening a new database at
    the same moment (the webhook service and a CLI command, say) migrate one after the
    other, and a migration that fails leaves no half-made schema behind.
    """
    conn = db.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
        done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
        applied = []
        for name, fn in MIGRATIONS:
            if name in done:
                continue
            try:
                fn(db)
            except Exception as exc:
                raise RuntimeError(f"database migration {name} failed: {exc}") from exc
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", [name, utc_now()])
            applied.append(name)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return applied


def insert_row(db: sqlite_utils.Database, table: str, row: dict) -> int:
    """Insert one row with plain SQL (sqlite-utils' insert re-inspects the table on every call,
    which the webhook cannot afford per delivery). Returns the rowid."""
    columns = list(row)
    sql = f"INSERT INTO [{table}] ({', '.join(f'[{c}]' for c in columns)}) VALUES ({', '.join('?' * len(columns))})"
    return db.execute(sql, [row[c] for c in columns]).lastrowid


def upsert_many(db: sqlite_utils.Database, table: str, rows: list[dict], pk: str | tuple[str, ...]) -> None:
    """Insert or update many rows with one executemany (all rows have the same keys).

    sqlite-utils' upsert_all works row by row; this is one prepared statement, which matters
    when a command writes tens of thousands of rows. The caller owns the transaction.
    """
    if not rows:
        return
    columns = list(rows[0])
    keys = (pk,) if isinstance(pk, str) else tuple(pk)
    updates = [c for c in columns if c not in keys]
    sql = (f"INSERT INTO [{table}] ({', '.join(f'[{c}]' for c in columns)}) "
           f"VALUES ({', '.join('?' * len(columns))}) ON CONFLICT ({', '.join(f'[{k}]' for k in keys)}) "
           + (f"DO UPDATE SET {', '.join(f'[{c}] = excluded.[{c}]' for c in updates)}" if updates else "DO NOTHING"))
    db.conn.executemany(sql, [tuple(row[c] for c in columns) for row in rows])
