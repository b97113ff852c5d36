"""Shared machinery for the fake provider servers.

A fake is a ``ThreadingHTTPServer`` bound to 127.0.0.1 on a free port, served
from a daemon thread.  Every request is recorded as a :class:`Call` (path,
method, headers, raw body, parsed JSON, the images and texts found in the body)
in a thread-safe list.  What a model-call request gets back is decided by a
:class:`Behaviour`, picked in this order:

1. a behaviour queued for one image with ``server.on_image(image, *behaviours)``
   (keyed by the image key, sha256 of the bytes sent by default);
2. the global FIFO queue filled with ``server.script(*behaviours)``
   (sync model calls only, never batch lines);
3. ``server.responder(call)`` if set and it returns something other than None;
4. ``server.default`` (a valid answer ``{"score": 7.5, "hero": true, ...}``).

Behaviours are provider-neutral; each fake renders them in its own wire format
(Gemini ``generateContent`` JSON / Google error JSON, or OpenAI chat completion
JSON / OpenAI error JSON).
"""

from __future__ import annotations

import base64
import binascii
import collections
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union
from urllib.parse import parse_qs, urlsplit

DEFAULT_REASONING = "A clear, well-lit animal in frame; good hero candidate."
DEFAULT_ANSWER: dict[str, Any] = {
    "score": 7.5,
    "hero": True,
    "reasoning": DEFAULT_REASONING,
}

HANG = float("inf")  # delay value meaning "until server.release() or stop"


