"""Benchmark of `hitl serve`: 8 concurrent senders replaying realistic deliveries for 20 s.

    python scripts/bench/bench_webhook.py [--senders 8] [--seconds 20] [--slow 128]

The deliveries are the real Label Studio 1.23.2 captures in ../shared/labelstudio_webhooks,
with annotation and task ids renumbered so every sender creates and updates its own ratings.
The service runs as `python -m hitl serve` (waitress) in its own process, as in production.
Targets: at least 300 deliveries/s sustained, p99 at most 50 ms, every delivery stored, with
every delivery fsynced before its 200 (the service commits concurrent deliveries in groups).
With ``--slow N`` the same runs while N other connections trickle partial headers (slowloris).
"""
from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("HITL_SHARED_DIR", REPO.parent / "shared")) / "labelstudio_webhooks"
sys.path.insert(0, str(REPO))
SECRET = "bench-secret"
TARGET_RATE, TARGET_P99_MS = 300.0, 50.0


def templates() -> list[dict]:
    bodies = [json.loads(p.read_text())["body"] for p in sorted(SHARED.glob("0*.json"))]
    return [b for b in bodies if b["action"] in ("ANNOTATION_CREATED", "ANNOTATION_UPDATED")]


def deliveries(sender: int, bodies: list[dict]):
    """Endless realistic deliveries: a new annotation, then an update of it, with fresh ids.

    The bodies are rendered once with placeholders, so the senders spend their CPU on
    sending (the service shares this machine's two cores with them).
    """
    rendered = []
    for body in bodies:
        body = copy.deepcopy(body)
        body["annotation"]["id"] = body["annotation"]["task"] = body["task"]["id"] = 987654321
        body["annotation"]["updated_at"] = "UPDATED_AT"
        rendered.append(json.dumps(body).replace("987654321", "{id}").replace("UPDATED_AT", "{at}"))
    n = 0
    while True:
        annotation_id = sender * 10_000_000 + n // 2 + 1
        at = f"2026-11-21T12:{(n // 60) % 60:02d}:{n % 60:02d}.000000Z"
        template = rendered[n % len(rendered)]
        yield template.replace("{id}", str(annotation_id)).replace("{at}", at).encode()
        n += 1


def send(port: int, sender: int, bodies: list[dict], stop: threading.Event, latencies: list, errors: list) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
    for payload in deliveries(sender, bodies):
        if stop.is_set():
            break
        started = time.perf_counter()
        try:
            connection.request("POST", "/webhooks/label-studio", body=payload, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                errors.append(response.status)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            continue
        latencies.append(time.perf_counter() - started)
    connection.close()


def start_service(db_path: Path, port: int) -> subprocess.Popen:
    """`python -m hitl serve` on ``db_path`` in its own process (as in production), once it answers."""
    env = {**os.environ, "HITL_WEBHOOK_SECRET": SECRET, "HITL_DB": str(db_path), "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "hitl", "serve", "--port", str(port)], env=env, cwd=REPO,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).read()
            break
        except OSError:
            time.sleep(0.1)
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--slow", type=int, default=0, help="connections that send partial headers meanwhile")
    args = parser.parse_args()
    from hitl import store
    from hitl.review.studio import free_port

    bodies = templates()
    if not bodies:
        print(f"no deliveries found in {SHARED}", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="hitl-bench-webhook-") as tmp:
        db_path = Path(tmp) / "bench.db"
        port = free_port()
        server = start_service(db_path, port)
        try:
            stop = threading.Event()
            slow = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(args.slow)]
            for sock in slow:
                sock.sendall(b"POST /webhooks/label-studio HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            latencies: list[list[float]] = [[] for _ in range(args.senders)]
            errors: list = []
            threads = [threading.Thread(target=send, args=(port, k, bodies, stop, latencies[k], errors))
                       for k in range(args.senders)]
            started = time.perf_counter()
            for thread in threads:
                thread.start()
            time.sleep(args.seconds)
            stop.set()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            for sock in slow:
                sock.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
        db = store.connect(db_path)
        for row in db.query("SELECT outcome, substr(detail, 1, 160) AS detail, COUNT(*) AS n FROM events "
                            "GROUP BY 1, 2 ORDER BY n DESC LIMIT 5"):
            print(f"  events: {row['n']:>6} {row['outcome']}: {row['detail']}")
        if errors:
            print(f"  first errors: {errors[:3]}")
        stored = db["events"].count
        failed = db.execute("SELECT COUNT(*) FROM events WHERE outcome != 'ok'").fetchone()[0]
        ratings = db["ratings"].count
    every = sorted(x for per in latencies for x in per)
    sent = len(every)
    rate = sent / elapsed
    p50 = statistics.median(every) * 1000
    p99 = every[int(0.99 * (sent - 1))] * 1000
    ok = rate >= TARGET_RATE and p99 <= TARGET_P99_MS and stored == sent and not errors and failed == 0
    print("==== hitl serve benchmark ====")
    print(f"senders                {args.senders} for {elapsed:.1f} s"
          + (f", with {args.slow} slow connections open" if args.slow else ""))
    print(f"deliveries answered    {sent:,} ({rate:.0f}/s)   target >= {TARGET_RATE:.0f}/s")
    print(f"latency                p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {every[-1] * 1000:.1f} ms   "
          f"target p99 <= {TARGET_P99_MS:.0f} ms")
    print(f"events stored          {stored:,} ({'equal to' if stored == sent else 'NOT equal to'} deliveries), "
          f"{failed} not ok; {ratings:,} ratings; {len(errors)} transport or HTTP errors")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
