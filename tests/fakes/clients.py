"""Real SDK clients wired to a fake (imports are lazy so the fakes stay SDK-free)."""
from __future__ import annotations

from typing import Any, Optional


def genai_client(server: Any, *, api_key: str = "test-key", timeout_ms: int = 5000, retry_options: Any = None, api_version: Optional[str] = None):
    """google-genai Client against a FakeGemini.  HttpOptions.timeout is in MILLISECONDS.
    retry_options=None means the SDK does not retry (google-genai 3.x default)."""
    from google import genai
    from google.genai import types

    kw: dict[str, Any] = {"base_url": server.url, "timeout": timeout_ms}
    if retry_options is not None:
        kw["retry_options"] = retry_options
    if api_version is not None:
        kw["api_version"] = api_version
    return genai.Client(api_key=api_key, http_options=types.HttpOptions(**kw))


def openai_client(server: Any, *, api_key: str = "sk-test", timeout: float = 5.0, max_retries: int = 0):
    """openai.OpenAI against a FakeOpenAI (base_url gets the /v1 suffix). timeout in SECONDS."""
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key=api_key, timeout=timeout, max_retries=max_retries)
