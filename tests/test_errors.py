"""The one error map: every SDK, HTTP and backend failure reaches the user as one line that says
what to do, never a traceback; transient failures of batch polls are retried like sync calls."""
from __future__ import annotations

import errno
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

import click
import pytest

from hitl.errors import AuthError, HitlError, RetryableError, StudioError
from hitl.remote import translate_error

from .fakes import FakeGemini, FakeOpenAI
from .fakes import behaviours as B
from .fakes.tcp_proxy import DyingProxy
from .helpers.labelstudio import Review
from .helpers.scoring import QWEN, Project, gemini_env, make_folder


def one_line(result) -> str:
    """The error a command printed: exactly one line, no traceback."""
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.output
    return lines[0]


# ---- model providers ------------------------------------------------------------------------------

def test_a_503_during_a_batch_poll_is_retried_then_the_job_is_collected(tmp_path):
    make_folder(tmp_path / "photos", 3)
    with FakeGemini(batch_pending_polls=2) as server:
        server.batch_get_failures.extend([B.server_error(503), B.server_error(503)])
        project = Project(tmp_path, gemini_env(server))
        result = project.run("score", "--model", "gemini-2.5-flash", "--batch", "--images", str(tmp_path / "photos"))
        assert "3 scored, 0 failed of 3" in result.output
        assert not server.batch_get_failures  # both 503s were answered, and retried past
        assert server.count(kind="batch_get") >= 2 + 3  # the two failed polls, then pending, running, done
        job = next(project.db["batch_jobs"].rows)
        assert job["state"] == "JOB_STATE_SUCCEEDED" and job["collected_at"]


def test_a_batch_poll_that_keeps_failing_is_one_line_and_the_job_can_be_resumed(tmp_path):
    make_folder(tmp_path / "photos", 2)
    with FakeGemini(batch_pending_polls=1) as server:
        server.batch_get_failures.extend([B.server_error(503)] * 3)  # FAST_RETRIES: 3 attempts per call
        project = Project(tmp_path, gemini_env(server))
        line = one_line(project.run("score", "--model", "gemini-2.5-flash", "--batch", "--images",
                                    str(tmp_path / "photos"), ok=False))
        assert "HTTP 503" in line
        assert next(project.db["batch_jobs"].rows)["collected_at"] is None  # still open
        resumed = project.run("score", "--resume")
        assert "2 scored, 0 failed of 2" in resumed.output


@pytest.mark.parametrize("batch", [False, True])
def test_a_401_from_gemini_is_one_line_naming_the_key(tmp_path, batch):
    make_folder(tmp_path / "photos", 3)
    with FakeGemini(api_key="right-key", bad_key_status=401) as server:
        project = Project(tmp_path, {"GEMINI_API_KEY": "wrong-key", "HITL_GEMINI_BASE_URL": server.url})
        args = ["score", "--model", "gemini-2.5-flash", "--images", str(tmp_path / "photos")]
        line = one_line(project.run(*args, *(["--batch"] if batch else []), ok=False))
        assert "401" in line and "GEMINI_API_KEY" in line
        assert project.db["scores"].count == 0


