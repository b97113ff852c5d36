"""The webhook service: Label Studio → SQLite, fast, authenticated, and never a 500 for bad input.

Built by ``create_app(test_config=None)`` in the Flask tutorial's way: settings from the
environment, overridable in tests; one database connection per worker thread (``get_db``). What
the factory starts (the writer and checkpoint threads, the worker connections) the app's
``close()`` stops and closes, as the tutorial's ``close_db`` closes what ``get_db`` opened:
`hitl serve` closes it when the server stops, a test with ``with create_app(...) as app:``.
"""
from __future__ import annotations

import hmac
import logging
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException

from hitl import store
from hitl.errors import ConfigError
from hitl.review.events import BadEvent, check_comparisons, parse_body, record_event, validate

log = logging.getLogger("hitl.webhook")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
GROUP_MAX = 64  # deliveries committed (and synced to disk) together at most
WAL_KEPT_BYTES = 64 * 1024 * 1024  # the most of the write-ahead log left on disk when it starts over


class GroupCommitter(threading.Thread):
    """The one writer of the service: what was acknowledged is on disk.

    Each delivery is answered 200 only after the transaction holding it is committed with
    ``synchronous = FULL``, i.e. fsynced: a power cut loses nothing that Label Studio was told
    is stored. One fsync per delivery would cap the service at the disk's sync rate, so the
    writer takes every delivery waiting, writes them in one transaction (each in its own
    savepoint, so one failing to apply fails alone) and syncs once: group commit. Writers of
    this process queue here rather than in SQLite's busy handler, which sleeps in growing
    steps; when another process (a `hitl sync`, an import) holds the lock, the writer asks for
    it every millisecond, so it gets it between two parts of a long import.
    """

    def __init__(self, path: str):
        super().__init__(name="webhook-writer", daemon=True)
        self.path = path
        self.inbox: queue.Queue[tuple[dict, Future] | None] = queue.Queue()  # None: stop
        self.commits = 0
        self.synchronous: int | None = None  # as SQLite reports it once the writer runs: 2 is FULL
        self.stopping = False

    def submit(self, body: dict) -> Future:
        if self.stopping:
            raise RuntimeError("the webhook service is stopping")  # answered 503: Label Studio's record stands
        future: Future = Future()
        self.inbox.put((body, future))
        return future

    def stop(self, timeout: float | None = None) -> None:
        """Write what was submitted, then end; the writer's connection is closed."""
        self.stopping = True
        self.inbox.put(None)
        self.join(timeout)

    def run(self) -> None:
        db = store.connect(self.path, migrate_schema=False)
        try:
            db.execute("PRAGMA synchronous = FULL")  # the commit is on disk before anyone is answered
            db.execute("PRAGMA wal_autocheckpoint = 0")  # the checkpointer thread does that, off this path
            db.execute(f"PRAGMA journal_size_limit = {WAL_KEPT_BYTES}")
            db.execute("PRAGMA busy_timeout = 2")  # store.transaction's patience asks again, every millisecond
            self.synchronous = db.execute("PRAGMA synchronous").fetchone()[0]
            while self._take_and_write(db):
                pass
        finally:
            db.conn.close()

    def _take_and_write(self, db) -> bool:
        """Write the deliveries waiting (at least one, at most GROUP_MAX) in one group; False once told to stop."""
        batch: list[tuple[dict, Future]] = []
        item = self.inbox.get()
        while item is not None:
            batch.append(item)
            if len(batch) == GROUP_MAX:
                break
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
        if batch:
            self._write(db, batch)
        return item is not None

    def _write(self, db, batch: list[tuple[dict, Future]]) -> None:
        try:
            with store.transaction(db, patience=store.BUSY_TIMEOUT_MS / 1000):
                results = [record_event(db, body, via="webhook") for body, _ in batch]
        except Exception as exc:  # the database itself failed: nobody in the group is stored
            for _, future in batch:
                future.set_exception(exc)
            return
        self.commits += 1
        for (_, future), result in zip(batch, results):
            future.set_result(result)


MIN_SECRET_LENGTH = 16


