"""The publishing commands: `report` (agreement), `export` (the hero set) and `gallery`."""
from __future__ import annotations

import json
from pathlib import Path

import click

from hitl.cli.context import Context, echo_err, echo_left_out, include_people_options, printable


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False), help="Folder for the report.")
@click.option("--resamples", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Bootstrap resamples for the 95% intervals (images resampled).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--hero-threshold", type=float, default=7.0, show_default=True,
              help="A model calls an image hero when its score is at least this (besides its own flag).")
@click.option("--top", type=click.IntRange(min=0), default=24, show_default=True,
              help="Disagreements shown with thumbnails.")
@include_people_options("the thumbnails")
@click.pass_obj
def report(obj: Context, out_dir, resamples, seed, hero_threshold, top, include_people, include_undetected) -> None:
    """Agreement between curators and models: report.html, agreement.json, disagreements.csv.

    \b
    Example:
        python -m hitl report --out report/ && open report/report.html
    """
    from hitl.publish.report import build_report

    paths = build_report(obj.db, out_dir, hero_threshold=hero_threshold, resamples=resamples, seed=seed, top=top,
                         threshold=obj.threshold, include_people=include_people,
                         include_undetected=include_undetected, echo=echo_err)
    data = json.loads(paths["json"].read_text())
    for sentence in data.get("readings", [])[:8]:
        click.echo(printable(f"- {sentence}"))  # sentences name curators
    click.echo(f"Wrote {paths['html']}, {paths['json'].name} and {paths['csv'].name}")


@click.command("export")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), help="Folder for the hero set (or the package).")
@click.option("--format", "fmt", type=click.Choice(["heroes", "camtrap-dp", "coco", "yolo", "crops"]), default="heroes",
              show_default=True,
              help="heroes: the hero images with a manifest; camtrap-dp: a Camtrap DP package of every reviewed "
                   "image; coco, yolo, crops: the boxes as training data (the curators' where they reviewed them).")
@click.option("--update", is_flag=True,
              help="With --format camtrap-dp: write favorite and mediaComments back into the package the images "
                   "were selected from (nothing else changes).")
@click.option("--deployments", "deployments_csv", type=click.Path(exists=True, dir_okay=False),
              help="With --format camtrap-dp, for images from a detector file: a Camtrap DP deployments table "
                   "(deploymentID or locationName = the image's location, latitude, longitude, dates).")
@click.option("--policy", type=click.Choice(["any", "majority", "all"]), default="majority", show_default=True,
              help="How many of the curators who decided must have said hero.")
@click.option("--min-stars", type=click.IntRange(1, 10), help="Also require this mean of the curators' stars.")
@click.option("--link", type=click.Choice(["copy", "hardlink"]), default="copy", show_default=True)
@click.option("--layout", type=click.Choice(["tree", "flat"]), default="tree", show_default=True,
              help="Keep the folder tree, or flat files with safe names.")
@click.option("--near-duplicates", type=click.Choice(["keep-best", "keep-all"]), default="keep-best", show_default=True,
              help="heroes: of each group of near-duplicate heroes (`hitl embed` vectors), export the best only, or all; "
                   "the manifest's duplicate_of names each one's best.")
@click.option("--reviewed-only", is_flag=True, help="coco, yolo, crops: only images whose boxes a curator reviewed.")
@include_people_options("the export (every format)")
@click.option("--val-share", type=click.FloatRange(0, 1, max_open=True), default=0.2, show_default=True,
              help="yolo: the share of images in val (whole sequences).")
