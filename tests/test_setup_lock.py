"""The README's two set-up commands may run at once: `scripts/demo.sh` and `scripts/test.sh` both
create and install `.venv` (scripts/_venv.sh), and both install Label Studio into `.venv-studio`
(hitl.review.studio.find_binary). One lock around each set-up: the second waits, then finds the
work done (or does what is left), instead of calling a pip the first has not installed yet. And a
Ctrl+C during the set-up ends it, whichever installer it reaches."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hitl.review import studio

from .conftest import REPO, _default_signals

TINY_PROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "hitl-setup-lock-probe"
version = "0"

[tool.setuptools]
packages = []
"""


def tiny_project(tmp_path: Path) -> Path:
    """The real _venv.sh in a project of nothing but uv (the requirement that installs the rest), so
    the installers only build a tiny editable install from their index or cache."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    shutil.copy2(REPO / "scripts" / "_venv.sh", repo / "scripts" / "_venv.sh")
    uv = [line for line in (REPO / "requirements.txt").read_text().splitlines() if line.startswith("uv")]
    assert len(uv) == 1, "requirements.txt names uv once"
    (repo / "requirements.txt").write_text(uv[0] + "\n")
    (repo / "requirements-dev.txt").write_text("-r requirements.txt\n")
    (repo / "pyproject.toml").write_text(TINY_PROJECT)
    return repo


def set_up(repo: Path, requirements: str, env: dict[str, str]) -> subprocess.Popen:
    """`ensure_venv requirements` of the repo's _venv.sh, as demo.sh and test.sh call it."""
    return subprocess.Popen(["bash", "-c", f'source "$1"; ensure_venv {requirements}', "_",
                             str(repo / "scripts" / "_venv.sh")], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def installed(venv: Path, name: str = "hitl-setup-lock-probe") -> subprocess.CompletedProcess:
    return subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "show", name], capture_output=True, text=True)


@pytest.mark.slow  # a fresh virtual environment
def test_demo_and_test_set_up_one_environment_together(tmp_path):
    """The second set-up starts the moment the first's venv has a python, before that venv has
    installed pip: without the lock it called `python -m pip` there and failed with "No module
    named pip"."""
    repo = tiny_project(tmp_path)
    venv = tmp_path / "venv"
    env = {**os.environ, "HITL_VENV": str(venv), "PYTHON": sys.executable}
    env.pop("VIRTUAL_ENV", None)
    demo = set_up(repo, "requirements.txt", env)
    deadline = time.monotonic() + 120
    while not (venv / "bin" / "python").exists():  # the first is creating the environment now
        assert demo.poll() is None and time.monotonic() < deadline, demo.communicate()[0]
        time.sleep(0.01)
    tests = set_up(repo, "requirements-dev.txt", env)
    outputs = {name: p.communicate(timeout=600)[0] for name, p in (("demo", demo), ("test", tests))}
    assert demo.returncode == 0, outputs["demo"]
    assert tests.returncode == 0, outputs["test"]
    assert "Waiting for another set-up" in outputs["test"]
    assert outputs["demo"].count("Creating virtual environment") + outputs["test"].count(
        "Creating virtual environment") == 1
    for requirements in ("requirements.txt", "requirements-dev.txt"):
        assert (venv / f".hitl-installed-{requirements}").is_file()
    assert installed(venv).returncode == 0 and installed(venv, "uv").returncode == 0
    assert "uv could not install" not in outputs["demo"] + outputs["test"]


@pytest.mark.slow  # a fresh virtual environment
def test_pip_sets_up_the_environment_when_uv_cannot(tmp_path):
    """uv reads none of pip's settings (an index mirror, a proxy's certificate): when it cannot
    install, pip does, and the set-up says so. Here uv may not reach the network nor keep a cache,
    so it cannot fetch the setuptools that the editable install is built with."""
    repo = tiny_project(tmp_path)
    venv = tmp_path / "venv"
    env = {**os.environ, "HITL_VENV": str(venv), "PYTHON": sys.executable, "UV_OFFLINE": "1", "UV_NO_CACHE": "1"}
    env.pop("VIRTUAL_ENV", None)
    output = set_up(repo, "requirements.txt", env).communicate(timeout=600)[0]
    assert f"uv could not install them (log: {venv / 'pip-install.log'}): installing with pip" in output, output
    assert (venv / ".hitl-installed-requirements.txt").is_file()
    assert installed(venv).returncode == 0 and installed(venv, "uv").returncode == 0  # pip had installed uv


