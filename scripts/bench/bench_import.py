"""Benchmark of a long write beside the webhook: `ratings --import` of 200,000 decisions while
`hitl serve` receives deliveries, one at a time as Label Studio sends them.

    python scripts/bench/bench_import.py [--decisions 200000] [--curators 10] [--rate 20]

A database with decisions/curators images, a sheet rating each image once per curator; the
service runs as `python -m hitl serve` (waitress) and the import as `python -m hitl ratings
--import`, each in its own process, as a curator would run them. Meanwhile a sender posts the
real Label Studio deliveries (../shared/labelstudio_webhooks) at --rate per second and times
each answer. Label Studio waits 1 s for an answer and never retries, so the targets are: every
delivery answered 2xx, the slowest in at most 0.5 s, the import complete (every decision new,
then every one unchanged when it is run again).
"""
from __future__ import annotations

import argparse
import csv
import http.client
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_webhook import SECRET, start_service, templates  # noqa: E402 - the same service and deliveries
from bench_webhook import deliveries as delivery_bodies  # noqa: E402

TARGET_MAX_S = 0.5


def fill(db_path: Path, sheet: Path, n_images: int, n_curators: int) -> None:
    """The images in the database and a sheet rating each of them once per curator."""
    from hitl import store

    db = store.connect(db_path)
    with store.transaction(db):
        db.conn.executemany("INSERT INTO images (image_id, root) VALUES (?, ?)",
                            [(f"cam/{k:07d}.jpg", "/photos") for k in range(n_images)])
    db.conn.close()
    with sheet.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "curator", "stars", "hero", "mode", "comment"])
        for c in range(n_curators):
            for k in range(n_images):
                writer.writerow([f"cam/{k:07d}.jpg", f"curator{c}", (k + c) % 10 + 1, "yes" if (k + c) % 4 == 0
                                 else "no", "blind", ""])


def import_sheet(db_path: Path, sheet: Path) -> str:
    """`python -m hitl ratings --import` in its own process, as a curator runs it; its output."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "hitl", "--db", str(db_path), "ratings", "--import", str(sheet)],
                          env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout.decode()


def send(port: int, rate: float, stop: threading.Event, latencies: list, errors: list) -> None:
    """Deliveries one after another, each on a new connection (as Label Studio sends them)."""
    headers = {"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"}
    for payload in delivery_bodies(99, templates()):
        if stop.is_set():
            return
        started = time.perf_counter()
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("POST", "/webhooks/label-studio", body=payload, headers=headers)
            response = connection.getresponse()
            response.read()
            connection.close()
            if not 200 <= response.status < 300:
                errors.append(response.status)
        except (OSError, http.client.HTTPException) as exc:
            errors.append(repr(exc))
        took = time.perf_counter() - started
        latencies.append(took)
        time.sleep(max(0.0, 1 / rate - took))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--decisions", type=int, default=200_000)
    parser.add_argument("--curators", type=int, default=10)
    parser.add_argument("--rate", type=float, default=20.0, help="deliveries per second")
    args = parser.parse_args()
    from hitl.review.studio import free_port

    with tempfile.TemporaryDirectory(prefix="hitl-bench-import-") as tmp:
        db_path, sheet = Path(tmp) / "bench.db", Path(tmp) / "decisions.csv"
        fill(db_path, sheet, args.decisions // args.curators, args.curators)
        port = free_port()
        server = start_service(db_path, port)
        try:
            stop, latencies, errors = threading.Event(), [], []
            sender = threading.Thread(target=send, args=(port, args.rate, stop, latencies, errors))
            sender.start()
            time.sleep(1.0)  # deliveries before the import, for comparison
            before = len(latencies)
            started = time.perf_counter()
            output = import_sheet(db_path, sheet)
            took = time.perf_counter() - started
            during = latencies[before:]
            again = import_sheet(db_path, sheet)
            stop.set()
            sender.join()
        finally:
            server.terminate()
            server.wait(timeout=10)
    n = args.decisions // args.curators * args.curators
    during.sort()
    complete = f"{n} new" in output and f"{n} unchanged" in again
    ok = complete and not errors and during and during[-1] <= TARGET_MAX_S
    print("==== ratings --import beside hitl serve ====")
    print(f"import                 {n:,} decisions in {took:.1f} s: {output.strip().splitlines()[0]}")
    print(f"again                  {again.strip().splitlines()[0]}")
    print(f"deliveries during it   {len(during)} at {args.rate:g}/s: p50 {during[len(during) // 2] * 1000:.0f} ms, "
          f"p99 {during[int(0.99 * (len(during) - 1))] * 1000:.0f} ms, max {during[-1] * 1000:.0f} ms   "
          f"target max <= {TARGET_MAX_S * 1000:.0f} ms" if during else "deliveries during it   none")
    print(f"errors                 {len(errors)} {errors[:3]}")
    print(f"RESULT {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 2


if __name__ == "__main__":
    sys.exit(main())
