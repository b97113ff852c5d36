"""`hitl studio` ends what it started, whenever and however it is stopped: its install of Label
Studio (uv, else pip, in a process group of its own) on a stop signal at any moment, Label Studio within
a few seconds even if it ignores SIGTERM, and Label Studio even when `hitl studio` itself is
killed outright. An install cut short is never taken for a finished one."""
from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from uv import find_uv_bin

from hitl import process
from hitl.errors import HitlError
from hitl.review import studio

from .conftest import REPO
from .helpers import constraints, install_into


def executable(path: Path, code: str) -> Path:
    """A stand-in for the label-studio script: ``code`` run by this Python."""
    path.write_text(f"#!{sys.executable}\n{code}")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def processes_mentioning(*parts: str) -> list[psutil.Process]:
    """The live processes (this one aside) whose command line holds each of ``parts``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            line = " ".join(proc.info["cmdline"] or [])
            if all(part in line for part in parts) and not gone(proc.pid) and proc.pid != os.getpid():
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def fake_installer(venv: Path, commands: list, failing: set = frozenset(), check=lambda: None):
    """A stand-in for studio._run_to_end: notes each command, fails those whose program is in
    ``failing``, and an install writes .venv-studio's label-studio."""
    def run(command: list[str], _output) -> int:
        commands.append(command)
        check()
        if command[0] in failing:
            return 1
        if "install" in command:
            (venv / "bin").mkdir(exist_ok=True)
            (venv / "bin" / "label-studio").write_text("#!/bin/sh\n")
        return 0
    return run


def test_an_install_cut_short_is_not_used_and_is_done_again(studio_home, monkeypatch):
    """pip killed half-way can leave bin/label-studio written before the packages it imports: the
    mark an install leaves until pip has succeeded says so, and the next install starts over."""
    venv = studio_home
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "label-studio").write_text("#!/bin/sh\n")
    (venv / "lib").mkdir()
    (venv / "lib" / "half-written.py").write_text("")
    (venv / studio.INSTALLING_MARK).touch()
    with pytest.raises(HitlError, match="cut short"):
        studio.find_binary()
    commands = []

    def started_over() -> None:
        assert not (venv / "lib").exists(), "the install started over what the cut-short one left"

    monkeypatch.setattr(studio, "_run_to_end", fake_installer(venv, commands, check=started_over))
    said = []
    assert studio.find_binary(install=True, echo=said.append) == venv / "bin" / "label-studio"
    assert len(commands) == 2 and any("cut short" in line for line in said)
    assert not (venv / studio.INSTALLING_MARK).exists()
    assert studio.find_binary() == venv / "bin" / "label-studio"


def test_uv_installs_label_studio_and_pip_does_when_uv_cannot(studio_home, monkeypatch):
    """uv (a dependency of hero-hitl) installs it in seconds; when uv fails (an index mirror only
    pip's settings name, say) pip installs it, and says so; when both fail, the error names the log
    and the install counts as cut short."""
    venv, python = studio_home, str(studio_home / "bin" / "python")
    pinned = ["--constraint", str(studio.CONSTRAINTS), f"label-studio=={studio.LABEL_STUDIO_VERSION}"]
    uv = [find_uv_bin(), "pip", "install", "--quiet", "--python", python, *pinned]
    pip = [python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pinned]
    assert studio.install_commands(venv) == [uv, pip]
    commands, failing = [], set()
    monkeypatch.setattr(studio, "_run_to_end", fake_installer(venv, commands, failing))
    said = []
    studio.find_binary(install=True, echo=said.append)
    # the venv uv installs into gets no pip (ensurepip would install and compile it for nothing)
    assert commands == [[sys.executable, "-m", "venv", "--without-pip", str(venv)], uv]
    assert not any("trying pip" in line for line in said)

    shutil.rmtree(venv)
    commands.clear()
    failing.add(uv[0])
    assert studio.find_binary(install=True, echo=said.append) == venv / "bin" / "label-studio"
    # pip, once uv failed, after ensurepip has put it into that venv
    assert commands[1:] == [uv, [python, "-m", "ensurepip", "--default-pip"], pip]
    assert not (venv / studio.INSTALLING_MARK).exists()
    assert f"uv could not install it (log {venv / 'install.log'}): trying pip, which takes minutes" in said

    shutil.rmtree(venv)
    failing.add(python)
    with pytest.raises(HitlError, match=f"installing Label Studio failed \\(log {venv / 'install.log'}\\)"):
        studio.find_binary(install=True, echo=said.append)
    assert (venv / studio.INSTALLING_MARK).exists()

    monkeypatch.setitem(sys.modules, "uv", None)  # hero-hitl installed without its dependencies
    assert studio.install_commands(venv) == [pip]
    shutil.rmtree(venv)
    commands.clear()
    failing.clear()
    studio.find_binary(install=True, echo=said.append)
    assert commands == [[sys.executable, "-m", "venv", str(venv)], pip]  # pip alone: the venv brings it


