"""Stopping the demo the ways it gets stopped: Ctrl+C, `kill`, a closed terminal (SIGHUP), a
process manager signalling the whole group, once or twice in a row. Each time no process is
left behind and both ports are free again within 15 s, and the demo's exit status says it was
stopped (128 + the signal's number), as a failure's says it failed. Against the real stack:
demo.sh with Label Studio and the webhook service, installed already (tests/test_demo_cold.py
stops a first run, installing them)."""
from __future__ import annotations

import re
import signal
import stat
import sys

import pytest

from .conftest import Demo

pytestmark = pytest.mark.slow  # scripts/demo.sh runs

CASES = [  # (signal, to the whole process group?, how many times in a row)
    (signal.SIGINT, False, 1), (signal.SIGINT, True, 2),
    (signal.SIGTERM, False, 2), (signal.SIGTERM, True, 1),
    (signal.SIGHUP, False, 1), (signal.SIGHUP, True, 2),
]


@pytest.mark.studio
@pytest.mark.parametrize("sig, group, times", CASES,
                         ids=[f"{s.name}-{'group' if g else 'script'}-x{t}" for s, g, t in CASES])
def test_the_demo_stops_cleanly(demo_folder, sig, group, times):
    demo = Demo(demo_folder)
    credentials = dict(re.findall(r"export (\w+)=(\S+)", (demo_folder / "credentials.env").read_text()))
    # the demo's own secrets came from the environment: `hitl studio` must not print them
    studio_out = demo.text("studio.out")
    assert credentials["LABEL_STUDIO_PASSWORD"] not in studio_out
    assert credentials["LABEL_STUDIO_API_KEY"] not in studio_out
    print(f"stopped in {demo.stop(sig, group, times):.1f} s")
    assert demo.process.returncode == 128 + sig, demo.text()[-2000:]


def test_a_label_studio_that_does_not_start_fails_the_demo(tmp_path):
    """The demo used to stop its webhook service and exit 0 however it ended: a Label Studio that
    never came up looked like a success to whatever ran the demo. And a rerun's wait could read the
    last run's "is up", still in studio.out until the new `hitl studio` had started, then push to a
    Label Studio not started ("Connection refused" in whoami, in some busy runs of this suite)."""
    broken = tmp_path / "label-studio"
    broken.write_text(f"#!{sys.executable}\nimport sys\nprint('cannot start: a broken install')\nsys.exit(3)\n")
    broken.chmod(broken.stat().st_mode | stat.S_IXUSR)
    out = tmp_path / "demo"
    out.mkdir()
    (out / "studio.out").write_text("Label Studio is up at http://127.0.0.1:8080 (40 s); log: ...\n")  # the last run's
    demo = Demo(out, env={"LABEL_STUDIO_BIN": str(broken)}, ready=False)
    demo.wait_until(lambda: demo.process.poll() is not None, 600, "ended")
    assert demo.process.returncode == 1, demo.text()[-2000:]
    assert "cannot start: a broken install" in demo.text()
    assert "Label Studio did not start" in demo.text() and "== 4. Push" not in demo.text()
    assert "is up" not in demo.text("studio.out")
    demo.ended(within=15, after="its failure")  # the webhook service was stopped too


@pytest.mark.studio
def test_a_hung_hitl_studio_is_killed_and_label_studio_goes_with_it(demo_folder):
    """`hitl studio` that cannot act on the stop (here: stopped by SIGSTOP) used to keep the demo
    waiting for it for good, and Label Studio with it: after 10 s the demo kills it, and the kernel
    then signals Label Studio, in a session of its own, that its parent is gone."""
    demo = Demo(demo_folder)
    [hitl_studio] = [proc for proc in demo.processes() if "-m hitl studio" in " ".join(proc.cmdline())]
    hitl_studio.suspend()
    seconds = demo.stop(signal.SIGINT, group=True)
    print(f"stopped in {seconds:.1f} s")
    assert "Still running after 10 s: killing them" in demo.text()
    assert demo.process.returncode == 130