# --------------------------------------------------------------------------
# images / hashing helpers
# --------------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def image_sha(image: Union[bytes, str, Path]) -> str:
    """sha256 hex of image bytes, or of a file's bytes; a 64-hex string passes through."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return sha256_hex(bytes(image))
    if isinstance(image, str) and len(image) == 64 and all(
        c in "0123456789abcdef" for c in image
    ):
        return image
    return sha256_hex(Path(image).read_bytes())


@dataclass(frozen=True)
class SentImage:
    """One image found in a request body."""

    mime_type: Optional[str]
    data: bytes
    sha256: str
    source: str = "inline"  # "inline" | "data_url" | "file" (uploaded file resolved)

    def __repr__(self) -> str:  # keep recorded calls readable
        return f"SentImage({self.mime_type!r}, {len(self.data)} bytes, sha256={self.sha256[:12]}...)"


def decode_b64(s: str) -> Optional[bytes]:
    """Decode standard OR URL-safe base64 (proto3 JSON accepts both; the genai SDK
    sends URL-safe base64 for inlined batch requests), padding optional."""
    t = s.strip().replace("-", "+").replace("_", "/")
    t += "=" * (-len(t) % 4)
    try:
        return base64.b64decode(t, validate=True)
    except (binascii.Error, ValueError):
        return None


# --------------------------------------------------------------------------
# behaviours
# --------------------------------------------------------------------------


@dataclass
class Behaviour:
    """What to answer to one model call.

    status == 200: a model answer whose text is ``text`` (or, when text is None,
    ``json.dumps(answer)``).  status != 200: an error in the provider's error
    JSON shape with ``message`` (and ``error_status`` / ``error_type`` /
    ``error_code`` if given), plus a ``Retry-After`` header when ``retry_after``
    is set.  ``delay`` seconds are slept first (``HANG`` = until
    ``server.release()``); ``raw_body`` bypasses all rendering.
    """

    status: int = 200
    text: Optional[str] = None
    answer: Optional[dict[str, Any]] = None
    delay: float = 0.0
    retry_after: Optional[Union[int, float, str]] = None
    message: Optional[str] = None
    error_status: Optional[str] = None  # Gemini: "RESOURCE_EXHAUSTED", ...
    error_type: Optional[str] = None  # OpenAI: "rate_limit_error", ...
    error_code: Optional[Union[str, int]] = None  # OpenAI: "rate_limit_exceeded"
    headers: dict[str, str] = field(default_factory=dict)
    usage: Optional[tuple[int, int]] = None  # (prompt, completion) override
    finish_reason: Optional[str] = None  # override (Gemini "MAX_TOKENS", OpenAI "length")
    blocked: bool = False  # Gemini: no content, finishReason SAFETY; OpenAI: content None + "content_filter"
    raw_body: Optional[Union[bytes, str]] = None
    raw_content_type: str = "application/json"
    close_connection: bool = False  # drop the socket without any reply
    label: str = ""

    @property
    def is_error(self) -> bool:
        return self.status != 200

    def model_text(self) -> str:
        if self.text is not None:
            return self.text
        return json.dumps(self.answer if self.answer is not None else DEFAULT_ANSWER)


# factories --------------------------------------------------------------


def answer(
    score: Any = 7.5,
    hero: Any = True,
    reasoning: str = DEFAULT_REASONING,
    *,
    usage: Optional[tuple[int, int]] = None,
    delay: float = 0.0,
    **extra: Any,
) -> Behaviour:
    """A valid answer ``{"score": .., "hero": .., "reasoning": ..}`` (+ extra keys)."""
    return Behaviour(
        answer={"score": score, "hero": hero, "reasoning": reasoning, **extra},
        usage=usage,
        delay=delay,
        label="answer",
    )


def answer_text(text: str, *, usage: Optional[tuple[int, int]] = None, delay: float = 0.0) -> Behaviour:
    """The model replies with exactly ``text``."""
    return Behaviour(text=text, usage=usage, delay=delay, label="text")


def not_json(text: str = "I think this is a lovely photo of a deer, maybe an 8 out of 10.") -> Behaviour:
    return Behaviour(text=text, label="not_json")


def fenced_json(score: Any = 6.0, hero: Any = False, reasoning: str = "Fenced answer.") -> Behaviour:
    body = json.dumps({"score": score, "hero": hero, "reasoning": reasoning}, indent=2)
    return Behaviour(
        text=f"Sure! Here is my assessment of the image:\n```json\n{body}\n```\nLet me know if you need more.",
        label="fenced_json",
    )


def score_out_of_range(score: Any = 14) -> Behaviour:
    return Behaviour(
        answer={"score": score, "hero": True, "reasoning": "Out of range score."},
        label="score_out_of_range",
    )


def missing_score() -> Behaviour:
    return Behaviour(answer={"hero": True, "reasoning": "Forgot the score."}, label="missing_score")


def truncated_json() -> Behaviour:
    return Behaviour(text='{"score": 8.0, "hero": tr', finish_reason=None, label="truncated_json")


def blocked() -> Behaviour:
    """Safety block: Gemini candidate without content (finishReason SAFETY); OpenAI content None."""
    return Behaviour(blocked=True, label="blocked")


def rate_limited(retry_after: Optional[Union[int, float, str]] = 2, message: str = "Rate limit exceeded (resource exhausted). Please retry later.") -> Behaviour:
    return Behaviour(status=429, retry_after=retry_after, message=message, label="rate_limited")


def server_error(status: int = 500, message: Optional[str] = None, retry_after: Optional[Union[int, float, str]] = None) -> Behaviour:
    default = {
        500: "An internal error has occurred.",
        502: "Bad gateway.",
        503: "The model is overloaded. Please try again later.",
        504: "Deadline exceeded.",
    }.get(status, "Server error.")
    return Behaviour(status=status, message=message or default, retry_after=retry_after, label=f"server_error_{status}")


def unavailable(retry_after: Optional[Union[int, float, str]] = None) -> Behaviour:
    return server_error(503, retry_after=retry_after)


def auth_error(status: int = 401, message: Optional[str] = None) -> Behaviour:
    if message is None:
        message = (
            "Request had invalid authentication credentials." if status == 401
            else "The caller does not have permission."
        )
    return Behaviour(status=status, message=message, label=f"auth_error_{status}")


def bad_request(message: str = "Invalid argument.") -> Behaviour:
    return Behaviour(status=400, message=message, label="bad_request")


def error(status: int, message: str = "error", **kw: Any) -> Behaviour:
    return Behaviour(status=status, message=message, label=f"error_{status}", **kw)


def slow(seconds: float, then: Optional[Behaviour] = None) -> Behaviour:
    """Sleep ``seconds`` (longer than the client timeout to provoke a timeout), then answer."""
    b = replace(then) if then is not None else Behaviour()
    b.delay = seconds
    b.label = b.label or "slow"
    return b


def hang(then: Optional[Behaviour] = None) -> Behaviour:
    """Block until ``server.release()`` (or the server stops), then answer."""
    return slow(HANG, then)


def drop_connection() -> Behaviour:
    return Behaviour(close_connection=True, label="drop_connection")


def raw(status: int = 200, body: Union[bytes, str, dict, list] = b"", headers: Optional[dict[str, str]] = None, content_type: str = "application/json") -> Behaviour:
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    return Behaviour(status=status, raw_body=body, headers=dict(headers or {}), raw_content_type=content_type, label="raw")


# --------------------------------------------------------------------------
# recorded calls
# --------------------------------------------------------------------------


class Headers(dict):
    """dict of header name -> value with case-insensitive ``get`` / ``[]``."""

    def __init__(self, items: Iterable[tuple[str, str]]):
        super().__init__()
        self._lower: dict[str, str] = {}
        for k, v in items:
            super().__setitem__(k, v)
            self._lower[k.lower()] = v

    def __getitem__(self, key: str) -> str:
        return self._lower[key.lower()]

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        return self._lower.get(key.lower(), default)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._lower


@dataclass
class Call:
    """One recorded HTTP request (plus the reply status once answered)."""

    seq: int
    method: str
    path: str  # full path incl. query string
    route: str  # path without query string
    query: dict[str, list[str]]
    headers: Headers
    body: bytes
    json: Any
    kind: str = "other"  # "generate", "batch_create", "batch_get", "chat", ...
    model: Optional[str] = None
    images: list[SentImage] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    image_keys: list[str] = field(default_factory=list)
    timestamp: float = 0.0
    status: Optional[int] = None
    behaviour: Optional[str] = None  # label of the behaviour used

    @property
    def image_hashes(self) -> list[str]:
        return [im.sha256 for im in self.images]

    @property
    def text(self) -> str:
        return "\n".join(self.texts)

    def header(self, name: str, default: Any = None) -> Any:
        return self.headers.get(name, default)


# --------------------------------------------------------------------------
# the server
# --------------------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512
    block_on_close = False

    def __init__(self, addr: tuple[str, int], handler: type, owner: "FakeServer"):
        self.owner = owner
        super().__init__(addr, handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY: a reply is written as headers, then body; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK of the headers (~40 ms on Linux), so every call took
    # 40 ms longer than the ``latency`` asked for (a real vLLM, behind uvicorn, sets it too)
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence
        pass

    def _handle(self) -> None:
        owner = self.server.owner
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        try:
            status, headers, payload, close = owner._dispatch(self.command, self.path, list(self.headers.items()), body)
        except Exception as exc:  # a bug in the fake: answer 599 so tests see it
            import traceback

            traceback.print_exc()
            status, headers, payload, close = 599, {"Content-Type": "text/plain"}, f"fake server crashed: {exc!r}".encode(), False
        if close:
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        try:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, OSError):
            self.close_connection = True

    def _read_chunked(self) -> bytes:
        out = bytearray()
        while True:
            line = self.rfile.readline().strip()
            size = int(line.split(b";")[0], 16)
            if size == 0:
                self.rfile.readline()
                break
            out += self.rfile.read(size)
            self.rfile.readline()
        return bytes(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle


Reply = tuple[int, dict[str, str], bytes]


class FakeServer:
    """Base class: lifecycle, recording, counting, behaviour selection."""

    kind_for_counting: tuple[str, ...] = ("generate",)

    def __init__(
        self,
        *,
        responder: Optional[Callable[[Call], Optional[Behaviour]]] = None,
        default: Optional[Behaviour] = None,
        latency: float = 0.0,
        prompt_tokens: int = 1290,
        completion_tokens: int = 38,
        include_usage: bool = True,
        api_key: Optional[str] = None,
        image_key: Optional[Callable[[bytes], str]] = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.responder = responder
        self.default = default or Behaviour(label="default")
        self.latency = latency
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = completion_tokens
        self.include_usage = include_usage
        self.api_key = api_key
        self.image_key = image_key or sha256_hex
        self._host, self._port = host, port
        self._lock = threading.RLock()
        self._calls: list[Call] = []
        self._seq = 0
        self._script: collections.deque[Behaviour] = collections.deque()
        self._per_image: dict[str, collections.deque[Behaviour]] = {}
        self._image_counts: collections.Counter[str] = collections.Counter()
        self._batch_image_counts: collections.Counter[str] = collections.Counter()
        self._release = threading.Event()
        self._stopping = threading.Event()
        self._inflight = 0
        self._max_inflight = 0
        self._httpd: Optional[_Server] = None
        self._thread: Optional[threading.Thread] = None
        self.errors: list[str] = []  # tracebacks of exceptions raised inside the fake / responders

    # lifecycle -------------------------------------------------------------
    def start(self) -> "FakeServer":
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server((self._host, self._port), _Handler, self)
        self._port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self._port}", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()
        self._release.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    close = stop

    def __enter__(self) -> "FakeServer":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("server not started (use `with Fake...() as server:` or .start())")
        return f"http://{self._host}:{self._port}"

    # scripting ------------------------------------------------------------
    def script(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next sync model calls, FIFO, one per call."""
        with self._lock:
            self._script.extend(behaviours)

    def on_image(self, image: Union[bytes, str, Path], *behaviours: Behaviour) -> None:
        """Queue behaviours for the next calls about this image (bytes, path or key)."""
        key = self._key_of(image)
        with self._lock:
            self._per_image.setdefault(key, collections.deque()).extend(behaviours)

    def clear_script(self) -> None:
        with self._lock:
            self._script.clear()
            self._per_image.clear()

    def pending_script(self) -> int:
        with self._lock:
            return len(self._script) + sum(len(q) for q in self._per_image.values())

    def release(self) -> None:
        """Let every ``hang()`` reply (current and future) proceed."""
        self._release.set()

    def rearm(self) -> None:
        """Make ``hang()`` block again after a ``release()``."""
        self._release.clear()

    def _key_of(self, image: Union[bytes, str, Path]) -> str:
        if isinstance(image, (bytes, bytearray, memoryview)):
            return self.image_key(bytes(image))
        if isinstance(image, str) and not Path(image).exists():
            return image  # already a key
        return self.image_key(Path(image).read_bytes())

    def _choose(self, call: Call, *, use_script: bool = True, responder: Optional[Callable[[Call], Optional[Behaviour]]] = None) -> Behaviour:
        with self._lock:
            for key in call.image_keys:
                q = self._per_image.get(key)
                if q:
                    return q.popleft()
            if use_script and self._script:
                return self._script.popleft()
        fn = responder or self.responder
        if fn is not None:
            b = fn(call)
            if b is not None:
                return b
        return self.default

    def _sleep(self, seconds: float) -> None:
        if seconds == HANG:
            while not self._release.wait(0.05):
                if self._stopping.is_set():
                    return
            return
        if seconds > 0:
            self._stopping.wait(seconds)

    # recording / counting ---------------------------------------------------
    @property
    def requests(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls(self, path_contains: Optional[str] = None, method: Optional[str] = None, kind: Optional[str] = None) -> list[Call]:
        with self._lock:
            out = list(self._calls)
        if path_contains is not None:
            out = [c for c in out if path_contains in c.path]
        if method is not None:
            out = [c for c in out if c.method.upper() == method.upper()]
        if kind is not None:
            out = [c for c in out if c.kind == kind]
        return out

    def count(self, path_contains: Optional[str] = None, method: Optional[str] = None, kind: Optional[str] = None) -> int:
        return len(self.calls(path_contains, method, kind))

    def count_generate(self) -> int:
        """Number of sync model calls (Gemini generateContent / OpenAI chat completions)."""
        with self._lock:
            return sum(1 for c in self._calls if c.kind in self.kind_for_counting)

    def image_counts(self, include_batch: bool = False) -> dict[str, int]:
        """image key -> number of sync model calls that carried it (plus batch lines if asked)."""
        with self._lock:
            c = collections.Counter(self._image_counts)
            if include_batch:
                c.update(self._batch_image_counts)
            return dict(c)

    def batch_image_counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._batch_image_counts)

    def count_for(self, image: Union[bytes, str, Path], include_batch: bool = False) -> int:
        return self.image_counts(include_batch).get(self._key_of(image), 0)

    def repeated_images(self, include_batch: bool = False) -> dict[str, int]:
        """image key -> count, for images sent in more than one model call."""
        return {k: n for k, n in self.image_counts(include_batch).items() if n > 1}

    def calls_for(self, image: Union[bytes, str, Path]) -> list[Call]:
        key = self._key_of(image)
        return [c for c in self.requests if key in c.image_keys]

    def successful_image_counts(self) -> dict[str, int]:
        """image key -> number of sync model calls about it that got HTTP 200."""
        out: collections.Counter[str] = collections.Counter()
        for c in self.requests:
            if c.kind in self.kind_for_counting and c.status == 200:
                out.update(set(c.image_keys))
        return dict(out)

    @property
    def max_concurrency(self) -> int:
        """Highest number of model calls in flight at the same time."""
        return self._max_inflight

    def reset_counts(self) -> None:
        with self._lock:
            self._calls.clear()
            self._image_counts.clear()
            self._batch_image_counts.clear()
            self._max_inflight = 0
            self.errors.clear()

    def wait_for(self, predicate: Callable[["FakeServer"], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
        """Poll ``predicate(server)`` until true or timeout; returns the last result."""
        deadline = time.monotonic() + timeout
        while True:
            if predicate(self):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def wait_for_generate(self, n: int, timeout: float = 10.0) -> bool:
        return self.wait_for(lambda s: s.count_generate() >= n, timeout)

    # dispatch -------------------------------------------------------------
    def _new_call(self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes) -> Call:
        parts = urlsplit(raw_path)
        parsed: Any = None
        if body:
            try:
                parsed = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                parsed = None
        with self._lock:
            self._seq += 1
            seq = self._seq
        return Call(
            seq=seq, method=method.upper(), path=raw_path, route=parts.path,
            query=parse_qs(parts.query), headers=Headers(headers), body=body,
            json=parsed, timestamp=time.time(),
        )

    def _record(self, call: Call) -> None:
        with self._lock:
            self._calls.append(call)

    def _count_images(self, call: Call, batch: bool = False) -> None:
        with self._lock:
            (self._batch_image_counts if batch else self._image_counts).update(call.image_keys)

    def _enter_model_call(self) -> None:
        with self._lock:
            self._inflight += 1
            self._max_inflight = max(self._max_inflight, self._inflight)

    def _exit_model_call(self) -> None:
        with self._lock:
            self._inflight -= 1

    def _dispatch(self, method: str, raw_path: str, headers: list[tuple[str, str]], body: bytes) -> tuple[int, dict[str, str], bytes, bool]:
        call = self._new_call(method, raw_path, headers, body)
        self._record(call)
        try:
            result = self.handle(call)
        except Exception:
            import traceback

            call.status = 599
            with self._lock:
                self.errors.append(traceback.format_exc())
            raise
        if result is None:  # drop connection
            call.status = 0
            return 0, {}, b"", True
        status, hdrs, payload = result
        call.status = status
        return status, hdrs, payload, False

    def handle(self, call: Call) -> Optional[Reply]:  # pragma: no cover - abstract
        raise NotImplementedError

    # helpers for subclasses --------------------------------------------------
    def answer(self, call: Call, success: Optional[Callable[[Behaviour], Optional[Reply]]] = None) -> Optional[Reply]:
        """Choose this call's behaviour, wait as it says, and reply (None: drop the connection).

        ``success`` writes the reply of a behaviour that is an answer (not an error or raw bytes)
        where the endpoint's answer is not the provider's usual body.
        """
        b = self._choose(call)
        call.behaviour = b.label or "behaviour"
        self._sleep(self.latency)
        self._sleep(b.delay)
        if b.close_connection:
            return None
        if success is not None and not b.is_error and b.raw_body is None:
            return success(b)
        return self.render(b, call.model or self.model)

    def render(self, b: Behaviour, model: str) -> Reply:
        """A behaviour as an HTTP reply: raw bytes, the provider's error shape, or an answer."""
        if b.raw_body is not None:
            body = b.raw_body.encode() if isinstance(b.raw_body, str) else b.raw_body
            h = {"Content-Type": b.raw_content_type, **b.headers}
            if b.retry_after is not None:
                h.setdefault("Retry-After", str(b.retry_after))
            return b.status, h, body
        if b.is_error:
            return self.behaviour_error(b)
        return self.json_reply(200, self.answer_body(b, model), b.headers)

    def behaviour_error(self, b: Behaviour) -> Reply:  # each provider has its own error shape
        raise NotImplementedError

    def answer_body(self, b: Behaviour, model: str) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def json_reply(status: int, obj: Any, headers: Optional[dict[str, str]] = None) -> Reply:
        h = {"Content-Type": "application/json; charset=UTF-8"}
        h.update(headers or {})
        return status, h, json.dumps(obj).encode()

    def usage_for(self, b: Behaviour) -> tuple[int, int]:
        return b.usage if b.usage is not None else (self.prompt_tokens, self.completion_tokens)

    def _finish_images(self, call: Call) -> None:
        call.image_keys = [self.image_key(im.data) for im in call.images]