@pytest.mark.slow
def test_pip_is_put_into_the_venv_made_for_uv_when_uv_cannot_install(studio_home, monkeypatch):
    """The real venv and ensurepip: the venv made for uv has no pip, and once uv fails, pip is put
    into it and runs there (here `pip --version` stands in for pip's install of Label Studio)."""
    python = str(studio_home / "bin" / "python")
    monkeypatch.setattr(studio, "install_commands", lambda venv: [["false"], [python, "-m", "pip", "--version"]])
    said = []
    studio.find_binary(install=True, echo=said.append)
    assert any(line.startswith("false could not install it") for line in said)
    assert f"from {studio_home / 'lib'}" in (studio_home / "install.log").read_text()  # that venv's own pip
    assert not (studio_home / studio.INSTALLING_MARK).exists()


def test_label_studio_installed_at_other_pins_is_installed_again(studio_home, tmp_path, monkeypatch):
    """A .venv-studio from before an upgrade of hero-hitl (another Label Studio version, other pinned
    dependencies, or none: the install that a new sentry-sdk broke) is not used but installed again."""
    venv = studio_home
    commands, said = [], []
    monkeypatch.setattr(studio, "_run_to_end", fake_installer(venv, commands))
    assert studio.find_binary(install=True, echo=said.append) == venv / "bin" / "label-studio"
    assert studio.find_binary() == venv / "bin" / "label-studio" and len(commands) == 2

    pins = tmp_path / "label_studio_constraints.txt"
    pins.write_text(studio.CONSTRAINTS.read_text() + "django==5.2.21\n")
    monkeypatch.setattr(studio, "CONSTRAINTS", pins)
    with pytest.raises(HitlError, match="not installed"):
        studio.find_binary()
    assert studio.find_binary(install=True, echo=said.append) == venv / "bin" / "label-studio"
    assert len(commands) == 4 and "installed at other versions" in said[-1]
    assert studio.find_binary() == venv / "bin" / "label-studio"

    (venv / studio.INSTALLED_STAMP).unlink()  # installed by a hero-hitl that pinned nothing
    with pytest.raises(HitlError, match="not installed"):
        studio.find_binary()


def test_the_pins_are_of_this_label_studio_and_hold_its_known_breakages():
    """The pinned set is regenerated with LABEL_STUDIO_VERSION (scripts/lock_label_studio.sh), and
    caps sentry-sdk below 3 on every Python (3.0.0 refuses an option Label Studio 1.23.2 passes)."""
    requirements = constraints(studio.CONSTRAINTS)
    pinned = {r.name: str(r.specifier) for r in requirements if r.marker}
    assert pinned["label-studio"] == f"=={studio.LABEL_STUDIO_VERSION}"
    assert all(spec.startswith("==") for spec in pinned.values())
    everywhere = [r for r in requirements if not r.marker]
    assert [str(r) for r in everywhere] == ["sentry-sdk<3"]


