"""The `compare` command: pairs of hero-set images to Label Studio, for a pairwise ranking."""
from __future__ import annotations

import click

from hitl.cli.context import Context, echo_err, echo_left_out, echo_skipped, include_people_options, studio_options

DEFAULT_TITLE = "Hero comparison"


@click.command()
@click.option("-n", "n", type=click.IntRange(min=1), default=20, show_default=True, help="New pairs to push.")
@studio_options("Comparison project title: created if missing, reused if it exists.", DEFAULT_TITLE)
@click.option("--policy", type=click.Choice(["any", "majority", "all"]), default="majority", show_default=True,
              help="Which images are heroes (as `hitl export`).")
@click.option("--min-stars", type=click.IntRange(1, 10), help="Heroes must also have this mean of curators' stars.")
@click.option("--min-per-image", type=click.IntRange(min=1), default=3, show_default=True,
              help="Pair every hero at least this many times before pairs of close estimates.")
@click.option("--seed", type=int, default=0, show_default=True, help="Tie-breaks and sides of the pairs.")
@include_people_options("the pairs")
@click.pass_obj
def compare(obj: Context, n, studio, policy, min_stars, min_per_image, seed, include_people,
            include_undetected) -> None:
    """Push N pairs of hero images to Label Studio: the curator picks the more beautiful, or "same".

    The pairs come from the current Bradley-Terry fit of the answers so far: every hero in at
    least --min-per-image pairs first, then the pairs whose order is least settled; never a
    pair already in the project or already answered. Run it again after the curators have
    answered (the webhook or `hitl sync` brings the answers in) for the next round.
    API token from LABEL_STUDIO_API_KEY.

    \b
    Example:
        python -m hitl compare -n 20 --project "Hero comparison"
        python -m hitl sync                  # if no webhook brought the answers in
        python -m hitl compare -n 20         # the next round, from the answers so far
    """
    from hitl.compare.push import push_pairs

    summary = push_pairs(
        obj.db, studio.client(), **studio.push_arguments(), title=studio.title, n=n, min_per_image=min_per_image,
        policy=policy, min_stars=min_stars, seed=seed, threshold=obj.threshold, include_people=include_people,
        include_undetected=include_undetected)
    click.echo(f"Comparison project {summary.project_id} ({'created' if summary.project_created else 'reused'}): "
               f"{summary.pushed} pairs pushed, {summary.already} already there ({summary.waiting} waiting for an "
               f"answer); {summary.heroes} heroes, {summary.answered} comparisons answered")
    if not summary.pushed:
        click.echo("Nothing new to pair: every pair of these heroes is answered or waiting in the project."
                   if summary.possible == 0 else
                   "Nothing new to pair now: the pairs left would show the same few images again; "
                   "answer the waiting ones, then run it again.")
    elif summary.pushed < summary.asked:
        echo_err(f"Only {summary.pushed} of the {summary.asked} pairs asked for are new "
                 f"({summary.possible - summary.pushed} pairs left never shown).")
    echo_left_out(summary.left_out)
    echo_skipped(summary)
    click.echo(f"Image storage: {summary.storage}; webhook: {summary.webhook}")
    click.echo(f"Open {studio.url.rstrip('/')}/projects/{summary.project_id}/data")


COMMANDS = [compare]
