"""The machinery of every stage that sends images to a model (`score`, `embed`): images prepared
ahead in a pool of threads, a few calls in flight in threads, each result recorded as it arrives.

Decoding (libjpeg's DCT scaling), EXIF orientation, resizing and encoding happen in Pillow's C
code with the interpreter released, so threads prepare in parallel with each other and with the
senders. A pool of processes was measured against them on 2 cores (``scripts/bench/bench_score.py``,
same runs): 38-44 ms of client CPU per image against 27-29 ms, for no gain in throughput (starting
the fork server and workers alone cost ~0.45 s of CPU), and a run killed outright left its workers
behind. Preparation is fed a few images ahead of the senders so neither starves the other and
memory stays bounded; the caller's thread records each result the moment it exists, so a run
killed at any point loses only what was in flight.
"""
from __future__ import annotations

import collections
import itertools
import os
import queue
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import Any, Generic, TypeVar

from hitl.errors import AuthError
from hitl.imageprep import ImagePrepError

T = TypeVar("T")
Job = tuple[Callable[..., Any], tuple]  # a function and its arguments: what a preparing thread runs

STOPPED = "stopped"
FINISHED = "finished"


def cores() -> int:
    """The cores this process may run on (a container's share, not the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def prep_pool(n_items: int) -> ThreadPoolExecutor:
    """The preparing threads, one per core (never more than there are images)."""
    return ThreadPoolExecutor(max_workers=max(1, min(cores(), n_items)), thread_name_prefix="prepare")


class Pipeline(Generic[T]):
    """One run's bookkeeping: what is being prepared, what is ready, what is being sent.

    - ``job(target)``: what a preparing thread runs to prepare ``target``;
    - ``send(target, prepared)``: the call, in a sender thread; AuthError stops the run (no new
      call starts, the calls in flight are kept);
    - ``record(target, result)``: in the caller's thread, for every prepared image that failed
      (``result`` is the ImagePrepError) and every call that returned.
    """

    def __init__(self, targets: Iterable[T], job: Callable[[T], Job], send: Callable[[T, Any], Any],
                 record: Callable[[T, Any], None], concurrency: int, stop: threading.Event):
        self.pending = iter(targets)
        self.job, self.send, self.record, self.stop = job, send, record, stop
        self.concurrency = max(1, concurrency)
        self.ahead = self.concurrency * 2
        self.preparing: dict[Future, T] = {}
        self.calling: dict[Future, T] = {}
        self.ready: collections.deque[tuple[T, Any]] = collections.deque()
        self.auth_error: AuthError | None = None

    def run_all(self, n_items: int) -> str:
        """Prepare, send and record everything (or until stopped); ``finished`` or ``stopped``.

        Ctrl+C stops new calls and keeps the results of those in flight (they are paid for); a
        second Ctrl+C while waiting for them abandons them.
        """
        status = FINISHED
        pool = prep_pool(n_items)
        try:
            with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="send") as senders:
                try:
                    self._loop(pool, senders)
                except KeyboardInterrupt:
                    self.stop.set()
                    status = STOPPED
                    self._drain()
        except KeyboardInterrupt:
            self.stop.set()
            status = STOPPED
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        return STOPPED if self.auth_error is not None else status

    def _loop(self, pool: ThreadPoolExecutor, senders: ThreadPoolExecutor) -> None:
        # finished futures arrive on one queue: waiting costs nothing per future in flight, where
        # concurrent.futures.wait locks every one of them on every call
        finished: queue.SimpleQueue[Future] = queue.SimpleQueue()
        while True:
            if not self.stop.is_set():
                room = max(0, self.ahead - len(self.preparing) - len(self.ready))
                for target in itertools.islice(self.pending, room):
                    fn, args = self.job(target)
                    future = pool.submit(fn, *args)
                    self.preparing[future] = target
                    future.add_done_callback(finished.put)
                while self.ready and len(self.calling) < self.concurrency:
                    target, prepared = self.ready.popleft()
                    future = senders.submit(self.send, target, prepared)
                    self.calling[future] = target
                    future.add_done_callback(finished.put)
            if not self.preparing and not self.calling:
                return
            future = finished.get()
            if future in self.preparing:
                self._prepared(self.preparing.pop(future), future)
            elif future in self.calling:
                self._sent(self.calling.pop(future), future)

    def _prepared(self, target: T, future: Future) -> None:
        if future.cancelled():
            return
        try:
            prepared = future.result()
        except ImagePrepError as exc:  # an unusable image: recorded, never sent
            self.record(target, exc)
            return
        if not self.stop.is_set():
            self.ready.append((target, prepared))

    def _sent(self, target: T, future: Future) -> None:
        try:
            result = future.result()
        except AuthError as exc:
            self.auth_error = self.auth_error or exc
            self.stop.set()
            return
        self.record(target, result)

    def _drain(self) -> None:
        """Keep the results of the calls in flight."""
        for future in as_completed(list(self.calling)):
            self._sent(self.calling.pop(future), future)