def test_a_401_from_an_openai_compatible_server_is_one_line_naming_the_key(tmp_path):
    make_folder(tmp_path / "photos", 3)
    with FakeOpenAI(default=B.auth_error(401)) as server:
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        line = one_line(project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"), ok=False))
        assert "401" in line and "HITL_OPENAI_API_KEY" in line


def test_translate_error_maps_foreign_exceptions():
    import httpx

    assert isinstance(translate_error(httpx.ConnectError("refused")), RetryableError)
    assert translate_error(httpx.ReadTimeout("slow")).kind == "timeout"
    assert isinstance(translate_error(ValueError("odd")), HitlError)
    auth = AuthError("no")
    assert translate_error(auth) is auth


# ---- the store ------------------------------------------------------------------------------------

def test_a_database_in_a_read_only_folder_is_one_line(tmp_path):
    # /proc refuses new files even to root, where a chmod'ed folder would not
    line = one_line(Project(tmp_path).run("--db", "/proc/self/hitl.db", "score", "--model", "baseline", "--images",
                                          str(tmp_path), ok=False))
    assert "/proc/self/hitl.db" in line and "writable" in line


def test_a_database_in_a_folder_that_does_not_exist_is_one_line_and_no_folder_is_made(tmp_path, sample_data):
    project = Project(tmp_path)
    for db_path in (tmp_path / "typo" / "deeper" / "hitl.db", Path("/proc/hitl-no-such-folder/hitl.db")):
        for args in (["ratings"], ["ratings", "--import", str(sample_data / "decisions.csv")]):
            line = one_line(project.run("--db", str(db_path), *args, ok=False))
            assert f"the folder {db_path.parent} of the database" in line and "does not exist" in line, line
            assert "create it, or fix --db" in line, line
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize("exc, says", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/heroes/manifest.json"), "the disk is full"),
    (PermissionError(errno.EACCES, "Permission denied", "/srv/heroes"), "permissions"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "a/b"), "a file stands where a folder is needed"),
    (OSError(errno.EROFS, "Read-only file system", "/mnt/card/x.csv"), "read-only"),
])
def test_an_os_error_is_one_line_naming_the_path_and_the_fix(exc, says):
    from hitl.cli.context import os_error_line

    line = os_error_line(exc)
    assert line.startswith(f"{exc.filename}: {exc.strerror}; ") and says in line and "\n" not in line


