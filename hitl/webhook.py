"""The webhook service: Label Studio → SQLite, fast, authenticated, and never a 500 for bad input.

Built by ``create_app(test_config=None)`` in the Flask tutorial's way: settings from the
environment, overridable in tests; one database connection per request (``get_db``).
"""
from __future__ import annotations

import hmac
import logging
import os
from typing import Any

from flask import Flask, current_app, g, jsonify, request
from werkzeug.exceptions import HTTPException

from . import store
from .events import BadEvent, parse_body, store_event, validate

log = logging.getLogger("hitl.webhook")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """The Flask app. Refuses to start without a secret unless INSECURE is set."""
    app = Flask("hitl")
    app.config.from_mapping(
        DATABASE=os.environ.get("HITL_DB", "hitl.db"),
        WEBHOOK_SECRET=os.environ.get("HITL_WEBHOOK_SECRET") or None,
        INSECURE=False,
        MAX_CONTENT_LENGTH=DEFAULT_MAX_BYTES,
    )
    if test_config:
        app.config.update(test_config)
    if not app.config["WEBHOOK_SECRET"] and not app.config["INSECURE"]:
        raise RuntimeError("no webhook secret: set HITL_WEBHOOK_SECRET (the same one `hitl push` registers)")
    store.connect(app.config["DATABASE"]).conn.close()  # migrate once here, not per request

    app.teardown_appcontext(close_db)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
    app.add_url_rule("/webhooks/label-studio", view_func=receive, methods=["POST"])
    app.add_url_rule("/healthz", view_func=healthz, methods=["GET"])
    return app


def get_db():
    if "db" not in g:
        g.db = store.connect(current_app.config["DATABASE"], migrate_schema=False)
    return g.db


def close_db(_exc: BaseException | None = None) -> None:
    db = g.pop("db", None)
    if db is not None:
        db.conn.close()


def error(status: int, message: str):
    return jsonify({"error": message, "status": status}), status


def authorized() -> bool:
    secret = current_app.config["WEBHOOK_SECRET"]
    if not secret:
        return bool(current_app.config["INSECURE"])
    given = request.headers.get("Authorization", "")
    # constant-time: the comparison must not tell an attacker how much of the secret matched
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"), f"Bearer {secret}".encode())


def receive():
    if not authorized():
        return error(401, "missing or wrong Authorization header (Bearer <HITL_WEBHOOK_SECRET>)")
    if request.mimetype != "application/json":
        return error(400, f"Content-Type must be application/json, not {request.mimetype or 'missing'}")
    raw = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        body = parse_body(raw)
        action = validate(body)
    except BadEvent as exc:
        return error(400, str(exc))
    event_id, outcome, detail = store_event(get_db(), raw, body, via="webhook")
    if outcome == "failed":
        log.error("event %s (%s) stored but not applied: %s; `hitl replay` retries it", event_id, action, detail)
    elif outcome == "ignored":
        log.info("event %s: %s", event_id, detail)
    return jsonify({"event": event_id, "action": action, "outcome": outcome, "detail": detail}), 200


def healthz():
    db = get_db()
    counts = {
        "ratings": db.execute("SELECT COUNT(*) FROM ratings WHERE deleted = 0").fetchone()[0],
        "events": db.execute("SELECT COUNT(*) FROM events").fetchone()[0],
        "failed_events": db.execute("SELECT COUNT(*) FROM events WHERE outcome = 'failed'").fetchone()[0],
    }
    return jsonify({"status": "ok", "database": current_app.config["DATABASE"], **counts}), 200


def http_error(exc: HTTPException):
    return error(exc.code or 500, exc.description or exc.name)


def unexpected_error(exc: Exception):
    # Only our own failures land here (the database is unreachable, a bug): never client input,
    # which is answered 400/401/413 above. 503 says "try later", and the event table, if it was
    # reachable, holds the delivery.
    log.exception("webhook failed: %s", exc)
    return error(503, f"the service could not store this delivery: {type(exc).__name__}")
