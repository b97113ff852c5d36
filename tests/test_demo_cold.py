"""The first run of a fresh checkout (no .venv, no .venv-studio), stopped at each moment a newcomer
may stop it: while .venv is set up, while `hitl studio` installs Label Studio, during Label
Studio's first start, and once ready. Each time the demo's process group, or `hitl studio` alone,
gets the signal, and within 15 s nothing of the demo is left (an installer, uv or pip, Label
Studio in its own session) and both ports are free. The warm runs are tests/test_demo_signals.py's.

The tests share one copy of the checkout and run in this order, each going on from what the one
before left (uv's and pip's caches are shared too), so .venv is installed once; a test run alone
sets up what it needs."""
from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import psutil
import pytest

from hitl.review import studio

from .conftest import REPO, Demo
from .helpers import install_into

pytestmark = [pytest.mark.slow, pytest.mark.studio]  # installs and starts the real Label Studio

SET_UP_S = 1800  # a set-up from nothing on a busy machine: minutes, once per step


@pytest.fixture(scope="module")
def checkout(tmp_path_factory) -> Path:
    """The checkout as a fresh clone has it: no environments, no demo data."""
    copy = tmp_path_factory.mktemp("cold") / "hero-hitl"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".venv-*", "demo", "__pycache__", "*.egg-info", ".*_cache", "*.db", "build"))
    return copy


def first_run(checkout: Path, name: str) -> Demo:
    """demo.sh of the copy with a data folder of its own, Label Studio installed in the copy."""
    out = checkout / "runs" / name
    out.mkdir(parents=True)
    return Demo(out, repo=checkout, ready=False,
                env={"HITL_HOME": str(checkout), "LABEL_STUDIO_BIN": None, "HITL_VENV": None, "VIRTUAL_ENV": None})


def running(demo: Demo, *parts: str) -> list[psutil.Process]:
    """Its processes whose command line holds each of ``parts``."""
    found = []
    for proc in demo.processes():
        try:
            if all(part in " ".join(proc.cmdline()) for part in parts):
                found.append(proc)
        except psutil.NoSuchProcess:
            continue
    return found


def install_label_studio_again(checkout: Path) -> None:
    """As if its last install had been cut short: the next `hitl studio` installs it anew."""
    venv = checkout / ".venv-studio"
    if venv.exists():
        (venv / studio.INSTALLING_MARK).touch()


def stop(demo: Demo, sig: signal.Signals, to: str) -> float:
    """``sig`` to the demo's process group or to its `hitl studio` alone; the seconds until all ended."""
    if to == "group":
        seconds = demo.stop(sig, group=True)
    else:
        [command] = running(demo, "-m hitl studio")
        command.send_signal(sig)
        seconds = demo.ended(after=f"{sig.name} to hitl studio")
    print(f"{sig.name} to {to}: everything ended in {seconds:.1f} s")
    return seconds


def test_stopped_while_its_environment_is_set_up(checkout):
    (checkout / ".venv" / ".hitl-installed-requirements.txt").unlink(missing_ok=True)
    demo = first_run(checkout, "venv")
    demo.wait_until(lambda: running(demo, *install_into(checkout / ".venv")), SET_UP_S, "installing .venv")
    stop(demo, signal.SIGINT, "group")
    assert demo.process.returncode != 0
    assert not (checkout / ".venv" / ".hitl-installed-requirements.txt").exists()


@pytest.mark.parametrize("sig, to", [(signal.SIGINT, "group"), (signal.SIGTERM, "hitl studio")],
                         ids=["SIGINT-group", "SIGTERM-hitl-studio"])
def test_stopped_while_label_studio_is_installed(checkout, sig, to):
    install_label_studio_again(checkout)
    demo = first_run(checkout, f"install-{sig.name}")
    demo.wait_until(lambda: running(demo, *install_into(checkout / ".venv-studio")), SET_UP_S,
                    "installing Label Studio")
    time.sleep(1)  # the installer at work (uv's install takes seconds)
    stop(demo, sig, to)
    # stopped by the signal, or, when only `hitl studio` got it, failed for want of Label Studio
    assert demo.process.returncode == (128 + sig if to == "group" else 1), demo.text()[-2000:]
    assert (checkout / ".venv-studio" / studio.INSTALLING_MARK).exists(), "the install cut short looks finished"


def test_stopped_when_ready_after_installing_everything(checkout):
    """The newcomer's run: Label Studio installed by this very run, started for the first time,
    ready; then Ctrl+C."""
    install_label_studio_again(checkout)
    demo = first_run(checkout, "ready")
    demo.wait_until(lambda: "hero-hitl demo is ready" in demo.text(), SET_UP_S, "ready")
    assert "Installing Label Studio" in demo.text("studio.out")
    time.sleep(2)
    stop(demo, signal.SIGINT, "group")
    assert demo.process.returncode == 130


@pytest.mark.parametrize("sig, to", [(signal.SIGINT, "group"), (signal.SIGTERM, "group"),
                                     (signal.SIGHUP, "hitl studio")],
                         ids=["SIGINT-group", "SIGTERM-group", "SIGHUP-hitl-studio"])
def test_stopped_during_label_studios_first_start(checkout, sig, to):
    """A new data folder: Label Studio migrates its database and creates the user before it serves."""
    demo = first_run(checkout, f"first-start-{sig.name}")
    label_studio = f"{checkout / '.venv-studio' / 'bin' / 'label-studio'} start"
    demo.wait_until(lambda: running(demo, label_studio), SET_UP_S, "starting Label Studio")
    time.sleep(5)  # into its first start's work
    assert "is up" not in demo.text("studio.out"), "Label Studio was up already: not its first start"
    stop(demo, sig, to)
    assert demo.process.returncode == (128 + sig if to == "group" else 1), demo.text()[-2000:]
