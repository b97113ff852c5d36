"""A big detector file read in two processes: this one and a forked child, each building chunks.

:class:`TwoProcesses` is the :class:`converters.chunked.Workers` `hitl select` reads its
MegaDetector and COCO Camera Traps files with: where there is a spare CPU, a forked child
builds half of a big file's chunks at the same time (and begins the CCT file's whole-file pass
while the MegaDetector file is read); the results are what one process gives. The converters
stay pure: the processes, pipes and shared memory are all here.
"""
from __future__ import annotations

import ctypes
import mmap
import os
import pickle
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from converters.chunked import OuterPass, Span, Workers, drop_pages

T = TypeVar("T")


def can_fork() -> bool:
    """A second process helps on Linux with a second CPU, forked from a process without
    threads: a fork copies only the calling thread, so a lock another thread held would stay held."""
    return sys.platform.startswith("linux") and threading.active_count() == 1 and len(os.sched_getaffinity(0)) >= 2


_BIG_FILE = 32 << 20  # below this the pass takes a few hundredths of a second: no head start
_MAX_TICKETS = 16384  # item numbers of 4 bytes that fit a pipe's 64 KiB without blocking the writer


class TwoProcesses(Workers):
    """Chunks built by this process and a forked child at once, where that helps."""

    def map(self, build: Callable[[Span], T], spans: list[Span], data: bytes) -> list[T]:
        if not (4 <= len(spans) <= _MAX_TICKETS and can_fork()):  # a small file is quicker alone
            return super().map(build, spans, data)
        room = sum(span.end - span.start for span in spans) + (32 << 20)  # results are smaller than their JSON
        # Each process maps the pages of the chunks it takes (chunked._map_pages), so the parent's pages go.
        return _in_two_processes(build, spans, room, lambda: drop_pages(data, spans[0].start, spans[-1].end))

    def outer_pass(self, read: Callable[[], bytes], source: str, what: str, outer: type,
                   not_this_format: Callable[[Exception], str]) -> OuterPass:
        return ForkedOuterPass(read, source, what, outer, not_this_format)


class ForkedOuterPass(OuterPass):
    """decode_outer of a file, begun now and finished when asked for: for a big file the pass
    (it reads every byte) runs in a forked child meanwhile, where there is a spare CPU."""

    def __init__(self, read: Callable[[], bytes], source: str, what: str, outer: type,
                 not_this_format: Callable[[Exception], str]) -> None:
        self._pid: int | None = None
        super().__init__(read, source, what, outer, not_this_format)
        if self._done is None and len(self.data) >= _BIG_FILE and can_fork():
            self._read_fd, write_fd = os.pipe()
            self._pid = _fork(self.decoded, self._read_fd,
                              lambda payload: _write_all(write_fd, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)))
            os.close(write_fd)

    def result(self) -> tuple[bytes, Any, list[Span]]:
        if self._done is None and self._pid is not None:
            try:
                self._done = pickle.loads(_read_all(self._read_fd))
            except (EOFError, pickle.UnpicklingError) as exc:
                raise RuntimeError(f"the process checking {self._args[0]} failed") from exc
            finally:
                self.close()
        return super().result()

    def close(self) -> None:
        """Stop the child if it is still running (result() was never asked for)."""
        if self._pid is not None:
            if self._done is None:
                os.kill(self._pid, signal.SIGKILL)
            os.close(self._read_fd)
            os.waitpid(self._pid, 0)
            self._pid = None


def _in_two_processes(fn: Callable[[Any], T], items: list, room: int, after_fork: Callable[[], None]) -> list[T]:
    """``[fn(x) for x in items]``, shared with a forked child working at the same time;
    ``after_fork`` runs in the parent once the child is started.

    Each process takes the next item number from a pipe (a read of 4 bytes is atomic), so the
    faster one, or the one with a core to itself, does more. The child has all it needs by the
    fork (nothing is pickled on the way in) and leaves each result in ``room`` bytes of memory
    shared with the parent (see _Outbox).
    """
    _trim_heap()
    outbox = _Outbox(mmap.mmap(-1, room))  # anonymous and shared; pages cost memory only once written
    tickets, write_tickets = os.pipe()
    _write_all(write_tickets, b"".join(k.to_bytes(4, "little") for k in range(len(items))))
    read_fd, write_fd = os.pipe()
    pid = _fork(lambda: (_take(fn, items, tickets, outbox.put), outbox.letter())[1], read_fd,
                lambda payload: _write_all(write_fd, _framed(pickle.dumps(payload, protocol=5))))
    os.close(write_fd)
    mine: list[tuple[int, T]] = []
    try:
        after_fork()
        _take(fn, items, tickets, lambda k, result: mine.append((k, result)))
        try:
            ok, letter = pickle.loads(_read_exactly(read_fd, int.from_bytes(_read_exactly(read_fd, 8), "little")))
        except (EOFError, pickle.UnpicklingError) as exc:
            raise RuntimeError("the second process reading the file failed") from exc
    except BaseException:
        os.kill(pid, signal.SIGKILL)  # this part failed (or Ctrl+C): the other part is not wanted
        raise
    finally:
        os.close(read_fd)
        os.close(tickets)
        os.waitpid(pid, 0)
    if not ok:
        raise letter
    results: list = [None] * len(items)
    for k, result in mine + outbox.opened(letter):
        results[k] = result
    return results


