"""`hitl vllm`: the GPUs found (a fake nvidia-smi on PATH: none, one 24 GB, two 24 GB, one 12 GB,
one 8 GB, and mixed or busy ones), the model and flags chosen for them, and the server run as
`hitl studio` runs Label Studio (a fake `vllm` on PATH, tests/fakes/vllm_serve.py): waited for,
used by `hitl score` at the base URL it printed, and stopped whole by Ctrl+C, SIGTERM or SIGHUP."""
from __future__ import annotations

import base64
import json
import os
import queue
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from hitl.cli import cli
from hitl.process import free_port, port_is_free
from hitl.vllm.gpus import parse_nvidia_smi

from .conftest import REPO, CliProject
from .fakes.vllm_serve import write_executable

QUERY = ["--query-gpu=index,name,memory.total,memory.free", "--format=csv,noheader,nounits"]
NO_DRIVER = ("NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the "
             "latest NVIDIA driver is installed and running.")
# nvidia-smi's lines (MiB) for the machines of the issue, and a few more
RTX_4090 = "{i}, NVIDIA GeForce RTX 4090, 24564, {free}"
MACHINES = {
    "one 24 GB": [RTX_4090.format(i=0, free=24080)],
    "two 24 GB": [RTX_4090.format(i=0, free=24080), RTX_4090.format(i=1, free=23900)],
    "one 12 GB": ["0, NVIDIA GeForce RTX 3060, 12288, 11950"],
    "one 8 GB": ["0, NVIDIA GeForce RTX 3070, 8192, 7900"],
    "24 GB and 12 GB": [RTX_4090.format(i=0, free=24080), "1, NVIDIA GeForce RTX 3060, 12288, 11950"],
    "24 GB, 14 GB of it free": [RTX_4090.format(i=0, free=14336)],
}


def fake_nvidia_smi(folder: Path, lines: list[str] | None) -> Path:
    """nvidia-smi answering the query hitl asks with ``lines``; None: a machine without a driver."""
    folder.mkdir(parents=True, exist_ok=True)
    body = (f"print({NO_DRIVER!r})\nsys.exit(9)" if lines is None else
            f"if sys.argv[1:] != {QUERY!r}:\n    sys.exit('unknown query: ' + ' '.join(sys.argv[1:]))\n"
            f"print({chr(10).join(lines)!r})")
    path = folder / "nvidia-smi"
    path.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def machine(tmp_path, monkeypatch):
    """Make this a machine with the GPUs of MACHINES[name] (None: no driver); returns the bin folder."""
    def make(name: str | None) -> Path:
        folder = tmp_path / "bin"
        fake_nvidia_smi(folder, None if name is None else MACHINES[name])
        monkeypatch.setenv("PATH", str(folder))
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        monkeypatch.delenv("VLLM_BIN", raising=False)
        return folder
    return make


def hitl_vllm(*args: str, db: Path | None = None):
    result = CliRunner().invoke(cli, ["--db", str(db or "unused.db"), "vllm", *args])
    assert "Traceback" not in result.output, result.output
    return result


def printed(*args: str) -> tuple[list[str], str, str]:
    """`hitl vllm --print ...`: the `vllm serve` arguments, the client line and what it said on stderr."""
    result = hitl_vllm("--print", *args)
    assert result.exit_code == 0, result.output
    commands = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    assert len(commands) == 2, result.stdout
    return shlex.split(commands[0]), commands[1], result.stderr


def flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


# --- sizing ---------------------------------------------------------------------------------------------

def test_one_24_gb_gpu_serves_the_7b(machine):
    machine("one 24 GB")
    argv, client, said = printed()
    assert argv[:3] == ["vllm", "serve", "Qwen/Qwen2.5-VL-7B-Instruct"]
    assert flag(argv, "--data-parallel-size") == "1" and flag(argv, "--gpu-memory-utilization") == "0.90"
    assert flag(argv, "--host") == "127.0.0.1" and flag(argv, "--port") == "8000"
    assert flag(argv, "--max-model-len") == "8192"
    assert json.loads(flag(argv, "--limit-mm-per-prompt")) == {"image": 1, "video": 0}
    assert json.loads(flag(argv, "--mm-processor-kwargs")) == {"max_pixels": 784 * 784}  # score.max_side 768
    assert "CUDA_VISIBLE_DEVICES" not in argv[0] and "--runner" not in argv
    assert shlex.split(client) == ["python", "-m", "hitl", "score", "--model", "openai:Qwen/Qwen2.5-VL-7B-Instruct",
                                   "--base-url", "http://127.0.0.1:8000/v1", "--concurrency", "16"]
    assert "Found 1 GPU(s) (nvidia-smi): GPU 0 (NVIDIA GeForce RTX 4090, 23.5 of 24.0 GiB free)" in said


