"""Fake OpenAI-compatible server (vLLM-like) for the real ``openai`` SDK.

Point the SDK at it with::

    client = OpenAI(base_url=server.url + "/v1", api_key="test-key", max_retries=0, timeout=5.0)

Routes (the ``/v1`` prefix is optional):

  POST /v1/chat/completions   client.chat.completions.create   (kind "chat")
  GET  /v1/models             client.models.list                (kind "model_list")
  GET  /v1/models/{id}        client.models.retrieve            (kind "model_get")
  POST /v1/embeddings         vLLM's chat-style image embeddings (kind "embeddings"): one
                              image in ``messages``, ``encoding_format`` float or base64; the
                              vector is computed from the pixels received (tests/fakes/embeddings.py)

Errors are rendered in OpenAI's shape
``{"error": {"message", "type", "param", "code"}}`` (``error_style="openai"``,
default) or vLLM's legacy flat shape ``{"object": "error", "message", "type",
"param", "code": <int>}`` (``error_style="vllm"``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Optional

from ._http import Behaviour, Call, FakeServer, Reply, SentImage, decode_b64, sha256_hex

OPENAI_ERROR = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    403: ("permission_error", "unsupported_country_region_territory"),
    404: ("invalid_request_error", "model_not_found"),
    408: ("timeout", None),
    429: ("requests", "rate_limit_exceeded"),
    500: ("server_error", None),
    502: ("server_error", None),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", None),
}
VLLM_TYPE = {400: "BadRequestError", 401: "Unauthorized", 403: "Forbidden", 404: "NotFoundError", 429: "TooManyRequests", 500: "InternalServerError", 503: "ServiceUnavailable"}


def extract_openai_request(req: Any) -> tuple[list[SentImage], list[str]]:
    """Images (``image_url`` data URLs) and texts in a chat.completions request body."""
    images: list[SentImage] = []
    texts: list[str] = []
    if not isinstance(req, dict):
        return images, texts
    for msg in req.get("messages") or []:
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        if isinstance(content, str):
            texts.append(content)
            continue
        for part in content or []:
            if not isinstance(part, dict):
                continue
            if part.get("type") == "text" and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif part.get("type") == "image_url" or "image_url" in part:
                iu = part.get("image_url")
                url = iu.get("url") if isinstance(iu, dict) else iu
                if isinstance(url, str) and url.startswith("data:") and "," in url:
                    header, payload = url.split(",", 1)
                    mime = header[5:].split(";", 1)[0] or None
                    data = decode_b64(payload) if ";base64" in header else payload.encode()
                    if data is not None:
                        images.append(SentImage(mime, data, sha256_hex(data), "data_url"))
    return images, texts


class FakeOpenAI(FakeServer):
    """Fake OpenAI-compatible chat server.  ``model`` is what /v1/models lists;
    ``models`` adds more ids.  With ``api_key`` set, requests must carry
    ``Authorization: Bearer <api_key>`` (else 401).  ``strict_model=True`` answers 404
    for chat requests naming a model that is not served."""

    kind_for_counting = ("chat",)

    def __init__(
        self,
        *,
        model: str = "Qwen/Qwen2.5-VL-7B-Instruct",
        models: Optional[list[str]] = None,
        error_style: str = "openai",
        strict_model: bool = False,
        pixel_vectors: bool = True,
        **kw: Any,
    ):
        super().__init__(**kw)
        self.pixel_vectors = pixel_vectors  # False: vectors from the bytes' hash (no decoding, for benchmarks)
        self.model = model
        self.models = [model] + [m for m in (models or []) if m != model]
        self.error_style = error_style
        self.strict_model = strict_model

    # ---------------------------------------------------------------- helpers
    def response_formats(self) -> list[Any]:
        """``response_format`` of every chat request (None where absent)."""
        return [(c.json or {}).get("response_format") for c in self.calls(kind="chat")]

    def error_body(self, status: int, message: str, type_: Optional[str] = None, code: Any = None) -> dict[str, Any]:
        if self.error_style == "vllm":
            return {"object": "error", "message": message, "type": type_ or VLLM_TYPE.get(status, "Error"), "param": None, "code": status}
        dtype, dcode = OPENAI_ERROR.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
        return {"error": {"message": message, "type": type_ or dtype, "param": None, "code": code if code is not None else dcode}}

    def error_reply(self, status: int, message: str, type_: Optional[str] = None, code: Any = None, retry_after: Any = None, headers: Optional[dict[str, str]] = None) -> Reply:
        h = dict(headers or {})
        if retry_after is not None:
            h.setdefault("Retry-After", str(retry_after))
        return self.json_reply(status, self.error_body(status, message, type_, code), h)

    def completion(self, b: Behaviour, model: str) -> dict[str, Any]:
        prompt, completion = self.usage_for(b)
        content: Optional[str] = None if b.blocked else b.model_text()
        finish = b.finish_reason or ("content_filter" if b.blocked else "stop")
        out: dict[str, Any] = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None, "tool_calls": []},
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": None,
            }],
            "system_fingerprint": None,
        }
        if self.include_usage:
            out["usage"] = {"prompt_tokens": prompt, "completion_tokens": 0 if b.blocked else completion, "total_tokens": prompt + (0 if b.blocked else completion)}
        return out

    def behaviour_error(self, b: Behaviour) -> Reply:
        return self.error_reply(b.status, b.message or "error", b.error_type, b.error_code, b.retry_after, b.headers)

    def answer_body(self, b: Behaviour, model: str) -> dict[str, Any]:
        return self.completion(b, model)

    # ---------------------------------------------------------------- routing
    def _check_key(self, call: Call) -> Optional[Reply]:
        if self.api_key is None:
            return None
        auth = call.header("Authorization") or ""
        if auth == f"Bearer {self.api_key}":
            return None
        shown = auth[7:11] + "****" if auth.startswith("Bearer ") else "none"
        return self.error_reply(401, f"Incorrect API key provided: {shown}.", "invalid_request_error", "invalid_api_key")

    def handle(self, call: Call) -> Optional[Reply]:
        route = call.route[3:] if call.route.startswith("/v1/") else call.route
        if call.method == "POST" and route == "/chat/completions":
            call.kind = "chat"
            return self._chat(call)
        if call.method == "POST" and route == "/embeddings":
            call.kind = "embeddings"
            return self._embeddings(call)
        if call.method == "GET" and route == "/models":
            call.kind = "model_list"
            return self._check_key(call) or self.json_reply(200, {
                "object": "list",
                "data": [{"id": m, "object": "model", "created": 1700000000, "owned_by": "vllm", "root": m, "parent": None, "max_model_len": 32768} for m in self.models],
            })
        if call.method == "GET" and route.startswith("/models/"):
            call.kind = "model_get"
            mid = route[len("/models/"):]
            bad = self._check_key(call)
            if bad:
                return bad
            if mid not in self.models:
                return self.error_reply(404, f"The model `{mid}` does not exist.", code="model_not_found")
            return self.json_reply(200, {"id": mid, "object": "model", "created": 1700000000, "owned_by": "vllm"})
        return self.error_reply(404, f"Fake OpenAI: no route for {call.method} {call.path}", code="not_found")

    def _model_call(self, call: Call, respond) -> Optional[Reply]:
        """What every model call shares: the images it carries counted, the key checked, ``respond``."""
        call.images, call.texts = extract_openai_request(call.json)
        self._finish_images(call)
        call.model = (call.json or {}).get("model") if isinstance(call.json, dict) else None
        self._count_images(call)
        self._enter_model_call()
        try:
            bad = self._check_key(call)
            if bad is not None:
                call.behaviour = "bad_key"
                return bad
            return respond(call)
        finally:
            self._exit_model_call()

    def _chat(self, call: Call) -> Optional[Reply]:
        return self._model_call(call, self._chat_reply)

    def _chat_reply(self, call: Call) -> Optional[Reply]:
        if not isinstance(call.json, dict) or not call.json.get("messages"):
            call.behaviour = "bad_request"
            return self.error_reply(400, "'messages' is a required property")
        if self.strict_model and call.model not in self.models:
            call.behaviour = "unknown_model"
            return self.error_reply(404, f"The model `{call.model}` does not exist.", code="model_not_found")
        if call.json.get("stream"):
            call.behaviour = "stream_unsupported"
            return self.error_reply(400, "The fake server does not implement stream=True.")
        return self.answer(call)

    def _embeddings(self, call: Call) -> Optional[Reply]:
        return self._model_call(call, self._embedding_reply)

    def _embedding_reply(self, call: Call) -> Optional[Reply]:
        if len(call.images) != 1:
            call.behaviour = "bad_request"
            return self.error_reply(400, "one image per request: CLIP takes text or an image, not both")
        encoding = call.json.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return self.error_reply(400, f"encoding_format {encoding!r} is not supported")
        return self.answer(call, lambda b: self._embedding(call, encoding, b))

    def _embedding(self, call: Call, encoding: str, b: Behaviour) -> Reply:
        from .embeddings import digest_vector, embeddings_response, pixel_vector

        data = call.images[0].data
        try:
            vector = pixel_vector(data) if self.pixel_vectors else digest_vector(data)
        except Exception:  # noqa: BLE001 - what vLLM says of an image it cannot open
            return self.error_reply(400, "cannot identify the image file")
        return self.json_reply(200, embeddings_response(vector, call.model or self.model, encoding,
                                                        self.prompt_tokens), b.headers)
