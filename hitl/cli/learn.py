"""The learning commands: `learn` (the curators' taste as a rater) and `next` (what to review next)."""
from __future__ import annotations

import click

from hitl.cli.context import Context, echo_skipped, json_option, print_json, studio_options

FIGURE_NAMES = (("spearman", "Spearman"), ("qwk", "QWK"), ("mae", "MAE"), ("hero_auc", "hero AUC"),
                ("precision_at_k", "precision@k"), ("ece", "ECE"))


@click.command()
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-k", "k", type=click.IntRange(min=1), default=20, show_default=True,
              help="The k of precision@k: how many top-ranked images a curator would look at.")
@click.option("--embeddings", "embeddings", default="newest", show_default=True, metavar="MODEL|none",
              help="Whose image vectors the rater reads (`hitl embed`): newest, a model, or none.")
@json_option()
@click.pass_obj
def learn(obj: Context, seed, k, embeddings, as_json) -> None:
    """Learn the curators' taste from every live decision, and store it as a rater.

    Gradient-boosted trees on the detector's record, every model's opinion and the review
    mode, and on what a ridge head reads in the image vectors (`hitl embed`) wherever they
    exist; validated out of fold, grouped by sequence (by location with three or more), with
    and without the vectors, beside every single model on the same decisions. Needs 30 decisions.

    \b
    Examples:
        python -m hitl learn
        python -m hitl learn --embeddings none
    """
    from hitl.learn.run import learn as fit
    from hitl.learn.words import chance_words, learned_rows, vector_words

    result = fit(obj.db, obj.settings, seed=seed, k=k, embeddings=embeddings)
    if as_json:
        print_json(result.as_json())
        return
    split = ", ".join(f"{v} {k}" for k, v in result.split.items() if v)
    click.echo(f"Learned rater learned@{result.version}: {result.n_decisions} decisions on {result.n_images} images "
               f"({split}); validated out of fold, grouped by {result.grouped_by}")
    for sentence in vector_words(result.vectors, result.grouped_by):
        click.echo(sentence)
    named = learned_rows(f"learned@{result.version}", result.figures, result.without_vectors)
    raters = [*named, *result.singles.items()]
    click.echo(f"{'rater':42} " + " ".join(f"{label:>11}" for _, label in FIGURE_NAMES))
    for name, figures in raters:
        click.echo(f"{name:42} " + " ".join(f"{_num(figures.get(key)):>11}" for key, _ in FIGURE_NAMES))
    for name, figures in raters:
        intervals = [f"{label} {_interval(figures.get(key + '_ci'))}" for key, label in FIGURE_NAMES
                     if figures.get(key + "_ci")]
        if intervals:
            click.echo(f"  {name}, 95% intervals resampling whole {result.grouped_by}s: " + ", ".join(intervals))
    for name, figures in raters:
        for sentence in chance_words(name, figures):
            click.echo(sentence)
    if result.reward:
        click.echo(result.reward)
    click.echo("Its predictions are stored as the rater learned@" + result.version
               + " (out of fold for the images it learned from): `hitl report`, `hitl next`.")


def seen_by(chosen) -> str:
    """Which rater predicted the images chosen: with a vector, or on the detector record alone."""
    models = sorted({c.vectors for c in chosen if c.vectors})
    with_vectors = sum(c.vectors is not None for c in chosen)
    if not models:
        return f"All {len(chosen)} predicted on the detector record and the models' opinions (no image vector read)"
    return (f"{with_vectors} predicted with their {', '.join(models)} image vectors, {len(chosen) - with_vectors} "
            f"without one (the detector record and the models' opinions alone)")


def _num(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def _interval(ci: list[float]) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


@click.command("next")
@click.option("-n", "n", type=click.IntRange(min=1), required=True, help="How many images.")
@click.option("--strategy", type=click.Choice(["hero", "uncertain", "mixed"]), default="mixed", show_default=True,
              help="hero: likeliest heroes first; uncertain: where the model is least sure; mixed: half each.")
@click.option("--dry-run", is_flag=True, help="Push nothing; with --out, write the choice to a CSV.")
@click.option("--out", "out_csv", type=click.Path(dir_okay=False), help="CSV of image_id, p_hero, stars_pred, reason.")
@studio_options("Project title. [default: the last project pushed]")
@click.option("--mode", type=click.Choice(["assisted", "blind"]), help="[default: push.mode]")
@click.pass_obj
def next_command(obj: Context, n, strategy, dry_run, out_csv, studio, mode) -> None:
    """Push the N unreviewed candidates most worth a curator's time (no sequence twice).

    \b
    Examples:
        python -m hitl next -n 50
        python -m hitl next -n 100 --strategy uncertain --dry-run --out next.csv
        python -m hitl next -n 50 --image-url-template "https://example.org/traps/{image_id}"
    """
    from hitl.files import make_file_folder, write_atomic
    from hitl.learn import HERO_P
    from hitl.learn.next import choose_next
    from hitl.tables import safe_csv_text

    if out_csv:  # before choosing: a path that cannot be written is said at once
        make_file_folder(out_csv)
    chosen = choose_next(obj.db, n, strategy, obj.threshold)
    if not chosen:
        raise click.ClickException("no unreviewed candidate left: `hitl select --add --learned` brings in more")
    if out_csv:
        write_atomic(out_csv, safe_csv_text(["image_id", "p_hero", "stars_pred", "reason"], (c.row() for c in chosen)))
    by_hero = sum(c.chosen_as == "hero" for c in chosen)
    likely = sum(c.p_hero >= HERO_P for c in chosen)
    click.echo(f"Next {len(chosen)} ({strategy}: {by_hero} as the likeliest heroes left, {len(chosen) - by_hero} where "
               f"the model is least sure; {likely} likely {'hero' if likely == 1 else 'heroes'}, p(hero) ≥ {HERO_P:g})"
               + (f"; spread over the {chosen[0].spread_by} vectors, no two near-duplicates" if chosen[0].spread_by
                  else "") + (f"; wrote {out_csv}" if out_csv else ""))
    click.echo(seen_by(chosen))
    if dry_run:
        for c in chosen[:10]:
            click.echo(f"  {c.image_id:40} p(hero) {c.p_hero:.2f}  {c.reason}")
        return
    summary = obj.push_for_review(studio, [c.image_id for c in chosen], mode)
    click.echo(f"Project {summary.project_id}: {summary.pushed} pushed, {summary.already} already there")
    echo_skipped(summary)


COMMANDS = [learn, next_command]
