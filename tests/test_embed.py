"""`hitl embed`: vectors from a fake vLLM embeddings server (computed from the pixels it received),
from a tiny ONNX model run by ONNX Runtime, and from the baseline; resumable, failures recorded,
and the store's read API."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hitl import store
from hitl.cli import cli
from hitl.imageprep import prepare_image
from hitl.store.embeddings import (
    embedding_row,
    models,
    newest_model,
    unit_float16,
    vector_chunks,
    vectors,
    write_embeddings,
)

from .conftest import REPO, descendants, still_running
from .fakes import FakeOpenAI, image_sha
from .fakes import behaviours as B
from .fakes.embeddings import pixel_vector

CLIP = "openai:openai/clip-vit-large-patch14"
FAST = "[embed]\nattempts = 3\nretry_base_seconds = 0.01\nretry_max_seconds = 0.05\ntimeout_seconds = 5.0\n"


def make_folder(root: Path, n: int) -> list[Path]:
    """``n`` photos, each a different colour pattern, so each has its own pixel vector."""
    paths = []
    for k in range(n):
        rng = np.random.default_rng(k)
        pixels = np.kron(rng.integers(0, 255, (6, 8, 3)), np.ones((80, 80, 1))).astype(np.uint8)
        path = root / "cam" / f"IMG_{k:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, quality=92)
        paths.append(path)
    return paths


def sent(path: Path) -> bytes:
    """The JPEG `embed` sends for ``path`` with the default settings."""
    return prepare_image(path, 448, 90).jpeg


def run(tmp_path: Path, *args: str, env: dict[str, str] | None = None, ok: bool = True):
    config = tmp_path / "settings.toml"
    if not config.exists():
        config.write_text(FAST)
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "hitl.db"), "--config", str(config), *args],
                                env=env or {}, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def stored(tmp_path: Path, model: str) -> dict[str, dict]:
    db = store.connect(tmp_path / "hitl.db")
    return {r["image_id"]: dict(r) for r in db.query("SELECT * FROM embeddings WHERE model = ?", [model])}


def test_the_fake_servers_answer_without_nagles_delay():
    """Every stubbed call took ~40 ms more than asked (headers and body in two writes, Nagle's algorithm
    waiting for a delayed ACK): a benchmark at 250 ms latency could not reach its bound."""
    import httpx

    with FakeOpenAI() as server, httpx.Client() as client:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        client.post(server.url + "/v1/chat/completions", json=body)
        started = time.perf_counter()
        for _ in range(10):
            client.post(server.url + "/v1/chat/completions", json=body)
        assert (time.perf_counter() - started) / 10 < 0.02


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_each_image_gets_the_vector_of_its_own_pixels(tmp_path, encoding):
    from hitl.embed.backends import openai_compat

    paths = make_folder(tmp_path / "photos", 5)
    original = openai_compat.OpenAIEmbedder.__init__.__defaults__
    with FakeOpenAI() as one, FakeOpenAI() as two:
        try:  # the encoding the server is asked for
            openai_compat.OpenAIEmbedder.__init__.__defaults__ = (*original[:-1], encoding)
            result = run(tmp_path, "embed", "--model", CLIP, "--base-url", one.url, "--base-url", two.url,
                         "--images", str(tmp_path / "photos"))
        finally:
            openai_compat.OpenAIEmbedder.__init__.__defaults__ = original
        assert "5 embedded, 0 failed of 5" in result.output
        assert one.count(kind="embeddings") and two.count(kind="embeddings")  # round robin
        bodies = [c.json for c in one.calls(kind="embeddings") + two.calls(kind="embeddings")]
        assert {b["encoding_format"] for b in bodies} == {encoding}
        assert all(b["model"] == "openai/clip-vit-large-patch14" and len(b["messages"]) == 1 for b in bodies)
    db = store.connect(tmp_path / "hitl.db")
    ids, matrix = vectors(db, CLIP)
    assert ids == [f"cam/{p.name}" for p in paths] and matrix.shape == (5, 48)
    expected = np.array([unit_float16(pixel_vector(sent(p))).astype(np.float32) for p in paths])
    similarity = matrix @ expected.T
    assert np.allclose(np.diag(similarity), 1.0, atol=2e-3)  # each image's own vector, to float16
    assert (similarity - np.eye(5) * 2).max() < 0.99  # and no other image's
    with Image.open(__import__("io").BytesIO(sent(paths[0]))) as im:
        assert max(im.size) == 448  # sent at the encoder's input scale


def test_rate_limits_server_errors_and_dropped_connections_are_retried(tmp_path):
    paths = make_folder(tmp_path / "photos", 4)
    with FakeOpenAI() as server:
        server.on_image(sent(paths[0]), B.rate_limited(retry_after=0.05))
        server.on_image(sent(paths[1]), B.server_error(503))
        server.on_image(sent(paths[2]), B.drop_connection())
        server.on_image(sent(paths[3]), B.bad_request("image too small"))
        result = run(tmp_path, "embed", "--model", CLIP, "--base-url", server.url, "--images", str(tmp_path / "photos"))
        assert "3 embedded, 1 failed of 4" in result.output and "http 400" in result.output
        assert server.count_for(sent(paths[0])) == 2 and server.count_for(sent(paths[2])) == 2
        rows = stored(tmp_path, CLIP)
        assert rows["cam/IMG_003.jpg"]["status"] == "failed" and "image too small" in rows["cam/IMG_003.jpg"]["error"]
        assert rows["cam/IMG_000.jpg"]["attempts"] == 2 and rows["cam/IMG_000.jpg"]["dim"] == 48
        # a permanent failure waits for --retry-failed; nothing else is sent again
        again = run(tmp_path, "embed", "--model", CLIP, "--base-url", server.url, "--images", str(tmp_path / "photos"))
        assert "Nothing to embed" in again.output and server.count_for(sent(paths[3])) == 1
        run(tmp_path, "embed", "--model", CLIP, "--base-url", server.url, "--images", str(tmp_path / "photos"),
            "--retry-failed")
        assert stored(tmp_path, CLIP)["cam/IMG_003.jpg"]["status"] == "ok"


def test_a_failure_on_the_way_is_tried_again_on_the_next_run(tmp_path):
    paths = make_folder(tmp_path / "photos", 2)
    with FakeOpenAI() as server:
        server.on_image(sent(paths[0]), *[B.server_error(502)] * 3)  # every attempt of this run
        run(tmp_path, "embed", "--model", CLIP, "--base-url", server.url, "--images", str(tmp_path / "photos"))
        assert stored(tmp_path, CLIP)["cam/IMG_000.jpg"]["error_kind"] == "http 502"
        result = run(tmp_path, "embed", "--model", CLIP, "--base-url", server.url, "--images", str(tmp_path / "photos"))
        assert "1 embedded, 0 failed of 1; 1 already done before" in result.output
        assert server.count_for(sent(paths[1])) == 1


def test_a_run_imports_no_sdk_it_does_not_use(monkeypatch):
    """The openai SDK takes a second to import: baseline and onnx: runs do not import it. A module
    whose entry in sys.modules is None cannot be imported, so reaching for it fails the run."""
    from hitl.embed.backends.registry import backend_classes

    monkeypatch.setitem(sys.modules, "hitl.embed.backends.openai_compat", None)
    matched = {model: next(c for c in backend_classes() if c.handles(model)).__name__
               for model in ("baseline", "onnx:m.onnx")}
    assert matched == {"baseline": "BaselineEmbedder", "onnx:m.onnx": "OnnxEmbedder"}


def test_a_wrong_key_stops_the_run_in_one_line(tmp_path):
    make_folder(tmp_path / "photos", 3)
    with FakeOpenAI(api_key="right") as server:
        result = run(tmp_path, "embed", "--model", CLIP, "--base-url", server.url, "--images", str(tmp_path / "photos"),
                     env={"HITL_OPENAI_API_KEY": "wrong"}, ok=False)
        assert result.exit_code == 1 and "authentication" in result.output and "Traceback" not in result.output
        assert stored(tmp_path, CLIP) == {}


def test_killed_mid_run_then_rerun_embeds_nothing_twice(tmp_path):
    paths = make_folder(tmp_path / "photos", 16)
    key = {image_sha(sent(p)): f"cam/{p.name}" for p in paths}
    with FakeOpenAI(latency=0.3) as server:
        (tmp_path / "settings.toml").write_text(FAST + "concurrency = 2\n")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        with (tmp_path / "run.log").open("wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "hitl", "--db", str(tmp_path / "hitl.db"), "--config",
                                     str(tmp_path / "settings.toml"), "embed", "--model", CLIP, "--base-url",
                                     server.url, "--images", str(tmp_path / "photos")], env=env, cwd=tmp_path,
                                    stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_ok(tmp_path)) < 4 and proc.poll() is None:
            time.sleep(0.05)
        below = descendants(proc.pid)  # images are prepared in threads: the run starts no process
        proc.kill()  # SIGKILL (nothing, if it ended by itself: the message below says how)
        proc.wait(timeout=10)
        assert below == [] and still_running(below) == []  # nothing can wait for a run that is gone
        before = _ok(tmp_path)
        assert 4 <= len(before) < 16, (f"{len(before)} stored, exit {proc.returncode}, "
                                       f"{len(server.image_counts())} sent: {(tmp_path / 'run.log').read_text()[-2000:]}")
        sent_before = {key[h]: n for h, n in server.image_counts().items()}
        server.latency = 0  # the slowness was there to catch the run mid-way; the rerun only has to finish
        run(tmp_path, "embed", "--model", CLIP, "--base-url", server.url, "--images", str(tmp_path / "photos"))
        # the folder's photos (the run ends by embedding planted copies of a few: the calibration)
        counts = {key[h]: n for h, n in server.image_counts().items() if h in key}
        assert all(counts[i] == 1 for i in before)  # nothing stored before the kill was sent again
        twice = {i for i, n in counts.items() if n > 1}
        assert twice <= set(sent_before) - before and len(twice) <= 2  # only what was in flight
        assert len(_ok(tmp_path)) == 16


def _ok(tmp_path: Path) -> set[str]:
    if not (tmp_path / "hitl.db").exists():
        return set()
    try:
        db = store.connect(tmp_path / "hitl.db", migrate_schema=False)
        return {r[0] for r in db.execute("SELECT image_id FROM embeddings WHERE status = 'ok'")}
    except Exception:  # the schema is still being made by the run
        return set()


def tiny_encoder(path: Path, size: int = 16) -> np.ndarray:
    """An image tower in miniature: global average pool, flatten, a 3 x 5 projection. Returns the weights."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.array([[1.0, 0.0, 0.5, -1.0, 0.2], [0.0, 1.0, 0.5, 1.0, -0.3], [0.5, -0.5, 0.5, 0.0, 1.0]],
                       np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "projection"], ["embedding"])],
        "tiny", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["N", 5])],
        [numpy_helper.from_array(weights, "projection")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return weights


def test_an_onnx_image_encoder_runs_with_its_preprocessing(tmp_path):
    from hitl.embed.backends.onnx import onnx_input

    weights = tiny_encoder(tmp_path / "tiny.onnx")
    spec = {"name": "tiny", "input_size": 16, "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}
    (tmp_path / "tiny.json").write_text(json.dumps(spec))
    paths = make_folder(tmp_path / "photos", 3)
    result = run(tmp_path, "embed", "--model", f"onnx:{tmp_path / 'tiny.onnx'}", "--images", str(tmp_path / "photos"))
    assert "onnx:tiny (local): 3 embedded, 0 failed of 3" in result.output
    ids, matrix = vectors(store.connect(tmp_path / "hitl.db"), "onnx:tiny")
    for image_id, row, path in zip(ids, matrix, paths):
        tensor = onnx_input(path, 16, spec["mean"], spec["std"], 10**8)
        assert tensor.shape == (3, 16, 16)
        expected = unit_float16(tensor.mean(axis=(1, 2)) @ weights).astype(np.float32)
        assert np.allclose(row, expected, atol=2e-3), image_id


def test_an_onnx_model_without_its_preprocessing_is_one_line(tmp_path):
    tiny_encoder(tmp_path / "tiny.onnx")
    make_folder(tmp_path / "photos", 1)
    result = run(tmp_path, "embed", "--model", f"onnx:{tmp_path / 'tiny.onnx'}", "--images", str(tmp_path / "photos"),
                 ok=False)
    assert result.exit_code == 1 and "tiny.json is missing" in result.output and "Traceback" not in result.output


def test_the_collection_is_read_as_select_reads_it(tmp_path, camera_traps):
    result = run(tmp_path, "embed", "--model", "baseline", "--md", str(camera_traps / "md_results.json"),
                 "--images", str(camera_traps / "images"))
    rows = stored(tmp_path, "baseline")
    assert "human.jpg" not in rows and "vehicle.jpg" not in rows  # the people rule, as select applies it
    assert not {"blank.jpg", "african_elephants_truncated_file.jpg"} & set(rows)  # no animal; a detector failure
    assert len(rows) == 8 and all(r["status"] == "ok" for r in rows.values())
    assert all(r["root"] == str(camera_traps / "images") for r in rows.values())
    assert not store.connect(tmp_path / "hitl.db")["candidates"].count  # nothing selected
    assert "eligible" in result.output and "it is not a learned representation" in result.output


def test_candidates_and_their_bursts_by_default(tmp_path, sample_data):
    run(tmp_path, "select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
        "--images", str(sample_data / "images"), "-n", "4", "--frames-per-burst", "2")
    from hitl.store.bursts import candidate_frames

    frames = candidate_frames(store.connect(tmp_path / "hitl.db"))
    result = run(tmp_path, "embed", "--model", "baseline")
    assert f"{len(frames)} embedded" in result.output and len(frames) > 4
    assert set(stored(tmp_path, "baseline")) == set(frames)


def test_the_read_api_reads_many_rows_per_query(tmp_path):
    db = store.connect(tmp_path / "hitl.db")
    rng = np.random.default_rng(1)
    made = {f"img_{k:02d}": unit_float16(rng.standard_normal(7)) for k in range(11)}
    with store.transaction(db):
        write_embeddings(db, [embedding_row(i, "m1", "/r", vector=v) for i, v in made.items()]
                         + [embedding_row("broken", "m1", "/r", error="x", error_kind="http 400")])
    ids, matrix = vectors(db, "m1", chunk=4)
    assert ids == sorted(made) and matrix.dtype == np.float32 and matrix.shape == (11, 7)
    assert np.array_equal(matrix, np.array([made[i] for i in ids], np.float32))
    some, part = vectors(db, "m1", ids=["img_03", "img_01", "missing", "broken"], chunk=2)
    assert some == ["img_01", "img_03"] and np.array_equal(part[1], made["img_03"].astype(np.float32))
    assert [(m.model, m.dim, m.n) for m in models(db)] == [("m1", 7, 11)] and newest_model(db) == "m1"
    assert vectors(db, "none") == ([], pytest.approx(np.zeros((0, 0))))
    stored_order = list(vector_chunks(db, "m1", chunk=4, root="/r", ordered=False))  # as select --learned reads
    assert [len(part_ids) for part_ids, _ in stored_order] == [4, 4, 3]
    read = {i: v for part_ids, part in stored_order for i, v in zip(part_ids, part)}
    assert set(read) == set(made) and all(np.array_equal(read[i], made[i]) for i in made)
    assert list(vector_chunks(db, "m1", root="/another", ordered=False)) == []
    asked: list[str] = []  # many ids are looked up by key, not found by walking every vector of the model
    db.conn.set_trace_callback(asked.append)
    assert len(vectors(db, "m1", ids=[f"img_{k:03d}" for k in range(900)], root="/r")[0]) == 0
    db.conn.set_trace_callback(None)
    lookup = next(sql for sql in asked if "image_id IN" in sql)
    plan = " ".join(row[3] for row in db.conn.execute("EXPLAIN QUERY PLAN " + lookup))
    assert "embeddings_1 (image_id=?)" in plan and "model_status" not in plan, plan


def test_a_vector_of_another_dimension_is_a_recorded_failure(tmp_path):
    paths = make_folder(tmp_path / "photos", 2)
    with FakeOpenAI() as server:
        server.on_image(sent(paths[1]), B.raw(200, {"object": "list", "data": [{"embedding": [1.0, 2.0]}]}))
        result = run(tmp_path, "embed", "--model", CLIP, "--base-url", server.url, "--images", str(tmp_path / "photos"))
        assert "1 embedded, 1 failed of 2" in result.output and "bad vector" in result.output
