"""Stopping the demo the ways it gets stopped: Ctrl+C, `kill`, a closed terminal (SIGHUP), a
process manager signalling the whole group, once or twice in a row. Each time no process is
left behind and both ports are free again within 20 s. Against the real stack: demo.sh with
Label Studio and the webhook service."""
from __future__ import annotations

import os
import re
import signal
import time

import psutil
import pytest

from hitl.review.studio import port_is_free

from .conftest import Demo

STOP_WITHIN_S = 20.0
CASES = [  # (signal, to the whole process group?, how many times in a row)
    (signal.SIGINT, False, 1), (signal.SIGINT, True, 2),
    (signal.SIGTERM, False, 2), (signal.SIGTERM, True, 1),
    (signal.SIGHUP, False, 1), (signal.SIGHUP, True, 2),
]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """One data folder for every case: after the first start, Label Studio's data is reused."""
    return tmp_path_factory.mktemp("demo-signals")


def leftovers(out) -> list[str]:
    """Processes still running that belong to this demo (by its data folder or its ports)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(out) in cmdline and proc.pid != os.getpid():
            found.append(f"{proc.pid}: {cmdline[:160]}")
    return found


@pytest.mark.parametrize("sig, group, times", CASES,
                         ids=[f"{s.name}-{'group' if g else 'script'}-x{t}" for s, g, t in CASES])
def test_the_demo_stops_cleanly(demo_dir, sig, group, times):
    demo = Demo(demo_dir)
    credentials = dict(re.findall(r"export (\w+)=(\S+)", (demo_dir / "credentials.env").read_text()))
    # the demo's own secrets came from the environment: `hitl studio` must not print them
    studio_out = (demo_dir / "studio.out").read_text()
    assert credentials["LABEL_STUDIO_PASSWORD"] not in studio_out
    assert credentials["LABEL_STUDIO_API_KEY"] not in studio_out
    started = time.monotonic()
    for k in range(times):
        if group:
            os.killpg(demo.process.pid, sig)
        else:
            demo.process.send_signal(sig)
        if k + 1 < times:
            time.sleep(0.3)  # the second arrives while the first is being handled
    while time.monotonic() - started < STOP_WITHIN_S:
        ports_free = port_is_free("127.0.0.1", demo.studio_port) and port_is_free("127.0.0.1", demo.serve_port)
        if demo.process.poll() is not None and ports_free and not leftovers(demo_dir):
            break
        time.sleep(0.2)
    else:
        left = leftovers(demo_dir)
        demo.kill()
        for line in left:
            os.kill(int(line.split(":")[0]), signal.SIGKILL)
        pytest.fail(f"after {sig.name} x{times} to the {'group' if group else 'script'}: still running {left}, "
                    f"ports free: {port_is_free('127.0.0.1', demo.studio_port)}, "
                    f"{port_is_free('127.0.0.1', demo.serve_port)}\n{demo.text()[-2000:]}")