def _fork(run: Callable[[], object], parent_end: int, send: Callable[[tuple[bool, object]], None]) -> int:
    """Fork a child that closes ``parent_end``, runs ``run`` and hands ``send`` (True, its result)
    or (False, the exception, for the parent to raise); returns the child's pid. The child never
    returns and never runs the parent's exit handlers."""
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            os.close(parent_end)
            try:
                payload = (True, run())
            except BaseException as exc:  # noqa: BLE001 - the parent re-raises it
                payload = (False, exc)
            send(payload)
            status = 0
        finally:
            os._exit(status)
    return pid


def _take(fn: Callable[[Any], T], items: list, tickets: int, keep: Callable[[int, T], None]) -> None:
    """keep(k, fn(items[k])) for each item number k this process takes from ``tickets``."""
    while ticket := os.read(tickets, 4):
        k = int.from_bytes(ticket, "little")
        keep(k, fn(items[k]))


class _Outbox:
    """Where the child leaves each result as soon as it has it: pickled into memory shared with
    the parent, numpy arrays out of band (they arrive as buffers the arrays then use as they
    are). Through a pipe, tens of MB move at a few hundred MB/s here, and pickling all at the
    end would keep the parent waiting. A result that does not fit goes through the pipe."""

    def __init__(self, shared: mmap.mmap) -> None:
        self.shared, self.end = shared, 0
        self.placed: list[tuple[int, list[int], list[int]]] = []  # (k, offsets, sizes)
        self.inline: list[tuple[int, list[bytes]]] = []

    def put(self, k: int, result: object) -> None:
        buffers: list[pickle.PickleBuffer] = []
        parts = [memoryview(pickle.dumps(result, protocol=5, buffer_callback=buffers.append))]
        parts += [b.raw() for b in buffers]
        offsets, end = [], self.end
        for part in parts:
            offsets.append(-(-end // 64) * 64)  # aligned for the arrays
            end = offsets[-1] + part.nbytes
        if end > len(self.shared):
            self.inline.append((k, [bytes(part) for part in parts]))
            return
        for offset, part in zip(offsets, parts):
            self.shared[offset:offset + part.nbytes] = part
        self.placed.append((k, offsets, [part.nbytes for part in parts]))
        self.end = end

    def letter(self) -> tuple[list, list]:
        """What the parent needs to find the results: small, unless some did not fit."""
        return self.placed, self.inline

    def opened(self, letter: tuple[list, list]) -> list[tuple[int, Any]]:
        placed, inline = letter
        found = []
        for k, offsets, sizes in placed:
            views = [memoryview(self.shared)[offset:offset + size] for offset, size in zip(offsets, sizes)]
            found.append((k, pickle.loads(views[0], buffers=views[1:])))
        found += [(k, pickle.loads(parts[0], buffers=parts[1:])) for k, parts in inline]
        return found


def _framed(message: bytes) -> bytes:
    return len(message).to_bytes(8, "little") + message


def _write_all(fd: int, data: bytes) -> None:
    with memoryview(data) as view:
        while view:
            view = view[os.write(fd, view[:1 << 20]):]
    os.close(fd)


def _read_all(fd: int) -> bytes:
    parts = []
    while part := os.read(fd, 1 << 20):
        parts.append(part)
    if not parts:
        raise EOFError("nothing received")
    return b"".join(parts)


def _read_exactly(fd: int, n: int) -> bytearray:
    data = bytearray(n)
    with memoryview(data) as view:
        got = 0
        while got < n:
            read = os.readv(fd, [view[got:]])
            if not read:
                raise EOFError("the results were cut short")
            got += read
    return data


def _trim_heap() -> None:
    """Give the C heap's free pages back to the OS before a fork (glibc keeps them after a big
    parse): the child's page tables copy all the parent's memory, and it counts as the child's."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
