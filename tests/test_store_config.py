"""The SQLite store and the settings file."""
from __future__ import annotations

from collections import Counter

import pytest

from hitl import store
from hitl.config import Settings, load_settings
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
    assert load_settings() == Settings()
    assert load_settings().select.threshold == 0.3
    path = tmp_path / "hitl.toml"
    path.write_text("[select]\nthreshold = 0.5\nspecies_max_share = 1\n[select.shares]\ngroup = 1\n")
    settings = load_settings(path)
    assert settings.select.threshold == 0.5
    assert settings.select.species_max_share == 1.0
    assert settings.select.shares == {"group": 1.0}
    assert settings.select.data_strip == Settings().select.data_strip == 0.05  # the rest keeps its defaults
    assert Settings().select.threshold == 0.3  # defaults are not mutated


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


def test_settings_are_typed_structs_nobody_writes_into(tmp_path):
    """A mistyped setting is an AttributeError (a type error to a checker), not a KeyError for a user;
    a command-line option makes a new section, it never writes into the one everybody shares."""
    import msgspec

    from hitl.config import Price, overridden

    settings = load_settings()
    assert settings.score.concurrency == 8 and settings.embed.concurrency == 16
    assert settings.score.prices["gemini-2.5-flash"] == Price(input=0.30, output=2.50)
    with pytest.raises(AttributeError):
        settings.score.concurency  # the typo is the test
    with pytest.raises(AttributeError):
        settings.score.concurrency = 32  # frozen
    faster = overridden(settings.score, concurrency=32, attempts=None)  # None: the option was not given
    assert (faster.concurrency, faster.attempts, settings.score.concurrency) == (32, 5, 8)
    with pytest.raises(TypeError, match="concurency"):
        overridden(settings.score, concurency=32)
    whole = msgspec.structs.replace(settings, score=faster)
    assert whole.score.concurrency == 32 and whole.select == settings.select and load_settings().score.concurrency == 8


def test_a_file_adds_prices_and_keeps_the_types(tmp_path):
    from hitl.config import Price

    path = tmp_path / "hitl.toml"
    path.write_text("[score]\nbatch_poll_seconds = 5\n[score.prices]\nmy-model = {input = 1, output = 2}\n"
                    "[serve]\nport = 9000\n")
    settings = load_settings(path)
    assert settings.score.prices["my-model"] == Price(input=1.0, output=2.0)
    assert settings.score.prices["gemini-2.5-pro"] == Price(input=1.25, output=10.0)  # added to, not replaced
    assert isinstance(settings.score.batch_poll_seconds, float) and settings.score.batch_poll_seconds == 5.0
    assert settings.serve.port == 9000 and settings.serve.host == "127.0.0.1"
    assert "my-model" not in Settings().score.prices  # the defaults are not touched


def _string_keyed_settings_reads(tree) -> list[int]:
    """Lines of ``settings[...]``, ``obj.settings[...]``, ``cfg[...]`` with a string key in ``tree``."""
    import ast

    def named(node) -> str | None:
        return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else None

    def reads_settings(node) -> bool:
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            if named(node) in ("settings", "cfg"):
                return True
            node = node.value
        return named(node) in ("settings", "cfg")

    return [node.lineno for node in ast.walk(tree)
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant)
            and isinstance(node.slice.value, str) and reads_settings(node.value)]


def test_no_setting_is_read_by_a_string_key():
    """The settings are handed through as typed structs (hitl.config): a reader names an attribute."""
    import ast

    from .conftest import REPO

    found = {}
    for path in sorted((REPO / "hitl").rglob("*.py")) + sorted((REPO / "scripts" / "bench").rglob("*.py")):
        lines = _string_keyed_settings_reads(ast.parse(path.read_text(encoding="utf-8")))
        if lines:
            found[str(path.relative_to(REPO))] = lines
    assert not found, f"read settings by attribute (settings.score.max_side), not by string key: {found}"
    assert _string_keyed_settings_reads(ast.parse('x = obj.settings["score"]["max_side"] + cfg["seed"]')) == [1, 1, 1]


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


