"""`hitl score`: every candidate's verdict from a model, once; batch jobs; label files."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click
import msgspec

from hitl.cli.context import Context, echo_err, json_option
from hitl.config import overridden
from hitl.remote import is_transient


@click.command()
@click.option("--model", "model", help="baseline, a Gemini model (gemini-2.5-flash) or openai:<model>.")
@click.option("--batch", is_flag=True, help="Use the Gemini Batch API (half price; results in minutes to hours).")
@click.option("--resume", is_flag=True, help="Continue batch jobs a stopped process left: poll and collect.")
@click.option("--job", "job_name", help="With --resume: only this batch job.")
@click.option("--cancel", "cancel_job", metavar="JOB", help="Cancel a batch job (e.g. batches/abc123).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Calls in flight. [default: 8]")
@click.option("--retry-failed", is_flag=True, help="Rerun only the images whose result is a failure.")
@click.option("--refresh-stale", is_flag=True,
              help="Rescore only the images whose score by this model was computed from other detections than "
                   "they have now (report and gallery list them).")
@click.option("--max-cost", type=click.FloatRange(min=0), help="Refuse a run whose estimate is above this (USD).")
@click.option("--base-url", "base_urls", multiple=True,
              help="OpenAI-compatible server, repeatable (default: HITL_OPENAI_BASE_URL, comma-separated).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False),
              help="Score every image of this folder instead of the candidates. With --import: the folder "
                   "the file's image_path values are under (it need not exist here).")
@click.option("--prompt-version", help="Prompt file version (hitl/score/prompts/<version>.txt). [default: hero-v1]")
@click.option("--limit", type=click.IntRange(min=1), help="Score at most this many images now.")
@click.option("--bursts", is_flag=True, help="Also score the burst frames kept beside each candidate "
                                             "(`select --frames-per-burst`): `push --bursts` then proposes the "
                                             "frame this model scores best.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False),
              help="Write this model's scores as a hero-images label JSON file and stop.")
@click.option("--import", "import_path", type=click.Path(dir_okay=False),
              help="Store the scores of a hero-images label JSON file (as the model it names, or --model; "
                   "prompt version from the file, --prompt-version or 'imported') and stop.")
@click.option("--replace", is_flag=True, help="With --import: overwrite scores this model already has from "
                                              "elsewhere (a run here, another file). [default: refuse]")
@json_option()
@click.pass_obj
def score(obj: Context, model, batch, resume, job_name, cancel_job, concurrency, retry_failed, max_cost, base_urls,
          images_dir, prompt_version, limit, export_path, import_path, as_json, bursts, replace,
          refresh_stale) -> None:
    """Score candidates with a model: every image once per model and prompt version.

    Finished images are never called again (a rerun continues where a run stopped);
    429, 5xx and timeouts are retried with backoff; an authentication error stops at once.

    \b
    Examples:
        python -m hitl score --model baseline
        GEMINI_API_KEY=... python -m hitl score --model gemini-2.5-flash --max-cost 5
        GEMINI_API_KEY=... python -m hitl score --model gemini-2.5-flash --batch
        GEMINI_API_KEY=... python -m hitl score --model gemini-2.5-flash --bursts
        python -m hitl score --model gemini-2.5-flash --resume
        python -m hitl score --cancel batches/abc123 --model gemini-2.5-flash
        python -m hitl score --model openai:Qwen/Qwen2.5-VL-7B-Instruct --base-url http://gpu1:8000/v1 \\
            --base-url http://gpu2:8000/v1 --concurrency 32
        python -m hitl score --model baseline --images photos/
        python -m hitl score --model baseline --refresh-stale
        python -m hitl score --model baseline --export baseline_labels.json
        python -m hitl score --import gemini_batch_labels_20250923_143022.json --images /mnt/c/camera-traps
    """
    obj.creates_db = bool(images_dir or import_path)  # a folder or a label file can start a database
    if import_path:
        given = {"--export": export_path, "--batch": batch, "--resume": resume, "--job": job_name,
                 "--cancel": cancel_job, "--concurrency": concurrency, "--retry-failed": retry_failed,
                 "--max-cost": max_cost is not None, "--base-url": base_urls, "--limit": limit,
                 "--refresh-stale": refresh_stale}
        clash = [name for name, value in given.items() if value]
        if clash:
            raise click.UsageError(f"--import stores a label file's scores and calls no model; it cannot be "
                                   f"combined with {', '.join(clash)}")
        return _import(obj, import_path, model, prompt_version, images_dir, as_json, replace)
    if replace:
        raise click.UsageError("--replace goes with --import (it lets a label file overwrite scores from elsewhere)")
    obj.settings = msgspec.structs.replace(obj.settings, score=overridden(obj.settings.score, concurrency=concurrency))
    pv = prompt_version or obj.settings.score.prompt_version
    if export_path:
        from hitl.files import make_file_folder

        make_file_folder(export_path, "--export")
        return _export(obj, model, pv, export_path)
    if cancel_job:
        return _cancel(obj, model, cancel_job)
    if resume:
        return _resume(obj, model, job_name, as_json)
    if not model:
        raise click.UsageError("--model is required, e.g. --model baseline")
    if bursts and images_dir:
        raise click.UsageError("--bursts scores the candidates' burst frames; --images scores a folder: one of them")
    clash = [name for name, value in (("--retry-failed", retry_failed), ("--images", images_dir),
                                      ("--bursts", bursts)) if value]
    if refresh_stale and clash:
        raise click.UsageError(f"--refresh-stale rescores the stale scores of this model wherever they are; it "
                               f"cannot be combined with {', '.join(clash)}")
    _run(obj, model, pv, batch, retry_failed, max_cost, list(base_urls) or None, images_dir, limit, as_json, bursts,
         refresh_stale)


def _run(obj: Context, model: str, pv: str, batch: bool, retry_failed: bool, max_cost: float | None,
         base_urls: list[str] | None, images_dir: str | None, limit: int | None, as_json: bool,
         bursts: bool = False, refresh_stale: bool = False) -> None:
    from hitl.score.backends import make_backend
    from hitl.score.batch import open_batch_jobs, submit_batch
    from hitl.score.record import estimate_cost
    from hitl.score.runner import run_sync
    from hitl.score.targets import candidate_targets, register_folder, stale_targets
    from hitl.store import queries

    settings, db = obj.settings, obj.db
    backend = make_backend(model, settings, base_urls)
    if batch and not backend.supports_batch:
        raise click.UsageError(f"--batch works with backends that have a batch API (Gemini), not {model}")
    backend.probe()
    image_ids = None
    if bursts:
        from hitl.store.bursts import candidate_frames

        image_ids = candidate_frames(db)
    if images_dir:
        image_ids, skipped_files = register_folder(db, images_dir)
        for problem in skipped_files[:10]:
            echo_err(f"Skipped {problem}")
        if len(skipped_files) > 10:
            echo_err(f"... and {len(skipped_files) - 10} more files skipped")
    if refresh_stale:
        targets, skipped = stale_targets(db, backend.name, pv, obj.threshold), 0
    else:
        targets, skipped = candidate_targets(db, backend.name, pv, retry_failed, obj.threshold, image_ids)
    if limit:
        targets = targets[:limit]
    if not targets and refresh_stale:
        click.echo(f"No stale {backend.name} ({pv}) scores: each was computed from its image's current detections")
        return
    if not targets:
        if image_ids is None and not queries.candidates(db):
            raise click.ClickException("no candidates yet: run `python -m hitl select` first, "
                                       "or score a folder with --images DIR")
        click.echo(f"Nothing to score with {backend.name} ({pv}): {skipped} already done"
                   + ("" if retry_failed else "; --retry-failed reruns failures"))
        return
    estimate = estimate_cost(backend, len(targets), settings, batch)
    if backend.paid:
        shown = f"${estimate:.4f}" if estimate is not None else "unknown (no price for this model in the config)"
        echo_err(f"{len(targets)} images to score with {backend.name}{' (batch, discounted)' if batch else ''}; "
                 f"estimated cost {shown}")
    if max_cost is not None and (estimate is None or estimate > max_cost):
        raise click.ClickException(
            f"estimated cost {'unknown' if estimate is None else f'${estimate:.4f}'} is above --max-cost "
            f"${max_cost:.4f}; raise the limit, score fewer images (--limit) or use --batch")
    if not batch:
        summary = run_sync(db, backend, targets, settings, prompt_version=pv, skipped=skipped, estimate=estimate)
        click.echo(summary_text(summary, as_json))
        _fail_if_all_failed(summary)
        return
    summary = submit_batch(db, backend, targets, settings, prompt_version=pv, db_path=obj.db_path,
                           skipped=skipped, estimate=estimate)
    if summary.batch_job is not None:
        echo_err(f"Submitted batch {summary.batch_job}: {summary.targets - summary.done} images. Waiting for it; "
                 f"Ctrl+C stops waiting (the job goes on): resume with `hitl score --resume`, "
                 f"cancel with `hitl score --cancel {summary.batch_job}`")
        summary = _poll(obj, backend, open_batch_jobs(db, name=summary.batch_job)[0])
    click.echo(summary_text(summary, as_json))
    _fail_if_all_failed(summary)


def _fail_if_all_failed(summary) -> None:
    """A run in which nothing was scored is no success: exit non-zero, saying why in one line."""
    if summary.scored or not summary.failed or summary.stopped:
        return
    kind, count = summary.failed.most_common(1)[0]
    hint = ("they are tried again on the next run" if is_transient(kind)
            else "fix the cause, then rerun with --retry-failed")
    raise click.ClickException(f"every image of this run failed ({count} x {kind}"
                               + (f", and {sum(summary.failed.values()) - count} more" if len(summary.failed) > 1 else "")
                               + f"); {hint}")


def _export(obj: Context, model: str | None, pv: str, export_path: str) -> None:
    from hitl.files import write_atomic
    from hitl.score.labels import export_scores
    from hitl.store import queries

    if not model:
        models = sorted({r.split("@", 1)[0] for r in queries.raters(obj.db)})
        raise click.UsageError(f"--export needs --model (scored so far: {', '.join(models) or 'none'})")
    data = export_scores(obj.db, model, pv)
    write_atomic(export_path, json.dumps(data, indent=2))
    info = data["labeling_info"]
    click.echo(f"Wrote {export_path}: {info['total_images']} images, {info['successful']} scored, "
               f"{info['failed']} failed")


def _import(obj: Context, path: str, model: str | None, prompt_version: str | None, images_dir: str | None,
            as_json: bool, replace: bool = False) -> None:
    from hitl.score.labels import import_scores

    roots = list(dict.fromkeys([images_dir, str(Path(images_dir).resolve())])) if images_dir else []
    summary = import_scores(obj.db, path, model=model, prompt_version=prompt_version, roots=roots, replace=replace)
    click.echo(json.dumps(summary.as_counts(), indent=2, sort_keys=True) if as_json else import_text(summary))
    if not summary.matched and not summary.unmatched:
        raise click.ClickException(f"{path}: nothing imported: none of its {summary.total} results is usable "
                                   f"(the bad records above say why)")
    if not summary.matched:
        raise click.ClickException(f"{path}: nothing imported: none of its {summary.total} results matches an "
                                   f"image in the database; select those images first, or pass --images with "
                                   f"the folder its image_path values are under")


def import_text(summary) -> str:
    """An import's summary line, then its skipped results by reason with a few examples."""
    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    changes = ", ".join(f"{summary.scores[k]} {k}" for k in ("new", "updated", "unchanged") if summary.scores[k])
    parts = [n(sum(summary.failures.values()), "failure")] if summary.failures else []
    parts += [f"{len(summary.unmatched)} unmatched"] if summary.unmatched else []
    parts += [n(len(summary.duplicates), "duplicate")] if summary.duplicates else []
    parts += [n(len(summary.bad), "bad record")] if summary.bad else []
    lines = [f"{summary.source}: {n(sum(summary.scores.values()), 'score')} imported as {summary.rater}"
             + (f" ({changes})" if changes else "") + "".join(f", {p}" for p in parts)]
    problems = summary.unmatched + summary.duplicates + summary.bad
    reasons = Counter(p.reason for p in problems)
    for reason, count in reasons.most_common():
        lines.append(f"  skipped {count:>6}  {reason}")
    shown = Counter()
    for problem in problems:  # the file is named on the first line
        if shown[problem.reason] < 2 and sum(shown.values()) < 8:
            shown[problem.reason] += 1
            detail = f": {problem.detail}" if problem.detail else ""
            lines.append(f"    e.g. {problem.record}: {problem.reason}{detail}")
    if summary.unmatched:
        lines.append("  Unmatched results need their images in the database (select them first); pass --images "
                     "with the folder the file's image_path values are under if it was written elsewhere.")
    return "\n".join(lines)


