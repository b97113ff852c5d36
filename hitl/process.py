"""Servers run for the user (Label Studio, vLLM): each in a process group of its own that dies with
us, waited for until it answers, and stopped whole, in bounded time, on Ctrl+C, SIGTERM or SIGHUP."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from hitl.errors import HitlError

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # Ctrl+C, a script or systemd, a closed terminal


def ends_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` for a child in its own session, which no signal to our group reaches: SIGTERM
    at its default, whatever we inherited (stop() sends it), and, on Linux, SIGTERM from the kernel
    when the thread that started it ends, so even a server's starter killed outright (SIGKILL, the
    OOM killer, a stop signal between fork and the assignment of the Popen) leaves nothing running."""
    parent = os.getpid()
    prctl = None
    if sys.platform.startswith("linux"):
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the child

    def in_child() -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
            if os.getppid() != parent:  # the parent died before prctl: no signal will come
                os.kill(os.getpid(), signal.SIGTERM)

    return in_child


def start_in_group(command: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``command`` in the background in its own process group, dying with the calling thread
    (Linux), its output appended to ``log_path``: call this from the thread that stops it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True,  # Ctrl+C in a script reaches us; we stop the whole group
                                preexec_fn=ends_with_parent())


def run_to_end(command: list[str], output) -> int:
    """Run ``command`` in its own process group, dying with us; its exit code. Interrupted (a stop
    signal raising SystemExit here), its whole group is stopped before the exception goes on: an
    installer must not go on writing after the command that started it has ended."""
    process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, preexec_fn=ends_with_parent())
    try:
        return process.wait()
    finally:
        if process.returncode is None:
            stop(process)


def stop(process: subprocess.Popen, grace: float = 4) -> None:
    """Stop a child started in its own process group with all of the group, within about ``grace``
    + 4 s, never raising: SIGTERM to the group, then SIGKILL to whatever of it lingers (a worker
    holding the port would keep the next start from binding it)."""
    for stop_signal, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2)):
        signal_group(process.pid, stop_signal)
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:  # after SIGKILL: a process stuck in the kernel, ended by it
            pass
    deadline = time.monotonic() + 2  # the rest of the group, not our children, is gone in a moment
    while group_runs(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def group_runs(group: int) -> bool:
    """Whether a process of group ``group`` still runs. A zombie does not: it is dead and holds no
    port, only its pid, until an init reaps it, and one that never reaps (PID 1 in many containers)
    would keep the group 'alive' for good. Linux reads /proc; elsewhere any process, zombie or not."""
    if not signal_group(group, 0):
        return False
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:  # "pid (name) state ppid pgrp ...": the name may hold spaces and parentheses
            state, _ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):  # ended while we looked
            continue
        if int(pgrp) == group and state not in ("Z", "X"):
            return True
    return False


def signal_group(group: int, signum: int) -> bool:
    """Send ``signum`` to process group ``group``; False if none of it is left."""
    try:
        os.killpg(group, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


@contextmanager
def stopped_on_exit(what: str, echo: Callable[[str], None]) -> Iterator[list[subprocess.Popen]]:
    """Ctrl+C, SIGTERM and SIGHUP end the body (SystemExit 0) from the moment it begins; however it
    ends, every process the body put in the yielded list is then stopped with its group.

    Only the first signal does: a second one (Ctrl+C twice, a process group signalled while a script
    signals us too), arriving at any moment, even before the stop has begun, must not cut the stop
    short and leave a port held. Killed outright, the children get SIGTERM from the kernel
    (start_in_group)."""
    stopping: list = []

    def stop_once(signum, _frame) -> None:
        if not stopping:
            stopping.append(signum)
            raise SystemExit(0)

    for stop_signal in STOP_SIGNALS:
        signal.signal(stop_signal, stop_once)
    started: list[subprocess.Popen] = []
    try:
        yield started
    finally:
        stopping.append("done")  # from here on every signal is ignored by stop_once
        if len(stopping) > 1:
            echo(f"Stopping {what}")
        for process in started:
            stop(process)


def wait_until(ready: Callable[[], bool], process: subprocess.Popen, what: str, log_path: Path, timeout: float,
               echo: Callable[[str], None] | None = None, every: float = 30) -> float:
    """Seconds until ``ready()`` held, asked every half second; a clear error with the log's end if
    the process ends first or ``timeout`` passes (the process is then stopped). With ``echo``, the
    log's last line every ``every`` seconds while waiting (a model downloading says how far it is)."""
    started = time.monotonic()
    said = started
    while time.monotonic() - started < timeout:
        if ready():
            return time.monotonic() - started
        if process.poll() is not None:
            raise HitlError(f"{what} exited with code {process.returncode} before it was ready; "
                            f"log {log_path}:\n{log_tail(log_path)}")
        if echo is not None and time.monotonic() - said >= every:
            said = time.monotonic()
            last = log_tail(log_path, 400).strip().splitlines()
            echo(f"Waiting for {what} ({said - started:.0f} s): {last[-1] if last else 'nothing logged yet'}")
        time.sleep(0.5)
    stop(process)
    raise HitlError(f"{what} did not become ready within {timeout:.0f} s; log {log_path}:\n{log_tail(log_path)}")


def log_tail(log_path: Path, size: int = 3000) -> str:
    """About the last ``size`` bytes of a log, read from its end ('' when there is none yet)."""
    try:
        with log_path.open("rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - size))
            return log.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def http_get(url: str, headers: dict[str, str] | None = None, timeout: float = 2) -> bytes | None:
    """The body of a 200 answer to GET ``url``; None for anything else (refused, an error status, a timeout)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as response:
            return response.read() if response.status == 200 else None
    except (urllib.error.URLError, OSError, ValueError):
        return None


def hitl_home() -> Path:
    """Where the servers' environments and logs go: ``$HITL_HOME``, by default the working directory."""
    return Path(os.environ.get("HITL_HOME") or os.getcwd()).resolve()


def port_is_free(host: str, port: int) -> bool:
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
