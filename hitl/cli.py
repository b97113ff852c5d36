"""The command line: one click group, `python -m hitl`. A thin layer over the library."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .config import load_settings
from .errors import HitlError, InputFormatError


class _Group(click.Group):
    """Turns the library's deliberate errors into clean one-line CLI errors."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (HitlError, InputFormatError) as exc:
            raise click.ClickException(str(exc)) from exc


class Context:
    """What every command gets: the settings and a lazily opened database."""

    def __init__(self, db_path: str, config_path: str | None):
        self.db_path = db_path
        self.settings = load_settings(config_path)
        self._db = None

    @property
    def db(self):
        if self._db is None:
            from .store import connect

            self._db = connect(self.db_path)
        return self._db


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db_path", envvar="HITL_DB", default="hitl.db", show_default=True,
              type=click.Path(dir_okay=False), help="SQLite database (env HITL_DB).")
@click.option("--config", "config_path", envvar="HITL_CONFIG", type=click.Path(dir_okay=False),
              help="TOML settings file (env HITL_CONFIG); secrets come only from the environment.")
@click.version_option(package_name=None, version=__import__("hitl").__version__, prog_name="hero-hitl")
@click.pass_context
def cli(ctx: click.Context, db_path: str, config_path: str | None) -> None:
    """hero-hitl: select, score, review and export camera-trap hero images.

    \b
    Example:
        python -m hitl --db hitl.db select --md md.json --images photos/ -n 500
    """
    ctx.obj = Context(db_path, config_path)


@cli.command()
@click.option("--md", "md_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="MegaDetector batch output (format 1.0-1.6).")
@click.option("--speciesnet", "speciesnet_path", type=click.Path(exists=True, dir_okay=False),
              help="SpeciesNet predictions (4.x or 5.x layout).")
@click.option("--cct", "cct_path", type=click.Path(exists=True, dir_okay=False),
              help="COCO Camera Traps metadata (seq_id, frame_num, location, datetime).")
@click.option("--images", "images_root", required=True, type=click.Path(file_okay=False),
              help="Collection root the detector's 'file' paths are relative to.")
@click.option("-n", "n", required=True, type=click.IntRange(min=1), help="How many candidates.")
@click.option("--out", "out_csv", type=click.Path(dir_okay=False), help="Also write the candidates to this CSV.")
@click.option("--seed", type=int, help="Random seed (same seed, same inputs: same candidates). [default: 0]")
@click.option("--threshold", type=click.FloatRange(0, 1), help="Detection confidence threshold. [default: 0.3]")
@click.option("--include-people", is_flag=True, default=None,
              help="Keep images with a person or vehicle above threshold (excluded by default).")
@click.option("--gap-seconds", type=click.FloatRange(min=0),
              help="Gap that starts a new sequence when sequences come from capture times. [default: 60]")
@click.option("--check-files/--no-check-files", default=None,
              help="Open each pick's header, replacing missing or unreadable files. [default: check]")
@click.option("--add", is_flag=True, help="Keep the current candidates and add new ones from other sequences.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def select(obj: Context, md_path, speciesnet_path, cct_path, images_root, n, out_csv, seed, threshold,
           include_people, gap_seconds, check_files, add, as_json) -> None:
    """Select N diverse, promising candidates from detector output.

    One frame per sequence at most, stratified over categories (rare species, several
    species, groups, close-ups, well-framed single animals, night), with a per-species cap.
    Images with a person or vehicle are left out unless --include-people is given.

    \b
    Example:
        python -m hitl select --md sample_data/md_results.json \\
            --speciesnet sample_data/speciesnet_predictions.json \\
            --cct sample_data/cct.json --images sample_data/images -n 12 --out candidates.csv
    """
    from .candidates import run_selection

    cfg = obj.settings["select"]
    for key, value in (("seed", seed), ("threshold", threshold), ("include_people", include_people),
                       ("sequence_gap_seconds", gap_seconds), ("check_files", check_files)):
        if value is not None:
            cfg[key] = value
    summary = run_selection(
        obj.db, md=md_path, images_root=images_root, n=n, settings=obj.settings, speciesnet=speciesnet_path,
        cct=cct_path, out_csv=out_csv, add=add, echo=lambda m: click.echo(m, err=True),
    )
    if as_json:
        click.echo(json.dumps(summary.as_counts(), indent=2, sort_keys=True))
        return
    click.echo(format_selection_summary(summary, out_csv))


def format_selection_summary(summary, out_csv: str | None) -> str:
    """The end-of-run summary a curator reads: what was read, failed, excluded and chosen."""
    lines = [f"Selection run {summary.run_id}: {summary.selected} of {summary.requested} candidates "
             f"from {summary.images_read:,} images ({summary.eligible:,} eligible in {summary.sequences:,} sequences)"]

    def block(title, counter):
        if counter:
            lines.append(f"{title} ({sum(counter.values()):,}):")
            for key, count in counter.most_common():
                lines.append(f"  {count:>9,}  {key}")

    block("Failed", summary.failed)
    block("Excluded", summary.excluded)
    block("Bad records skipped", summary.problems)
    for example in summary.problem_examples[:5]:
        lines.append(f"    e.g. {example}")
    block("Selected per category", summary.by_category)
    block("Selected per species", summary.by_species)
    for note in summary.notes[:10]:
        lines.append(f"Note: {note}")
    if len(summary.notes) > 10:
        lines.append(f"Note: ... and {len(summary.notes) - 10} more (stored with the run)")
    if out_csv:
        lines.append(f"Wrote {out_csv}")
    return "\n".join(lines)
