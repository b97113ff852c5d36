"""`hitl score`: the real google-genai and openai clients against local servers that speak their
protocols, including their failures. No network, no model weights."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from hitl import store
from hitl.score.verdict import ParseError, parse_verdict

from .conftest import REPO, _default_signals, descendants, still_running
from .fakes import FakeGemini, FakeOpenAI
from .fakes import behaviours as B
from .helpers.scoring import FAST_RETRIES, QWEN, Project, gemini_env, make_folder, sent_hash

# ---- parsing ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, score", [
    ('{"score": 7.5, "hero": true, "reasoning": "Sharp."}', 7.5),
    ('```json\n{"score": 6, "hero": false, "reasoning": "ok"}\n```', 6.0),
    ('Here is my rating:\n{"score": "8", "hero": "true", "reasoning": "Nice"} Hope that helps!', 8.0),
    ('{"score": 0, "hero": false, "reasoning": "blank", "tags": ["empty"]}', 0.0),
])
def test_parse_verdict_is_defensive(text, score):
    assert parse_verdict(text).score == score


@pytest.mark.parametrize("text, reason", [
    ('{"score": 14, "hero": true, "reasoning": "x"}', "score out of range"),
    ('{"score": -1, "hero": true, "reasoning": "x"}', "score out of range"),
    ('{"hero": true, "reasoning": "x"}', "score missing"),
    ('{"score": "high", "hero": true}', "score not a number"),
    ('{"score": true, "hero": true}', "score not a number"),
    ('{"score": 5, "reasoning": "x"}', "hero missing or not a boolean"),
    ("I would give it an 8.", "no JSON object in the answer"),
    ('{"score": 5, "hero": tr', "no JSON object in the answer"),
    ("", "empty answer"),
])
def test_parse_verdict_failures(text, reason):
    with pytest.raises(ParseError) as err:
        parse_verdict(text)
    assert err.value.reason == reason


# ---- OpenAI-compatible servers -------------------------------------------------------------------

def test_openai_success_structured_output_tokens_and_resume(tmp_path):
    paths = make_folder(tmp_path / "photos", 5)
    with FakeOpenAI(prompt_tokens=900, completion_tokens=40) as server:
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        result = project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        assert "5 scored, 0 failed of 5" in result.output
        rows = project.scores(QWEN)
        assert len(rows) == 5 and all(r["status"] == "ok" and r["score"] == 7.5 for r in rows.values())
        assert all(r["tokens_in"] == 900 and r["tokens_out"] == 40 and r["prompt_version"] == "hero-v1"
                   for r in rows.values())
        # structured output is requested as a JSON schema, the image as a data URL
        formats = server.response_formats()
        assert formats and formats[0]["type"] == "json_schema"
        assert set(formats[0]["json_schema"]["schema"]["required"]) == {"score", "hero", "reasoning"}
        assert {sent_hash(p) for p in paths} == set(server.image_counts())
        # a rerun calls nothing again
        again = project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        assert "Nothing to score" in again.output and server.count_generate() == 5


def test_openai_several_base_urls_share_the_work(tmp_path):
    make_folder(tmp_path / "photos", 8)
    with FakeOpenAI() as one, FakeOpenAI() as two:
        project = Project(tmp_path)
        project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"),
                    "--base-url", one.url, "--base-url", two.url + "/v1")
        assert one.count_generate() == 4 and two.count_generate() == 4


def test_429_with_retry_after_is_honoured(tmp_path):
    paths = make_folder(tmp_path / "photos", 1)
    with FakeOpenAI() as server:
        # 0.4 s: eight times the most FAST_RETRIES' own backoff waits (0.05 s), so waiting it is honouring it
        server.script(B.rate_limited(retry_after=0.4))
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        started = time.monotonic()
        project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        elapsed = time.monotonic() - started
        row = project.scores(QWEN)["cam/img_000.jpg"]
        assert row["status"] == "ok" and row["attempts"] == 2
        assert server.count_for(sent_hash(paths[0])) == 2
        assert elapsed >= 0.4  # waited as the server asked, not the 10 ms base backoff


def test_500_then_success_and_timeout_then_success(tmp_path):
    paths = make_folder(tmp_path / "photos", 2)
    with FakeOpenAI() as server:
        server.on_image(sent_hash(paths[0]), B.server_error(500), B.server_error(503))
        server.on_image(sent_hash(paths[1]), B.slow(3.0))  # longer than the timeout
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        # the first call to paths[1] waits the whole timeout: 0.5 s, not FAST_RETRIES' 1 s
        project.config.write_text(FAST_RETRIES.replace("timeout_seconds = 1.0", "timeout_seconds = 0.5"))
        project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        rows = project.scores(QWEN)
        assert rows["cam/img_000.jpg"]["status"] == "ok" and rows["cam/img_000.jpg"]["attempts"] == 3
        assert rows["cam/img_001.jpg"]["status"] == "ok" and rows["cam/img_001.jpg"]["attempts"] == 2


def test_retries_run_out_and_are_recorded(tmp_path):
    make_folder(tmp_path / "photos", 1)
    with FakeOpenAI(default=B.server_error(502)) as server:
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        result = project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"), ok=False)
        row = project.scores(QWEN)["cam/img_000.jpg"]
        assert row["status"] == "failed" and row["error_kind"] == "http 502" and row["attempts"] == 3
        assert "after 3 attempts" in row["error"] and "http 502" in result.output
        assert server.count_generate() == 3
        # every image failed: no success; and a 502 is transient, so the next run tries it again
        assert result.exit_code == 1 and "every image of this run failed" in result.output
        server.default = B.answer(7.0, True, "fine now")
        again = project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        assert "1 scored, 0 failed of 1" in again.output
        assert project.scores(QWEN)["cam/img_000.jpg"]["status"] == "ok"


def test_an_unreachable_server_fails_fast_then_a_reachable_one_scores_everything(tmp_path):
    make_folder(tmp_path / "photos", 3)
    with FakeOpenAI() as server:
        url = server.url
    project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": url})  # nothing listens there now
    started = time.monotonic()
    refused = project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"), ok=False)
    assert time.monotonic() - started < 15 and refused.exit_code == 1
    assert "cannot reach" in refused.output and "Traceback" not in refused.output
    assert project.db["scores"].count == 0  # nothing marked failed
    with FakeOpenAI() as server:
        project.env["HITL_OPENAI_BASE_URL"] = server.url
        result = project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        assert "3 scored, 0 failed of 3" in result.output


def test_transient_failures_are_retried_next_run_permanent_ones_wait(tmp_path):
    paths = make_folder(tmp_path / "photos", 2)
    with FakeOpenAI() as server:
        server.on_image(sent_hash(paths[0]), *[B.server_error(503)] * 3)  # transient, after the retries
        server.on_image(sent_hash(paths[1]), *[B.not_json()] * 3)  # the answer itself is bad: permanent
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"), ok=False)
        calls = server.count_generate()
        second = project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        assert server.count_generate() == calls + 1  # only the 503 image was called again
        assert "1 scored, 0 failed of 1" in second.output
        rows = project.scores(QWEN)
        assert rows["cam/img_000.jpg"]["status"] == "ok" and rows["cam/img_001.jpg"]["error_kind"].startswith("parse")


def test_malformed_model_output_is_a_recorded_parse_failure(tmp_path):
    paths = make_folder(tmp_path / "photos", 5)
    with FakeOpenAI() as server:
        for path, behaviour in zip(paths, [B.not_json(), B.fenced_json(6.0), B.score_out_of_range(14),
                                           B.missing_score(), B.truncated_json()]):
            server.on_image(sent_hash(path), behaviour)
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        result = project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        rows = project.scores(QWEN)
        assert rows["cam/img_001.jpg"]["status"] == "ok" and rows["cam/img_001.jpg"]["score"] == 6.0
        kinds = {k: r["error_kind"] for k, r in rows.items() if r["status"] == "failed"}
        assert kinds == {"cam/img_000.jpg": "parse: no JSON object in the answer",
                         "cam/img_002.jpg": "parse: score out of range",
                         "cam/img_003.jpg": "parse: score missing",
                         "cam/img_004.jpg": "parse: no JSON object in the answer"}
        assert "lovely photo of a deer" in rows["cam/img_000.jpg"]["raw_response"]  # raw text kept
        assert server.count_generate() == 5  # a bad answer is not paid for again automatically
        assert "parse: score out of range" in result.output
        # --retry-failed reruns the four failures, and only them
        project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"), "--retry-failed")
        assert server.count_generate() == 9
        assert all(r["status"] == "ok" for r in project.scores(QWEN).values())


def test_a_malformed_completion_is_a_recorded_failure_not_a_crash(tmp_path):
    # the answer's JSON is read by hand (not through the SDK's models): whatever its shape, each
    # image gets a recorded failure with its reason and the run goes on
    paths = make_folder(tmp_path / "photos", 5)
    with FakeOpenAI() as server:
        for path, body in zip(paths, [{"choices": []}, [1, 2], {"choices": [{"message": None, "finish_reason": "length"}]},
                                      "this is no JSON"]):
            server.on_image(sent_hash(path), B.raw(200, body))
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        result = project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        assert "1 scored, 4 failed of 5" in result.output
        rows = project.scores(QWEN)
        assert rows["cam/img_004.jpg"]["status"] == "ok" and rows["cam/img_004.jpg"]["score"] == 7.5
        assert all(rows[f"cam/img_00{k}.jpg"]["error_kind"].startswith("parse: ") for k in range(3))
        assert rows["cam/img_002.jpg"]["error"] == "no answer (finish reason length)"
        assert rows["cam/img_003.jpg"]["error_kind"] == "bad response"


def test_auth_error_stops_the_run_at_once(tmp_path):
    # small photos: what is shown is how many of the 40 are ever sent, not how they are prepared
    make_folder(tmp_path / "photos", 40, size=(256, 192))
    with FakeOpenAI(default=B.auth_error(401)) as server:
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        result = project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"), "--concurrency", "4",
                             ok=False)
        assert result.exit_code == 1
        assert "authentication or permission error" in result.output and "HITL_OPENAI_API_KEY" in result.output
        assert server.count_generate() <= 4  # at most the calls already in flight, never 40
        assert project.db["scores"].count == 0  # nothing recorded: a rerun with the right key does them all
        run = next(project.db["score_runs"].rows)
        assert run["status"] == "stopped"


# ---- Gemini ---------------------------------------------------------------------------------------


def test_gemini_sync_with_usage_cost_and_schema(tmp_path):
    paths = make_folder(tmp_path / "photos", 3)
    with FakeGemini(prompt_tokens=600, completion_tokens=100, thoughts_tokens=20, api_key="test-key") as server:
        server.on_image(sent_hash(paths[2]), B.rate_limited(retry_after=0.2))
        project = Project(tmp_path, gemini_env(server))
        result = project.run("score", "--model", "gemini-2.5-flash", "--images", str(tmp_path / "photos"))
        rows = project.scores("gemini-2.5-flash")
        assert all(r["status"] == "ok" for r in rows.values())
        assert rows["cam/img_002.jpg"]["attempts"] == 2
        one = rows["cam/img_000.jpg"]
        assert one["tokens_in"] == 600 and one["tokens_out"] == 120  # thinking tokens are billed as output
        assert one["cost_usd"] == pytest.approx((600 * 0.30 + 120 * 2.50) / 1e6)
        assert "estimated cost $" in result.output and "Tokens: 1,800 in, 360 out" in result.output
        body = server.calls(kind="generate")[0].json
        config = body["generationConfig"]
        assert config["responseMimeType"] == "application/json" and "responseSchema" in config
        # google-genai 3.4 writes this field in snake case; the API reads both spellings
        assert config["thinkingConfig"] in ({"thinkingBudget": 0}, {"thinking_budget": 0})


def test_gemini_bad_key_stops_and_max_cost_refuses(tmp_path):
    make_folder(tmp_path / "photos", 10)
    with FakeGemini(api_key="right-key", bad_key_status=400) as server:
        project = Project(tmp_path, {"GEMINI_API_KEY": "wrong", "HITL_GEMINI_BASE_URL": server.url})
        refused = project.run("score", "--model", "gemini-2.5-flash", "--images", str(tmp_path / "photos"),
                              "--max-cost", "0.0001", ok=False)
        assert "above --max-cost" in refused.output and server.count_generate() == 0
        stopped = project.run("score", "--model", "gemini-2.5-flash", "--images", str(tmp_path / "photos"),
                              "--concurrency", "2", ok=False)
        assert "authentication or permission error" in stopped.output and server.count_generate() <= 2
    missing = Project(tmp_path / "nokey").run("score", "--model", "gemini-2.5-flash", "--images",
                                             str(tmp_path / "photos"), ok=False)
    assert "GEMINI_API_KEY" in missing.output


def test_gemini_batch_matches_results_by_key(tmp_path):
    paths = make_folder(tmp_path / "photos", 6)
    with FakeGemini(batch_shuffle=True, batch_error_keys={"cam/img_004.jpg"}, batch_pending_polls=2) as server:
        server.on_image(sent_hash(paths[1]), B.score_out_of_range(12))
        for k, path in enumerate(paths):
            if k != 1:
                server.on_image(sent_hash(path), B.answer(float(k), k >= 3, f"image {k}"))
        project = Project(tmp_path, gemini_env(server))
        result = project.run("score", "--model", "gemini-2.5-flash", "--batch", "--images", str(tmp_path / "photos"))
        rows = project.scores("gemini-2.5-flash")
        for k in (0, 2, 3, 5):  # each result landed on its own image although the file was shuffled
            assert rows[f"cam/img_{k:03d}.jpg"]["score"] == float(k)
            assert rows[f"cam/img_{k:03d}.jpg"]["reasoning"] == f"image {k}"
        assert rows["cam/img_001.jpg"]["error_kind"] == "parse: score out of range"
        assert rows["cam/img_004.jpg"]["status"] == "failed" and rows["cam/img_004.jpg"]["error_kind"].startswith("batch error")
        assert all(r["batch_job"] for r in rows.values())
        assert server.count_generate() == 0  # no sync call: all went through the batch
        job = next(project.db["batch_jobs"].rows)
        assert job["state"] == "JOB_STATE_SUCCEEDED" and job["collected_at"] and job["n_requests"] == 6
        assert "Batch job: batches/" in result.output
        assert rows["cam/img_000.jpg"]["cost_usd"] == pytest.approx((1290 * 0.30 + 38 * 2.50) / 1e6 * 0.5)


def test_gemini_batch_cancel(tmp_path):
    make_folder(tmp_path / "photos", 2)
    with FakeGemini(batch_pending_polls=1000) as server:
        project = Project(tmp_path, gemini_env(server))
        db = project.db
        from hitl.config import load_settings
        from hitl.score.backends import make_backend
        from hitl.score.batch import submit_batch
        from hitl.score.targets import Target

        settings = load_settings(project.config)
        backend = make_backend("gemini-2.5-flash", settings, env=project.env)
        targets = [Target(f"cam/img_{k:03d}.jpg", tmp_path / "photos" / f"cam/img_{k:03d}.jpg") for k in (0, 1)]
        summary = submit_batch(db, backend, targets, settings, prompt_version="hero-v1", db_path=project.db_path)
        result = project.run("score", "--cancel", summary.batch_job)
        assert "JOB_STATE_CANCELLED" in result.output
        assert server.batch(summary.batch_job).job_state == "JOB_STATE_CANCELLED"
        assert project.run("score", "--resume").output.strip() == "No batch job to resume."


def _wait(predicate, timeout=20.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def _spawn(project: Project, *args: str) -> subprocess.Popen:
    env = {**os.environ, **{k: v for k, v in project.env.items() if v is not None}, "PYTHONPATH": str(REPO)}
    for key in [k for k, v in project.env.items() if v is None]:
        env.pop(key, None)
    return subprocess.Popen([sys.executable, "-m", "hitl", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_default_signals)


def test_batch_resumed_after_the_submitting_process_died(tmp_path):
    make_folder(tmp_path / "photos", 4)
    with FakeGemini(batch_pending_polls=10_000) as server:
        project = Project(tmp_path, gemini_env(server))
        proc = _spawn(project, "score", "--model", "gemini-2.5-flash", "--batch", "--images", str(tmp_path / "photos"))

        def submitted():
            if not project.db_path.exists():
                return False
            rows = list(store.connect(project.db_path).query(
                "SELECT name FROM batch_jobs WHERE name LIKE 'batches/%'"))
            return bool(rows)
        assert _wait(submitted), "the batch was never recorded"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert project.db["scores"].count == 0
        name = next(project.db.query("SELECT name FROM batch_jobs"))["name"]
        server.set_batch_state(name, "SUCCEEDED")
        # a new process, a new client: finds the job in SQLite and collects it
        result = project.run("score", "--resume")
        assert "4 scored, 0 failed of 4" in result.output
        assert len(project.scores("gemini-2.5-flash")) == 4
        assert server.count(kind="batch_create") == 1  # nothing was submitted twice


def test_sigkill_halfway_then_rerun_makes_no_repeat_calls(tmp_path):
    paths = make_folder(tmp_path / "photos", 12)
    hashes = {sent_hash(p): f"cam/{p.name}" for p in paths}
    stuck = sent_hash(paths[6])  # prepared once, not again at every poll below
    with FakeOpenAI(latency=0.05) as server:
        server.on_image(stuck, B.hang())  # the run gets stuck here, then is killed
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        project.config.write_text(FAST_RETRIES.replace("timeout_seconds = 1.0", "timeout_seconds = 60.0")
                                  + "concurrency = 2\n")
        proc = _spawn(project, "score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        assert server.wait_for(lambda s: s.count_for(stuck) >= 1, timeout=30)
        # let the other worker finish what it can: all but the stuck image (at most 5 s, not a fixed 0.5 s)
        _wait(lambda: sum(r["status"] == "ok" for r in project.scores(QWEN).values()) >= 11, timeout=5)
        below = descendants(proc.pid)  # images are prepared in threads: the run starts no process
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert below == [] and still_running(below) == []  # nothing can wait for a run that is gone
        finished = {r["image_id"] for r in project.scores(QWEN).values() if r["status"] == "ok"}
        assert 3 <= len(finished) < 12
        server.release()
        server.rearm()
        calls_before = dict(server.image_counts())
        project.run("score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        after = server.image_counts()
        repeated = {hashes[h] for h, n in after.items() if n > calls_before.get(h, 0) and hashes[h] in finished}
        assert repeated == set()  # zero repeat calls for finished images
        assert len(project.scores(QWEN)) == 12 and all(r["status"] == "ok" for r in project.scores(QWEN).values())


# ---- images and the baseline ----------------------------------------------------------------------

def test_shared_images_prepared_upright_and_truncated_recorded(tmp_path, camera_traps):
    with FakeOpenAI() as server:
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        project.run("score", "--model", QWEN, "--images", str(camera_traps / "images"))
        rows = project.scores(QWEN)
        assert len(rows) == 14
        bad = rows["african_elephants_truncated_file.jpg"]
        assert bad["status"] == "failed" and bad["error_kind"] == "prepare: truncated or corrupt"
        assert sum(r["status"] == "ok" for r in rows.values()) == 13
        sizes = {}
        for call in server.calls(kind="chat"):
            for image in call.images:
                with Image.open(__import__("io").BytesIO(image.data)) as im:
                    sizes[image.sha256] = (im.size, im.mode)
        images = camera_traps / "images"
        assert sizes[sent_hash(images / "african_elephants_with_exif_orientation.jpg")] == ((768, 576), "RGB")
        assert sizes[sent_hash(images / "african_elephants_cmyk.jpg")] == ((768, 576), "RGB")
        assert sizes[sent_hash(images / "african_elephants_bw.jpg")] == ((768, 576), "RGB")


def test_baseline_scores_sample_candidates_and_exports(tmp_path, sample_data):
    project = Project(tmp_path)
    project.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                "--speciesnet", str(sample_data / "speciesnet_predictions.json"),
                "--images", str(sample_data / "images"), "-n", "10")
    result = project.run("score", "--model", "baseline")
    assert "10 scored, 0 failed of 10" in result.output and "estimated cost" not in result.output
    rows = project.scores("baseline")
    assert all(0 <= r["score"] <= 10 and r["reasoning"] for r in rows.values())
    out = tmp_path / "baseline.json"
    project.run("score", "--model", "baseline", "--export", str(out))
    data = json.loads(out.read_text())
    info = data["labeling_info"]
    assert info["model"] == "baseline" and info["method"] == "offline-baseline"
    assert info["total_images"] == 10 and info["successful"] == 10
    assert set(info["score_statistics"]) >= {"mean", "median", "std", "min", "max"}
    first = data["results"][0]
    assert set(first) >= {"image_path", "image_filename", "aesthetic_score", "reasoning", "success", "error"}
    assert Path(first["image_path"]).exists()


def test_no_candidates_and_unknown_model_are_clear_errors(tmp_path):
    project = Project(tmp_path)
    store.connect(project.db_path)  # an empty database (none at all is another error: test_errors.py)
    assert "run `python -m hitl select` first" in project.run("score", "--model", "baseline", ok=False).output
    assert "unknown --model 'gpt'" in project.run("score", "--model", "gpt", ok=False).output
    assert "HITL_OPENAI_BASE_URL" in project.run("score", "--model", QWEN, ok=False).output


def test_a_run_imports_only_the_backends_up_to_its_own(monkeypatch):
    """The SDKs take a second each to import: a baseline run imports neither, an openai: run not Gemini's,
    a Gemini run not openai's.
    A module whose entry in sys.modules is None cannot be imported, so reaching for it fails the run."""
    from hitl.score import backends
    from hitl.score.backends import gemini, openai_compat
    from hitl.score.backends.registry import backend_class

    monkeypatch.setattr(backends, "gemini", gemini)  # imported afresh below: put back afterwards

    monkeypatch.setitem(sys.modules, "hitl.score.backends.gemini", None)
    monkeypatch.setitem(sys.modules, "hitl.score.backends.openai_compat", None)
    assert backend_class("baseline").__name__ == "BaselineBackend"
    monkeypatch.setitem(sys.modules, "hitl.score.backends.openai_compat", openai_compat)
    assert backend_class(QWEN) is openai_compat.OpenAICompatBackend
    # a Gemini run passes the openai: class by, without its SDK: the module, imported afresh, must not need it
    monkeypatch.delitem(sys.modules, "hitl.score.backends.gemini")
    monkeypatch.delitem(sys.modules, "hitl.score.backends.openai_compat")
    monkeypatch.setattr(backends, "openai_compat", openai_compat)  # put back, as sys.modules is, afterwards
    monkeypatch.setitem(sys.modules, "openai", None)
    assert backend_class("gemini-2.5-flash").__name__ == "GeminiBackend"


def test_baseline_on_the_shared_collection(tmp_path, camera_traps):
    project = Project(tmp_path)
    project.run("select", "--md", str(camera_traps / "md_results.json"), "--images", str(camera_traps / "images"),
                "-n", "7")
    result = project.run("score", "--model", "baseline")
    assert "7 scored, 0 failed of 7" in result.output
    folder = Project(tmp_path / "folder")
    out = folder.run("score", "--model", "baseline", "--images", str(camera_traps / "images"))
    rows = folder.scores("baseline")
    assert len(rows) == 14 and "13 scored, 1 failed of 14" in out.output
    assert rows["african_elephants_truncated_file.jpg"]["error_kind"] == "prepare: truncated or corrupt"
    image = folder.db["images"].get("african_elephants_with_exif_orientation.jpg")
    assert (image["width"], image["height"]) == (2048, 1536)  # recorded upright


def test_ctrl_c_keeps_the_calls_already_paid_for(tmp_path):
    make_folder(tmp_path / "photos", 6)
    # 1.5 s per call: SIGINT follows the second call's arrival by one 0.02 s poll, inside it even when
    # this process is kept waiting for a second by a busy machine
    with FakeOpenAI(latency=1.5) as server:
        project = Project(tmp_path, {"HITL_OPENAI_BASE_URL": server.url})
        project.config.write_text(FAST_RETRIES.replace("timeout_seconds = 1.0", "timeout_seconds = 60.0")
                                  + "concurrency = 2\n")
        proc = _spawn(project, "score", "--model", QWEN, "--images", str(tmp_path / "photos"))
        assert server.wait_for(lambda s: s.count_generate() >= 2, timeout=30)
        proc.send_signal(signal.SIGINT)  # Ctrl+C while two calls are in flight
        output = proc.communicate(timeout=30)[0].decode()
        assert "interrupted" in output, output
        rows = project.scores(QWEN)
        assert len(rows) == server.count_generate() >= 2, output  # every call made is recorded, none lost
        assert all(r["status"] == "ok" for r in rows.values())
        run = next(project.db["score_runs"].rows)
        assert run["status"] == "stopped"
