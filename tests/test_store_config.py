"""The SQLite store and the settings file."""
from __future__ import annotations

import pytest

from hitl import store
from hitl.config import DEFAULTS, load_settings
from hitl.errors import ConfigError
from hitl.store.schema import MIGRATIONS


def test_connect_creates_schema_in_wal_mode_with_busy_timeout(tmp_path):
    db = store.connect(tmp_path / "h.db")  # its folder must exist: test_errors.py
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA busy_timeout").fetchone()[0] == store.BUSY_TIMEOUT_MS
    assert {"selection_runs", "images", "detections", "candidates", "_migrations"} <= set(db.table_names())
    names = [r["name"] for r in db["_migrations"].rows]
    assert names == [name for name, _ in MIGRATIONS]


def test_migrations_run_once(tmp_path):
    path = tmp_path / "h.db"
    store.connect(path)
    db = store.connect(path)
    assert store.migrate(db) == []
    assert db["_migrations"].count == len(MIGRATIONS)


def test_settings_defaults_and_overrides(tmp_path):
    assert load_settings()["select"]["threshold"] == DEFAULTS["select"]["threshold"]
    path = tmp_path / "hitl.toml"
    path.write_text("[select]\nthreshold = 0.5\nspecies_max_share = 1\n[select.shares]\ngroup = 1\n")
    settings = load_settings(path)
    assert settings["select"]["threshold"] == 0.5
    assert settings["select"]["species_max_share"] == 1.0
    assert settings["select"]["shares"] == {"group": 1.0}
    assert DEFAULTS["select"]["threshold"] == 0.3  # defaults are not mutated


@pytest.mark.parametrize("text, message", [
    ("[select]\nthreshhold = 0.5\n", "unknown setting 'select.threshhold'"),
    ("[selekt]\n", "unknown setting 'selekt'"),
    ("[select]\nthreshold = 'high'\n", "must be float"),
    ("[select]\ninclude_people = 1\n", "must be bool"),
    ("[select.shares]\nportraits = 1\n", "unknown category 'portraits'"),
    ("[select.shares]\ngroup = 0\n", "at least one category"),
    ("[select\n", "not valid TOML"),
    ("[serve]\nport = '80'\n", "'serve.port' must be int, not '80'"),
    ("[select.shares]\ngroup = 'x'\n", "every entry of 'select.shares' must be float"),
    ("[score.prices]\nm = {input = -1, output = 2}\n", "input and output"),
    ("[score.prices]\nm = {input = 1}\n", "input and output"),
])
def test_bad_settings_name_the_file_and_the_setting(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as err:
        load_settings(path)
    assert str(path) in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "none.toml")


def test_two_processes_opening_a_new_database_at_once(tmp_path):
    """Both migrate the same fresh file at the same moment; neither fails, each migration runs once."""
    import subprocess
    import sys

    from .conftest import REPO

    path = tmp_path / "race.db"
    code = "import sys; from hitl import store; store.connect(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO, stderr=subprocess.PIPE)
             for _ in range(4)]
    errors = [p.communicate()[1].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    db = store.connect(path)
    assert [r["name"] for r in db["_migrations"].rows] == [name for name, _ in MIGRATIONS]
