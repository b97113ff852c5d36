"""The webhook's inputs: the real Label Studio deliveries of ../shared, posted to the app, changed
a value at a time, and the state a rejected request must leave as it was."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import strategies as st

from hitl import store

from ..conftest import SHARED
from .copies import copy_database

SECRET = "example-secret"  # the one the shared deliveries were captured with
DELIVERIES = sorted((SHARED / "labelstudio_webhooks").glob("0*.json"))
# any JSON value, nested a few levels
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=20)


def delivery(name: str) -> dict:
    """The body of one shared delivery (``01_annotation_created.json``, ...)."""
    return json.loads((SHARED / "labelstudio_webhooks" / name).read_text())["body"]


CREATED = delivery("01_annotation_created.json")


def fresh(k: int) -> dict:
    """The real ANNOTATION_CREATED delivery with its own annotation id."""
    body = json.loads(json.dumps(CREATED))
    body["annotation"]["id"] = 1000 + k
    return body


def post(client, body, secret=SECRET, content_type="application/json", raw=None):
    """``body`` (or ``raw`` bytes) to the app's test client as Label Studio posts it."""
    headers = {"Authorization": f"Bearer {secret}"} if secret is not None else {}
    data = raw if raw is not None else json.dumps(body)
    return client.post("/webhooks/label-studio", data=data, headers=headers, content_type=content_type)


def fingerprint(db_path) -> tuple:
    """All rows of the tables a rejected request must not touch."""
    db = store.connect(db_path)
    return tuple(tuple(sorted(map(str, db[t].rows))) for t in ("ratings", "rating_history", "events", "ls_tasks"))


def mutate(body: dict, path: list, value):
    """A copy of ``body`` with ``value`` at ``path`` (KeyError: the key removed)."""
    body = json.loads(json.dumps(body))
    target = body
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


def leaf_paths(value, prefix=()):
    """Every path into ``value``, its leaves' and its containers' (the empty path last)."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaf_paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaf_paths(v, prefix + (i,))
    yield prefix


@pytest.fixture(scope="module")
def empty_db(tmp_path_factory) -> Path:
    """An empty database at the current schema, made once a module: a test's app or service starts
    from a copy of it (:func:`new_db`), the migrations of a new database costing more than most tests."""
    path = tmp_path_factory.mktemp("empty") / "h.db"
    store.connect(path).conn.close()
    return path


def new_db(empty_db: Path, folder: Path, name: str = "h.db") -> Path:
    """A new empty database ``folder/name``: a copy of ``empty_db``."""
    return copy_database(empty_db, folder / name)