def check_secret(secret: str, loopback: bool) -> None:
    """A secret HTTP can carry intact, and long enough off this machine to resist guessing."""
    if secret != secret.strip() or any(c.isspace() for c in secret):
        raise ConfigError("HITL_WEBHOOK_SECRET contains white space, which an Authorization header cannot carry "
                          "intact; choose one without (e.g. `openssl rand -hex 20`)")
    if not loopback and len(secret) < MIN_SECRET_LENGTH:
        raise ConfigError(f"HITL_WEBHOOK_SECRET has {len(secret)} characters; off loopback it needs at least "
                          f"{MIN_SECRET_LENGTH} (e.g. `openssl rand -hex 20`)")


class WebhookApp(Flask):
    """The service's Flask app: ``close()`` stops the threads :func:`create_app` started and closes
    every connection the worker threads opened; a ``with`` block closes it on the way out."""

    def close(self, timeout: float = 30) -> None:
        """Stop taking deliveries, write those submitted, end the threads, close the connections."""
        writer, checkpointer = self.extensions["hitl_writer"], self.extensions.get("hitl_checkpointer")
        if checkpointer is not None:
            checkpointer.stop(timeout)
        writer.stop(timeout)
        self.extensions["hitl_connections"].close()
        if writer.is_alive():  # stuck on a lock held elsewhere: a daemon, it ends with the process
            log.warning("the webhook writer did not stop within %s s", timeout)

    def __enter__(self) -> WebhookApp:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def create_app(test_config: dict[str, Any] | None = None) -> WebhookApp:
    """The Flask app. Refuses to start without a secret unless INSECURE is set."""
    app = WebhookApp("hitl")
    app.config.from_mapping(
        DATABASE=os.environ.get("HITL_DB", "hitl.db"),
        WEBHOOK_SECRET=os.environ.get("HITL_WEBHOOK_SECRET") or None,
        INSECURE=False,
        MAX_CONTENT_LENGTH=DEFAULT_MAX_BYTES,
    )
    if test_config:
        app.config.update(test_config)
    if not app.config["WEBHOOK_SECRET"] and not app.config["INSECURE"]:
        raise ConfigError("no webhook secret: set HITL_WEBHOOK_SECRET (the same one `hitl push` registers)")
    store.connect(app.config["DATABASE"]).conn.close()  # migrate once here, not per request
    app.extensions["hitl_connections"] = WorkerConnections(app.config["DATABASE"])
    app.extensions["hitl_writer"] = GroupCommitter(app.config["DATABASE"])
    app.extensions["hitl_writer"].start()
    if not app.config.get("TESTING"):
        writer = app.extensions["hitl_writer"]
        app.extensions["hitl_checkpointer"] = Checkpointer(app.config["DATABASE"], lambda: writer.commits)
        app.extensions["hitl_checkpointer"].start()
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
    app.add_url_rule("/webhooks/label-studio", view_func=receive, methods=["POST"])
    app.add_url_rule("/healthz", view_func=healthz, methods=["GET"])
    return app


class WorkerConnections:
    """One database connection per worker thread of one app, opened on first use and reused; all
    of them closed by :meth:`close`.

    Opening SQLite per request costs more than the delivery itself; the WSGI server's worker
    threads live as long as the service, so each keeps one connection until the app closes.
    """

    def __init__(self, path: str):
        self.path = path
        self.mine = threading.local()
        self.opened: list = []
        self.lock = threading.Lock()
        self.closed = False

    def get(self):
        if self.closed:
            raise RuntimeError("the webhook service is closed")  # answered 503, never on a closed connection
        db = getattr(self.mine, "db", None)
        if db is None:
            db = store.connect(self.path, migrate_schema=False)
            # No checkpoint on the request path: a checkpoint flushes the log to the database file
            # and syncs it, hundreds of milliseconds on slow disks; the checkpointer thread does it.
            db.execute("PRAGMA wal_autocheckpoint = 0")
            with self.lock:
                if self.closed:
                    db.conn.close()
                    raise RuntimeError("the webhook service is stopping")
                self.opened.append(db)
            self.mine.db = db
        return db

    def close(self) -> None:
        """Close every connection (opened with check_same_thread off: any thread may); none is opened after."""
        with self.lock:
            self.closed = True
            opened, self.opened = self.opened, []
        for db in opened:
            db.conn.close()


def get_db():
    """The database connection of this worker thread (see :class:`WorkerConnections`)."""
    return current_app.extensions["hitl_connections"].get()


