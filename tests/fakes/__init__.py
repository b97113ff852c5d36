"""Local fake provider servers for tests (no network needed).

    from tests.fakes import FakeGemini, FakeOpenAI, behaviours as B

    with FakeGemini(latency=0.25) as gem:
        gem.script(B.rate_limited(retry_after=3), B.server_error(503))
        client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=gem.url, timeout=5000))
        ...
        assert gem.count_generate() == 3

See tests/fakes/_http.py (behaviours, recording, counting), gemini.py and
openai_compat.py (routes) for details.
"""

from . import _http as behaviours
from ._http import (
    DEFAULT_ANSWER,
    HANG,
    Behaviour,
    Call,
    FakeServer,
    SentImage,
    answer,
    answer_text,
    auth_error,
    bad_request,
    blocked,
    drop_connection,
    error,
    fenced_json,
    hang,
    image_sha,
    missing_score,
    not_json,
    rate_limited,
    raw,
    score_out_of_range,
    server_error,
    sha256_hex,
    slow,
    truncated_json,
    unavailable,
)
from .clients import genai_client, openai_client
from .gemini import FakeBatch, FakeFile, FakeGemini, extract_gemini_request
from .openai_compat import FakeOpenAI, extract_openai_request

__all__ = [
    "DEFAULT_ANSWER", "HANG", "Behaviour", "Call", "FakeServer", "SentImage",
    "answer", "answer_text", "auth_error", "bad_request", "behaviours", "blocked",
    "drop_connection", "error", "fenced_json", "hang", "image_sha", "missing_score",
    "not_json", "rate_limited", "raw", "score_out_of_range", "server_error",
    "sha256_hex", "slow", "truncated_json", "unavailable",
    "FakeBatch", "FakeFile", "FakeGemini", "extract_gemini_request",
    "FakeOpenAI", "extract_openai_request", "genai_client", "openai_client",
]
