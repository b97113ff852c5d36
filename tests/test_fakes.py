"""The fake provider servers, driven end to end by the REAL google-genai and openai SDKs."""
from __future__ import annotations

import base64
import io
import json
import os
import runpy
import signal
import ssl
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import certifi
import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from openai import OpenAI
from PIL import Image

from tests.fakes import FakeGemini, FakeOpenAI, genai_client, image_sha, openai_client
from tests.fakes import behaviours as B
from tests.fakes.fixtures import fake_gemini, fake_openai  # noqa: F401  (fixtures)

MODEL = "gemini-2.5-flash"


# ---------------------------------------------------------------- helpers


def make_images(tmp_path: Path, n: int) -> list[Path]:
    """n small, distinct JPEGs under tmp_path."""
    d = tmp_path / "imgs"
    d.mkdir(exist_ok=True)
    out = []
    for i in range(n):
        p = d / f"img_{i:02d}.jpg"
        Image.new("RGB", (16, 12), (i * 20 % 256, 255 - i * 7 % 256, i * 3 % 256)).save(p, "JPEG")
        out.append(p)
    assert len({image_sha(p) for p in out}) == n
    return out


# One TLS context for every client, made once: the fakes speak plain HTTP, and each SDK client would
# otherwise load the CA bundle anew (genai: for its sync, async and websocket clients), ~0.1 s a client.
TLS = ssl.create_default_context(cafile=certifi.where())


def gclient(server: FakeGemini, timeout_ms: int = 5000, api_key: str = "test-key", **opts) -> genai.Client:
    return genai.Client(api_key=api_key, http_options=types.HttpOptions(
        base_url=server.url, timeout=timeout_ms, client_args={"verify": TLS},
        async_client_args={"verify": TLS, "ssl": TLS}, **opts))


def oclient(server: FakeOpenAI, timeout: float = 5.0, api_key: str = "sk-test", max_retries: int = 0) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=max_retries, timeout=timeout,
                  http_client=openai.DefaultHttpxClient(verify=TLS))


def g_generate(client: genai.Client, image: bytes, prompt: str = "Score this camera-trap image.", **kw):
    return client.models.generate_content(
        model=MODEL,
        contents=[types.Part.from_bytes(data=image, mime_type="image/jpeg"), prompt],
        config=types.GenerateContentConfig(system_instruction="You are a wildlife photo judge.", response_mime_type="application/json", **kw),
    )