def _cancel(obj: Context, model: str | None, name: str) -> None:
    from hitl.score.backends import make_backend
    from hitl.score.batch import cancel_batch, open_batch_jobs

    job = next(iter(open_batch_jobs(obj.db, name=name)), None)
    backend = make_backend(model or (job["model"] if job else "gemini-2.5-flash"), obj.settings)
    if not backend.supports_batch:
        raise click.UsageError(f"{backend.name} has no batch jobs to cancel")
    backend.probe()
    click.echo(f"Batch {name}: {cancel_batch(obj.db, backend, name, obj.settings)}")


def _resume(obj: Context, model: str | None, job_name: str | None, as_json: bool) -> None:
    from hitl.score.backends import make_backend
    from hitl.score.batch import open_batch_jobs

    jobs = open_batch_jobs(obj.db, model=model, name=job_name)
    if not jobs:
        click.echo("No batch job to resume.")
        return
    for job in jobs:
        backend = make_backend(job["model"], obj.settings)
        backend.probe()
        echo_err(f"Resuming batch {job['name']} ({job['n_requests']} images, {job['model']}, {job['prompt_version']})")
        click.echo(summary_text(_poll(obj, backend, job), as_json))


def _poll(obj: Context, backend, job: dict):
    from hitl.score.batch import resume_batch

    try:
        return resume_batch(obj.db, backend, job, obj.settings, echo=echo_err)
    except KeyboardInterrupt:
        raise click.ClickException(
            f"stopped waiting; batch {job['name']} goes on at Google. Collect it later with "
            f"`python -m hitl score --resume`, or cancel it with `python -m hitl score --cancel {job['name']}`"
        ) from None


