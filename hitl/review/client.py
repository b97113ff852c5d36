"""Talking to Label Studio: one client (label-studio-sdk 2.x) and one map from its errors to ours.

Every call hero-hitl makes to Label Studio goes through the SDK, inside :func:`studio_errors`,
so an error becomes a StudioError that says what failed and what to do, never a traceback;
what was done before the error is already in SQLite, so rerunning the command continues.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from hitl.errors import HitlError, StudioError, redact

RERUN = "what was done before is kept; rerun the command to continue"


def api_error_text(exc: Exception) -> str:
    """What Label Studio said, without the response headers the SDK puts in str(exc)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return redact(str(body.get("validation_errors") or body.get("detail") or body))
    return redact(str(body if body is not None else exc)[:300])


@contextmanager
def studio_errors(url: str, doing: str) -> Iterator[None]:
    """Turn the SDK's and httpx's exceptions raised while ``doing`` into one StudioError."""
    import httpx
    from label_studio_sdk.core.api_error import ApiError

    try:
        yield
    except HitlError:
        raise
    except ApiError as exc:
        status = exc.status_code
        if status in (401, 403):
            raise StudioError(f"Label Studio at {url} refused the token while {doing} (HTTP {status}); check "
                              f"LABEL_STUDIO_API_KEY (legacy tokens need LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true)"
                              ) from None
        raise StudioError(f"Label Studio at {url} refused {doing} (HTTP {status}: {api_error_text(exc)}); "
                          f"{RERUN}") from None
    except (httpx.HTTPError, OSError) as exc:
        raise StudioError(f"lost Label Studio at {url} while {doing} ({type(exc).__name__}: {redact(str(exc))}); is it running? "
                          f"`python -m hitl studio` starts one; {RERUN}") from None
    except ValueError as exc:  # a body the SDK could not read as JSON: not Label Studio, or a proxy's page
        raise StudioError(f"{url} answered {doing} with something that is not Label Studio's JSON ({exc}); "
                          f"check the address (--url, studio.url)") from None


def connect(url: str, api_key: str | None):
    """A Label Studio client whose token has been checked, or a StudioError that says what to do."""
    from label_studio_sdk import LabelStudio

    if not api_key:
        raise StudioError("no Label Studio token: set LABEL_STUDIO_API_KEY (shown by `hitl studio`, or in "
                          "Label Studio under Account & Settings)")
    client = LabelStudio(base_url=url.rstrip("/"), api_key=api_key, timeout=120)
    with studio_errors(url, "checking the token"):
        client.users.whoami()
    return client


def export_tasks(client, url: str, project_id: int) -> list[dict[str, Any]]:
    """Every task of a project with its annotations (Label Studio's JSON export), through the SDK."""
    with studio_errors(url, f"exporting project {project_id}"):
        data = b"".join(client.projects.exports.download_sync(project_id, export_type="JSON",
                                                              download_all_tasks=True))
    try:
        tasks = json.loads(data)
    except ValueError as exc:
        raise StudioError(f"project {project_id}: Label Studio's export is not JSON ({exc})") from None
    if not isinstance(tasks, list):
        raise StudioError(f"project {project_id}: the export is not a list of tasks")
    return tasks


def fetch_users(client, url: str) -> dict[int, str]:
    """Label Studio's users (id → email)."""
    with studio_errors(url, "listing users"):
        return {u.id: u.email for u in client.users.list() if u.email}