class Checkpointer(threading.Thread):
    """Folds the write-ahead log into the database every few seconds, off the request path, and
    empties it once the deliveries pause.

    At full rate the log is never wholly folded in at the moment a write begins, so SQLite never
    starts it over and it grows with every delivery (by hundreds of megabytes); a PASSIVE
    checkpoint cannot shrink it. When ``activity`` (the writer's commit count) has not moved
    since the last look, a TRUNCATE checkpoint empties it: it waits for nobody (a short busy
    timeout) and is tried again next time if a reader or another writer is busy.
    """

    def __init__(self, path: str, activity: Callable[[], int], every: float = 2.0):
        super().__init__(name="wal-checkpoint", daemon=True)
        self.path, self.activity, self.every = path, activity, every
        self.wal = Path(f"{path}-wal")
        self.stopped = threading.Event()
        self.last_activity: int | None = None

    def stop(self, timeout: float | None = None) -> None:
        self.stopped.set()
        self.join(timeout)

    def run(self) -> None:
        db = store.connect(self.path, migrate_schema=False)
        try:
            db.execute("PRAGMA busy_timeout = 50")  # a TRUNCATE holds up the writer while it waits for readers
            while not self.stopped.wait(self.every):
                try:
                    self.checkpoint(db)
                except Exception as exc:  # a busy database now is fine: next time
                    log.debug("checkpoint skipped: %s", exc)
        finally:
            db.conn.close()

    def checkpoint(self, db) -> str | None:
        """One look: PASSIVE while deliveries come, TRUNCATE once they pause; the mode run, if any."""
        activity = self.activity()
        idle, self.last_activity = activity == self.last_activity, activity
        if not idle:
            db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            return "PASSIVE"
        if self.wal.exists() and self.wal.stat().st_size > 0:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            return "TRUNCATE"
        return None


def error(status: int, message: str):
    return jsonify({"error": message, "status": status}), status


def authorized() -> bool:
    secret = current_app.config["WEBHOOK_SECRET"]
    if not secret:
        return bool(current_app.config["INSECURE"])
    return bearer_matches(request.headers.get("Authorization", ""), secret)


def bearer_matches(given: str, secret: str) -> bool:
    """Is an Authorization header (as HTTP servers hand it over: its bytes as Latin-1) ``Bearer <secret>``?"""
    # constant-time: the comparison must not tell an attacker how much of the secret matched
    return hmac.compare_digest(given.encode("latin-1", "replace"), f"Bearer {secret}".encode())


def receive():
    if not authorized():
        return error(401, "missing or wrong Authorization header (Bearer <HITL_WEBHOOK_SECRET>)")
    if request.mimetype != "application/json":
        return error(400, f"Content-Type must be application/json, not {request.mimetype or 'missing'}")
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        body = parse_body(raw)
        action = validate(body)
        check_comparisons(get_db(), body)
    except BadEvent as exc:
        return error(400, str(exc))
    # a writer that cannot commit within this time is stuck: 503, and Label Studio's own record stands
    event_id, outcome, detail = current_app.extensions["hitl_writer"].submit(body).result(timeout=30)
    if outcome == "failed":
        log.error("event %s (%s) stored but not applied: %s; `hitl replay` retries it", event_id, action, detail)
    elif outcome == "ignored":
        log.info("event %s: %s", event_id, detail)
    return jsonify({"event": event_id, "action": action, "outcome": outcome, "detail": detail}), 200


def healthz():
    """"ok" for anyone (a load balancer's probe); the counts only with the secret."""
    if not current_app.config["WEBHOOK_SECRET"] or not authorized():
        return jsonify({"status": "ok"}), 200
    db = get_db()
    counts = {
        "ratings": db.execute("SELECT COUNT(*) FROM ratings WHERE deleted = 0").fetchone()[0],
        "events": db.execute("SELECT COUNT(*) FROM events").fetchone()[0],
        "failed_events": db.execute("SELECT COUNT(*) FROM events WHERE outcome = 'failed'").fetchone()[0],
    }
    return jsonify({"status": "ok", **counts}), 200


def http_error(exc: HTTPException):
    return error(exc.code or 500, exc.description or exc.name)


def unexpected_error(exc: Exception):
    # Only our own failures land here (the database is unreachable, a bug): never client input,
    # which is answered 400/401/413 above. 503 says "try later", and the event table, if it was
    # reachable, holds the delivery.
    log.exception("webhook failed: %s", exc)
    return error(503, f"the service could not store this delivery: {type(exc).__name__}")
