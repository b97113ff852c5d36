"""The CPU time a benchmark's client spends: this process and every process it started, however
started (a fork server's workers are not this process's children, so ``os.times`` misses them).

Read twice, before and after, over the process tree: each process's own time plus its reaped
children's (a fork server reaps the workers it forked, so an ended worker still counts).
Nothing samples in between, so the meter costs the measurement nothing.
"""
from __future__ import annotations

import os
import time

import psutil


class CpuMeter:
    """``with CpuMeter(exclude={server_pid}) as meter: ...`` then ``meter.seconds``; ``only={pid}``
    measures that one process and its own children instead (a stub server on the same cores)."""

    def __init__(self, exclude: set[int] | None = None, only: set[int] | None = None):
        self.exclude = set(exclude or ())
        self.only = set(only or ())
        self.seconds = 0.0

    def _total(self) -> float:
        total = 0.0
        for process in self._processes():
            if process.pid in self.exclude:
                continue
            try:
                t = process.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system + t.children_user + t.children_system
        return total

    def _processes(self) -> list[psutil.Process]:
        roots = [psutil.Process(pid) for pid in self.only] if self.only else [psutil.Process(os.getpid())]
        return [p for root in roots for p in (root, *root.children(recursive=True))]

    def __enter__(self) -> CpuMeter:
        self._before = self._total()
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.2)  # a worker that just ended is reaped by its parent
        self.seconds = self._total() - self._before
