"""Errors the library raises on purpose: each says what went wrong and what to do about it.

The CLI prints any of them as one line (never a traceback). Foreign exceptions (an SDK's,
httpx's, sqlite3's) are turned into these in one place per boundary: the model backends
(:mod:`hitl.score.backends`), Label Studio (:mod:`hitl.review.client`) and the store.
"""
from __future__ import annotations

import os
import re

from converters.common import InputFormatError

__all__ = ["HitlError", "ConfigError", "InputFormatError", "NothingToDo", "StoreError", "BackendError",
           "AuthError", "RetryableError", "CallError", "StudioError", "redact"]


class HitlError(Exception):
    """Base class: a problem the user can fix; the message says how."""


class ConfigError(HitlError):
    """A configuration file or setting is invalid."""


class NothingToDo(HitlError):
    """The command found nothing to work on (for example no candidates yet)."""


class StoreError(HitlError):
    """The database cannot be opened, written or migrated."""


class BackendError(HitlError):
    """A model provider's call failed. ``kind`` is short and countable (``http 503``, ``timeout``).
    The message never carries a key: providers echo requests in their errors."""

    def __init__(self, kind: str, message: str):
        super().__init__(redact(message))
        self.kind = kind


class AuthError(BackendError):
    """Credentials missing, wrong or not allowed: a run stops at once (a bad key never becomes
    thousands of failing calls)."""

    def __init__(self, message: str, kind: str = "auth"):
        super().__init__(kind, message)


class RetryableError(BackendError):
    """Worth another attempt (rate limit, server error, timeout, dropped connection);
    ``retry_after`` (seconds) comes from the server when it said so."""

    def __init__(self, kind: str, message: str, retry_after: float | None = None):
        super().__init__(kind, message)
        self.retry_after = retry_after


class CallError(BackendError):
    """The call failed in a way another attempt will not fix (a 400, a refused request)."""


class StudioError(HitlError):
    """Label Studio is unreachable, refused the token or refused a request; ``status`` is the HTTP
    status it answered (None when it did not answer) and ``detail`` what it said."""

    def __init__(self, message: str, status: int | None = None, detail: str = ""):
        super().__init__(message)
        self.status, self.detail = status, detail


# Where keys live, and the shapes providers give them: an error message that echoes a request
# (a URL with ?key=..., a header) must not carry the key into a log, the database or a screen.
SECRET_ENV = ("GEMINI_API_KEY", "GOOGLE_API_KEY", "HITL_OPENAI_API_KEY", "OPENAI_API_KEY", "LABEL_STUDIO_API_KEY",
              "LABEL_STUDIO_PASSWORD", "HITL_WEBHOOK_SECRET")
_KEY_SHAPES = re.compile(r"AIza[0-9A-Za-z_\-]{35}|sk-[A-Za-z0-9_\-]{20,}|(?<=[?&]key=)[^&\s'\"]+"
                         r"|(?<=Bearer )[^\s'\"]+|(?<=Token )[^\s'\"]+")


def redact(text: str, environ: dict[str, str] | None = None) -> str:
    """``text`` with every secret of the environment, and anything shaped like an API key, replaced."""
    env = os.environ if environ is None else environ
    for name in SECRET_ENV:
        value = env.get(name)
        if value and len(value) >= 6:
            text = text.replace(value, "[redacted]")
    return _KEY_SHAPES.sub("[redacted]", text)
