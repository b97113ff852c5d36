"""The SQLite store, the single source of truth: schema, transactions and the shared queries.

``connect``, ``transaction`` and ``utc_now`` are what most callers need; the queries every
stage shares live in :mod:`hitl.store.queries`, the curators' ratings in :mod:`hitl.store.ratings`.
"""
from hitl.store.db import (
    BUSY_TIMEOUT_MS,
    connect,
    in_chunks,
    insert_row,
    migrate,
    transaction,
    upsert_many,
    utc_now,
    write_in_parts,
)

__all__ = ["BUSY_TIMEOUT_MS", "connect", "in_chunks", "insert_row", "migrate", "transaction", "upsert_many", "utc_now",
           "write_in_parts"]
