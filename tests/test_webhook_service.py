"""`hitl serve` as it runs for real (waitress in its own process): limits that hold before the
app sees a byte, secrets it refuses, loopback on IPv6, a health check that tells outsiders
nothing, and what is acknowledged is on disk (fsync before 200)."""
from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from hitl import store
from hitl.cli import cli
from hitl.review.studio import free_port

from .conftest import REPO, _default_signals
from .helpers.webhook import empty_db, fresh, new_db  # noqa: F401  (empty_db: a fixture)

SECRET = "a-long-enough-test-secret"


class Serve:
    """`python -m hitl serve` in a subprocess."""

    def __init__(self, tmp_path, *args: str, secret: str | None = SECRET, host: str = "127.0.0.1"):
        self.port = free_port()
        self.host = host
        env = {k: v for k, v in os.environ.items() if k != "HITL_WEBHOOK_SECRET"}
        env.update({"HITL_DB": str(tmp_path / "h.db"), "PYTHONPATH": str(REPO)})
        if secret is not None:
            env["HITL_WEBHOOK_SECRET"] = secret
        self.db_path = tmp_path / "h.db"
        self.process = subprocess.Popen([sys.executable, "-m", "hitl", "serve", "--host", host, "--port",
                                         str(self.port), *args], env=env, cwd=tmp_path,
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        preexec_fn=_default_signals)

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"hitl serve exited: {self.output()}")
            try:
                with urllib.request.urlopen(f"http://{self.netloc}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("hitl serve did not start")

    def output(self) -> str:
        return self.process.stdout.read().decode() if self.process.stdout else ""

    def exits_with(self) -> tuple[int, str]:
        code = self.process.wait(timeout=30)
        return code, self.output()

    def post(self, body: dict, timeout: float = 10) -> tuple[int, dict]:
        connection = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        connection.request("POST", "/webhooks/label-studio", json.dumps(body),
                           {"Content-Type": "application/json", "Authorization": f"Bearer {SECRET}"})
        response = connection.getresponse()
        data = json.loads(response.read() or b"{}")
        connection.close()
        return response.status, data

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def refused(tmp_path, *args: str, secret: str | None, host: str) -> tuple[int, str]:
    """`hitl serve` refusing to start, in-process: it refuses before it serves, so no server process
    is needed to see it; its exit code and what it said."""
    result = CliRunner().invoke(cli, ["serve", "--host", host, "--port", str(free_port()), *args],
                                env={"HITL_DB": str(tmp_path / "h.db"), "HITL_WEBHOOK_SECRET": secret})
    return result.exit_code, result.output


@pytest.fixture
def serve(tmp_path, empty_db):
    new_db(empty_db, tmp_path)  # the service's database, migrated already
    service = Serve(tmp_path)
    service.wait_ready()
    yield service
    service.stop()


def test_a_huge_body_is_refused_before_it_is_read(serve):
    # 300 MB announced without Authorization: waitress answers 413 from the headers alone
    with socket.create_connection(("127.0.0.1", serve.port), timeout=10) as sock:
        sock.sendall(b"POST /webhooks/label-studio HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 314572800\r\n\r\n" + b"x" * 1024)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert store.connect(serve.db_path)["events"].count == 0


@contextlib.contextmanager
def slow_connections(port: int, n: int) -> Iterator[None]:
    """``n`` clients trickling half a request line each, as a slowloris attack does."""
    slow = []
    try:
        for _ in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(b"POST /webhooks/label-studio HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            slow.append(sock)
        yield
    finally:
        for sock in slow:
            sock.close()


def timed_deliveries(serve: Serve, n: int) -> list[float]:
    """Seconds each of ``n`` real deliveries took to be answered (each must be stored)."""
    took = []
    for k in range(n):
        started = time.monotonic()
        status, data = serve.post(fresh(k), timeout=5)  # Label Studio itself waits far less
        took.append(time.monotonic() - started)
        assert status == 200 and data["outcome"] == "ok", data
    return took


def test_slow_connections_do_not_lock_out_real_deliveries(serve):
    with slow_connections(serve.port, 128):
        took = timed_deliveries(serve, 20)
    # not a speed test (scripts/bench/bench_webhook.py --slow 128 measures that): only
    # that no delivery waited for the slow ones to time out
    assert max(took) < 2.0, took
    assert store.connect(serve.db_path)["ratings"].count == 20


def test_health_tells_outsiders_only_ok(serve):
    with urllib.request.urlopen(f"http://127.0.0.1:{serve.port}/healthz", timeout=5) as response:
        assert json.loads(response.read()) == {"status": "ok"}
    request = urllib.request.Request(f"http://127.0.0.1:{serve.port}/healthz",
                                     headers={"Authorization": f"Bearer {SECRET}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        counts = json.loads(response.read())
    assert counts["events"] == 0 and str(serve.db_path) not in json.dumps(counts)


@pytest.mark.parametrize("secret, host, message", [
    ("short", "0.0.0.0", "at least 16"),
    ("has a space in it and is long", "127.0.0.1", "white space"),
    (" padded-but-long-enough-secret ", "127.0.0.1", "white space"),
])
def test_secrets_that_cannot_protect_are_refused(tmp_path, secret, host, message):
    code, output = refused(tmp_path, secret=secret, host=host)
    assert code == 1 and message in output and "Traceback" not in output


def test_insecure_is_for_loopback_only_ipv6_included(tmp_path, empty_db):
    code, output = refused(tmp_path, "--insecure", secret=None, host="0.0.0.0")
    assert code == 1 and "loopback addresses only" in output
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback, which the test needs")
    new_db(empty_db, tmp_path)
    service = Serve(tmp_path, "--insecure", secret=None, host="::1")
    try:
        service.wait_ready()
    finally:
        service.stop()


def test_serve_stopped_by_ctrl_c_closes_what_it_opened(tmp_path, empty_db):
    """Ctrl+C: the server stops, then the app (hitl.review.webhook.WebhookApp.close): its threads end
    and every connection closes, so SQLite folds the write-ahead log in and removes it."""
    new_db(empty_db, tmp_path)
    service = Serve(tmp_path)
    try:
        service.wait_ready()
        assert service.post(fresh(1))[0] == 200
        assert service.db_path.with_name("h.db-wal").exists()
        service.process.send_signal(signal.SIGINT)
        code, output = service.exits_with()
    finally:
        service.stop()
    assert code == 0 and "Traceback" not in output, output
    assert not service.db_path.with_name("h.db-wal").exists()
    assert store.connect(service.db_path)["events"].count == 1


def test_the_writer_syncs_before_it_answers(tmp_path, webhook_app, empty_db):
    new_db(empty_db, tmp_path)
    app = webhook_app({"DATABASE": str(tmp_path / "h.db"), "WEBHOOK_SECRET": SECRET, "TESTING": True})
    writer = app.extensions["hitl_writer"]
    result = writer.submit(fresh(1)).result(timeout=10)
    assert result[1] == "ok"
    # FULL: the write-ahead log is fsynced at every commit, so a 200 survives a power cut
    assert writer.synchronous == 2
    assert store.connect(tmp_path / "h.db")["events"].count == 1


def test_concurrent_deliveries_are_committed_in_groups(tmp_path, webhook_app, empty_db):
    new_db(empty_db, tmp_path)
    app = webhook_app({"DATABASE": str(tmp_path / "h.db"), "WEBHOOK_SECRET": SECRET, "TESTING": True})
    writer = app.extensions["hitl_writer"]
    writer.submit(fresh(0)).result(timeout=10)
    blocker = store.connect(tmp_path / "h.db")
    blocker.execute("BEGIN IMMEDIATE")  # the disk is busy: deliveries pile up meanwhile
    futures = []
    threads = [threading.Thread(target=lambda k=k: futures.append(writer.submit(fresh(k)))) for k in range(1, 201)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.2)
    blocker.execute("COMMIT")
    assert all(f.result(timeout=30)[1] == "ok" for f in futures)
    assert store.connect(tmp_path / "h.db")["ratings"].count == 201
    # one commit (one fsync) for each group of up to 64 waiting deliveries, not one each
    assert writer.commits <= 1 + 1 + -(-200 // 64), writer.commits


def test_the_secret_is_checked_before_the_body_is_read(serve):
    # 9.5 MB announced (under the 10 MB limit) without the secret: the answer comes from the
    # headers alone, while the body has not been sent (waitress would otherwise wait for it,
    # buffering it to a temporary file, before the app could refuse it)
    for authorization in (b"", b"Authorization: Bearer wrong-secret-of-some-length\r\n"):
        with socket.create_connection(("127.0.0.1", serve.port), timeout=3) as sock:
            sock.sendall(b"POST /webhooks/label-studio HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         + authorization + b"Content-Length: 9961472\r\n\r\n" + b"{" * 4096)
            answer = b""
            while chunk := sock.recv(4096):  # the service closes the connection after it
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 401"), answer[:200]
        assert b"application/json" in answer and b"Authorization header" in answer
    status, data = serve.post(fresh(1))  # with the secret, as before
    assert status == 200 and data["outcome"] == "ok"
    assert store.connect(serve.db_path)["events"].count == 1


def test_more_slow_connections_than_the_limit_do_not_delay_a_delivery(serve):
    """1,100 connections that never finish their headers, past the 1,000 the service accepts at once:
    the ones waiting longest make way, so a real delivery is answered at once, not after they time out."""
    with slow_connections(serve.port, 1_100):
        time.sleep(0.5)  # the service has taken in what it will
        took = timed_deliveries(serve, 5)
    assert max(took) < 1.0, took


def test_the_write_ahead_log_is_emptied_once_deliveries_pause(serve):
    wal = serve.db_path.with_name(serve.db_path.name + "-wal")
    senders = [threading.Thread(target=lambda s=s: [serve.post(fresh(s * 100 + k)) for k in range(50)])
               for s in range(4)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert store.connect(serve.db_path)["ratings"].count == 200
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and wal.stat().st_size > 0:
        time.sleep(0.02)
    assert wal.stat().st_size == 0  # not the size of the busiest moment, for ever
