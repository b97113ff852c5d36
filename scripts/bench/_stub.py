"""The fake OpenAI-compatible server of tests/fakes in a process of its own, for the throughput
benchmarks: its CPU is not the client's, and CpuMeter can measure it apart (it shares the cores)."""
from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager


def _serve(latency: float, options: dict, ready, stop) -> None:
    from tests.fakes import FakeOpenAI

    with FakeOpenAI(latency=latency, **options) as server:
        ready.put(server.url)
        stop.wait()


@contextmanager
def stub_server(latency: float, **options) -> Iterator[tuple[str, int]]:
    """``with stub_server(0.25) as (url, pid):`` the server answers each request after ``latency`` s."""
    ready, stop = multiprocessing.Queue(), multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(latency, options, ready, stop), daemon=True)
    server.start()
    try:
        yield ready.get(timeout=30), server.pid
    finally:
        stop.set()
        server.join(timeout=10)