# An installer that, like pip, catches Ctrl+C and exits with an error of its own (pip says "Operation
# cancelled by user" and exits 1) rather than dying of the signal; it keeps installing otherwise.
INSTALLER_CAUGHT_BY_CTRL_C = """#!/usr/bin/env bash
trap 'exit 1' INT
echo "$*" >> "$(dirname "$0")/../calls.log"
while :; do sleep 0.05; done
"""


@pytest.mark.slow  # runs scripts/_venv.sh, as tests/conftest.py requires of such tests (seconds, here)
def test_ctrl_c_while_installing_ends_the_set_up(tmp_path):
    """bash goes on after a command that caught the signal, so without the set-up's traps a Ctrl+C
    while pip installed uv read as uv's failure: pip was started over again, installing for minutes
    (CI saw it: demo.sh still running 15 s after a Ctrl+C to its process group)."""
    repo = tiny_project(tmp_path)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(INSTALLER_CAUGHT_BY_CTRL_C)
    (venv / "bin" / "python").chmod(0o755)
    env = {**os.environ, "HITL_VENV": str(venv), "PYTHON": sys.executable}
    script = subprocess.Popen(["bash", "-c", 'source "$1"; ensure_venv requirements.txt; echo set up',
                               "_", str(repo / "scripts" / "_venv.sh")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True,
                              preexec_fn=_default_signals)  # a suite run in the background ignores SIGINT
    calls = venv / "calls.log"
    deadline = time.monotonic() + 60
    while not calls.exists():
        assert script.poll() is None and time.monotonic() < deadline, script.communicate()[0]
        time.sleep(0.02)
    os.killpg(script.pid, signal.SIGINT)
    try:
        output = script.communicate(timeout=10)[0]
    except subprocess.TimeoutExpired:
        os.killpg(script.pid, signal.SIGKILL)
        pytest.fail(f"still running 10 s after Ctrl+C: {script.communicate()[0]}\ncalls: {calls.read_text()}")
    assert script.returncode == 130, output
    uv_spec = (repo / "requirements.txt").read_text().strip()
    assert calls.read_text().splitlines() == [f"-m pip install --disable-pip-version-check {uv_spec}"]  # no second
    assert "uv could not install" not in output and "set up" not in output, output
    assert not (venv / ".hitl-installed-requirements.txt").exists()


def test_label_studio_is_installed_once_when_two_ask_at_once(studio_home, monkeypatch):
    """Two callers of find_binary(install=True) at once (test.sh's and `hitl studio`'s): one installs,
    the other waits for it and finds the binary; no second venv over the first, no second pip."""
    venv = studio_home
    calls: list[str] = []
    running = []

    def fake_run(command, _output):
        running.append(command)
        calls.append("pip" if "pip" in command else "venv")
        time.sleep(0.3)  # an install takes a while: the other caller arrives meanwhile
        if "pip" in command:
            (venv / "bin").mkdir(parents=True, exist_ok=True)
            (venv / "bin" / "label-studio").write_text("#!/bin/sh\n")
        overlap = len(running)
        running.remove(command)
        assert overlap == 1, "two installs ran at the same time"
        return 0

    monkeypatch.setattr(studio, "_run_to_end", fake_run)
    found, errors, said = [], [], []

    def ask() -> None:
        try:
            found.append(studio.find_binary(install=True, echo=said.append))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
        time.sleep(0.05)
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors
    assert found == [venv / "bin" / "label-studio"] * 2
    assert calls == ["venv", "pip"]  # installed once
    assert any(line.startswith("Waiting for another install") for line in said)
    assert Path(found[0]).exists()