def test_vllm_uses_no_database_and_makes_none(machine, tmp_path):
    machine("one 24 GB")
    assert hitl_vllm("--print", db=tmp_path / "mistyped.db").exit_code == 0
    assert not (tmp_path / "mistyped.db").exists()


def test_two_24_gb_gpus_serve_one_copy_each(machine):
    machine("two 24 GB")
    argv, client, _ = printed("--port", "8100")
    assert argv[2] == "Qwen/Qwen2.5-VL-7B-Instruct" and flag(argv, "--data-parallel-size") == "2"
    assert flag(argv, "--port") == "8100"
    assert client.endswith("--base-url http://127.0.0.1:8100/v1 --concurrency 32")


def test_one_12_gb_gpu_serves_the_3b(machine):
    machine("one 12 GB")
    argv, client, _ = printed()
    assert argv[2] == "Qwen/Qwen2.5-VL-3B-Instruct" and flag(argv, "--gpu-memory-utilization") == "0.90"
    assert "openai:Qwen/Qwen2.5-VL-3B-Instruct" in client


def test_one_8_gb_gpu_is_refused_for_scoring_in_one_line(machine):
    machine("one 8 GB")
    for args in ([], ["--print"]):
        line = one_error_line(hitl_vllm(*args))
        assert "not enough GPU memory for Qwen/Qwen2.5-VL-3B-Instruct, which needs 10 GiB" in line
        assert "GPU 0 (NVIDIA GeForce RTX 3070" in line and "--model baseline" in line


def test_a_busy_gpu_is_sized_to_its_free_memory(machine):
    """A 24 GB card with 10 GB taken by something else: the 3B, told to take only what is free."""
    machine("24 GB, 14 GB of it free")
    argv, _, _ = printed()
    assert argv[2] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert flag(argv, "--gpu-memory-utilization") == "0.56"  # (14336 - 512) / 24564, rounded down


def test_mixed_gpus_serve_the_7b_where_it_fits_and_say_how_to_use_both(machine):
    machine("24 GB and 12 GB")
    argv, _, said = printed()
    assert argv[:4] == ["CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=0", "vllm", "serve"]
    assert argv[4] == "Qwen/Qwen2.5-VL-7B-Instruct" and flag(argv, "--data-parallel-size") == "1"
    assert "GPU 1 (NVIDIA GeForce RTX 3060, 11.7 of 12.0 GiB free) left out: under the 20 GiB" in said
    assert "--gpus 0,1 would serve Qwen/Qwen2.5-VL-3B-Instruct on all of them" in said
    argv, _, _ = printed("--gpus", "0,1")
    assert argv[2] == "Qwen/Qwen2.5-VL-3B-Instruct" and flag(argv, "--data-parallel-size") == "2"
    argv, _, _ = printed("--gpus", "1")
    assert argv[:2] == ["CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=1"]
    assert argv[4] == "Qwen/Qwen2.5-VL-3B-Instruct"
    assert "no GPU 2 here (GPUs: 0, 1)" in one_error_line(hitl_vllm("--print", "--gpus", "2"))
    assert "needs 20 GiB" in one_error_line(hitl_vllm("--print", "--gpus", "0,1", "--model",
                                                      "Qwen/Qwen2.5-VL-7B-Instruct"))