def o_generate(client: OpenAI, image: bytes, prompt: str = "Score this camera-trap image.", model: str = "Qwen/Qwen2.5-VL-7B-Instruct", **kw):
    url = "data:image/jpeg;base64," + base64.b64encode(image).decode()
    return client.chat.completions.create(
        model=model,
        messages=[
            {"role": "system", "content": "You are a wildlife photo judge."},
            {"role": "user", "content": [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": url}}]},
        ],
        response_format={"type": "json_object"},
        **kw,
    )


# ================================================================ Gemini: sync


def test_gemini_default_answer_usage_and_recording(tmp_path):
    img = make_images(tmp_path, 1)[0].read_bytes()
    with FakeGemini(prompt_tokens=1000, completion_tokens=40) as server:
        resp = g_generate(gclient(server), img, prompt="marker-XYZ")
        assert json.loads(resp.text) == {"score": 7.5, "hero": True, "reasoning": B.DEFAULT_REASONING}
        u = resp.usage_metadata
        assert (u.prompt_token_count, u.candidates_token_count, u.total_token_count) == (1000, 40, 1040)

        (call,) = server.calls()
        assert call.method == "POST"
        assert call.path == f"/v1/models/{MODEL}:generateContent"
        assert call.kind == "generate" and call.model == MODEL and call.status == 200
        assert call.header("x-goog-api-key") == "test-key"
        assert call.header("X-Server-Timeout") == "5"
        assert call.images[0].data == img and call.images[0].mime_type == "image/jpeg"
        assert call.image_hashes == [image_sha(img)]
        assert "marker-XYZ" in call.texts and "You are a wildlife photo judge." in call.texts
        assert call.json["generationConfig"]["responseMimeType"] == "application/json"
        assert server.count_generate() == 1
        assert server.calls(path_contains=":generateContent") == [call]
        assert server.count_for(img) == 1

        tricky = b"\xfb\xff\xbf\xfe" * 10  # base64 has "+" and "/", i.e. "-" and "_" URL-safe
        g_generate(gclient(server), tricky)
        assert "-" in server.calls()[-1].json["contents"][0]["parts"][0]["inlineData"]["data"]
        assert server.calls()[-1].images[0].data == tricky


def test_gemini_usage_can_be_omitted_and_overridden(tmp_path):
    img = make_images(tmp_path, 1)[0].read_bytes()
    with FakeGemini(include_usage=False) as server:
        client = gclient(server)
        assert g_generate(client, img).usage_metadata is None
        server.include_usage = True
        server.script(B.answer(score=3, usage=(11, 22)))
        u = g_generate(client, img).usage_metadata
        assert (u.prompt_token_count, u.candidates_token_count, u.total_token_count) == (11, 22, 33)


def test_gemini_wrong_api_key_is_401(tmp_path):
    with FakeGemini(api_key="right") as server:
        with pytest.raises(genai_errors.ClientError) as ei:
            g_generate(gclient(server, api_key="wrong"), b"img")
        assert ei.value.code == 401 and ei.value.status == "UNAUTHENTICATED"
        assert "API key not valid" in ei.value.message
        assert g_generate(gclient(server, api_key="right"), b"img").text


def test_gemini_429_with_retry_after_then_ok(tmp_path):
    with FakeGemini() as server:
        server.script(B.rate_limited(retry_after=7))
        client = gclient(server)  # no retry_options -> the SDK does not retry
        with pytest.raises(genai_errors.ClientError) as ei:
            g_generate(client, b"img")
        err = ei.value
        assert err.code == 429 and err.status == "RESOURCE_EXHAUSTED"
        assert err.response.headers["retry-after"] == "7"
        assert err.details["error"]["details"][0]["retryDelay"] == "7s"
        assert server.count_generate() == 1
        assert json.loads(g_generate(client, b"img").text)["score"] == 7.5  # script consumed
        assert [c.status for c in server.calls()] == [429, 200]


@pytest.mark.parametrize("status,err_status", [(500, "INTERNAL"), (503, "UNAVAILABLE")])
def test_gemini_server_errors(status, err_status):
    with FakeGemini() as server:
        server.script(B.server_error(status))
        with pytest.raises(genai_errors.ServerError) as ei:
            g_generate(gclient(server), b"img")
        assert ei.value.code == status and ei.value.status == err_status


def test_gemini_sdk_retry_options_retry_5xx():
    with FakeGemini() as server:
        server.script(B.unavailable(), B.server_error(500))
        client = gclient(server, retry_options=types.HttpRetryOptions(attempts=3, initial_delay=0.01, max_delay=0.05, jitter=0))
        assert json.loads(g_generate(client, b"img").text)["hero"] is True
        assert [c.status for c in server.calls()] == [503, 500, 200]


@pytest.mark.parametrize("status,err_status", [(401, "UNAUTHENTICATED"), (403, "PERMISSION_DENIED")])
def test_gemini_auth_errors(status, err_status):
    with FakeGemini() as server:
        server.script(B.auth_error(status))
        with pytest.raises(genai_errors.ClientError) as ei:
            g_generate(gclient(server), b"img")
        assert ei.value.code == status and ei.value.status == err_status
        assert ei.value.details == {"error": {"code": status, "message": ei.value.message, "status": err_status}}


def test_gemini_timeout_raises_httpx_timeout():
    with FakeGemini() as server:
        server.script(B.slow(5))
        t0 = time.monotonic()
        with pytest.raises(httpx2.TimeoutException):
            g_generate(gclient(server, timeout_ms=400), b"img")
        assert time.monotonic() - t0 < 3
        assert server.count_generate() == 1


def test_fixtures_and_client_factories(fake_gemini, fake_openai):
    g = genai_client(fake_gemini, api_version="v1beta")
    assert json.loads(g.models.generate_content(model=MODEL, contents="hi").text)["score"] == 7.5
    assert fake_gemini.calls()[0].path == f"/v1beta/models/{MODEL}:generateContent"
    o = openai_client(fake_openai)
    r = o.chat.completions.create(model=fake_openai.model, messages=[{"role": "user", "content": "hi"}])
    assert json.loads(r.choices[0].message.content)["hero"] is True
    assert fake_openai.calls(kind="chat")[0].texts == ["hi"]
    assert fake_gemini.count_generate() == 1 and fake_openai.count_generate() == 1


def test_gemini_dropped_connection_and_responder_crash():
    def responder(call):
        if "boom" in call.text:
            raise RuntimeError("responder bug")
        return None

    with FakeGemini(responder=responder) as server:
        server.script(B.drop_connection())
        client = gclient(server)
        with pytest.raises(httpx2.TransportError):
            g_generate(client, b"img")
        with pytest.raises(genai_errors.APIError) as ei:
            g_generate(client, b"img", prompt="boom")
        assert ei.value.code == 599 and "responder bug" in server.errors[0]
        assert [c.status for c in server.calls()] == [0, 599]


@pytest.mark.parametrize(
    "behaviour,check",
    [
        (B.not_json(), lambda t: not t.lstrip().startswith("{") and "{" not in t),
        (B.fenced_json(score=6.5), lambda t: "```json" in t and json.loads(t.split("```json")[1].split("```")[0])["score"] == 6.5 and not t.startswith("```")),
        (B.score_out_of_range(14), lambda t: json.loads(t)["score"] == 14),
        (B.missing_score(), lambda t: "score" not in json.loads(t)),
        (B.truncated_json(), lambda t: t.startswith('{"score"') and not t.endswith("}")),
    ],
    ids=["not_json", "fenced", "out_of_range", "missing_score", "truncated"],
)
def test_malformed_outputs_both_providers(behaviour, check):
    with FakeGemini() as g, FakeOpenAI() as o:
        g.script(behaviour)
        o.script(behaviour)
        gt = g_generate(gclient(g), b"img").text
        ot = o_generate(oclient(o), b"img").choices[0].message.content
        assert gt == ot
        assert check(gt)


def test_gemini_blocked_answer_has_no_text():
    with FakeGemini() as server:
        server.script(B.blocked())
        resp = g_generate(gclient(server), b"img")
        assert resp.text is None
        assert resp.candidates[0].finish_reason == types.FinishReason.SAFETY


def test_per_image_responder_and_on_image_queue(tmp_path):
    imgs = [p.read_bytes() for p in make_images(tmp_path, 3)]
    scores = {image_sha(b): float(i) for i, b in enumerate(imgs)}

    def responder(call):
        return B.answer(score=scores[call.image_hashes[0]]) if call.images else None

    with FakeGemini(responder=responder) as server:
        client = gclient(server)
        server.on_image(imgs[2], B.unavailable(), B.answer(score=9.9))
        assert [json.loads(g_generate(client, b).text)["score"] for b in imgs[:2]] == [0.0, 1.0]
        with pytest.raises(genai_errors.ServerError):
            g_generate(client, imgs[2])
        assert json.loads(g_generate(client, imgs[2]).text)["score"] == 9.9
        assert json.loads(g_generate(client, imgs[2]).text)["score"] == 2.0  # queue empty -> responder
        assert server.image_counts() == {image_sha(imgs[0]): 1, image_sha(imgs[1]): 1, image_sha(imgs[2]): 3}
        assert server.repeated_images() == {image_sha(imgs[2]): 3}
        assert server.successful_image_counts()[image_sha(imgs[2])] == 2
        assert len(server.calls_for(imgs[2])) == 3


def test_marker_text_identifies_call():
    with FakeGemini(responder=lambda c: B.answer(score=1.0) if "IMG-A" in c.text else B.answer(score=2.0)) as server:
        client = gclient(server)
        assert json.loads(g_generate(client, b"x", prompt="id IMG-A").text)["score"] == 1.0
        assert json.loads(g_generate(client, b"x", prompt="id IMG-B").text)["score"] == 2.0


def test_gemini_32_concurrent_with_latency():
    with FakeGemini(latency=0.25) as server:
        client = gclient(server)
        t0 = time.monotonic()
        with ThreadPoolExecutor(32) as ex:
            texts = list(ex.map(lambda i: g_generate(client, f"img-{i}".encode()).text, range(32)))
        elapsed = time.monotonic() - t0
        assert all(json.loads(t)["score"] == 7.5 for t in texts)
        assert server.count_generate() == 32
        assert elapsed < 1.5, elapsed  # serialised would take 8 s
        assert server.max_concurrency >= 16


def test_hang_until_release():
    with FakeGemini() as server:
        server.script(B.hang())
        client = gclient(server)
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("text", g_generate(client, b"x").text))
        t.start()
        assert server.wait_for_generate(1, timeout=5)
        time.sleep(0.2)
        assert "text" not in out and t.is_alive()
        server.release()
        t.join(5)
        assert json.loads(out["text"])["score"] == 7.5


# ================================================================ Gemini: files + batches


def _jsonl_requests(imgs: list[bytes]) -> tuple[list[str], bytes]:
    keys = [f"img-{i}" for i in range(len(imgs))]
    lines = [
        json.dumps({
            "key": k,
            "request": {
                "contents": [{"role": "user", "parts": [
                    {"inlineData": {"mimeType": "image/jpeg", "data": base64.b64encode(b).decode()}},
                    {"text": f"Score image {k}"},
                ]}],
                "generationConfig": {"responseMimeType": "application/json"},
            },
        })
        for k, b in zip(keys, imgs)
    ]
    return keys, ("\n".join(lines) + "\n").encode()


def test_files_upload_resumable_get_and_download(tmp_path):
    with FakeGemini() as server:
        client = gclient(server)
        src = tmp_path / "in.jsonl"
        src.write_bytes(b'{"key": "a", "request": {}}\n')
        f = client.files.upload(file=src, config=types.UploadFileConfig(mime_type="jsonl", display_name="reqs"))
        assert f.name.startswith("files/") and f.size_bytes == src.stat().st_size and f.display_name == "reqs"
        start, chunk = server.calls(kind="upload")
        assert start.path == "/upload/v1/files" and start.header("X-Goog-Upload-Protocol") == "resumable"
        assert start.header("X-Goog-Upload-Command") == "start"
        assert chunk.header("X-Goog-Upload-Command") == "upload, finalize" and chunk.body == src.read_bytes()
        got = client.files.get(name=f.name)
        assert got.name == f.name and got.state == types.FileState.ACTIVE
        assert server.file_bytes(f.name) == src.read_bytes()
        assert client.files.download(file=f.name) == src.read_bytes()
        assert server.calls(kind="file_download")[0].path == f"/v1/{f.name}:download?alt=media"


def test_batch_file_based_full_flow_shuffled_with_error_line(tmp_path):
    imgs = [p.read_bytes() for p in make_images(tmp_path, 6)]
    keys, data = _jsonl_requests(imgs)
    score_by_sha = {image_sha(b): float(i) for i, b in enumerate(imgs)}
    with FakeGemini(
        batch_pending_polls=2, batch_running_polls=2, batch_error_keys={"img-3"},
        batch_responder=lambda c: B.answer(score=score_by_sha[c.image_hashes[0]]),
    ) as server:
        client = gclient(server)
        (tmp_path / "batch.jsonl").write_bytes(data)
        up = client.files.upload(file=tmp_path / "batch.jsonl", config=types.UploadFileConfig(mime_type="jsonl"))
        job = client.batches.create(model=MODEL, src=up.name, config=types.CreateBatchJobConfig(display_name="hero-run"))
        assert job.name.startswith("batches/") and job.state == types.JobState.JOB_STATE_PENDING
        assert job.display_name == "hero-run" and job.dest is None
        create = server.calls(kind="batch_create")[0]
        assert create.path == f"/v1/models/{MODEL}:batchGenerateContent"
        assert create.json == {"batch": {"inputConfig": {"fileName": up.name}, "displayName": "hero-run"}}

        states = []
        while True:
            job = client.batches.get(name=job.name)
            states.append(job.state.value)
            if job.state == types.JobState.JOB_STATE_SUCCEEDED:
                break
            assert len(states) < 10
        assert states == ["JOB_STATE_PENDING", "JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
        assert server.calls(kind="batch_get")[0].path == f"/v1/{job.name}"
        assert job.dest.file_name and job.dest.inlined_responses is None

        out = tmp_path / "results.jsonl"
        client.files.download(file=job.dest.file_name, destination=out)
        lines = [json.loads(x) for x in out.read_text().splitlines()]
        got_keys = [x["key"] for x in lines]
        assert sorted(got_keys) == sorted(keys) and got_keys != keys  # all keys, shuffled
        by_key = {x["key"]: x for x in lines}
        assert set(by_key["img-3"]) == {"key", "error"} and by_key["img-3"]["error"]["code"] == 13
        for i, k in enumerate(keys):
            if k == "img-3":
                continue
            resp = types.GenerateContentResponse.model_validate(by_key[k]["response"])
            assert json.loads(resp.text)["score"] == float(i)
            assert resp.usage_metadata.total_token_count == 1290 + 38
        assert server.batch_image_counts() == {image_sha(b): 1 for b in imgs}
        assert server.count_generate() == 0  # batch lines are not sync calls


def test_batch_inline_with_metadata(tmp_path):
    imgs = [p.read_bytes() for p in make_images(tmp_path, 4)]
    reqs = [
        types.InlinedRequest(
            contents=[types.Content(role="user", parts=[types.Part.from_bytes(data=b, mime_type="image/jpeg"), types.Part(text="Score")])],
            metadata={"key": f"cam-{i}"},
            config=types.GenerateContentConfig(response_mime_type="application/json"),
        )
        for i, b in enumerate(imgs)
    ]
    with FakeGemini(batch_pending_polls=0, batch_running_polls=1, batch_error_keys={"cam-1"}, batch_shuffle_inline=True) as server:
        server.on_image(imgs[2], B.score_out_of_range(14))  # per-image scripts apply to batch lines too
        client = gclient(server)
        job = client.batches.create(model=MODEL, src=reqs)
        sent = server.calls(kind="batch_create")[0].json["batch"]["inputConfig"]["requests"]["requests"]
        assert [r["metadata"] for r in sent] == [{"key": f"cam-{i}"} for i in range(4)]
        # the SDK sends inlined bytes as URL-safe base64; the fake decodes both alphabets
        assert base64.urlsafe_b64decode(sent[0]["request"]["contents"][0]["parts"][0]["inlineData"]["data"]) == imgs[0]
        assert server.batch(job.name).entries[0].call.images[0].data == imgs[0]
        assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_RUNNING
        job = client.batches.get(name=job.name)
        assert job.state == types.JobState.JOB_STATE_SUCCEEDED
        inl = job.dest.inlined_responses
        assert sorted(r.metadata["key"] for r in inl) == [f"cam-{i}" for i in range(4)]
        assert [r.metadata["key"] for r in inl] != [f"cam-{i}" for i in range(4)]
        by_key = {r.metadata["key"]: r for r in inl}
        assert by_key["cam-1"].error is not None and by_key["cam-1"].response is None
        assert by_key["cam-1"].error.code == 13
        assert json.loads(by_key["cam-0"].response.text)["score"] == 7.5
        assert json.loads(by_key["cam-2"].response.text)["score"] == 14


def test_batch_time_based_progress_and_final_state():
    with FakeGemini(batch_pending_polls=0, batch_running_polls=0, batch_min_seconds=0.5) as server:
        client = gclient(server)
        job = client.batches.create(model=MODEL, src=[{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}])
        assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_RUNNING
        time.sleep(0.6)
        assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_SUCCEEDED
        server.batch_final_state = "BATCH_STATE_FAILED"
        server.batch_min_seconds = 0
        job2 = client.batches.create(model=MODEL, src=[{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}])
        assert client.batches.get(name=job2.name).state == types.JobState.JOB_STATE_FAILED
        job3 = client.batches.create(model=MODEL, src=[{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}])
        server.set_batch_state(job3.name, "JOB_STATE_EXPIRED")
        assert client.batches.get(name=job3.name).state == types.JobState.JOB_STATE_EXPIRED


def test_batch_cancel_and_errors():
    with FakeGemini(batch_pending_polls=5) as server:
        client = gclient(server)
        src = [{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}]
        job = client.batches.create(model=MODEL, src=src)
        client.batches.cancel(name=job.name)
        assert server.calls(kind="batch_cancel")[0].path == f"/v1/{job.name}:cancel"
        got = client.batches.get(name=job.name)
        assert got.state == types.JobState.JOB_STATE_CANCELLED and got.dest is None
        assert server.batch(job.name).job_state == "JOB_STATE_CANCELLED"

        done = client.batches.create(model=MODEL, src=src)
        server.complete_batch(done.name)
        with pytest.raises(genai_errors.ClientError) as ei:
            client.batches.cancel(name=done.name)
        assert ei.value.code == 400 and ei.value.status == "FAILED_PRECONDITION"

        with pytest.raises(genai_errors.ClientError) as ei:
            client.batches.get(name="batches/doesnotexist")
        assert ei.value.code == 404 and ei.value.status == "NOT_FOUND"
        with pytest.raises(genai_errors.ClientError) as ei:
            client.batches.create(model=MODEL, src="files/missing")
        assert ei.value.code == 400
        assert {b.name for b in client.batches.list()} == {job.name, done.name}


def test_batch_resumed_by_new_process(tmp_path):
    imgs = [p.read_bytes() for p in make_images(tmp_path, 3)]
    keys, data = _jsonl_requests(imgs)
    with FakeGemini(batch_pending_polls=1, batch_running_polls=1) as server:
        submitter = gclient(server)
        up = submitter.files.upload(file=io.BytesIO(data), config=types.UploadFileConfig(mime_type="jsonl"))
        job = submitter.batches.create(model=MODEL, src=up.name)
        del submitter  # the submitter "dies"; only the name survives

        script = tmp_path / "resume.py"
        script.write_text(textwrap.dedent("""
            import json, sys
            from google import genai
            from google.genai import types
            url, name, out = sys.argv[1:]
            c = genai.Client(api_key="k2", http_options=types.HttpOptions(base_url=url, timeout=5000))
            states = []
            while True:
                j = c.batches.get(name=name)
                states.append(j.state.value)
                if j.state.value == "JOB_STATE_SUCCEEDED":
                    break
            c.files.download(file=j.dest.file_name, destination=out)
            print(json.dumps(states))
        """))
        out = tmp_path / "res.jsonl"
        proc = subprocess.run([sys.executable, str(script), server.url, job.name, str(out)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == ["JOB_STATE_PENDING", "JOB_STATE_RUNNING", "JOB_STATE_SUCCEEDED"]
        assert sorted(json.loads(x)["key"] for x in out.read_text().splitlines()) == keys
        assert {c.header("x-goog-api-key") for c in server.calls(kind="batch_get")} == {"k2"}


# ================================================================ cross-process counting


SCORER = textwrap.dedent("""
    import json, os, sys
    from pathlib import Path
    from google import genai
    from google.genai import types
    url, img_dir, done_path = sys.argv[1:]
    done = set(Path(done_path).read_text().split()) if os.path.exists(done_path) else set()
    c = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=url, timeout=30000))
    for p in sorted(Path(img_dir).glob("*.jpg")):
        if p.name in done:
            continue
        r = c.models.generate_content(model="gemini-2.5-flash",
            contents=[types.Part.from_bytes(data=p.read_bytes(), mime_type="image/jpeg"), "Score"])
        json.loads(r.text)
        with open(done_path, "a") as f:
            f.write(p.name + "\\n"); f.flush(); os.fsync(f.fileno())
""")


def test_counts_survive_sigkilled_subprocess(tmp_path, monkeypatch):
    imgs = make_images(tmp_path, 8)
    script = tmp_path / "scorer.py"
    script.write_text(SCORER)
    done = tmp_path / "done.txt"
    with FakeGemini() as server:
        server.on_image(imgs[3], B.hang())  # the first run stalls on image 3 ...
        cmd = [sys.executable, str(script), server.url, str(imgs[0].parent), str(done)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert server.wait_for(lambda s: s.count_for(imgs[3]) == 1, timeout=30)
        os.kill(proc.pid, signal.SIGKILL)  # ... and is killed there
        proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        assert done.read_text().split() == [p.name for p in imgs[:3]]

        # the rerun in this process: only the killed run has to be a process of its own
        monkeypatch.setattr(sys, "argv", cmd[1:])
        runpy.run_path(str(script), run_name="__main__")
        assert sorted(done.read_text().split()) == [p.name for p in imgs]
        counts = server.image_counts()
        assert {image_sha(p): counts.get(image_sha(p)) for p in imgs} == {image_sha(p): (2 if i == 3 else 1) for i, p in enumerate(imgs)}
        assert server.repeated_images() == {image_sha(imgs[3]): 2}  # only the in-flight one
        assert server.count_generate() == 9


# ================================================================ OpenAI-compatible


def test_openai_default_answer_usage_response_format_and_models(tmp_path):
    img = make_images(tmp_path, 1)[0].read_bytes()
    with FakeOpenAI(model="my-vlm", completion_tokens=12) as server:
        client = oclient(server)
        resp = o_generate(client, img, model="my-vlm", prompt="marker-ABC")
        assert json.loads(resp.choices[0].message.content) == {"score": 7.5, "hero": True, "reasoning": B.DEFAULT_REASONING}
        assert resp.choices[0].finish_reason == "stop" and resp.model == "my-vlm"
        assert (resp.usage.prompt_tokens, resp.usage.completion_tokens, resp.usage.total_tokens) == (1290, 12, 1302)
        (call,) = server.calls(kind="chat")
        assert call.path == "/v1/chat/completions" and call.method == "POST"
        assert call.header("Authorization") == "Bearer sk-test"
        assert call.images[0].data == img and call.images[0].mime_type == "image/jpeg"
        assert "marker-ABC" in call.texts
        assert server.response_formats() == [{"type": "json_object"}]
        assert [m.id for m in client.models.list().data] == ["my-vlm"]
        assert server.calls(path_contains="/v1/models")[0].method == "GET"
        assert server.count_generate() == 1 and server.count_for(img) == 1


def test_openai_api_key_enforced():
    with FakeOpenAI(api_key="sk-right") as server:
        with pytest.raises(openai.AuthenticationError) as ei:
            o_generate(oclient(server, api_key="sk-wrong"), b"img")
        assert ei.value.status_code == 401 and ei.value.code == "invalid_api_key"
        assert o_generate(oclient(server, api_key="sk-right"), b"img").choices[0].message.content


def test_openai_429_retry_after_and_5xx():
    with FakeOpenAI() as server:
        client = oclient(server)
        server.script(B.rate_limited(retry_after=4), B.server_error(500), B.unavailable())
        with pytest.raises(openai.RateLimitError) as ei:
            o_generate(client, b"img")
        assert ei.value.status_code == 429 and ei.value.response.headers["retry-after"] == "4"
        assert ei.value.body == {"message": B.rate_limited().message, "type": "requests", "param": None, "code": "rate_limit_exceeded"}
        with pytest.raises(openai.InternalServerError) as ei:
            o_generate(client, b"img")
        assert ei.value.status_code == 500 and ei.value.body["type"] == "server_error"
        with pytest.raises(openai.InternalServerError) as ei:
            o_generate(client, b"img")
        assert ei.value.status_code == 503
        assert [c.status for c in server.calls(kind="chat")] == [429, 500, 503]


def test_openai_sdk_retry_honours_retry_after_ms():
    with FakeOpenAI() as server:
        server.script(B.Behaviour(status=429, message="slow down", headers={"retry-after-ms": "300"}))
        t0 = time.monotonic()
        resp = o_generate(oclient(server, max_retries=1), b"img")
        assert json.loads(resp.choices[0].message.content)["score"] == 7.5
        assert time.monotonic() - t0 >= 0.3
        assert [c.header("x-stainless-retry-count") for c in server.calls(kind="chat")] == ["0", "1"]


@pytest.mark.parametrize("status,exc", [(401, openai.AuthenticationError), (403, openai.PermissionDeniedError)])
def test_openai_auth_errors(status, exc):
    with FakeOpenAI() as server:
        server.script(B.auth_error(status))
        with pytest.raises(exc) as ei:
            o_generate(oclient(server), b"img")
        assert ei.value.status_code == status
        assert set(ei.value.body) == {"message", "type", "param", "code"}


def test_openai_timeout_and_dropped_connection():
    with FakeOpenAI() as server:
        server.script(B.slow(5), B.drop_connection())
        client = oclient(server, timeout=0.4)
        t0 = time.monotonic()
        with pytest.raises(openai.APITimeoutError):
            o_generate(client, b"img")
        assert time.monotonic() - t0 < 3
        with pytest.raises(openai.APIConnectionError):
            o_generate(client, b"img")
        assert server.count_generate() == 2


def test_openai_vllm_error_style_and_strict_model():
    with FakeOpenAI(error_style="vllm", strict_model=True, model="served") as server:
        client = oclient(server)
        with pytest.raises(openai.NotFoundError) as ei:
            o_generate(client, b"img", model="other")
        assert ei.value.body["object"] == "error" and ei.value.body["code"] == 404
        server.script(B.bad_request("image too large"))
        with pytest.raises(openai.BadRequestError) as ei:
            o_generate(client, b"img", model="served")
        assert ei.value.body["message"] == "image too large" and ei.value.body["type"] == "BadRequestError"


def test_openai_per_image_counting_and_blocked(tmp_path):
    imgs = [p.read_bytes() for p in make_images(tmp_path, 2)]
    with FakeOpenAI(responder=lambda c: B.answer(score=1.0 if c.image_hashes == [image_sha(imgs[0])] else 2.0)) as server:
        client = oclient(server)
        server.on_image(imgs[1], B.blocked())
        r = o_generate(client, imgs[1])
        assert r.choices[0].message.content is None and r.choices[0].finish_reason == "content_filter"
        assert json.loads(o_generate(client, imgs[0]).choices[0].message.content)["score"] == 1.0
        assert json.loads(o_generate(client, imgs[1]).choices[0].message.content)["score"] == 2.0
        assert server.image_counts() == {image_sha(imgs[0]): 1, image_sha(imgs[1]): 2}


def test_openai_32_concurrent_with_latency():
    with FakeOpenAI(latency=0.25) as server:
        client = oclient(server)
        t0 = time.monotonic()
        with ThreadPoolExecutor(32) as ex:
            outs = list(ex.map(lambda i: o_generate(client, f"img-{i}".encode()).choices[0].message.content, range(32)))
        elapsed = time.monotonic() - t0
        assert all(json.loads(t)["score"] == 7.5 for t in outs)
        assert server.count_generate() == 32 and len(server.image_counts()) == 32
        assert elapsed < 1.5, elapsed
        assert server.max_concurrency >= 16
