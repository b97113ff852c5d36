"""A project built once per module, copied per test: its folders and database, as if built there."""
from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

from hitl import store


def copy_database(source: Path, target: Path) -> Path:
    """``target``, a copy of the SQLite database ``source`` (SQLite's backup: its write-ahead log
    included, whether or not it was checkpointed)."""
    with closing(sqlite3.connect(source)) as origin, closing(sqlite3.connect(target)) as copy:
        origin.backup(copy)
    return target


def copy_project(built: Path, to: Path, db_name: str, folders: tuple[str, ...]):
    """Copy ``folders`` and the database ``db_name`` from ``built`` to ``to``, and move every path the
    database holds from ``built`` to ``to``. Returns the copy's database, opened."""
    for folder in folders:
        shutil.copytree(built / folder, to / folder)
    db = store.connect(copy_database(built / db_name, to / db_name))
    old, new = str(built), str(to)
    with store.transaction(db):
        for table in db.table_names():
            for column in db[table].columns_dict:
                db.execute(f'UPDATE "{table}" SET "{column}" = replace("{column}", ?, ?) '
                           f"WHERE typeof(\"{column}\") = 'text' AND instr(\"{column}\", ?) > 0", [old, new, old])
    return db
