"""What every command shares: the context object, the one error map and the shared options."""
from __future__ import annotations

import errno
import functools
import json
import os
import re
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from hitl.config import Settings, load_settings
from hitl.errors import HitlError, InputFormatError

# The loop's order: `hitl --help` lists the commands as a curator meets them.
COMMAND_ORDER = ("select", "vllm", "score", "embed", "studio", "push", "labelme", "serve", "sync", "ratings",
                 "replay", "learn", "next", "similar", "compare", "report", "queue", "gallery", "export")


class HitlGroup(click.Group):
    """The error map of the command line: the library's errors, a file that cannot be written and a
    database that stays locked become one line saying what to do, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (HitlError, InputFormatError) as exc:
            raise click.ClickException(str(exc)) from exc
        except sqlite3.Error as exc:
            raise click.ClickException(database_error_line(exc, getattr(ctx.obj, "db_path", "(--db)"))) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # `hitl ratings | head`: click ends quietly on a closed pipe
            raise click.ClickException(os_error_line(exc)) from exc

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(self.commands)
        rank = {name: k for k, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


# what to do about an OSError, by its errno
_PERMISSION = "check its permissions, or choose a place you may write to"
_OS_ERROR_FIXES = {
    errno.EACCES: _PERMISSION, errno.EPERM: _PERMISSION,
    errno.ENOTDIR: "a file stands where a folder is needed; choose another path",
    errno.EEXIST: "something is already there (a file where a folder is needed?); choose another path",
    errno.EISDIR: "a folder stands where a file is needed; choose another path",
    errno.ENOENT: "check the path (does its folder exist?) and rerun",
    errno.ENOSPC: "the disk is full: free some space, then rerun",
    errno.EDQUOT: "the disk quota is used up: free some space, then rerun",
    errno.EROFS: "that file system is read-only: choose another place",
}


def os_error_line(exc: OSError) -> str:
    """An OSError as one line: the path, what the system said and what to do."""
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    fix = _OS_ERROR_FIXES.get(exc.errno, "check the path and rerun" if where else "fix the cause and rerun")
    return f"{where + ': ' if where else ''}{exc.strerror or exc}; {fix}"


def database_error_line(exc: sqlite3.Error, db_path: str) -> str:
    """A SQLite error as one line: a lock held past the busy timeout says who holds it."""
    from hitl.store.db import busy_error, is_busy

    if is_busy(exc):
        return str(busy_error(db_path))
    return (f"the database {db_path}: {exc}; check that it is a hero-hitl database you may write to, on a disk "
            f"with space, or pass another --db (env HITL_DB)")


class Context:
    """What every command gets: the settings and a lazily opened database.

    The database is made when missing only for a command that sets ``creates_db`` (select,
    score --images, ratings --import, ...): a read-only command on a mistyped --db says there is
    no database there instead of making an empty one."""

    def __init__(self, db_path: str, config_path: str | None):
        self.db_path = db_path
        self.settings: Settings = load_settings(config_path)  # an option replaces a section, never writes into it
        self.creates_db = False
        self._db = None

    @property
    def db(self):
        if self._db is None:
            from hitl.store import connect

            self._db = connect(self.db_path, create=self.creates_db)
        return self._db

    def close(self) -> None:
        """Close the database if the command opened it: the last connection to close folds the
        write-ahead log back into the database file (no hitl.db-wal left holding the last commits)."""
        if self._db is not None:
            self._db.close()
            self._db = None

    @property
    def threshold(self) -> float:
        return self.settings.select.threshold

    def studio_url(self, url: str | None) -> str:
        return url or self.settings.studio.url

    def push_for_review(self, studio: StudioTarget, image_ids: list[str], mode: str | None):
        """Push these images for review as `push` would (`next`, `similar --push`): into the project
        ``studio`` names, else the one pushed last, in ``mode`` or push.mode."""
        from hitl.review import push as review
        from hitl.store import queries

        settings = self.settings
        return review.push(
            self.db, studio.client(), **studio.push_arguments(),
            title=studio.title or queries.last_review_title(self.db) or settings.push.project,
            mode=mode or settings.push.mode, threshold=self.threshold, image_ids=image_ids, echo=echo_err)

    def webhook_to_register(self, given: str | None, refused: bool) -> str | None:
        """The webhook a push registers: the one given, else the `serve` address whenever a secret
        is set (so decisions reach the store as they are made), else none."""
        if refused:
            return None
        return given or (self.webhook_url_default() if os.environ.get("HITL_WEBHOOK_SECRET") else None)

    def webhook_url_default(self) -> str:
        serve = self.settings.serve
        return f"http://{serve.host}:{serve.port}/webhooks/label-studio"


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


def studio_client(url: str):
    """A checked Label Studio client at ``url`` (token from LABEL_STUDIO_API_KEY)."""
    from hitl.review.client import connect

    return connect(url, os.environ.get("LABEL_STUDIO_API_KEY"))


def url_option(default_hint: str = "studio.url, http://127.0.0.1:8080") -> Callable:
    return click.option("--url", help=f"Label Studio address. [default: {default_hint}]")


@dataclass(frozen=True)
class StudioTarget:
    """Where and how a command pushes to Label Studio, from :func:`studio_options`: the address, the
    title given (None: the command's default), the webhook to register (None: none) with its secret,
    and how Label Studio reaches the images (a document root, or a URL template)."""

    url: str
    title: str | None
    webhook_url: str | None
    secret: str | None
    document_root: str | None
    url_template: str | None

    def client(self):
        return studio_client(self.url)

    def push_arguments(self) -> dict[str, Any]:
        """What every push (hitl.review.push.push, hitl.compare.push.push_pairs) takes from the options."""
        return {"url": self.url, "webhook_url": self.webhook_url, "secret": self.secret,
                "document_root": self.document_root, "url_template": self.url_template}


def studio_options(project_help: str, project_default: str | None = None) -> Callable:
    """The Label Studio options of the commands that push (push, next, queue, compare), declared
    once and given to the command as one ``studio`` argument (a :class:`StudioTarget`).

    ``--project`` has the command's own help and default (a title for push and compare; the last
    review project for next and queue, resolved by the command). The webhook's secret comes from
    HITL_WEBHOOK_SECRET, never from the command line (where `ps` would show it)."""
    options = [
        url_option(),
        click.option("--project", "title", default=project_default, show_default=project_default is not None,
                     help=project_help),
        click.option("--webhook-url", help="Register this webhook (secret from HITL_WEBHOOK_SECRET). [default: the "
                                           "`serve` address when HITL_WEBHOOK_SECRET is set]"),
        click.option("--no-webhook", is_flag=True, help="Register no webhook (`hitl sync` then brings the decisions in)."),
        click.option("--image-url-template",
                     help="Serve images from a web server or bucket, e.g. https://host/photos/{image_id}."),
        click.option("--document-root", type=click.Path(file_okay=False), envvar="LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT",
                     help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: that variable, else the "
                          "folder above the images' root, as `hitl studio` sets it)."),
    ]

    def decorate(command: Callable) -> Callable:
        @functools.wraps(command)
        def with_studio(*args, url, title, webhook_url, no_webhook, image_url_template, document_root, **kwargs):
            obj = click.get_current_context().find_object(Context)
            studio = StudioTarget(obj.studio_url(url), title, obj.webhook_to_register(webhook_url, no_webhook),
                                  os.environ.get("HITL_WEBHOOK_SECRET"), document_root, image_url_template)
            return command(*args, studio=studio, **kwargs)

        for option in reversed(options):  # listed in --help in this order
            with_studio = option(with_studio)
        return with_studio
    return decorate


def echo_skipped(summary) -> None:
    """What a push left out (images or pairs): the count of each reason, then a few examples."""
    for reason, count in summary.skipped.most_common():
        click.echo(f"  skipped {count:>5}  {reason}")
    for example in summary.skipped_examples[:5]:
        click.echo(printable(f"    e.g. {example}"))


def counted(lines: list[str], title: str, counter, indent: str = "  ") -> None:
    """Append a titled block of counts, most common first, to ``lines``."""
    if counter:
        lines.append(f"{title} ({sum(counter.values()):,}):")
        for key, count in counter.most_common():
            lines.append(f"{indent}{count:>9,}  {key}")


def include_people_options(where: str) -> Callable:
    """--include-people and --include-undetected: keep in ``where`` what the publishing rule leaves
    out (hitl.store.detector.publishable); the images left out are named either way."""
    def decorate(fn: Callable) -> Callable:
        fn = click.option("--include-undetected", is_flag=True,
                          help=f"Keep in {where} the images no detector file has a record of (say, scored "
                               f"from a folder); left out and named otherwise.")(fn)
        return click.option("--include-people", is_flag=True,
                            help=f"Keep in {where} the images with a person detected; left out and named "
                                 f"otherwise.")(fn)
    return decorate


def echo_left_out(lines: list[str], suffix: str = "") -> None:
    """The publishing rule's lines ("left out 2 images with a person detected: ..."), one each."""
    for line in lines:
        click.echo(f"  {line}{suffix}")