def test_an_up_to_date_database_opens_without_the_write_lock(tmp_path, monkeypatch):
    """Another process holds the write lock (a long import, the webhook): opening the database,
    and a command that only reads, neither waits for it nor fails."""
    from hitl.store import db as store_db

    from .conftest import CliProject

    path = tmp_path / "h.db"
    store.connect(path).conn.close()
    holder = store.connect(path)
    holder.execute("BEGIN IMMEDIATE")
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_MS", 300)  # what waiting would look like, quickly
    try:
        db = store.connect(path)
        assert db["ratings"].count == 0
        listed = CliProject(path, {"HITL_DB": str(path)}).run("ratings")
        assert "No ratings yet." in listed.output
    finally:
        holder.execute("ROLLBACK")


def test_a_long_write_commits_part_by_part(tmp_path):
    db = store.connect(tmp_path / "h.db")
    other = store.connect(tmp_path / "h.db")
    seen_between: list[int] = []

    def write(part):
        if part[0] == 40:
            raise RuntimeError("the disk is gone")
        seen_between.append(other.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        db.conn.executemany("INSERT INTO images (image_id) VALUES (?)", [(f"{k}.jpg",) for k in part])
        return Counter(written=len(part))

    assert store.write_in_parts(db, list(range(40)), write, size=10) == Counter(written=40)
    assert seen_between == [0, 10, 20, 30]  # each part committed before the next began
    with pytest.raises(RuntimeError):
        store.write_in_parts(db, list(range(40, 60)), write, size=10)
    assert other.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 40  # earlier parts stay, the failed one not
    assert not db.conn.in_transaction


def test_m012_makes_one_decision_of_a_sheet_imported_under_two_names(tmp_path):
    """A database from before m012: the same curator's decision on the same image came in under two
    file names (counted twice); after it, one decision, the newest, with the other in the history."""
    from hitl.store.schema import MIGRATIONS

    path = tmp_path / "old.db"
    db = store.connect(path, migrate_schema=False)
    before = [(name, fn) for name, fn in MIGRATIONS if name < "m009"]
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT)")
    for name, fn in before:
        fn(db)
        db.execute("INSERT INTO _migrations VALUES (?, '2026-01-01')", [name])
    base = {"source": "sheet", "annotation_id": "ana|a.jpg", "image_id": "a.jpg", "annotator_id": "ana",
            "skipped": 0, "deleted": 0, "boxes": "[]", "via": "sheet", "received_at": "2026-02-01T00:00:00+00:00"}
    for project, stars, when in (("decisions.csv", 6, "2026-01-01T00:00:00+00:00"),
                                 ("decisions (copy).csv", 9, "2026-01-05T00:00:00+00:00")):
        row = {**base, "project": project, "stars": stars, "created_at": when, "updated_at": when}
        db["ratings"].insert(row)
        db["rating_history"].insert({**row, "change": "created"})
    db["ratings"].insert({**base, "project": "x.csv", "annotation_id": "ben|a.jpg", "annotator_id": "ben", "stars": 3})
    db.conn.commit()
    db = store.connect(path)
    rows = {r["annotation_id"]: r for r in db["ratings"].rows}
    assert {k: (r["project"], r["stars"]) for k, r in rows.items()} == {"ana|a.jpg": ("sheets", 9),
                                                                         "ben|a.jpg": ("sheets", 3)}
    history = [(r["project"], r["stars"], r["change"]) for r in db["rating_history"].rows_where(
        "annotation_id = 'ana|a.jpg' ORDER BY id")]
    assert history == [("sheets", 6, "created"), ("sheets", 9, "created"), ("sheets", 6, "merged")]


def test_a_command_closes_its_database_when_it_ends(tmp_path, sample_data):
    """The command's connection is closed as the command ends (click's call_on_close), not whenever
    the collector comes by: the write-ahead log is folded back into hitl.db at once, so a copy of
    hitl.db alone holds every commit, in a process that goes on (a notebook, a test) as after an exit."""
    from .conftest import CliProject

    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--images", str(sample_data / "images"),
                "-n", "3")
    assert (tmp_path / "h.db").is_file() and not (tmp_path / "h.db-wal").exists()
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "h.db").read_bytes())  # the database file alone
    assert store.connect(copy)["candidates"].count == 3