def test_a_file_that_is_not_a_database_is_one_line(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_bytes(b"this is not SQLite, just some notes" * 100)
    line = one_line(Project(tmp_path).run("--db", str(bad), "ratings", ok=False))
    assert str(bad) in line
    with pytest.raises(sqlite3.DatabaseError):  # and the file is untouched: still not a database
        sqlite3.connect(bad).execute("SELECT * FROM sqlite_master").fetchall()


# ---- Label Studio -----------------------------------------------------------------------------------

def test_label_studio_stopping_in_the_middle_of_a_push(tmp_path, label_studio):
    review = Review(tmp_path, label_studio, n=10)
    title = f"dies mid-push {uuid.uuid4().hex[:6]}"
    port = int(label_studio.url.rsplit(":", 1)[1])
    with DyingProxy(port, rb"POST /api/projects/\d+/import", after=1) as proxy:
        result = review.run("push", "--url", proxy.url, "--project", title, "--batch-size", "4",
                            "--document-root", str(label_studio.document_root), ok=False)
        assert proxy.dead.is_set()
    line = one_line(result)
    assert "lost Label Studio" in line and "rerun" in line
    project = review.project(title)
    assert project.task_number == 4  # the first batch landed ...
    assert review.db["ls_tasks"].count_where("project_id = ?", [project.id]) == 4  # ... and is mapped
    again = review.push(title, "--batch-size", "4")
    assert "6 tasks pushed, 4 already there" in again.output
    assert review.project(title).task_number == 10


def test_label_studio_unreachable_or_refusing_the_token_is_one_line(tmp_path, label_studio):
    project = Project(tmp_path, {"LABEL_STUDIO_API_KEY": "not-the-token"})
    refused = one_line(project.run("sync", "--url", label_studio.url, "--project", "x", ok=False))
    assert "refused the token" in refused and "LABEL_STUDIO_API_KEY" in refused
    with DyingProxy(1, b"") as proxy:  # a port that refuses connections
        url = proxy.url
    gone = one_line(project.run("sync", "--url", url, "--project", "x", ok=False))
    assert "lost Label Studio" in gone and "hitl studio" in gone


def test_studio_errors_keeps_our_own_errors():
    from hitl.review.client import studio_errors

    with pytest.raises(StudioError, match="refused"):
        with studio_errors("http://x", "doing it"):
            from label_studio_sdk.core.api_error import ApiError

            raise ApiError(status_code=500, body={"detail": "boom"})
    with pytest.raises(HitlError, match="ours"):
        with studio_errors("http://x", "doing it"):
            raise HitlError("ours")


def test_the_client_maps_each_call_to_label_studio_and_nothing_else():
    """hitl.review.client.StudioClient, as httpx maps its transport's errors: around each call (and
    each lazily read page) only. What the caller does with an answer is its own business."""
    from types import SimpleNamespace

    import httpx
    from label_studio_sdk.core.api_error import ApiError
    from label_studio_sdk.core.parse_error import ParsingError

    from hitl.review.client import StudioClient
    from hitl.review.reconcile import task_gone

    def fail(exc):
        def call(**_kwargs):
            raise exc
        return call

    def pages():
        yield SimpleNamespace(id=1)
        raise httpx.ReadError("connection reset by peer")

    sdk = SimpleNamespace(
        projects=SimpleNamespace(list=lambda **_: [SimpleNamespace(id=3, title="t")],
                                 create=fail(ApiError(status_code=400, body={"detail": "bad config"}))),
        users=SimpleNamespace(whoami=fail(ApiError(status_code=200, body="<html>a proxy's page</html>"))),
        webhooks=SimpleNamespace(list=fail(ParsingError(status_code=200, body={}, cause=ValueError("no id")))),
        tasks=SimpleNamespace(list=lambda **_: pages(), get=fail(ApiError(status_code=404, body={"detail": "gone"}))))
    client = StudioClient(sdk, "http://ls")
    assert [p.id for p in client.projects.list(title="t")] == [3]
    with pytest.raises(StudioError, match=r"refused calling projects.create\(title='x'\) \(HTTP 400: bad config\)") as refused:
        client.projects.create(title="x")
    assert (refused.value.status, refused.value.detail) == (400, "bad config")
    for call in (client.users.whoami, lambda: client.webhooks.list(project="3")):
        with pytest.raises(StudioError, match="not Label Studio's JSON"):
            call()
    listing = client.tasks.list(project=3)
    with pytest.raises(StudioError, match=r"lost Label Studio at http://ls while calling tasks.list\(project=3\)"):
        list(listing)  # the second page is fetched while it is read
    assert task_gone(client, 8)  # a 404 proves the task gone; its StudioError says so
    sdk.tasks.get = fail(ApiError(status_code=500, body={"detail": "boom"}))
    with pytest.raises(StudioError, match="HTTP 500"):
        task_gone(client, 8)  # anything else proves nothing


@pytest.mark.parametrize("args", [["--batch"], ["--cancel", "batches/abc"], []])
def test_gemini_without_a_network_is_one_line_and_marks_nothing(tmp_path, args):
    make_folder(tmp_path / "photos", 2)
    with FakeGemini() as server:
        gone = server.url  # closed when the block ends: connections are refused from here on
    project = Project(tmp_path, {"GEMINI_API_KEY": "k", "HITL_GEMINI_BASE_URL": gone})
    line = one_line(project.run("score", "--model", "gemini-2.5-flash", "--images", str(tmp_path / "photos"),
                                *args, ok=False))
    assert "cannot reach Gemini" in line
    assert project.db["scores"].count == 0


# ---- every command: a database another process holds, an output it cannot write -------------------

LABEL_STUDIO_GONE = ["--url", "http://127.0.0.1:9"]  # the discard port: nothing listens there


@pytest.fixture(scope="module")
def full_project(tmp_path_factory, sample_data):
    """A database with candidates, baseline scores, 20 of the sample sheet's decisions (too few to
    learn from: `learn` stops at once) and a learned rater's predictions, stored as `hitl learn`
    stores them (fitting one takes minutes on a busy machine)."""
    base = tmp_path_factory.mktemp("every-command")
    project = Project(base)
    project.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                "--images", str(sample_data / "images"), "-n", "60")
    project.run("score", "--model", "baseline")
    sheet = base / "decisions.csv"
    sheet.write_text("".join((sample_data / "decisions.csv").read_text().splitlines(keepends=True)[:21]))
    project.run("ratings", "--import", str(sheet))
    with closing(sqlite3.connect(project.db_path)) as conn:
        conn.execute("INSERT INTO scores (image_id, model, prompt_version, status, score, hero, raw_response, "
                     "created_at) SELECT image_id, 'learned', 'v1', status, score, hero, '{\"p_hero\": 0.4}', "
                     "created_at FROM scores WHERE model = 'baseline'")
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # all of it in the one file copied below
    return project.db_path


