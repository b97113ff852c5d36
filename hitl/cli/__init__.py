"""The command line: one click group, `python -m hitl` (console script `hitl`). A thin layer.

Each stage's commands are in the module of the same name (``hitl/cli/select.py`` holds
``select``, ``hitl/cli/review.py`` the review and ingest commands, ...); the library they
call is in the package of the same name (``hitl/select/``, ``hitl/review/``, ...).
"""
from __future__ import annotations

import click

import hitl
from hitl.cli.context import Context, HitlGroup


@click.group(cls=HitlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_path", envvar="HITL_DB", default="hitl.db", show_default=True,
              type=click.Path(dir_okay=False), help="SQLite database (env HITL_DB).")
@click.option("--config", "config_path", envvar="HITL_CONFIG", type=click.Path(dir_okay=False),
              help="TOML settings file (env HITL_CONFIG); secrets come only from the environment.")
@click.version_option(package_name=None, version=hitl.__version__, prog_name="hero-hitl")
@click.pass_context
def cli(ctx: click.Context, db_path: str, config_path: str | None) -> None:
    """hero-hitl: select, score, review and export camera-trap hero images.

    \b
    Example:
        python -m hitl --db hitl.db select --md md.json --images photos/ -n 500
    """
    ctx.obj = Context(db_path, config_path)
    ctx.call_on_close(ctx.obj.close)  # teardown closes what the command opened, as flaskr's close_db


def _register() -> None:
    from hitl.cli import compare, embed, learn, publish, review, score, select, similar, vllm

    for module in (select, vllm, score, embed, review, learn, similar, compare, publish):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()

__all__ = ["cli"]
