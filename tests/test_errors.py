"""The one error map: every SDK, HTTP and backend failure reaches the user as one line that says
what to do, never a traceback; transient failures of batch polls are retried like sync calls."""
from __future__ import annotations

import sqlite3
import uuid

import pytest

from hitl.errors import AuthError, HitlError, RetryableError, StudioError
from hitl.score.backends.base import translate_error

from .fakes import FakeGemini, FakeOpenAI
from .fakes import behaviours as B
from .fakes.tcp_proxy import DyingProxy
from .test_labelstudio import Review
from .test_scoring import QWEN, Project, gemini_env, make_folder


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
    project = Project(tmp_path)
    for db_path in ("/proc/self/hitl.db", "/proc/hitl-no-such-folder/hitl.db"):
        line = one_line(project.run("--db", db_path, "score", "--model", "baseline", ok=False))
        assert db_path in line and "writable" in line


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
