"""A TCP proxy in front of a real server that dies on cue, as a server that is stopped does.

    with DyingProxy(upstream_port, die_on=rb"POST /api/projects/\\d+/import", after=1) as proxy:
        client = LabelStudio(base_url=proxy.url, ...)

Every byte is forwarded unchanged until the client sends the request line matching ``die_on``
for the ``after + 1``-th time: then that request is never delivered, every connection is
closed and the port stops listening (connections are refused from then on).
"""
from __future__ import annotations

import re
import socket
import threading


class DyingProxy:
    def __init__(self, upstream_port: int, die_on: bytes, after: int = 1, upstream_host: str = "127.0.0.1"):
        self.upstream = (upstream_host, upstream_port)
        self.pattern = re.compile(die_on)
        self.after = after
        self.seen = 0
        self.dead = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> DyingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.die()

    def die(self) -> None:
        self.dead.set()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in [self._listener, *sockets]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _accept(self) -> None:
        while not self.dead.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket, from_client: bool) -> None:
        try:
            while not self.dead.is_set():
                data = source.recv(65536)
                if not data:
                    break
                if from_client:
                    with self._lock:
                        self.seen += len(self.pattern.findall(data))
                        dying = self.seen > self.after
                    if dying:
                        self.die()
                        return
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
