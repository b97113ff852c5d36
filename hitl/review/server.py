"""The HTTP server of `hitl serve`: waitress, with three guards in front of the app.

- The secret is checked as soon as a request's headers are in: a POST without it is answered 401
  before a byte of its body is read (waitress would otherwise take the whole body, up to the
  limit and into a temporary file, before the app could refuse it).
- A connection must finish its request headers within ``header_timeout`` seconds of connecting
  (or of its previous answer), however slowly it trickles them.
- At the connection limit, the connections that have waited longest for their headers make way
  for new ones, so a crowd of slow connections never keeps Label Studio out (waitress would stop
  accepting until one of them timed out).
"""
from __future__ import annotations

import functools
import json
import time

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.utilities import Error
from waitress.wasyncore import close_all

from hitl.review.webhook import bearer_matches

HEADER_TIMEOUT_S = 5.0
ACCEPT_BATCH = 64  # connections accepted in one turn of the loop at most
UNAUTHORIZED = "missing or wrong Authorization header (Bearer <HITL_WEBHOOK_SECRET>)"


class Unauthorized(Error):
    """401 with the JSON error body the app itself answers."""

    code = 401
    reason = "Unauthorized"

    def to_response(self, ident=None):
        body = json.dumps({"error": self.body, "status": self.code}).encode()
        return f"{self.code} {self.reason}", [("Content-Type", "application/json")], body


class SecretFirstParser(HTTPRequestParser):
    """Waitress's request parser, refusing a POST without the secret once its headers are read."""

    def __init__(self, adj: Adjustments, secret: str | None = None):
        super().__init__(adj)
        self.secret = secret

    def received(self, data: bytes) -> int:
        consumed = super().received(data)
        if (self.secret and self.headers_finished and not self.completed and self.error is None
                and self.command == "POST" and not bearer_matches(self.headers.get("AUTHORIZATION", ""), self.secret)):
            self.error = Unauthorized(UNAUTHORIZED)
            self.completed = True
            return len(data)  # the body that came with the headers is dropped; the rest is never read
        return consumed


class GuardedChannel(HTTPChannel):
    """A connection that knows since when it has been waiting for a request's headers."""

    def __init__(self, server: GuardedServer, sock, addr, adj, map=None):
        super().__init__(server, sock, addr, adj, map)
        self.parser_class = functools.partial(SecretFirstParser, secret=server.secret)
        self.waiting_since = self.creation_time

    def service(self) -> None:
        super().service()
        self.waiting_since = time.time()  # the next request's headers are due from now

    def waiting_for_headers(self) -> bool:
        return not self.requests and (self.request is None or not self.request.headers_finished)


class GuardedServer(TcpWSGIServer):
    channel_class = GuardedChannel

    def __init__(self, *args, secret: str | None, header_timeout: float, **kw):
        self.secret, self.header_timeout = secret, header_timeout
        super().__init__(*args, **kw)

    def readable(self) -> bool:
        accepting = super().readable()  # runs the maintenance; False at the connection limit
        return accepting or (self.accepting and any(c.waiting_for_headers() for c in self.active_channels.values()))

    def handle_accept(self) -> None:
        """Accept the connections waiting (a batch of them: one a turn of the loop is slow to drain
        a crowd), each making way for itself at the limit."""
        for _ in range(ACCEPT_BATCH):
            if len(self._map) >= self.adj.connection_limit and not self.make_way():
                return
            before = len(self._map)
            super().handle_accept()
            if len(self._map) == before:  # nobody else is waiting
                return

    def make_way(self) -> bool:
        """Close the connection that has waited longest for its headers; False when none is waiting."""
        waiting = [c for c in self.active_channels.values() if c.waiting_for_headers()]
        if not waiting:
            return False
        min(waiting, key=lambda c: c.waiting_since).handle_close()  # it has no request being served
        return True

    def maintenance(self, now: float) -> None:
        super().maintenance(now)
        for channel in list(self.active_channels.values()):
            if channel.waiting_for_headers() and now - channel.waiting_since > self.header_timeout:
                channel.will_close = True


def serve(app, *, host: str, port: int, threads: int, secret: str | None, connection_limit: int = 1000,
          header_timeout: float = HEADER_TIMEOUT_S, **adjustments) -> None:
    """Serve ``app`` until stopped (Ctrl+C), on every address ``host`` resolves to; then the worker
    threads end (those answering finish first, for a few seconds at most) and the sockets close."""
    adj = Adjustments(host=host, port=port, threads=threads, connection_limit=connection_limit, **adjustments)
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(adj.threads)
    sockets: dict = {}
    try:
        servers = [GuardedServer(app, sockets, dispatcher=dispatcher, adj=adj, sockinfo=sockinfo, secret=secret,
                                 header_timeout=header_timeout) for sockinfo in adj.listen]
        servers[0].run()  # one loop serves every socket of the shared map
    finally:
        dispatcher.shutdown()
        close_all(sockets)