def test_label_studio_dies_with_the_process_that_started_it(tmp_path):
    """`hitl studio` killed outright (SIGKILL, the OOM killer) runs no finally: Label Studio, in a
    session of its own that no signal to the script's group reaches, held its port for good."""
    fake = executable(tmp_path / "label-studio", "import time\ntime.sleep(600)\n")
    starter = subprocess.Popen(
        [sys.executable, "-c", """
import sys, time
from pathlib import Path
from hitl.review import studio
folder = Path(sys.argv[1])
config = studio.StudioConfig(data_dir=folder / "data", document_root=folder, username="curator@example.org",
                             password="x", token=studio.new_token(), port=studio.free_port())
print(studio.start(config, Path(sys.argv[2]), folder / "label-studio.log").pid, flush=True)
time.sleep(600)
""", str(tmp_path), str(fake)], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    child = int(starter.stdout.readline())
    assert not gone(child)
    starter.kill()
    starter.wait()
    deadline = time.monotonic() + 5
    while not gone(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not gone(child):
        os.kill(child, signal.SIGKILL)
        pytest.fail("Label Studio outlived the killed process that started it")


def test_stopping_a_label_studio_that_ignores_sigterm_is_bounded(tmp_path):
    """The whole group goes, a worker of it too, in time for demo.sh's 10 s wait before it kills."""
    fake = executable(tmp_path / "label-studio", """import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])  # SIGTERM ignored too
print(worker.pid, flush=True)
time.sleep(600)
""")
    config = studio.StudioConfig(data_dir=tmp_path / "data", document_root=tmp_path, username="curator@example.org",
                                 password="x", token=studio.new_token(), port=studio.free_port())
    process = studio.start(config, fake, tmp_path / "label-studio.log")
    deadline = time.monotonic() + 120
    while not (tmp_path / "label-studio.log").read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.05)
    worker = int((tmp_path / "label-studio.log").read_text().split()[0])
    started = time.monotonic()
    studio.stop(process)
    took = time.monotonic() - started
    assert process.returncode == -signal.SIGKILL
    assert gone(worker), "a worker of Label Studio's group was left"
    assert took < 9, f"stop took {took:.1f} s"


def test_a_stop_does_not_wait_for_the_dead_of_the_group(monkeypatch):
    """A worker of the group dead but not yet reaped (a zombie, as under a PID 1 that reaps late or
    never, many containers' init) holds no port: stop() waited its 2 s for it to leave the group."""
    leader = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], process_group=0)
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], process_group=leader.pid)
    try:
        worker.kill()  # not waited for: a zombie in the leader's group until we reap it
        while psutil.Process(worker.pid).status() != psutil.STATUS_ZOMBIE:
            time.sleep(0.01)
        sleeps = []
        monkeypatch.setattr(process, "time", SimpleNamespace(monotonic=time.monotonic, sleep=sleeps.append))
        studio.stop(leader)
        assert leader.returncode == -signal.SIGTERM
        assert psutil.Process(worker.pid).status() == psutil.STATUS_ZOMBIE  # still there, and not waited for
        assert sleeps == []
    finally:
        for child in (leader, worker):
            child.kill()
            child.wait()


def test_label_studio_stopping_by_itself_is_a_failure(tmp_path):
    """A Label Studio that was up and then exited left `hitl studio` exiting 0: a script running it
    took a crash for a normal end."""
    fake = executable(tmp_path / "label-studio", """import http.server, sys
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"status": "UP"}')
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[sys.argv.index("--port") + 1])), Health)
server.handle_request()  # up: the first /health hitl asks is answered, and then it ends by itself
""")
    result = subprocess.run(
        [sys.executable, "-m", "hitl", "--db", str(tmp_path / "hitl.db"), "studio", "--port", str(studio.free_port()),
         "--data-dir", str(tmp_path / "data"), "--document-root", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "LABEL_STUDIO_BIN": str(fake)})
    assert "is up" in result.stdout, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Label Studio stopped by itself (exit code 0)" in result.stderr


def _ignore_sigint() -> None:
    """As a job in the background of a script starts: SIGINT ignored (and TERM, HUP at their defaults)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


@pytest.mark.slow  # a fresh .venv-studio each
@pytest.mark.studio  # the real install of Label Studio, from the index
@pytest.mark.parametrize("sig, group", [(signal.SIGTERM, False), (signal.SIGHUP, False), (signal.SIGINT, True)],
                         ids=["SIGTERM-alone", "SIGHUP-alone", "SIGINT-group"])
def test_a_stop_during_the_install_stops_pip(tmp_path, studio_home, sig, group):
    """The real install into an empty HITL_HOME, stopped once pip runs: `hitl studio` used to set its
    stop handlers only after the install, so SIGTERM killed it at once and pip went on writing
    .venv-studio with nobody waiting for it, and Ctrl+C to a script's group (SIGINT, ignored by its
    background jobs) was not heard at all. Within 15 s nothing is left, and the install is not used."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HITL_HOME": str(tmp_path)}
    env.pop("LABEL_STUDIO_BIN", None)
    command = subprocess.Popen(
        [sys.executable, "-m", "hitl", "--db", str(tmp_path / "hitl.db"), "studio", "--port", str(studio.free_port()),
         "--data-dir", str(tmp_path / "data"), "--document-root", str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        preexec_fn=_ignore_sigint)
    deadline = time.monotonic() + 600
    while not processes_mentioning(*install_into(tmp_path / ".venv-studio")):
        assert command.poll() is None, "hitl studio ended before its install"
        assert time.monotonic() < deadline, "the install did not start within 600 s"
        time.sleep(0.2)
    time.sleep(1)  # the installer at work (uv's install takes seconds)
    os.killpg(command.pid, sig) if group else command.send_signal(sig)
    deadline = time.monotonic() + 15
    while (command.poll() is None or processes_mentioning(str(tmp_path))) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = processes_mentioning(str(tmp_path))
    for proc in left:
        proc.kill()
    command.kill()
    assert not left, f"left running 15 s after {sig.name}: {[' '.join(p.cmdline())[:120] for p in left]}"
    assert command.returncode == 0
    with pytest.raises(HitlError, match="not installed"):  # find_binary looks in studio_home
        studio.find_binary()