def test_cuda_visible_devices_chooses_the_gpus_when_gpus_is_not_given(machine, monkeypatch):
    machine("two 24 GB")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    argv, client, _ = printed()
    assert argv[:2] == ["CUDA_DEVICE_ORDER=PCI_BUS_ID", "CUDA_VISIBLE_DEVICES=1"]
    assert flag(argv, "--data-parallel-size") == "1" and client.endswith("--concurrency 16")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5f1c0a7e")
    assert "give GPU indices" in one_error_line(hitl_vllm("--print"))


def test_embedding_serves_an_image_encoder_as_a_pooling_model(machine):
    machine("one 24 GB")
    argv, client, _ = printed("--for", "embed")
    assert argv[2] == "google/siglip-so400m-patch14-384" and flag(argv, "--runner") == "pooling"
    assert flag(argv, "--gpu-memory-utilization") == "0.34"  # 8 GB of the card: the rest stays for a scoring server
    assert "--max-model-len" not in argv and "--limit-mm-per-prompt" not in argv
    assert shlex.split(client)[3:6] == ["embed", "--model", "openai:google/siglip-so400m-patch14-384"]
    argv, _, _ = printed("--model", "openai/clip-vit-large-patch14")  # its purpose goes with it
    assert flag(argv, "--runner") == "pooling"
    assert "use --for embed" in one_error_line(hitl_vllm("--print", "--for", "score", "--model",
                                                         "openai/clip-vit-large-patch14"))


def test_a_model_hitl_does_not_know_is_served_with_the_flags_after_the_double_dash(machine):
    machine("one 12 GB")
    argv, _, said = printed("--model", "OpenGVLab/InternVL3-2B", "--", "--max-model-len", "4096", "--enforce-eager")
    assert argv[2] == "OpenGVLab/InternVL3-2B" and argv[-3:] == ["--max-model-len", "4096", "--enforce-eager"]
    assert json.loads(flag(argv, "--limit-mm-per-prompt")) == {"image": 1}
    assert "does not know how much memory OpenGVLab/InternVL3-2B needs" in said


def test_without_a_gpu_print_sizes_for_a_stated_machine_and_serving_refuses(machine):
    machine(None)
    argv, _, said = printed()
    assert "No NVIDIA GPU found here (nvidia-smi: NVIDIA-SMI has failed" in said
    assert "`hitl score --model baseline` and Gemini models" in said and "Sized below for 1x24" in said
    assert argv[2] == "Qwen/Qwen2.5-VL-7B-Instruct"
    argv, _, said = printed("--for", "embed")
    assert "`hitl embed --model baseline` works without one" in said
    argv, client, said = printed("--assume", "2x24")
    assert flag(argv, "--data-parallel-size") == "2" and "No NVIDIA GPU" not in said
    line = one_error_line(hitl_vllm())
    assert line.startswith("Error: no NVIDIA GPU found here") and "--model baseline" in line


