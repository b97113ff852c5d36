"""The publishing commands: `report` (agreement), `export` (the hero set) and `gallery`."""
from __future__ import annotations

import json
from pathlib import Path

import click

from hitl.cli.context import Context, echo_err


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the report.")
@click.option("--resamples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals (images resampled).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--hero-threshold", type=float, default=7.0, show_default=True,
              help="A model calls an image hero when its score is at least this (besides its own flag).")
@click.option("--top", type=click.IntRange(min=0), default=24, show_default=True,
              help="Disagreements shown with thumbnails.")
@click.pass_obj
def report(obj: Context, out_dir, resamples, seed, hero_threshold, top) -> None:
    """Agreement between curators and models: report.html, agreement.json, disagreements.csv.

    \b
    Example:
        python -m hitl report --out report/ && open report/report.html
    """
    from hitl.publish.report import build_report

    paths = build_report(obj.db, out_dir, hero_threshold=hero_threshold, resamples=resamples, seed=seed, top=top,
                         echo=echo_err)
    data = json.loads(paths["json"].read_text())
    for sentence in data.get("readings", [])[:8]:
        click.echo(f"- {sentence}")
    click.echo(f"Wrote {paths['html']}, {paths['json'].name} and {paths['csv'].name}")


@click.command("export")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the hero set.")
@click.option("--policy", type=click.Choice(["any", "majority", "all"]), default="majority", show_default=True,
              help="How many of the curators who decided must have said hero.")
@click.option("--min-stars", type=click.IntRange(1, 10), help="Also require this mean of the curators' stars.")
@click.option("--link", type=click.Choice(["copy", "hardlink"]), default="copy", show_default=True)
@click.option("--layout", type=click.Choice(["tree", "flat"]), default="tree", show_default=True,
              help="Keep the folder tree, or flat files with safe names.")
@click.pass_obj
def export_command(obj: Context, out_dir, policy, min_stars, link, layout) -> None:
    """Export the validated hero set: the images, manifest.csv/json and a contact sheet.

    Idempotent; a different file already at a target is reported and never overwritten.

    \b
    Example:
        python -m hitl export --out heroes/ --policy majority --min-stars 7
    """
    from hitl.publish.heroset import export_heroset

    counts = export_heroset(obj.db, out_dir, policy=policy, min_stars=min_stars, link=link, layout=layout,
                            threshold=obj.threshold)
    click.echo(f"Hero set ({policy}{f', mean stars >= {min_stars}' if min_stars else ''}): {counts['heroes']} heroes; "
               f"{counts['exported']} exported, {counts['unchanged']} unchanged, {len(counts['conflicts'])} conflicts, "
               f"{counts['missing_files']} missing files")
    for path in counts["conflicts"][:5]:
        click.echo(f"  conflict (left untouched): {path}")
    for note in counts.get("notes", [])[:5]:
        click.echo(f"  note: {note}")
    if counts["written"]:
        click.echo(f"Wrote {', '.join(str(Path(out_dir) / name) for name in counts['written'])}")


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--model", "models", multiple=True, help="Only these models (repeatable). [default: all]")
@click.pass_obj
def gallery(obj: Context, out_dir, models) -> None:
    """HTML gallery of the models' scores before review, sortable and filterable by species.

    \b
    Example:
        python -m hitl gallery --out gallery/
    """
    from hitl.publish.gallery import build_gallery

    path = build_gallery(obj.db, out_dir, models=list(models) or None, threshold=obj.threshold)
    click.echo(f"Wrote {path}")


COMMANDS = [report, export_command, gallery]
