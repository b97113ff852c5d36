"""Opening the SQLite store, write transactions and the two bulk write helpers.

Opened through sqlite-utils in WAL mode with a busy timeout, so the webhook service, a
reconcile run and the CLI can use one database at once; the schema is brought up to date
by the migrations in :mod:`hitl.store.schema`.
"""
from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from hitl.errors import StoreError
from hitl.store.schema import MIGRATIONS

BUSY_TIMEOUT_MS = 10_000
PART_ROWS = 500  # rows a long write commits at a time: each holds the write lock for milliseconds
PART_PAUSE_S = 0.005  # after each part's commit, time for another writer (the webhook) to take the lock
# SQLite's result codes for "another connection holds the lock" (the low byte of extended codes)
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def is_busy(exc: BaseException) -> bool:
    """Is ``exc`` SQLite giving up on a lock another connection held past the busy timeout?"""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    return (code is not None and (code & 0xFF) in _BUSY_CODES) or "locked" in str(exc) or "busy" in str(exc)


def busy_error(path: str | Path) -> StoreError:
    """What to say when the database stayed locked: who holds it, and what to do."""
    return StoreError(f"the database {path} is busy: another process (e.g. `hitl serve` or an import) holds its "
                      f"write lock; try again when it finishes")


@contextmanager
def transaction(db: sqlite_utils.Database, patience: float | None = None) -> Iterator[sqlite_utils.Database]:
    """One write transaction, taken with BEGIN IMMEDIATE.

    sqlite-utils commits every write statement made outside an open transaction, so a
    ``with db.conn:`` block is no transaction at all; this is. IMMEDIATE takes the write
    lock at the start (waiting up to the busy timeout) instead of failing later when a
    read would have to become a write while another process writes. Nested: a savepoint.

    ``patience`` (seconds): ask for the lock again every millisecond for that long, for a
    connection whose own busy timeout is short. SQLite's busy handler sleeps in growing steps
    (up to 100 ms each), so it can miss the moment between two parts of a long import; the
    webhook's writer cannot.
    """
    conn = db.conn
    if conn.in_transaction:
        with db.atomic():
            yield db
        return
    begin_immediate(conn, patience)
    try:
        yield db
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def begin_immediate(conn: sqlite3.Connection, patience: float | None = None) -> None:
    """BEGIN IMMEDIATE, asked again every millisecond for ``patience`` seconds while another writer holds the lock."""
    deadline = time.monotonic() + (patience or 0.0)
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(0.001)


def write_in_parts(db: sqlite_utils.Database, items: Sequence, write: Callable[[Sequence], Counter],
                   size: int = PART_ROWS, pause: float = PART_PAUSE_S) -> Counter:
    """``write`` each part of ``items`` in its own committed transaction; the counts it returns, summed.

    A long write (an import of 200,000 decisions) never holds the write lock for more than one
    part: between parts the webhook's writer and the other commands get their turn. A failure
    stops at its part; what the earlier parts committed stays, and a rerun finds it stored.
    """
    counts: Counter = Counter()
    for start in range(0, len(items), size):
        with transaction(db):
            counts.update(write(items[start:start + size]))
        if pause and start + size < len(items):
            time.sleep(pause)
    return counts


def utc_now() -> str:
    """Now as an ISO 8601 UTC timestamp (what every *_at column holds)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def connect(path: str | Path, migrate_schema: bool = True, create: bool = True) -> sqlite_utils.Database:
    """Open the database at ``path`` (making it when missing and ``create``) and bring its schema up to date.

    A service that opens a connection per request passes ``migrate_schema=False`` after
    migrating once at start. A database that cannot be opened or written, or is locked past the
    busy timeout, is a StoreError naming the file and the fix; so is a folder that does not exist
    (it is never made: a mistyped --db must not become a new, empty database).
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise StoreError(f"the folder {path.parent} of the database {path} does not exist (or is not a folder): "
                         f"create it, or fix --db (env HITL_DB)")
    if not create and not path.exists():
        raise StoreError(f"there is no database at {path}: `hitl select` (or `hitl score --images DIR`) makes one; "
                         f"or point --db (env HITL_DB) at yours")
    try:
        conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, check_same_thread=False)
        db = sqlite_utils.Database(conn)
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA foreign_keys = ON")
        if db.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            db.enable_wal()
        db.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a crash loses no committed txn
        if migrate_schema:
            migrate(db)
    except (sqlite3.Error, OSError) as exc:
        if is_busy(exc):
            raise busy_error(path) from None
        raise StoreError(f"cannot open the database {path} ({exc}); check that its folder exists and is "
                         f"writable, or pass another --db (env HITL_DB)") from None
    return db


def migrate(db: sqlite_utils.Database) -> list[str]:
    """Apply the migrations not yet recorded; return their names.

    Which are recorded is read first without a lock: a database already up to date (the usual
    case) is opened without ever taking the write lock, so a command that only reads never
    waits for a long write. Migrating happens in one IMMEDIATE transaction, which reads the
    record again: two processes opening a new database at the same moment (the webhook service
    and a CLI command, say) migrate one after the other, and a migration that fails leaves no
    half-made schema behind.
    """
    conn = db.conn
    if not pending_migrations(conn):
        return []
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
                raise StoreError(f"database migration {name} failed ({exc}); the database is unchanged: "
                                 f"restore it from a backup or report the error") from exc
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", [name, utc_now()])
            applied.append(name)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return applied


def pending_migrations(conn: sqlite3.Connection) -> list[str]:
    """The migrations not recorded in the database yet (all of them for a new one), read without a lock."""
    try:
        done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    except sqlite3.OperationalError:  # no such table: a new database
        done = set()
    return [name for name, _ in MIGRATIONS if name not in done]


def in_chunks(values: list, size: int = 500) -> Iterator[tuple[str, list]]:
    """``values`` in parts small enough for one ``IN (...)`` each (SQLite caps the parameters of a
    statement), each part with its placeholders: ``for marks, part in in_chunks(ids): ... IN ({marks})``."""
    for start in range(0, len(values), size):
        part = values[start:start + size]
        yield ",".join("?" * len(part)), part


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
