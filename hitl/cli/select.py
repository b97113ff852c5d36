"""`hitl select`: choose the candidates from detector output."""
from __future__ import annotations

import click
import msgspec

from hitl.cli.context import Context, counted, echo_err, json_option, print_json
from hitl.config import overridden


@click.command()
@click.option("--md", "md_path", type=click.Path(exists=True, dir_okay=False),
              help="MegaDetector batch output (format 1.0-1.6).")
@click.option("--camtrap-dp", "camtrap_dp", type=click.Path(exists=True),
              help="Instead of --md: a Camtrap DP package (its datapackage.json, or the folder holding it).")
@click.option("--media-root", type=click.Path(exists=True, file_okay=False),
              help="With --camtrap-dp: a folder inside the package holding remote media by their fileName.")
@click.option("--speciesnet", "speciesnet_path", type=click.Path(exists=True, dir_okay=False),
              help="SpeciesNet predictions (4.x or 5.x layout).")
@click.option("--cct", "cct_path", type=click.Path(exists=True, dir_okay=False),
              help="COCO Camera Traps metadata (seq_id, frame_num, location, datetime).")
@click.option("--images", "images_root", type=click.Path(file_okay=False),
              help="Collection root the detector's 'file' paths are relative to (with --md).")
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
@click.option("--learned", is_flag=True,
              help="Rank by the learned rater on the detector record and the image vectors (hitl learn; 30 decisions) "
                   "instead of the heuristic.")
@click.option("--embeddings", "embeddings", default="newest", show_default=True, metavar="MODEL|none",
              help="With --learned: whose image vectors it reads (`hitl embed --md`): newest, a model, or none.")
@click.option("--only", "only_csv", type=click.Path(exists=True, dir_okay=False),
              help="Choose only among the images this CSV lists (its image_id column: `similar --out` writes one).")
@click.option("--frames-per-burst", "frames_per_burst", type=int, metavar="K",
              help="Also keep each candidate's burst: the K best frames of its sequence (0-10; 0: off). [default: 0]")
@json_option()
@click.pass_obj
def select(obj: Context, md_path, camtrap_dp, media_root, speciesnet_path, cct_path, images_root, n, out_csv, seed, threshold,
           include_people, gap_seconds, check_files, add, learned, embeddings, only_csv, frames_per_burst,
           as_json) -> None:
    """Select N diverse, promising candidates from detector output.

    One frame per sequence at most, stratified over categories (rare species, several
    species, groups, close-ups, well-framed single animals, night), with a per-species cap.
    Images with a person or vehicle are left out unless --include-people is given.
    With --frames-per-burst K, the K best frames of each candidate's sequence are kept
    beside it (the table burst_members), to compare in review.

    \b
    Example:
        python -m hitl select --md sample_data/md_results.json \\
            --speciesnet sample_data/speciesnet_predictions.json \\
            --cct sample_data/cct.json --images sample_data/images -n 12 --out candidates.csv
        python -m hitl select --camtrap-dp package/datapackage.json -n 50
    """
    from hitl.files import make_file_folder
    from hitl.select.run import run_selection

    obj.creates_db = True
    if out_csv:  # before the run: a path that cannot be written is said at once
        make_file_folder(out_csv)

    cfg = overridden(obj.settings.select, seed=seed, threshold=threshold, include_people=include_people,
                     sequence_gap_seconds=gap_seconds, check_files=check_files, frames_per_burst=frames_per_burst)
    obj.settings = msgspec.structs.replace(obj.settings, select=cfg)
    only = _listed(only_csv) if only_csv else None
    ranker = None
    if learned:  # scikit-learn is loaded only then; the decisions are checked before a big file is read
        from hitl.learn.rank import learned_ranker

        ranker = learned_ranker(obj.db, cfg, embeddings)
    summary = run_selection(
        obj.db, md=md_path, images_root=images_root, n=n, settings=obj.settings, speciesnet=speciesnet_path,
        cct=cct_path, out_csv=out_csv, add=add, echo=echo_err, ranker=ranker, camtrap_dp=camtrap_dp,
        media_root=media_root, only=only,
    )
    rescored = _rescore_baseline(obj, summary.run_id)
    if as_json:
        print_json({**summary.as_counts(), "baseline_rescored": rescored})
        return
    click.echo(format_selection_summary(summary, out_csv))
    if rescored:
        click.echo(f"Rescored {rescored} baseline scores: their images' detections changed since they were scored")


def _listed(path: str) -> set[str]:
    """The image ids a CSV lists (--only); a row naming none is said, the others are read."""
    from pathlib import Path

    from converters.sheet import SheetError, listed_images

    try:
        ids, problems = listed_images(Path(path).read_text(encoding="utf-8", errors="surrogateescape"), path)
    except SheetError as exc:
        raise click.UsageError(str(exc)) from None
    for problem in problems[:5]:
        echo_err(f"Skipped {problem}")
    if not ids:
        raise click.UsageError(f"{path} lists no image (its image_id column is empty)")
    return set(ids)


def _rescore_baseline(obj: Context, run_id: int) -> int:
    """Recompute the baseline's scores of the images this run wrote detections for, where those changed
    (a folder scored before selection had none): the baseline is free, and a score follows its inputs."""
    from hitl.score.stale import refresh_baseline

    written = [r[0] for r in obj.db.execute("SELECT image_id FROM candidates WHERE run_id = ? UNION "
                                            "SELECT image_id FROM burst_members WHERE run_id = ?", [run_id, run_id])]
    return sum(s.scored + sum(s.failed.values()) for s in refresh_baseline(obj.db, obj.settings, obj.threshold, written))


def format_selection_summary(summary, out_csv: str | None) -> str:
    """The end-of-run summary a curator reads: what was read, failed, excluded and chosen."""
    lines = [f"Selection run {summary.run_id}: {summary.selected} of {summary.requested} candidates "
             f"from {summary.images_read:,} images ({summary.eligible:,} eligible in {summary.sequences:,} sequences)"]
    counted(lines, "Failed", summary.failed)
    counted(lines, "Excluded", summary.excluded)
    counted(lines, "Bad records skipped", summary.problems)
    for example in summary.problem_examples[:5]:
        lines.append(f"    e.g. {example}")
    counted(lines, "Selected per category", summary.by_category)
    counted(lines, "Selected per species", summary.by_species)
    if summary.frames_per_burst:
        lines.append(f"Burst frames kept: {summary.burst_frames:,} in {summary.bursts:,} bursts (up to "
                     f"{summary.frames_per_burst} per candidate's sequence, the candidate's frame included)")
    for note in summary.notes[:10]:
        lines.append(f"Note: {note}")
    if len(summary.notes) > 10:
        lines.append(f"Note: ... and {len(summary.notes) - 10} more (stored with the run)")
    if out_csv:
        lines.append(f"Wrote {out_csv}")
    return "\n".join(lines)



COMMANDS = [select]