@click.option("--seed", type=int, default=0, show_default=True, help="yolo: the seed of the train/val split.")
@click.option("--margin", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="crops: added around each box, as a share of its width and height.")
@click.option("--min-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="crops: boxes smaller than this many pixels on a side are not cropped.")
@click.pass_obj
def export_command(obj: Context, out_dir, fmt, update, deployments_csv, policy, min_stars, link, layout, near_duplicates,
                   reviewed_only, include_people, include_undetected, val_share, seed, margin, min_size) -> None:
    """Export the validated hero set: the images, manifest.csv/json and a contact sheet; or
    (--format camtrap-dp) every reviewed image as a Camtrap DP package, favorite = hero.

    Idempotent; a different file already at a target is reported and never overwritten. Every
    format leaves out, and names, the images with a person detected or with no detector record
    (an image scored from a folder that no selected detector file names), unless
    --include-people / --include-undetected.

    \b
    Examples:
        python -m hitl export --out heroes/ --policy majority --min-stars 7
        python -m hitl export --format camtrap-dp --out package/
        python -m hitl export --format camtrap-dp --update
        python -m hitl export --format yolo --out yolo/ --reviewed-only
    """
    from hitl.publish.heroset import export_heroset

    allow = {"include_people": include_people, "include_undetected": include_undetected}
    if fmt == "camtrap-dp":
        _export_camtrap_dp(obj, out_dir, update, deployments_csv, policy, min_stars, link, allow)
        return
    if fmt in ("coco", "yolo", "crops"):
        if not out_dir:
            raise click.UsageError("Missing option '--out'.")
        from hitl.publish.training import export_training

        counts = export_training(obj.db, out_dir, fmt, threshold=obj.threshold, reviewed_only=reviewed_only,
                                 link=link, val_share=val_share, seed=seed, margin=margin, min_size=min_size, **allow)
        _print_training(fmt, out_dir, counts)
        return
    if update or deployments_csv:
        raise click.UsageError("--update and --deployments are for --format camtrap-dp")
    if not out_dir:
        raise click.UsageError("Missing option '--out'.")

    counts = export_heroset(obj.db, out_dir, policy=policy, min_stars=min_stars, link=link, layout=layout,
                            threshold=obj.threshold, near_duplicates=near_duplicates, **allow)
    left_out = counts["left_out_people"] + counts["left_out_undetected"]
    click.echo(f"Hero set ({policy}{f', mean stars >= {min_stars}' if min_stars else ''}): {counts['heroes']} heroes"
               f"{f' ({left_out} left out)' if left_out else ''}; "
               f"{counts['exported']} exported, {counts['unchanged']} unchanged, {len(counts['conflicts'])} conflicts, "
               f"{counts['missing_files']} missing files")
    if counts.get("pairwise"):
        pairwise = counts["pairwise"]
        click.echo(f"  in the curators' pairwise order: {pairwise['compared_images']} heroes ranked by "
                   f"{pairwise['comparisons']} comparisons of {pairwise['curators']} curators (manifest column rank)")
    groups = counts["near_duplicates"]
    if groups and groups["groups"]:
        click.echo(f"  {groups['groups']} near-duplicate group(s) of {groups['images_in_groups']} heroes "
                   f"({groups['model']} vectors, threshold {groups['threshold']:.3f}): "
                   + (f"the best of each exported, {groups['left_out']} left out (manifest: duplicate_of)"
                      if near_duplicates == "keep-best" else "all exported (manifest: duplicate_of)"))
    _echo_conflicts_and_notes(counts)
    if counts["written"]:
        click.echo(f"Wrote {', '.join(str(Path(out_dir) / name) for name in counts['written'])}")


def _echo_conflicts_and_notes(counts: dict) -> None:
    """An export's images left out (a person, no detector record), every one; its files left alone
    (a different file was there) and its notes, five of each."""
    echo_left_out(counts.get("left_out", []))
    for path in counts["conflicts"][:5]:
        click.echo(f"  conflict (left untouched): {path}")
    for note in counts.get("notes", [])[:5]:
        click.echo(f"  note: {note}")


def _print_training(fmt: str, out_dir: str, counts: dict) -> None:
    species = ", ".join(f"{name} {n}" for name, n in counts["per_species"].items())
    click.echo(f"{fmt}: {counts['images']} images ({counts['reviewed_images']} with boxes a curator reviewed), "
               f"{counts['boxes']} boxes ({counts['reviewed_boxes']} reviewed, {counts['detector_boxes']} detector)"
               + (f"; per species: {species}" if species else ""))
    if fmt == "yolo":
        click.echo(f"  split by sequence: {counts['train']} train, {counts['val']} val; {counts['exported']} images "
                   f"exported, {counts['unchanged']} unchanged, {counts['missing_files']} missing files, "
                   f"{len(counts['failed'])} failed")
    if fmt == "crops":
        click.echo(f"  {counts['crops']} crops")
    if counts["new_labels"]:
        click.echo(f"  new labels (not the detector's nor the selection's): {', '.join(counts['new_labels'])}")
    for key, value in counts.items():
        if key.startswith(("left out", "images where", "crops smaller")):
            click.echo(f"  {key}: {value}")
    _echo_conflicts_and_notes(counts)
    written = counts["written"]
    click.echo(f"Wrote {len(written)} files in {out_dir}" + (f" ({', '.join(written[:3])}...)" if written else
                                                              " (everything was already there)"))


def _export_camtrap_dp(obj: Context, out_dir, update, deployments_csv, policy, min_stars, link, allow: dict) -> None:
    from hitl.publish.camtrapdp import export_package, update_package

    if update:
        if out_dir or deployments_csv:
            raise click.UsageError("--update writes into the package the images came from: no --out or --deployments")
        counts = update_package(obj.db, policy=policy, min_stars=min_stars, threshold=obj.threshold, **allow)
        click.echo(f"Updated {', '.join(counts['packages'])}: {counts['favorite']} favorite, {counts['not_favorite']} "
                   f"reviewed and not, {counts['comments']} with curator comments; nothing else changed")
        echo_left_out(counts["left_out"], " (their rows are unchanged)")
        return
    if not out_dir:
        raise click.UsageError("Missing option '--out' (or --update to write into the input package).")
    counts = export_package(obj.db, out_dir, policy=policy, min_stars=min_stars, link=link, threshold=obj.threshold,
                            deployments_csv=deployments_csv, **allow)
    click.echo(f"Camtrap DP package ({policy}{f', mean stars >= {min_stars}' if min_stars else ''}): "
               f"{counts['media']} reviewed media, {counts['favorite']} favorite, {counts['not_public']} not public "
               f"(a person detected, --include-people), {counts['observations']} observations, "
               f"{counts['deployments']} deployments; "
               f"{counts['exported']} files exported, {counts['unchanged']} unchanged, {len(counts['conflicts'])} "
               f"conflicts, {counts['missing_files']} missing files")
    _echo_conflicts_and_notes(counts)
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