def command_lines(tmp_path, sample_data) -> dict[str, tuple[list[str], str]]:
    """Every command (and the variants that write), with minimal valid arguments, and what its one
    line may say besides the lock (the Label Studio ones find none here)."""
    from hitl.review.studio import free_port

    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    decided = tmp_path / "decided"  # one decision: `labelme import` has something to write
    decided.mkdir(exist_ok=True)
    (decided / "x.json").write_text('{"shapes": [], "imagePath": "x.jpg", "flags": {"hero": true}}')
    out = str(tmp_path / "out")
    return {
        "select": (["select", "--md", str(sample_data / "md_results.json"), "--images", str(sample_data / "images"),
                    "-n", "3"], ""),
        "score": (["score", "--model", "baseline", "--images", str(sample_data / "images")], ""),
        "embed": (["embed", "--model", "baseline"], ""),
        "studio": (["studio"], "LABEL_STUDIO_BIN"),
        "push": (["push", *LABEL_STUDIO_GONE], "Label Studio"),
        "labelme export": (["labelme", "export", "--out", out], ""),
        "labelme import": (["labelme", "import", str(decided)], ""),
        "serve": (["serve", "--insecure", "--port", str(free_port())], ""),
        "sync": (["sync", "--labelme", str(empty)], ""),
        "ratings": (["ratings"], ""),
        "ratings --import": (["ratings", "--import", str(sample_data / "decisions.csv")], ""),
        "replay": (["replay"], ""),
        "learn": (["learn"], "curator decisions"),
        "next": (["next", "-n", "2", "--dry-run"], ""),
        "similar": (["similar", "--heroes", "-n", "2"], "image vectors"),
        "compare": (["compare", *LABEL_STUDIO_GONE], "Label Studio"),
        "report": (["report", "--out", out, "--resamples", "0"], ""),
        "queue": (["queue", *LABEL_STUDIO_GONE], "Label Studio"),
        "gallery": (["gallery", "--out", out], ""),
        "export": (["export", "--out", out], ""),
        "vllm": (["vllm", "--print", "--assume", "1x24"], ""),
    }


def command_paths() -> dict[str, click.Command]:
    """Every command of `hitl`, a group's as "group sub"."""
    from hitl.cli import cli

    paths = {}
    for name, command in cli.commands.items():
        if isinstance(command, click.Group):
            paths.update({f"{name} {sub}": c for sub, c in command.commands.items()})
        else:
            paths[name] = command
    return paths


def test_the_tables_below_have_every_command(tmp_path, sample_data):
    assert set(COMMANDS) == set(command_lines(tmp_path, sample_data))
    named = {key for key in COMMANDS if not key.split()[-1].startswith("-")}
    assert named == set(command_paths()), "add the new command to command_lines (and OUTPUTS if it writes files)"
    writing = {path for path, command in command_paths().items()
               if any(opt in ("--out", "--export") for p in command.params for opt in getattr(p, "opts", []))}
    assert writing == {key.split(" --")[0] for key in OUTPUTS}, "add the command's output to OUTPUTS"