def summary_text(summary, as_json: bool) -> str:
    """A run's summary as a curator reads it (or as JSON)."""
    counts = summary.as_counts()
    if as_json:
        return json.dumps(counts, indent=2, sort_keys=True)
    lines = [f"{summary.model} ({summary.prompt_version}, {summary.mode}): {summary.scored} scored, "
             f"{sum(summary.failed.values())} failed of {summary.targets}"
             + (f"; {summary.skipped_done} already done before" if summary.skipped_done else "")]
    for kind, count in summary.failed.most_common():
        lines.append(f"  failed {count:>6}  {kind}")
    if counts["scores"]:
        s = counts["scores"]
        lines.append(f"Scores: mean {s['mean']:.2f}, median {s['median']:.1f}, sd {s['stdev']:.2f}, "
                     f"range {s['min']:.1f}-{s['max']:.1f}; {summary.heroes} marked hero")
    if summary.tokens_in or summary.tokens_out:
        lines.append(f"Tokens: {summary.tokens_in:,} in, {summary.tokens_out:,} out; cost ${summary.cost_usd:.4f}"
                     + (f" (estimate ${summary.estimate_usd:.4f})" if summary.estimate_usd else ""))
    if counts["images_per_s"]:
        lines.append(f"Speed: {counts['images_per_s']} images/s over {summary.elapsed_s:.1f} s")
    if summary.batch_job:
        lines.append(f"Batch job: {summary.batch_job}")
    if summary.stopped:
        lines.append(f"Stopped: {summary.stopped}")
    return "\n".join(lines)


COMMANDS = [score]
