"""Talking to Label Studio: one client (label-studio-sdk 2.x) and one map from its errors to ours.

:func:`connect` gives the SDK's client wrapped in :class:`StudioClient`, which runs every call to
Label Studio (and every page of a listing, every chunk of an export) inside :func:`studio_errors`,
as httpx maps its transport's exceptions around the transport call only. Callers never wrap: an
SDK or HTTP error becomes a StudioError that says what failed and what to do, never a traceback,
while an error of hero-hitl's own work between two calls (a fit, a file) stays what it is. What was
done before the error is already in SQLite, so rerunning the command continues.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from hitl.errors import HitlError, StudioError, redact

RERUN = "what was done before is kept; rerun the command to continue"
NAMED_ARGUMENTS = ("id", "project", "task", "title")  # the arguments a call is named by in an error


def api_error_text(exc: Exception) -> str:
    """What Label Studio said, without the response headers the SDK puts in str(exc)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return redact(str(body.get("validation_errors") or body.get("detail") or body))
    return redact(str(body if body is not None else exc)[:300])


def not_json(url: str, doing: str, what: str) -> StudioError:
    return StudioError(f"{url} answered {doing} with something that is not Label Studio's JSON ({what}); "
                       f"check the address (--url, studio.url)")


@contextmanager
def studio_errors(url: str, doing: str) -> Iterator[None]:
    """Turn the SDK's and httpx's exceptions raised while ``doing`` into one StudioError.

    Only around a call to Label Studio (:class:`StudioClient` puts it there): any ValueError is
    taken for an answer the SDK could not read."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError
    from label_studio_sdk.core.parse_error import ParsingError

    try:
        yield
    except HitlError:
        raise
    except ApiError as exc:
        status, detail = exc.status_code, api_error_text(exc)
        if status in (401, 403):
            raise StudioError(f"Label Studio at {url} refused the token while {doing} (HTTP {status}); check "
                              f"LABEL_STUDIO_API_KEY (legacy tokens need LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true)",
                              status, detail) from None
        if status is not None and 200 <= status < 300:  # the SDK's name for a body that is not JSON
            raise not_json(url, doing, f"HTTP {status}: {detail[:80]}") from None
        raise StudioError(f"Label Studio at {url} refused {doing} (HTTP {status}: {detail}); {RERUN}",
                          status, detail) from None
    except ParsingError as exc:  # JSON, but not the shape the SDK expects of Label Studio
        raise not_json(url, doing, f"{type(exc.cause).__name__}: {str(exc.cause)[:120]}") from None
    except (httpx.HTTPError, OSError) as exc:
        raise StudioError(f"lost Label Studio at {url} while {doing} ({type(exc).__name__}: {redact(str(exc))}); is it running? "
                          f"`python -m hitl studio` starts one; {RERUN}") from None
    except ValueError as exc:  # a body the SDK could not read as JSON: not Label Studio, or a proxy's page
        raise not_json(url, doing, str(exc)[:120]) from None


class StudioClient:
    """The SDK's client, or one of its parts (``projects``, ``import_storage.local``), whose every
    call is made inside :func:`studio_errors`. A listing the SDK pages through lazily, or an export
    it streams, is mapped while it is read."""

    def __init__(self, target: Any, url: str, path: str = ""):
        self._target, self.url, self._path = target, url, path

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and friends ask for these before __init__ has run
            raise AttributeError(name)
        value = getattr(self._target, name)
        path = f"{self._path}.{name}" if self._path else name
        if callable(value):
            return _mapped_call(value, self.url, path)
        if hasattr(value, "__dict__"):  # a part of the client (client.projects): its calls are mapped too
            return StudioClient(value, self.url, path)
        return value


def _mapped_call(method: Callable, url: str, path: str) -> Callable:
    def call(*args: Any, **kwargs: Any) -> Any:
        named = [f"{key}={kwargs[key]!r}" for key in NAMED_ARGUMENTS if key in kwargs]
        doing = f"calling {path}({', '.join(map(repr, args[:1])) or ', '.join(named)})"
        with studio_errors(url, doing):
            answer = method(*args, **kwargs)
        return _mapped_reading(answer, url, doing) if _read_later(answer) else answer
    return call


def _read_later(answer: Any) -> bool:
    """Is ``answer`` fetched from Label Studio as it is read (a pager, a stream of bytes)?"""
    from label_studio_sdk.core.pagination import SyncPager

    return isinstance(answer, (SyncPager, Iterator))


def _mapped_reading(answer: Iterable, url: str, doing: str) -> Iterator:
    with studio_errors(url, doing):
        items = iter(answer)
    while True:
        with studio_errors(url, doing):
            try:
                item = next(items)
            except StopIteration:
                return
        yield item


def connect(url: str, api_key: str | None) -> StudioClient:
    """A Label Studio client whose token has been checked, or a StudioError that says what to do."""
    from label_studio_sdk import LabelStudio

    if not api_key:
        raise StudioError("no Label Studio token: set LABEL_STUDIO_API_KEY (shown by `hitl studio`, or in "
                          "Label Studio under Account & Settings)")
    client = StudioClient(LabelStudio(base_url=url.rstrip("/"), api_key=api_key, timeout=120), url)
    client.users.whoami()
    return client


def export_tasks(client: StudioClient, project_id: int) -> list[dict[str, Any]]:
    """Every task of a project with its annotations (Label Studio's JSON export), through the SDK."""
    data = b"".join(client.projects.exports.download_sync(project_id, export_type="JSON", download_all_tasks=True))
    try:
        tasks = json.loads(data)
    except ValueError as exc:
        raise StudioError(f"project {project_id}: Label Studio's export is not JSON ({exc})") from None
    if not isinstance(tasks, list):
        raise StudioError(f"project {project_id}: the export is not a list of tasks")
    return tasks


def fetch_users(client: StudioClient) -> dict[int, str]:
    """Label Studio's users (id → email)."""
    return {u.id: u.email for u in client.users.list() if u.email}
