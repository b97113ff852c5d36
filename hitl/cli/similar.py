"""`hitl similar`: more like this one (or like the hero set), from the image vectors."""
from __future__ import annotations

import click

from hitl.cli.context import Context, echo_err, echo_skipped, printable, studio_options


@click.command()
@click.argument("image_id", required=False)
@click.option("-n", "n", type=click.IntRange(min=1), default=50, show_default=True, help="How many images.")
@click.option("--heroes", is_flag=True, help="Search around the centre of the hero set instead of one image.")
@click.option("--policy", type=click.Choice(["any", "majority", "all"]), default="majority", show_default=True,
              help="With --heroes: which images are heroes (as `hitl export`).")
@click.option("--model", help="Whose vectors. [default: the model that embedded last]")
@click.option("--out", "out_csv", type=click.Path(dir_okay=False),
              help="CSV of image_id, similarity, reviewed, in_store, near_duplicate_of.")
@click.option("--push", "push_them", is_flag=True, help="Push the unreviewed ones to Label Studio, as `next` does.")
@studio_options("With --push: project title. [default: the last project pushed]")
@click.option("--mode", type=click.Choice(["assisted", "blind"]), help="With --push: [default: push.mode]")
@click.pass_obj
def similar(obj: Context, image_id, n, heroes, policy, model, out_csv, push_them, studio, mode) -> None:
    """The N images closest to IMAGE_ID (or to the hero set's centre, --heroes) by their vectors,
    unreviewed first, each with its cosine similarity; `hitl embed` makes the vectors.

    Every image the model has a vector of is searched, a whole collection's too (`embed --md`).
    --push sends the unreviewed ones the store knows for review; an image that is only a
    whole-collection vector needs its detector record first: they are listed beside --out
    (FILE-to-select.csv) with the `select --add --only` command that brings them in.

    \b
    Examples:
        python -m hitl similar cam_b/IMG_0013.JPG -n 20
        python -m hitl similar --heroes -n 50 --out more.csv --push
    """
    from hitl.files import make_file_folder, write_atomic
    from hitl.similar.search import COLUMNS, find_similar
    from hitl.tables import safe_csv_text

    if heroes and image_id:
        raise click.UsageError("IMAGE_ID or --heroes: one query at a time")
    if out_csv:
        make_file_folder(out_csv)
    found = find_similar(obj.db, image_id, heroes=heroes, n=n, model=model, policy=policy, threshold=obj.threshold)
    if out_csv:
        write_atomic(out_csv, safe_csv_text(COLUMNS, (m.row() for m in found.matches)))
    fresh = [m for m in found.matches if not m.reviewed]
    click.echo(f"{len(found.matches)} closest to {printable(found.query)} among {found.searched:,} {found.model} "
               f"vectors ({found.seconds:.2f} s): {len(fresh)} unreviewed first"
               + (f"; wrote {out_csv}" if out_csv else ""))
    for m in found.matches[:n if out_csv is None else 10]:
        marks = ["reviewed" if m.reviewed else "unreviewed", "" if m.in_store else "not in the store"]
        if m.near_duplicate_of:
            marks.append(f"near-duplicate of {m.near_duplicate_of}")
        click.echo(f"  {m.similarity:6.3f}  {printable(m.image_id):40} {', '.join(x for x in marks if x)}")
    if push_them:
        _push(obj, found, fresh, out_csv, studio, mode)


def _push(obj: Context, found, fresh, out_csv, studio, mode) -> None:
    """Push the unreviewed images the store knows; name the others with the command that brings them in
    (listing them beside --out for it)."""
    from pathlib import Path

    from hitl.files import write_atomic
    from hitl.tables import safe_csv_text

    known = [m.image_id for m in fresh if m.in_store]
    outside = [m.image_id for m in fresh if not m.in_store]
    if outside:
        listed = None
        if out_csv:  # beside --out: the list `select --only` reads
            listed = str(Path(out_csv).with_name(Path(out_csv).stem + "-to-select.csv"))
            write_atomic(listed, safe_csv_text(["image_id"], ({"image_id": i} for i in outside)))
        echo_err(f"{len(outside)} of them are only whole-collection vectors, not yet in the store (e.g. "
                 f"{', '.join(printable(i) for i in outside[:5])}): a review task needs the detector record. "
                 + bring_in(found.source, listed, len(outside)))
    if not known:
        raise click.ClickException("none of them can be pushed yet" + (" (see above)" if outside else
                                                                      ": every one is reviewed already"))
    summary = obj.push_for_review(studio, known, mode)
    click.echo(f"Project {summary.project_id}: {summary.pushed} pushed, {summary.already} already there"
               + (f", {len(outside)} not in the store yet" if outside else ""))
    echo_skipped(summary)


def bring_in(source: dict[str, str], listed: str | None, n: int) -> str:
    """The `select --add --only` command that brings the images ``listed`` (a CSV) in, from where they were
    embedded."""
    if source.get("camtrap_dp"):
        where = f"--camtrap-dp {source['camtrap_dp']}"
    elif source.get("md"):
        where = f"--md {source['md']} --images {source.get('images', 'ROOT')}" + (
            f" --speciesnet {source['speciesnet']}" if source.get("speciesnet") else "")
    else:
        where = "--md FILE --images ROOT"
    return (("" if listed else "With --out FILE they are listed in FILE-to-select.csv, and ")
            + f"`python -m hitl select {where} --add --only {listed or 'FILE-to-select.csv'} -n {n}` brings them in; "
              f"then push them with `python -m hitl similar ... --push` again")


COMMANDS = [similar]
