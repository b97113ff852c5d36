"""Fake Gemini Developer API server for the real ``google-genai`` SDK.

Point the SDK at it with::

    client = genai.Client(api_key="test-key", http_options=types.HttpOptions(
        base_url=server.url, timeout=5_000))          # timeout in milliseconds

Routes (any API version segment is accepted, ``{v}`` = v1 / v1beta / ...):

==========  =============================================  =========================
method      path                                           SDK call
==========  =============================================  =========================
POST        /{v}/models/{model}:generateContent            models.generate_content
POST        /{v}/models/{model}:batchGenerateContent       batches.create
GET         /{v}/batches/{id}                              batches.get
POST        /{v}/batches/{id}:cancel                       batches.cancel
DELETE      /{v}/batches/{id}                              batches.delete
GET         /{v}/batches                                   batches.list
POST        /upload/{v}/files   (X-Goog-Upload-Command:    files.upload (resumable:
            start, then "upload, finalize" to the          start, then upload chunks
            X-Goog-Upload-URL returned)                    to the returned URL)
GET         /{v}/files/{id}                                files.get
GET         /{v}/files/{id}:download?alt=media             files.download
            (also /download/{v}/files/{id}:download)
DELETE      /{v}/files/{id}                                files.delete
GET         /{v}/files                                     files.list
GET         /{v}/models, /{v}/models/{model}               models.list / models.get
==========  =============================================  =========================
"""

from __future__ import annotations

import collections
import datetime as _dt
import json
import random
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional

from ._http import (
    Behaviour,
    Call,
    FakeServer,
    Headers,
    Reply,
    SentImage,
    decode_b64,
    sha256_hex,
)

GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
GRPC_CODE = {
    "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9, "ABORTED": 10,
    "OUT_OF_RANGE": 11, "NOT_IMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14,
    "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

PENDING = "BATCH_STATE_PENDING"
RUNNING = "BATCH_STATE_RUNNING"
SUCCEEDED = "BATCH_STATE_SUCCEEDED"
FAILED = "BATCH_STATE_FAILED"
CANCELLED = "BATCH_STATE_CANCELLED"
EXPIRED = "BATCH_STATE_EXPIRED"
TERMINAL = {SUCCEEDED, FAILED, CANCELLED, EXPIRED}

_V = r"/(?:v[0-9][A-Za-z0-9]*)"


def _now_iso(ts: Optional[float] = None) -> str:
    t = _dt.datetime.fromtimestamp(ts if ts is not None else time.time(), tz=_dt.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _norm_state(state: str) -> str:
    """Accept "SUCCEEDED", "JOB_STATE_SUCCEEDED" or "BATCH_STATE_SUCCEEDED"."""
    s = str(getattr(state, "value", state)).upper()
    for prefix in ("JOB_STATE_", "BATCH_STATE_"):
        if s.startswith(prefix):
            s = s[len(prefix):]
    return "BATCH_STATE_" + s


# --------------------------------------------------------------------------
# request parsing
# --------------------------------------------------------------------------


def _g(d: dict, *names: str, default: Any = None) -> Any:
    for n in names:
        if n in d:
            return d[n]
    return default


def extract_gemini_request(req: Any, resolve_file: Optional[Callable[[str], Optional[tuple[str, bytes]]]] = None) -> tuple[list[SentImage], list[str]]:
    """Images (inlineData / inline_data, or fileData of a file uploaded to the fake) and texts
    in a GenerateContentRequest body (REST camelCase or snake_case)."""
    images: list[SentImage] = []
    texts: list[str] = []
    if not isinstance(req, dict):
        return images, texts

    def walk_content(content: Any) -> None:
        if isinstance(content, str):
            texts.append(content)
            return
        if not isinstance(content, dict):
            return
        for part in content.get("parts") or []:
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                texts.append(part["text"])
            inline = _g(part, "inlineData", "inline_data")
            if isinstance(inline, dict) and isinstance(inline.get("data"), str):
                data = decode_b64(inline["data"])
                if data is not None:
                    images.append(SentImage(_g(inline, "mimeType", "mime_type"), data, sha256_hex(data), "inline"))
            fdata = _g(part, "fileData", "file_data")
            if isinstance(fdata, dict) and resolve_file is not None:
                uri = _g(fdata, "fileUri", "file_uri") or ""
                found = resolve_file(uri)
                if found is not None:
                    mime, data = found
                    images.append(SentImage(_g(fdata, "mimeType", "mime_type") or mime, data, sha256_hex(data), "file"))

    contents = req.get("contents")
    if isinstance(contents, dict):
        contents = [contents]
    for c in contents or []:
        walk_content(c)
    si = _g(req, "systemInstruction", "system_instruction")
    if si is not None:
        walk_content(si)
    return images, texts


# --------------------------------------------------------------------------
# state
# --------------------------------------------------------------------------


@dataclass
class FakeFile:
    name: str  # "files/abc123"
    mime_type: str
    data: bytes
    display_name: Optional[str] = None
    source: str = "UPLOADED"  # or "GENERATED"
    create_time: float = field(default_factory=time.time)

    def resource(self, base_url: str) -> dict[str, Any]:
        fid = self.name.split("/", 1)[1]
        out: dict[str, Any] = {
            "name": self.name,
            "mimeType": self.mime_type,
            "sizeBytes": str(len(self.data)),
            "createTime": _now_iso(self.create_time),
            "updateTime": _now_iso(self.create_time),
            "expirationTime": _now_iso(self.create_time + 48 * 3600),
            "sha256Hash": sha256_hex(self.data),
            "uri": f"{base_url}/v1beta/files/{fid}",
            "state": "ACTIVE",
            "source": self.source,
        }
        if self.display_name:
            out["displayName"] = self.display_name
        if self.source == "GENERATED":
            out["downloadUri"] = f"{base_url}/download/v1beta/files/{fid}:download?alt=media"
        return out


@dataclass
class BatchEntry:
    index: int
    key: str  # JSONL "key", or inline metadata["key"], or str(index)
    request: dict[str, Any]
    metadata: Optional[dict[str, Any]]
    call: Call  # pseudo-call for responders: .images/.texts/.image_keys/.json


@dataclass
class FakeBatch:
    name: str  # "batches/xyz"
    model: str  # "models/..."
    display_name: Optional[str]
    source: str  # "inline" | "file"
    input_file: Optional[str]
    entries: list[BatchEntry]
    state: str = PENDING
    polls: int = 0
    created: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    ended: Optional[float] = None
    results: Optional[list[dict[str, Any]]] = None  # lines in the order served
    result_file: Optional[str] = None
    error: Optional[dict[str, Any]] = None

    @property
    def keys(self) -> list[str]:
        return [e.key for e in self.entries]

    @property
    def job_state(self) -> str:
        """State as the SDK reports it (JOB_STATE_*)."""
        return self.state.replace("BATCH_STATE_", "JOB_STATE_")


# --------------------------------------------------------------------------
# server
# --------------------------------------------------------------------------


class FakeGemini(FakeServer):
    """Fake Gemini API server.  See module docstring for routes; ``FakeServer`` for
    recording/counting helpers; ``tests.fakes._http`` for behaviours.

    Batch knobs (attributes, settable at any time):
      batch_pending_polls   GETs answered PENDING before RUNNING (default 1)
      batch_running_polls   GETs answered RUNNING before the final state (default 1)
      batch_min_seconds     and at least this many seconds since create (default 0)
      batch_final_state     state reached at the end (default SUCCEEDED)
      batch_shuffle         shuffle file-result lines (default True; never identity for n>=2)
      batch_shuffle_inline  shuffle inlined responses too (default False: real API keeps order)
      batch_error_keys      keys (JSONL key / inline metadata key / str(index)) whose line is an error
      batch_error           Behaviour rendered for those lines (default 500 INTERNAL)
      batch_responder       responder for batch lines (falls back to .responder, then default)
      batch_seed            RNG seed for the shuffle
      batch_get_failures    Behaviours (errors) answered to the next batch GETs, FIFO, before
                            the job is looked at (a poll that fails does not advance the job)
    """

    kind_for_counting = ("generate",)

    def __init__(
        self,
        *,
        model: str = "gemini-2.5-flash",
        batch_pending_polls: int = 1,
        batch_running_polls: int = 1,
        batch_min_seconds: float = 0.0,
        batch_final_state: str = SUCCEEDED,
        batch_shuffle: bool = True,
        batch_shuffle_inline: bool = False,
        batch_error_keys: Iterable[str] = (),
        batch_error: Optional[Behaviour] = None,
        batch_responder: Optional[Callable[[Call], Optional[Behaviour]]] = None,
        batch_seed: int = 1234,
        thoughts_tokens: int = 0,
        bad_key_status: int = 401,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.model = model
        self.batch_pending_polls = batch_pending_polls
        self.batch_running_polls = batch_running_polls
        self.batch_min_seconds = batch_min_seconds
        self.batch_final_state = _norm_state(batch_final_state)
        self.batch_shuffle = batch_shuffle
        self.batch_shuffle_inline = batch_shuffle_inline
        self.batch_error_keys = set(batch_error_keys)
        self.batch_error = batch_error or Behaviour(status=500, message="Internal error while processing this request.", label="batch_line_error")
        self.batch_responder = batch_responder
        self.batch_seed = batch_seed
        self.thoughts_tokens = thoughts_tokens
        self.bad_key_status = bad_key_status
        self.batch_get_failures: collections.deque[Behaviour] = collections.deque()
        self.files: dict[str, FakeFile] = {}
        self.batches: dict[str, FakeBatch] = {}
        self._uploads: dict[str, dict[str, Any]] = {}
        self._state_lock = threading.RLock()

    # ---------------------------------------------------------------- public helpers
    def batch(self, name: str) -> FakeBatch:
        if not name.startswith("batches/"):
            name = f"batches/{name}"
        return self.batches[name]

    def set_batch_state(self, name: str, state: str) -> FakeBatch:
        """Force a batch into a state (e.g. "SUCCEEDED", "JOB_STATE_FAILED")."""
        with self._state_lock:
            b = self.batch(name)
            self._transition(b, _norm_state(state))
            return b

    def complete_batch(self, name: str) -> FakeBatch:
        return self.set_batch_state(name, SUCCEEDED)

    def add_file(self, data: bytes, *, mime_type: str = "application/jsonl", name: Optional[str] = None, source: str = "UPLOADED", display_name: Optional[str] = None) -> FakeFile:
        fid = name.split("/", 1)[1] if name and name.startswith("files/") else (name or uuid.uuid4().hex[:12])
        f = FakeFile(f"files/{fid}", mime_type, data, display_name, source)
        with self._state_lock:
            self.files[f.name] = f
        return f

    def file_bytes(self, name: str) -> bytes:
        if not name.startswith("files/"):
            name = f"files/{name}"
        return self.files[name].data

    def count_batch_creates(self) -> int:
        return self.count(kind="batch_create")

    # ---------------------------------------------------------------- rendering
    def error_body(self, status: int, message: str, error_status: Optional[str] = None, retry_after: Any = None) -> dict[str, Any]:
        err: dict[str, Any] = {"code": status, "message": message, "status": error_status or GOOGLE_STATUS.get(status, "UNKNOWN")}
        if retry_after is not None:
            err["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after}s"}]
        return {"error": err}

    def error_reply(self, status: int, message: str, error_status: Optional[str] = None, retry_after: Any = None, headers: Optional[dict[str, str]] = None) -> Reply:
        h = dict(headers or {})
        if retry_after is not None:
            h.setdefault("Retry-After", str(retry_after))
        return self.json_reply(status, self.error_body(status, message, error_status, retry_after), h)

    def generate_response(self, b: Behaviour, model: str) -> dict[str, Any]:
        prompt, completion = self.usage_for(b)
        if b.blocked:
            cand: dict[str, Any] = {
                "finishReason": b.finish_reason or "SAFETY",
                "index": 0,
                "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True}],
            }
            completion = 0
        else:
            cand = {
                "content": {"parts": [{"text": b.model_text()}], "role": "model"},
                "finishReason": b.finish_reason or "STOP",
                "index": 0,
            }
        out: dict[str, Any] = {
            "candidates": [cand],
            "modelVersion": model.split("/", 1)[-1],
            "responseId": uuid.uuid4().hex[:22],
        }
        if self.include_usage:
            usage: dict[str, Any] = {
                "promptTokenCount": prompt,
                "candidatesTokenCount": completion,
                "totalTokenCount": prompt + completion + self.thoughts_tokens,
                "promptTokensDetails": [{"modality": "IMAGE", "tokenCount": max(prompt - 30, 0)}, {"modality": "TEXT", "tokenCount": min(prompt, 30)}],
            }
            if self.thoughts_tokens:
                usage["thoughtsTokenCount"] = self.thoughts_tokens
            out["usageMetadata"] = usage
        return out

    def behaviour_error(self, b: Behaviour) -> Reply:
        return self.error_reply(b.status, b.message or "error", b.error_status, b.retry_after, b.headers)

    def answer_body(self, b: Behaviour, model: str) -> dict[str, Any]:
        return self.generate_response(b, model)

    # ---------------------------------------------------------------- routing
    def _resolve_file_uri(self, uri: str) -> Optional[tuple[str, bytes]]:
        m = re.search(r"files/([A-Za-z0-9_\-]+)", uri or "")
        if not m:
            return None
        f = self.files.get(f"files/{m.group(1)}")
        return (f.mime_type, f.data) if f else None

    def _check_key(self, call: Call) -> Optional[Reply]:
        if self.api_key is None:
            return None
        got = call.header("x-goog-api-key") or (call.query.get("key") or [None])[0]
        if got == self.api_key:
            return None
        if got is None:
            return self.error_reply(403, "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.", "PERMISSION_DENIED")
        return self.error_reply(self.bad_key_status, "API key not valid. Please pass a valid API key.", GOOGLE_STATUS.get(self.bad_key_status))

    def handle(self, call: Call) -> Optional[Reply]:
        route, method = call.route, call.method
        m = None

        def match(pattern: str) -> bool:
            nonlocal m
            m = re.fullmatch(pattern, route)
            return m is not None

        # upload endpoints first (they carry the upload protocol headers)
        if method == "POST" and match(r"/upload" + _V + r"/files"):
            call.kind = "upload"
            return self._check_key(call) or self._upload(call)
        if method == "POST" and match(_V + r"/models/([^/:]+(?:/[^/:]+)?):generateContent"):
            call.kind = "generate"
            call.model = m.group(1)  # type: ignore[union-attr]
            return self._generate(call)
        if method == "POST" and match(_V + r"/models/([^/:]+(?:/[^/:]+)?):batchGenerateContent"):
            call.kind = "batch_create"
            call.model = m.group(1)  # type: ignore[union-attr]
            return self._check_key(call) or self._batch_create(call)
        if method == "GET" and match(_V + r"/batches/([^/:]+)"):
            call.kind = "batch_get"
            return self._check_key(call) or self._batch_get(m.group(1))  # type: ignore[union-attr]
        if method == "POST" and match(_V + r"/batches/([^/:]+):cancel"):
            call.kind = "batch_cancel"
            return self._check_key(call) or self._batch_cancel(m.group(1))  # type: ignore[union-attr]
        if method == "DELETE" and match(_V + r"/batches/([^/:]+)"):
            call.kind = "batch_delete"
            return self._check_key(call) or self._batch_delete(m.group(1))  # type: ignore[union-attr]
        if method == "GET" and match(_V + r"/batches"):
            call.kind = "batch_list"
            return self._check_key(call) or self._batch_list()
        if method == "GET" and (match(_V + r"/files/([^/:]+):download") or match(r"/download" + _V + r"/files/([^/:]+):download")):
            call.kind = "file_download"
            return self._check_key(call) or self._file_download(m.group(1))  # type: ignore[union-attr]
        if method == "GET" and match(_V + r"/files/([^/:]+)"):
            call.kind = "file_get"
            return self._check_key(call) or self._file_get(m.group(1))  # type: ignore[union-attr]
        if method == "DELETE" and match(_V + r"/files/([^/:]+)"):
            call.kind = "file_delete"
            return self._check_key(call) or self._file_delete(m.group(1))  # type: ignore[union-attr]
        if method == "GET" and match(_V + r"/files"):
            call.kind = "file_list"
            return self._check_key(call) or self.json_reply(200, {"files": [f.resource(self.url) for f in list(self.files.values())]})
        if method == "GET" and match(_V + r"/models"):
            call.kind = "model_list"
            return self._check_key(call) or self.json_reply(200, {"models": [self._model_resource(self.model)]})
        if method == "GET" and match(_V + r"/models/([^:]+)"):
            call.kind = "model_get"
            return self._check_key(call) or self.json_reply(200, self._model_resource(m.group(1)))  # type: ignore[union-attr]
        return self.error_reply(404, f"Fake Gemini: no route for {method} {call.path}", "NOT_FOUND")

    def _model_resource(self, model: str) -> dict[str, Any]:
        name = model if model.startswith("models/") else f"models/{model}"
        return {
            "name": name, "baseModelId": name.split("/", 1)[1], "version": "001",
            "displayName": name.split("/", 1)[1], "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
            "supportedGenerationMethods": ["generateContent", "countTokens", "batchGenerateContent"],
        }

    # ---------------------------------------------------------------- generate
    def _generate(self, call: Call) -> Optional[Reply]:
        call.images, call.texts = extract_gemini_request(call.json, self._resolve_file_uri)
        self._finish_images(call)
        self._count_images(call)
        self._enter_model_call()
        try:
            bad = self._check_key(call)
            if bad is not None:
                call.behaviour = "bad_key"
                return bad
            if call.json is None:
                call.behaviour = "bad_json"
                return self.error_reply(400, "Invalid JSON payload received.", "INVALID_ARGUMENT")
            return self.answer(call)
        finally:
            self._exit_model_call()

    # ---------------------------------------------------------------- files / uploads
    def _upload(self, call: Call) -> Reply:
        command = (call.header("X-Goog-Upload-Command") or "").lower()
        commands = {c.strip() for c in command.split(",") if c.strip()}
        upload_id = (call.query.get("upload_id") or [None])[0]
        if "start" in commands:
            if (call.header("X-Goog-Upload-Protocol") or "").lower() != "resumable":
                return self.error_reply(400, "Only the resumable upload protocol is supported by the fake.", "INVALID_ARGUMENT")
            meta = (call.json or {}).get("file") or {}
            uid = uuid.uuid4().hex
            self._uploads[uid] = {
                "meta": meta,
                "mime": call.header("X-Goog-Upload-Header-Content-Type") or _g(meta, "mimeType", "mime_type") or "application/octet-stream",
                "size": int(call.header("X-Goog-Upload-Header-Content-Length") or _g(meta, "sizeBytes", "size_bytes") or 0),
                "buf": bytearray(),
            }
            upload_url = f"{self.url}{call.route}?upload_id={uid}&upload_protocol=resumable"
            return 200, {
                "X-Goog-Upload-URL": upload_url,
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Chunk-Granularity": "8388608",
                "Content-Type": "text/plain; charset=utf-8",
            }, b""
        if upload_id is None or upload_id not in self._uploads:
            return self.error_reply(404, "Unknown upload session.", "NOT_FOUND")
        sess = self._uploads[upload_id]
        if "upload" in commands:
            offset = int(call.header("X-Goog-Upload-Offset") or len(sess["buf"]))
            if offset != len(sess["buf"]):
                return self.error_reply(400, f"Bad upload offset {offset}, expected {len(sess['buf'])}.", "INVALID_ARGUMENT")
            sess["buf"] += call.body
        if "finalize" in commands:
            del self._uploads[upload_id]
            meta = sess["meta"]
            name = meta.get("name")
            f = self.add_file(bytes(sess["buf"]), mime_type=sess["mime"], name=name, display_name=_g(meta, "displayName", "display_name"))
            return self.json_reply(200, {"file": f.resource(self.url)}, {"X-Goog-Upload-Status": "final"})
        if "upload" in commands:
            return 200, {"X-Goog-Upload-Status": "active", "Content-Type": "text/plain"}, b""
        return self.error_reply(400, f"Unsupported upload command {command!r}.", "INVALID_ARGUMENT")

    def _file(self, fid: str) -> Optional[FakeFile]:
        return self.files.get(f"files/{fid}")

    def _file_get(self, fid: str) -> Reply:
        f = self._file(fid)
        if f is None:
            return self.error_reply(403, f"You do not have permission to access the File {fid} or it may not exist.", "PERMISSION_DENIED")
        return self.json_reply(200, f.resource(self.url))

    def _file_download(self, fid: str) -> Reply:
        f = self._file(fid)
        if f is None:
            return self.error_reply(404, f"File files/{fid} not found.", "NOT_FOUND")
        return 200, {"Content-Type": f.mime_type or "application/octet-stream"}, f.data

    def _file_delete(self, fid: str) -> Reply:
        with self._state_lock:
            if self.files.pop(f"files/{fid}", None) is None:
                return self.error_reply(403, f"File files/{fid} may not exist.", "PERMISSION_DENIED")
        return self.json_reply(200, {})

    # ---------------------------------------------------------------- batches
    def _batch_create(self, call: Call) -> Reply:
        body = call.json if isinstance(call.json, dict) else {}
        batch = body.get("batch") or {}
        input_config = batch.get("inputConfig") or batch.get("input_config") or {}
        model = call.model or self.model
        entries: list[BatchEntry] = []
        source, input_file = "inline", None
        if "fileName" in input_config or "file_name" in input_config:
            source = "file"
            input_file = input_config.get("fileName") or input_config.get("file_name")
            f = self.files.get(input_file)
            if f is None:
                return self.error_reply(400, f"Input file {input_file} not found.", "INVALID_ARGUMENT")
            for i, line in enumerate(f.data.decode("utf-8").splitlines()):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    return self.error_reply(400, f"Invalid JSON on line {i + 1} of {input_file}.", "INVALID_ARGUMENT")
                key = obj.get("key")
                req = obj.get("request") or {}
                entries.append(self._entry(len(entries), str(key) if key is not None else str(len(entries)), req, None, model))
        else:
            reqs = input_config.get("requests") or {}
            items = reqs.get("requests") if isinstance(reqs, dict) else reqs
            for i, item in enumerate(items or []):
                meta = item.get("metadata")
                key = (meta or {}).get("key")
                entries.append(self._entry(i, str(key) if key is not None else str(i), item.get("request") or {}, meta, model))
        if not entries:
            return self.error_reply(400, "Batch has no requests.", "INVALID_ARGUMENT")
        bid = uuid.uuid4().hex[:16]
        fb = FakeBatch(
            name=f"batches/{bid}", model=model if model.startswith("models/") else f"models/{model}",
            display_name=batch.get("displayName"), source=source, input_file=input_file, entries=entries,
        )
        with self._state_lock:
            self.batches[fb.name] = fb
        for e in entries:
            self._count_images(e.call, batch=True)
        return self.json_reply(200, self._operation(fb))

    def _entry(self, index: int, key: str, request: dict, metadata: Optional[dict], model: str) -> BatchEntry:
        pseudo = Call(
            seq=0, method="BATCH", path=f"batch-line:{key}", route="batch-line", query={},
            headers=Headers([]),
            body=b"", json=request, kind="batch_line", model=model,
        )
        pseudo.images, pseudo.texts = extract_gemini_request(request, self._resolve_file_uri)
        self._finish_images(pseudo)
        return BatchEntry(index, key, request, metadata, pseudo)

    def _transition(self, b: FakeBatch, state: str) -> None:
        if b.state == state:
            return
        b.state = state
        b.updated = time.time()
        if state in TERMINAL:
            b.ended = b.updated
        if state == SUCCEEDED and b.results is None:
            self._compute_results(b)

    def _advance(self, b: FakeBatch) -> None:
        if b.state in TERMINAL:
            return
        b.polls += 1
        elapsed = time.time() - b.created
        if b.polls <= self.batch_pending_polls:
            self._transition(b, PENDING)
        elif b.polls <= self.batch_pending_polls + self.batch_running_polls or elapsed < self.batch_min_seconds:
            self._transition(b, RUNNING)
        else:
            self._transition(b, self.batch_final_state)

    def _line_for(self, b: FakeBatch, e: BatchEntry) -> dict[str, Any]:
        if e.key in self.batch_error_keys:
            beh = self.batch_error
        else:
            beh = self._choose(e.call, use_script=False, responder=self.batch_responder)
        e.call.behaviour = beh.label
        if beh.is_error:
            st = beh.error_status or GOOGLE_STATUS.get(beh.status, "UNKNOWN")
            return {"error": {"code": GRPC_CODE.get(st, 2), "message": beh.message or "error", "status": st}}
        return {"response": self.generate_response(beh, b.model)}

    def _compute_results(self, b: FakeBatch) -> None:
        lines: list[dict[str, Any]] = []
        for e in b.entries:
            line = self._line_for(b, e)
            if b.source == "file":
                line = {"key": e.key, **line}
            elif e.metadata is not None:
                line = {**line, "metadata": e.metadata}
            lines.append(line)
        rng = random.Random(self.batch_seed)
        if (b.source == "file" and self.batch_shuffle) or (b.source == "inline" and self.batch_shuffle_inline):
            order = list(range(len(lines)))
            rng.shuffle(order)
            if len(order) >= 2 and order == sorted(order):
                order = order[1:] + order[:1]
            lines = [lines[i] for i in order]
        b.results = lines
        if b.source == "file":
            data = "".join(json.dumps(x) + "\n" for x in lines).encode()
            f = self.add_file(data, mime_type="application/jsonl", name=f"batch-{b.name.split('/', 1)[1]}", source="GENERATED")
            b.result_file = f.name

    def _operation(self, b: FakeBatch) -> dict[str, Any]:
        n = len(b.entries)
        failed = sum(1 for x in (b.results or []) if "error" in x)
        done = b.state in TERMINAL
        if b.state == SUCCEEDED:
            stats = {"requestCount": str(n), "successfulRequestCount": str(n - failed), "failedRequestCount": str(failed), "pendingRequestCount": "0"}
        else:
            stats = {"requestCount": str(n), "pendingRequestCount": str(n if not done else 0)}
        meta: dict[str, Any] = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "name": b.name,
            "model": b.model,
            "displayName": b.display_name or "",
            "createTime": _now_iso(b.created),
            "updateTime": _now_iso(b.updated),
            "batchStats": stats,
            "state": b.state,
        }
        if b.display_name is None:
            del meta["displayName"]
        if b.ended is not None:
            meta["endTime"] = _now_iso(b.ended)
        if b.input_file:
            meta["inputConfig"] = {"fileName": b.input_file}
        op: dict[str, Any] = {"name": b.name, "metadata": meta}
        if b.state == SUCCEEDED and b.results is not None:
            if b.source == "file":
                output = {"responsesFile": b.result_file}
            else:
                output = {"inlinedResponses": {"inlinedResponses": b.results}}
            meta["output"] = output
            op["done"] = True
            op["response"] = {"@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatchOutput", **output}
        elif done:
            op["done"] = True
            if b.state == FAILED:
                op["error"] = b.error or {"code": 13, "message": "Batch failed.", "status": "INTERNAL"}
        return op

    def _batch_get(self, bid: str) -> Reply:
        with self._state_lock:
            if self.batch_get_failures:
                return self.behaviour_error(self.batch_get_failures.popleft())
            b = self.batches.get(f"batches/{bid}")
            if b is None:
                return self.error_reply(404, f"Batch batches/{bid} not found.", "NOT_FOUND")
            self._advance(b)
            return self.json_reply(200, self._operation(b))

    def _batch_cancel(self, bid: str) -> Reply:
        with self._state_lock:
            b = self.batches.get(f"batches/{bid}")
            if b is None:
                return self.error_reply(404, f"Batch batches/{bid} not found.", "NOT_FOUND")
            if b.state in (SUCCEEDED, FAILED, EXPIRED):
                return self.error_reply(400, f"Batch {b.name} is already in a terminal state ({b.state}).", "FAILED_PRECONDITION")
            self._transition(b, CANCELLED)
            return self.json_reply(200, {})

    def _batch_delete(self, bid: str) -> Reply:
        with self._state_lock:
            if self.batches.pop(f"batches/{bid}", None) is None:
                return self.error_reply(404, f"Batch batches/{bid} not found.", "NOT_FOUND")
        return self.json_reply(200, {})

    def _batch_list(self) -> Reply:
        with self._state_lock:
            ops = [self._operation(b) for b in self.batches.values()]
        return self.json_reply(200, {"operations": ops})