COMMANDS = ["select", "score", "embed", "studio", "push", "labelme export", "labelme import", "serve", "sync", "ratings",
            "ratings --import", "replay", "learn", "next", "similar", "compare", "report", "queue", "gallery",
            "export", "vllm"]


@pytest.fixture
def locked(full_project, tmp_path, monkeypatch):
    """A copy of the full project whose write lock another connection holds (BEGIN IMMEDIATE), with
    a busy timeout of 0.01 s instead of 10 (the lock is held throughout: any wait at all ends busy, and
    each command that writes waits it out); the Label Studio binary missing, `serve` not serving."""
    import shutil

    from label_studio_sdk.core import http_client

    from hitl.review import server
    from hitl.store import db as store_db

    shutil.copy(full_project, tmp_path / "h.db")
    monkeypatch.setattr(store_db, "BUSY_TIMEOUT_MS", 10)
    # nothing listens at LABEL_STUDIO_GONE: the SDK's two backoffs (~3 s a command) are not waited
    monkeypatch.setattr(http_client, "_retry_timeout_from_retries", lambda retries: 0.0)
    monkeypatch.setattr(server, "serve", lambda *a, **k: None)  # `serve` reaches the database, then returns
    holder = sqlite3.connect(tmp_path / "h.db", timeout=0)
    holder.execute("BEGIN IMMEDIATE")
    yield Project(tmp_path, {"LABEL_STUDIO_BIN": str(tmp_path / "no-label-studio"), "LABEL_STUDIO_API_KEY": "k",
                             "HITL_WEBHOOK_SECRET": None})
    holder.rollback()
    holder.close()


# commands that must write to do their work: they meet the lock whenever it is held
WRITERS = {"select", "score", "embed", "labelme import", "ratings --import"}


def said_in_one_line(result, why: str = "") -> str | None:
    """Success (None), or the one line (no traceback) saying the database is busy, or ``why``."""
    assert "Traceback" not in result.output, result.output
    if result.exit_code == 0:
        return None
    line = one_line(result)
    assert "is busy" in line or (why and why in line), line
    return line


@pytest.mark.parametrize("key", COMMANDS)
@pytest.mark.parametrize("lock_at", ["open", "write"])
def test_every_command_says_a_locked_database_is_busy(locked, tmp_path, sample_data, monkeypatch, key, lock_at):
    if lock_at == "write":
        # the lock taken after the database was opened (another process began meanwhile): the
        # command's own first write meets it
        from hitl.store import db as store_db

        monkeypatch.setattr(store_db, "migrate", lambda db: [])
    args, why = command_lines(tmp_path, sample_data)[key]
    line = said_in_one_line(locked.run(*args, ok=False), why)
    if key in WRITERS:
        assert line is not None and "is busy" in line and str(tmp_path / "h.db") in line, line
        assert "another process" in line and "try again" in line, line


# (name, arguments with {out} for the output path); the name starts with the command's
OUTPUTS = {
    "select --out": ["select", "--md", "{md}", "--images", "{images}", "-n", "3", "--out", "{out}/c.csv"],
    "score --export": ["score", "--model", "baseline", "--export", "{out}/scores.json"],
    "labelme export --out": ["labelme", "export", "--out", "{out}"],
    "next --out": ["next", "-n", "2", "--dry-run", "--out", "{out}/next.csv"],
    "similar --out": ["similar", "{image}", "-n", "2", "--out", "{out}/similar.csv"],
    "report --out": ["report", "--out", "{out}", "--resamples", "0"],
    "gallery --out": ["gallery", "--out", "{out}"],
    "export --out": ["export", "--out", "{out}"],
    "export --out (crops)": ["export", "--format", "crops", "--out", "{out}"],
    "export --out (camtrap-dp)": ["export", "--format", "camtrap-dp", "--out", "{out}", "--deployments",
                                  "{deployments}"],
}


