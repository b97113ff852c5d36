"""What every command shares: the context object, the one error map and the shared options."""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any

import click

from hitl.config import load_settings
from hitl.errors import HitlError, InputFormatError

# The loop's order: `hitl --help` lists the commands as a curator meets them.
COMMAND_ORDER = ("select", "score", "studio", "push", "labelme", "serve", "sync", "ratings", "replay",
                 "learn", "next", "compare", "report", "queue", "gallery", "export")


class HitlGroup(click.Group):
    """The error map of the command line: the library's errors become one line, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (HitlError, InputFormatError) as exc:
            raise click.ClickException(str(exc)) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(self.commands)
        rank = {name: k for k, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


class Context:
    """What every command gets: the settings and a lazily opened database."""

    def __init__(self, db_path: str, config_path: str | None):
        self.db_path = db_path
        self.settings = load_settings(config_path)
        self._db = None

    @property
    def db(self):
        if self._db is None:
            from hitl.store import connect

            self._db = connect(self.db_path)
        return self._db

    @property
    def threshold(self) -> float:
        return self.settings["select"]["threshold"]

    def studio_url(self, url: str | None) -> str:
        return url or self.settings["studio"]["url"]

    def studio_client(self, url: str):
        """A checked Label Studio client (token from LABEL_STUDIO_API_KEY)."""
        from hitl.review.client import connect

        return connect(url, os.environ.get("LABEL_STUDIO_API_KEY"))

    def webhook_to_register(self, given: str | None, refused: bool) -> str | None:
        """The webhook a push registers: the one given, else the `serve` address whenever a secret
        is set (so decisions reach the store as they are made), else none."""
        if refused:
            return None
        return given or (self.webhook_url_default() if os.environ.get("HITL_WEBHOOK_SECRET") else None)

    def webhook_url_default(self) -> str:
        serve = self.settings["serve"]
        return f"http://{serve['host']}:{serve['port']}/webhooks/label-studio"


def echo_err(message: str) -> None:
    click.echo(message, err=True)


# C0 and C1 controls (ESC starts an ANSI sequence, CR overwrites a line) and the bidirectional
# overrides, which reorder what a terminal shows
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` for a terminal: a control character in a name or a file (an ANSI escape) is shown
    escaped (``\\x1b``), never acted on."""
    return _CONTROLS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


def json_option(help: str = "Print the summary as JSON.") -> Callable:
    return click.option("--json", "as_json", is_flag=True, help=help)


def url_option(default_hint: str = "studio.url, http://127.0.0.1:8080") -> Callable:
    return click.option("--url", help=f"Label Studio address. [default: {default_hint}]")


def webhook_url_option(help: str = "Register this webhook (secret from HITL_WEBHOOK_SECRET).") -> Callable:
    return click.option("--webhook-url", help=help)


def image_serving_options(fn: Callable) -> Callable:
    """--document-root and --image-url-template: how Label Studio reaches the images (push, compare)."""
    fn = click.option("--image-url-template",
                      help="Serve images from a web server or bucket, e.g. https://host/photos/{image_id}.")(fn)
    return click.option("--document-root", type=click.Path(file_okay=False),
                        help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: that variable, else the "
                             "folder above the images' root, as `hitl studio` sets it).")(fn)


def counted(lines: list[str], title: str, counter, indent: str = "  ") -> None:
    """Append a titled block of counts, most common first, to ``lines``."""
    if counter:
        lines.append(f"{title} ({sum(counter.values()):,}):")
        for key, count in counter.most_common():
            lines.append(f"{indent}{count:>9,}  {key}")