def test_gpus_come_from_nvidia_ml_py_without_nvidia_smi(tmp_path, monkeypatch):
    """No nvidia-smi on PATH: nvidia-ml-py (installed with vLLM) is asked; without it either, no GPU."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setitem(sys.modules, "pynvml", None)  # not installed
    assert "no nvidia-smi on PATH and no nvidia-ml-py installed" in printed()[2]

    class Memory:
        total, free = 24564 * 2**20, 24080 * 2**20

    class FakeNvml:
        NVMLError = RuntimeError
        shut = False

        def nvmlInit(self): pass
        def nvmlShutdown(self): FakeNvml.shut = True
        def nvmlDeviceGetCount(self): return 2
        def nvmlDeviceGetHandleByIndex(self, index): return index
        def nvmlDeviceGetName(self, handle): return b"NVIDIA L4" if handle else "NVIDIA GeForce RTX 4090"
        def nvmlDeviceGetMemoryInfo(self, handle): return Memory

    monkeypatch.setitem(sys.modules, "pynvml", FakeNvml())
    argv, _, said = printed()
    assert "Found 2 GPU(s) (nvidia-ml-py): GPU 0 (NVIDIA GeForce RTX 4090, 23.5 of 24.0 GiB free); GPU 1 (NVIDIA L4" in said
    assert flag(argv, "--data-parallel-size") == "2" and FakeNvml.shut


def test_nvidia_smi_lines_that_are_not_gpus_are_named_not_taken():
    gpus, problems = parse_nvidia_smi("0, NVIDIA A100-SXM4-80GB, 81920, 80000\n1, NVIDIA A100, [N/A], [N/A]\n"
                                      "2, Tesla, a K80, 11441, 11000\n\n")
    assert [(g.index, g.name, g.total_mib, g.free_mib) for g in gpus] == [
        (0, "NVIDIA A100-SXM4-80GB", 81920, 80000), (2, "Tesla, a K80", 11441, 11000)]
    assert problems == ("nvidia-smi line not understood, GPU left out: '1, NVIDIA A100, [N/A], [N/A]'",)


# --- running ---------------------------------------------------------------------------------------------

def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


class Running:
    """`python -m hitl vllm ...` in a process group of its own, its stdout read line by line; on the
    way out of the ``with``, whatever is left of it and of its fake server is killed."""

    def __init__(self, tmp_path: Path, machine_name: str, *args: str, **env: str):
        folder = tmp_path / "bin"
        fake_nvidia_smi(folder, MACHINES[machine_name])
        write_executable(folder / "vllm")
        self.record = tmp_path / "vllm-record.json"
        self.port = free_port()
        environment = {k: v for k, v in os.environ.items() if not k.startswith(("CUDA_", "VLLM_"))}
        environment.update(PATH=str(folder), PYTHONPATH=str(REPO), FAKE_VLLM_RECORD=str(self.record), **env)
        self.stderr = tmp_path / "hitl-vllm.stderr"
        with self.stderr.open("w") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hitl", "vllm", "--port", str(self.port), "--log", str(tmp_path / "vllm.log"),
                 *args], cwd=tmp_path, env=environment, stdout=subprocess.PIPE, stderr=stderr, text=True,
                start_new_session=True)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.started = time.monotonic()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *exc) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        for pid in self.server_pids() if self.record.exists() else []:
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def line_with(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            if text in line:
                return line
        pytest.fail(f"`hitl vllm` said no {text!r}; stderr:\n{self.stderr.read_text()}")

    def recorded(self) -> dict:
        """What the fake vllm was started with (its arguments, CUDA_* variables, pid and workers)."""
        deadline = time.monotonic() + 30
        while not (self.record.exists() and self.record.read_text()) and time.monotonic() < deadline:
            time.sleep(0.05)
        return json.loads(self.record.read_text())

    def server_pids(self) -> list[int]:
        return [self.recorded()["pid"], *self.recorded()["workers"]]

    def stop(self, sig: signal.Signals, group: bool = False) -> int:
        """Its exit code after ``sig`` (to its group: Ctrl+C in a terminal), within 30 s."""
        os.killpg(self.process.pid, sig) if group else self.process.send_signal(sig)
        return self.process.wait(timeout=30)


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_the_server_is_waited_for_scored_against_and_stopped_whole(tmp_path, sample_data):
    """Two 24 GB GPUs: the 7B on both, up only once it answers, `hitl score` at the base URL it
    printed, and on SIGTERM the server and its workers (ignoring SIGTERM) gone, the port free."""
    with Running(tmp_path, "two 24 GB", FAKE_VLLM_DELAY="2", FAKE_VLLM_WORKERS="2") as run:
        up = run.line_with("vLLM is up at")
        assert time.monotonic() - run.started >= 2, "up before the server listened"
        client = shlex.split(run.line_with("Score with: ").removeprefix("Score with: "))
        recorded = run.recorded()
        assert recorded["argv"][:2] == ["serve", "Qwen/Qwen2.5-VL-7B-Instruct"]
        assert flag(recorded["argv"], "--data-parallel-size") == "2"
        assert flag(recorded["argv"], "--port") == str(run.port) and recorded["env"] == {}
        assert flag(client, "--base-url") == f"http://127.0.0.1:{run.port}/v1" and flag(client, "--base-url") in up
        images = tmp_path / "photos"  # two photos: each one's score from the server, as for all of cam_a's
        images.mkdir()
        for photo in sorted((sample_data / "images" / "cam_a").iterdir())[:2]:
            shutil.copy(photo, images)
        # the printed line run in-process: what is under test is the server it talks to, not its own process
        CliProject(tmp_path / "hitl.db", {}).run("--db", str(tmp_path / "hitl.db"), *client[3:], "--images", str(images))
        with sqlite3.connect(tmp_path / "hitl.db") as db:
            rows = db.execute("SELECT status, score FROM scores").fetchall()
        assert rows == [("ok", 7.5)] * len(list(images.iterdir()))
        assert run.stop(signal.SIGTERM) == 0
        left = [pid for pid in run.server_pids() if not gone(pid)]
    assert not left, "left running after hitl vllm stopped"
    assert port_is_free("127.0.0.1", run.port)
    assert "Stopping vLLM" in run.stderr.read_text()


@pytest.mark.parametrize("sig, group", [(signal.SIGINT, True), (signal.SIGHUP, False)], ids=["Ctrl+C", "SIGHUP"])
def test_an_embedding_server_stops_on_ctrl_c_and_sighup(tmp_path, sig, group):
    with Running(tmp_path, "one 24 GB", "--for", "embed", FAKE_VLLM_WORKERS="1") as run:
        run.line_with("vLLM is up at")
        assert "openai:google/siglip-so400m-patch14-384" in run.line_with("Embed with: ")
        assert flag(run.recorded()["argv"], "--runner") == "pooling"
        image = next((REPO / "sample_data" / "images" / "cam_a").iterdir()).read_bytes()
        answer = post_json(f"http://127.0.0.1:{run.port}/v1/embeddings", {
            "model": "google/siglip-so400m-patch14-384", "encoding_format": "float",
            "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
                "url": "data:image/jpeg;base64," + base64.b64encode(image).decode()}}]}]})
        assert len(answer["data"][0]["embedding"]) == 8
        assert run.stop(sig, group) == 0
        left = [pid for pid in run.server_pids() if not gone(pid)]
    assert not left and port_is_free("127.0.0.1", run.port)


def test_a_server_that_fails_to_start_is_reported_with_its_log(tmp_path):
    with Running(tmp_path, "one 24 GB", FAKE_VLLM_FAIL="1") as run:
        assert run.process.wait(timeout=30) == 1
    said = run.stderr.read_text()
    assert "Error: vLLM exited with code 1 before it was ready; log" in said
    assert "CUDA out of memory (fake)" in said and "Traceback" not in said


def test_a_server_that_never_answers_is_stopped_after_the_timeout(tmp_path):
    with Running(tmp_path, "one 24 GB", "--timeout", "1", FAKE_VLLM_DELAY="600") as run:  # the least it takes
        assert run.process.wait(timeout=30) == 1
        assert gone(run.recorded()["pid"])
    assert "Error: vLLM did not become ready within 1 s; log" in run.stderr.read_text()


def test_a_killed_hitl_vllm_takes_its_server_along(tmp_path):
    """Killed outright (SIGKILL, the OOM killer) no finally runs: the server dies with it all the same."""
    with Running(tmp_path, "one 24 GB") as run:
        run.line_with("vLLM is up at")
        server = run.recorded()["pid"]
        run.process.kill()
        run.process.wait()
        deadline = time.monotonic() + 10
        while not gone(server) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(server), "vLLM outlived the killed hitl vllm"


def test_without_vllm_installed_serving_refuses_in_one_line(tmp_path, machine, monkeypatch):
    machine("one 24 GB")
    line = one_error_line(hitl_vllm())
    assert 'vLLM is not installed here: pip install "hero-hitl[vllm]"' in line and "VLLM_BIN" in line
    monkeypatch.setenv("VLLM_BIN", str(tmp_path / "nowhere" / "vllm"))
    assert "is not an executable file" in one_error_line(hitl_vllm())


def test_vllm_bin_is_the_server_run_and_a_taken_port_is_refused(tmp_path, machine, monkeypatch):
    machine("one 24 GB")
    monkeypatch.setenv("VLLM_BIN", str(write_executable(tmp_path / "elsewhere-vllm")))
    argv, _, _ = printed()
    assert argv[0] == str(tmp_path / "elsewhere-vllm")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(hitl_vllm("--port", str(port), "--log", str(tmp_path / "log")))
    assert f"port {port} on 127.0.0.1 is taken" in line and not (tmp_path / "log").exists()