@pytest.mark.parametrize("key", list(OUTPUTS))
@pytest.mark.parametrize("where", ["a file in the way", "nothing can be made there", "nothing can be written there"])
def test_every_output_that_cannot_be_written_is_one_line(full_project, tmp_path, sample_data, key, where):
    import shutil

    shutil.copy(full_project, tmp_path / "h.db")
    (tmp_path / "a-file").write_text("not a folder")
    out = {"a file in the way": tmp_path / "a-file" / "sub", "nothing can be made there": Path("/proc/hitl-out"),
           "nothing can be written there": Path("/proc")}[where]
    values = {"out": str(out), "md": str(sample_data / "md_results.json"), "images": str(sample_data / "images"),
              "deployments": str(sample_data / "deployments.csv")}
    if key.startswith("similar"):  # a search gets as far as its output only with vectors
        values["image"] = with_vectors(tmp_path / "h.db")
    args = [arg.format(**values) for arg in OUTPUTS[key]]
    line = one_line(Project(tmp_path).run(*args, ok=False))
    assert str(out) in line, line


def with_vectors(db_path: Path) -> str:
    """Random unit vectors of the candidates in the store at ``db_path`` (a model of its own, as
    `hitl embed` stores them); the first candidate's id."""
    import numpy as np

    from hitl import store
    from hitl.store.embeddings import embedding_row, unit_float16, write_embeddings

    db = store.connect(db_path)
    ids = [row[0] for row in db.execute("SELECT image_id FROM candidates ORDER BY image_id")]
    rng = np.random.default_rng(0)
    with store.transaction(db):
        write_embeddings(db, [embedding_row(i, "random-8", "/", vector=unit_float16(rng.standard_normal(8)))
                              for i in ids])
    db.conn.close()
    return ids[0]


CREATE_A_DATABASE = {"select", "score", "studio", "labelme import", "serve", "sync", "ratings --import"}
USE_NO_DATABASE = {"vllm"}  # makes none either: tests/test_vllm.py


@pytest.mark.parametrize("key", sorted(set(COMMANDS) - CREATE_A_DATABASE - USE_NO_DATABASE))
def test_a_command_that_only_reads_makes_no_empty_database(tmp_path, sample_data, key):
    db_path = tmp_path / "mistyped.db"
    args, _ = command_lines(tmp_path, sample_data)[key]
    line = one_line(Project(tmp_path).run("--db", str(db_path), *args, ok=False))
    assert f"there is no database at {db_path}" in line and "hitl select" in line, line
    assert not db_path.exists()


def test_the_commands_that_bring_data_in_still_make_a_database(tmp_path, sample_data):
    project = Project(tmp_path)
    made = []
    for args in (["ratings", "--import", str(sample_data / "decisions.csv")], ["labelme", "import", str(tmp_path)],
                 ["score", "--model", "baseline", "--images", str(sample_data / "images" / "cam_a")],
                 ["select", "--md", str(sample_data / "md_results.json"), "--images", str(sample_data / "images"),
                  "-n", "2"]):
        db_path = tmp_path / f"new-{len(made)}.db"
        project.run("--db", str(db_path), *args)
        made.append(db_path.exists())
    assert all(made)


def test_an_export_into_a_folder_that_takes_no_file_is_refused_before_it_reads_the_folder(full_project, tmp_path,
                                                                                         monkeypatch):
    """`export --out /proc` listed everything under /proc (the files an export did not write, to
    name them) before its first write failed: 85 s in a test run with Label Studio's threads there."""
    import shutil

    from hitl.publish import heroset

    def listed(*_args):
        raise AssertionError("the folder was listed")
    monkeypatch.setattr(heroset, "_leftovers", listed)
    shutil.copy(full_project, tmp_path / "h.db")
    line = one_line(Project(tmp_path).run("export", "--out", "/proc", ok=False))
    assert "nothing can be written in /proc" in line, line
