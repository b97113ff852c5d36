"""The command line: one click group, `python -m hitl`. A thin layer over the library."""
from __future__ import annotations

import json
import os
import signal
import sys
from collections import Counter
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


@cli.command()
@click.option("--model", "model", help="baseline, a Gemini model (gemini-2.5-flash) or openai:<model>.")
@click.option("--batch", is_flag=True, help="Use the Gemini Batch API (half price; results in minutes to hours).")
@click.option("--resume", is_flag=True, help="Continue batch jobs a stopped process left: poll and collect.")
@click.option("--job", "job_name", help="With --resume: only this batch job.")
@click.option("--cancel", "cancel_job", metavar="JOB", help="Cancel a batch job (e.g. batches/abc123).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Calls in flight. [default: 8]")
@click.option("--retry-failed", is_flag=True, help="Rerun only the images whose result is a failure.")
@click.option("--max-cost", type=click.FloatRange(min=0), help="Refuse a run whose estimate is above this (USD).")
@click.option("--base-url", "base_urls", multiple=True,
              help="OpenAI-compatible server, repeatable (default: HITL_OPENAI_BASE_URL, comma-separated).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False),
              help="Score every image of this folder instead of the candidates.")
@click.option("--prompt-version", help="Prompt file version (hitl/prompts/<version>.txt). [default: hero-v1]")
@click.option("--limit", type=click.IntRange(min=1), help="Score at most this many images now.")
@click.option("--export", "export_path", type=click.Path(dir_okay=False),
              help="Write this model's scores as a hero-images label JSON file and stop.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def score(obj: Context, model, batch, resume, job_name, cancel_job, concurrency, retry_failed, max_cost, base_urls,
          images_dir, prompt_version, limit, export_path, as_json) -> None:
    """Score candidates with a model: every image once per model and prompt version.

    Finished images are never called again (a rerun continues where a run stopped);
    429, 5xx and timeouts are retried with backoff; an authentication error stops at once.

    \b
    Examples:
        python -m hitl score --model baseline
        GEMINI_API_KEY=... python -m hitl score --model gemini-2.5-flash --max-cost 5
        GEMINI_API_KEY=... python -m hitl score --model gemini-2.5-flash --batch
        python -m hitl score --model gemini-2.5-flash --resume
        python -m hitl score --cancel batches/abc123 --model gemini-2.5-flash
        python -m hitl score --model openai:Qwen/Qwen2.5-VL-7B-Instruct --base-url http://gpu1:8000/v1 \\
            --base-url http://gpu2:8000/v1 --concurrency 32
        python -m hitl score --model baseline --images photos/
        python -m hitl score --model baseline --export baseline_labels.json
    """
    from . import scoring
    from .backends.factory import make_backend

    settings = obj.settings
    cfg = settings["score"]
    if concurrency:
        cfg["concurrency"] = concurrency
    pv = prompt_version or cfg["prompt_version"]
    db = obj.db
    echo = lambda m: click.echo(m, err=True)  # noqa: E731

    if export_path:
        if not model:
            models = [r[0] for r in db.execute("SELECT DISTINCT model FROM scores ORDER BY model")]
            raise click.UsageError(f"--export needs --model (scored so far: {', '.join(models) or 'none'})")
        data = scoring.export_scores(db, model, pv)
        Path(export_path).write_text(json.dumps(data, indent=2), encoding="utf-8")
        info = data["labeling_info"]
        click.echo(f"Wrote {export_path}: {info['total_images']} images, {info['successful']} scored, "
                   f"{info['failed']} failed")
        return

    if cancel_job:
        job = next(iter(scoring.open_batch_jobs(db, name=cancel_job)), None)
        backend = make_backend(model or (job["model"] if job else "gemini-2.5-flash"), settings)
        state = scoring.cancel_batch(db, backend, cancel_job)
        click.echo(f"Batch {cancel_job}: {state}")
        return

    if resume:
        jobs = scoring.open_batch_jobs(db, model=model, name=job_name)
        if not jobs:
            click.echo("No batch job to resume.")
            return
        for job in jobs:
            backend = make_backend(job["model"], settings)
            echo(f"Resuming batch {job['name']} ({job['n_requests']} images, {job['model']}, {job['prompt_version']})")
            summary = _poll_batch(scoring, db, backend, job, settings, echo)
            click.echo(_summary_text(summary, as_json))
        return

    if not model:
        raise click.UsageError("--model is required, e.g. --model baseline")
    backend = make_backend(model, settings, list(base_urls) or None)
    if batch and not hasattr(backend, "submit_batch"):
        raise click.UsageError(f"--batch works with Gemini models, not {model}")
    image_ids = scoring.register_folder(db, images_dir) if images_dir else None
    targets, skipped = scoring.candidate_targets(db, backend.name, pv, retry_failed,
                                                 settings["select"]["threshold"], image_ids)
    if limit:
        targets = targets[:limit]
    if not targets:
        if image_ids is None and not db["candidates"].count:
            raise click.ClickException("no candidates yet: run `python -m hitl select` first, "
                                       "or score a folder with --images DIR")
        click.echo(f"Nothing to score with {backend.name} ({pv}): {skipped} already done"
                   + ("" if retry_failed else "; --retry-failed reruns failures"))
        return
    estimate = scoring.estimate_cost(backend.name, len(targets), settings, batch) if backend.paid else 0.0
    if backend.paid:
        shown = f"${estimate:.4f}" if estimate is not None else "unknown (no price for this model in the config)"
        echo(f"{len(targets)} images to score with {backend.name}{' (batch, discounted)' if batch else ''}; "
             f"estimated cost {shown}")
    if max_cost is not None and (estimate is None or estimate > max_cost):
        raise click.ClickException(
            f"estimated cost {'unknown' if estimate is None else f'${estimate:.4f}'} is above --max-cost "
            f"${max_cost:.4f}; raise the limit, score fewer images (--limit) or use --batch")
    if batch:
        summary = scoring.submit_batch(db, backend, targets, settings, prompt_version=pv, db_path=obj.db_path,
                                       skipped=skipped, estimate=estimate)
        if summary.batch_job is None:
            click.echo(_summary_text(summary, as_json))
            return
        echo(f"Submitted batch {summary.batch_job}: {summary.targets - summary.done} images. Waiting for it; "
             f"Ctrl+C stops waiting (the job goes on): resume with `hitl score --resume`, "
             f"cancel with `hitl score --cancel {summary.batch_job}`")
        job = scoring.open_batch_jobs(db, name=summary.batch_job)[0]
        summary = _poll_batch(scoring, db, backend, job, settings, echo)
    else:
        summary = scoring.run_sync(db, backend, targets, settings, prompt_version=pv, skipped=skipped,
                                   estimate=estimate)
    click.echo(_summary_text(summary, as_json))


def _poll_batch(scoring, db, backend, job, settings, echo):
    try:
        return scoring.resume_batch(db, backend, job, settings, echo=echo)
    except KeyboardInterrupt:
        raise click.ClickException(
            f"stopped waiting; batch {job['name']} goes on at Google. Collect it later with "
            f"`python -m hitl score --resume`, or cancel it with `python -m hitl score --cancel {job['name']}`"
        ) from None


def _summary_text(summary, as_json: bool) -> str:
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


def webhook_url_default(settings) -> str:
    serve = settings["serve"]
    return f"http://{serve['host']}:{serve['port']}/webhooks/label-studio"


@cli.command()
@click.option("--url", help="Label Studio address. [default: studio.url, http://127.0.0.1:8080]")
@click.option("--project", "title", help="Project title: created if missing, reused if it exists.")
@click.option("--mode", type=click.Choice(["assisted", "blind"]), help="Show model opinions or not. [default: assisted]")
@click.option("--prefill", help="Assisted mode: the model whose rating and hero choice are prefilled.")
@click.option("--webhook-url", help="Register this webhook (secret from HITL_WEBHOOK_SECRET).")
@click.option("--document-root", type=click.Path(file_okay=False),
              help="Label Studio's LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT (default: that variable, else the folder "
                   "above the images' root, as `hitl studio` sets it).")
@click.option("--image-url-template", help="Serve images from a web server or bucket, e.g. https://host/photos/{image_id}.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Tasks per import request. [default: 500]")
@click.pass_obj
def push(obj: Context, url, title, mode, prefill, webhook_url, document_root, image_url_template, batch_size) -> None:
    """Push the candidates into Label Studio for review, with every model's opinion.

    Creates or reuses the project by title, makes the images reachable (local-files storage
    or a URL template), imports only images not yet in the project, and registers the
    webhook (or re-enables it). API token from LABEL_STUDIO_API_KEY.

    \b
    Examples:
        LABEL_STUDIO_API_KEY=... python -m hitl push --project "Hero review" --prefill gemini-2.5-flash \\
            --webhook-url http://127.0.0.1:8765/webhooks/label-studio
        python -m hitl push --project "Hero review (blind)" --mode blind
        python -m hitl push --image-url-template "https://example.org/traps/{image_id}"
    """
    from . import labelstudio

    settings = obj.settings
    url = url or settings["studio"]["url"]
    client = labelstudio.connect(url, os.environ.get("LABEL_STUDIO_API_KEY"))
    summary = labelstudio.push(
        obj.db, client, url=url, title=title or settings["push"]["project"], mode=mode or settings["push"]["mode"],
        prefill=prefill, document_root=document_root or os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"),
        url_template=image_url_template, webhook_url=webhook_url, secret=os.environ.get("HITL_WEBHOOK_SECRET"),
        batch_size=batch_size or settings["push"]["batch_size"], threshold=settings["select"]["threshold"],
        echo=lambda m: click.echo(m, err=True))
    click.echo(f"Project {summary.project_id} ({'created' if summary.project_created else 'reused'}, "
               f"{summary.mode}, prefilled: {summary.model_version}): {summary.pushed} tasks pushed, "
               f"{summary.already} already there")
    for reason, count in summary.skipped.most_common():
        click.echo(f"  skipped {count:>5}  {reason}")
    for example in summary.skipped_examples[:5]:
        click.echo(f"    e.g. {example}")
    click.echo(f"Image storage: {summary.storage}; webhook: {summary.webhook}")
    click.echo(f"Open {url.rstrip('/')}/projects/{summary.project_id}/data")


@cli.command()
@click.option("--port", type=int, help="Port. [default: studio.port, 8080]")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Label Studio's data (default: beside the database).")
@click.option("--document-root", type=click.Path(file_okay=False, exists=True),
              help="Folder Label Studio may serve images from (default: the folder above the images' root).")
@click.option("--webhook-url", help="Where the webhook will go; SSRF protection is switched off only if it is loopback. "
                                    "[default: the `serve` address]")
@click.pass_obj
def studio(obj: Context, port, data_dir, document_root, webhook_url) -> None:
    """Start a local Label Studio for this workflow and wait (Ctrl+C stops it).

    Installs Label Studio into .venv-studio on first use (or uses $LABEL_STUDIO_BIN). The
    login is LABEL_STUDIO_USERNAME (an email) and LABEL_STUDIO_PASSWORD, the API token
    LABEL_STUDIO_API_KEY; any not set are generated and printed. The preset user and token
    are created on the first start of a data folder.

    \b
    Example:
        LABEL_STUDIO_API_KEY=$(openssl rand -hex 20) python -m hitl studio --port 8080
    """
    from . import studio as ls

    settings = obj.settings["studio"]
    db_dir = Path(obj.db_path).resolve().parent
    if document_root is None:
        roots = [r[0] for r in obj.db.execute("SELECT DISTINCT root FROM images")]
        # Label Studio serves a storage only from a subfolder of its document root, never the root itself
        document_root = os.path.dirname(os.path.commonpath(roots)) if roots else os.getcwd()
    config = ls.StudioConfig(
        data_dir=Path(data_dir) if data_dir else db_dir / settings["data_dir"],
        document_root=Path(document_root).resolve(),
        username=os.environ.get("LABEL_STUDIO_USERNAME") or settings["username"],
        password=os.environ.get("LABEL_STUDIO_PASSWORD") or ls.new_token()[:16],
        token=os.environ.get("LABEL_STUDIO_API_KEY") or ls.new_token(),
        port=port or settings["port"],
        webhook_url=webhook_url or webhook_url_default(obj.settings),
    )
    echo = lambda m: click.echo(m, err=True)  # noqa: E731
    binary = ls.find_binary(install=True, echo=echo)
    log = config.data_dir / "label-studio.log"
    # a script stopping us with SIGTERM must also stop Label Studio: run the finally below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    process = ls.start(config, binary, log)
    try:
        seconds = ls.wait_until_healthy(config, process, log)
        click.echo(f"Label Studio is up at {config.url} ({seconds:.0f} s); log: {log}")
        click.echo(f"Login: {config.username}  password: {config.password}")
        click.echo(f"API token (first start of {config.data_dir} only): export LABEL_STUDIO_API_KEY={config.token}")
        click.echo(f"Images served from {config.document_root}; SSRF protection "
                   f"{'off (loopback webhook)' if ls.is_loopback_url(config.webhook_url) else 'on'}. Ctrl+C stops.")
        process.wait()
    except KeyboardInterrupt:
        click.echo("Stopping Label Studio", err=True)
    finally:
        ls.stop(process)


@cli.group()
def labelme() -> None:
    """Review in Labelme: one JSON per candidate, read back after curators worked.

    \b
    Example:
        python -m hitl labelme export --out review/
        labelme review/cam_a --flags hero,not_hero,reviewed
        python -m hitl labelme import review/
    """


@labelme.command("export")
@click.option("--out", "out_dir", type=click.Path(file_okay=False),
              help="Folder mirroring the image tree (default: each JSON beside its image).")
@click.option("--mode", type=click.Choice(["assisted", "blind"]), default="assisted", show_default=True)
@click.option("--prefill", help="Assisted mode: the model whose hero decision is pre-ticked.")
@click.option("--overwrite", is_flag=True, help="Replace JSON files that differ (curators' edits are lost).")
@click.pass_obj
def labelme_export(obj: Context, out_dir, mode, prefill, overwrite) -> None:
    """Write one Labelme JSON per candidate: boxes, hero/not_hero flags, model opinions.

    \b
    Example:
        python -m hitl labelme export --out review/ --prefill gemini-2.5-flash
    """
    from .labelme_io import export_labelme

    counts = export_labelme(obj.db, out_dir, mode=mode, prefill_model=prefill,
                            threshold=obj.settings["select"]["threshold"], overwrite=overwrite)
    click.echo(f"Labelme files ({counts['mode']}, prefilled: {counts['prefill_model'] or 'none'}): "
               f"{counts['written']} written, {counts['unchanged']} unchanged, "
               f"{counts['kept_existing']} kept (edited since; --overwrite replaces)")
    for key in ("skipped_missing_image", "skipped_unreadable_image", "skipped_name_clash", "write_failed"):
        if counts.get(key):
            click.echo(f"  {key.replace('_', ' ')}: {counts[key]}")
    for note in counts.get("notes", [])[:5]:
        click.echo(f"  note: {note}")
    where = out_dir or "beside the images"
    click.echo(f"Open them with: labelme <folder of images or JSON files in {where}> --flags hero,not_hero,reviewed")


@labelme.command("import")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@click.pass_obj
def labelme_import(obj: Context, folder) -> None:
    """Read curators' decisions back from a folder of Labelme files into the database.

    A file nobody changed since the export is not a decision; tick "reviewed" to confirm a
    pre-ticked choice. The file's modification time is the edit time.

    \b
    Example:
        python -m hitl labelme import review/
    """
    from .labelme_io import read_labelme_folder
    from .reviews import record_ratings
    from .store import transaction

    ratings, problems = read_labelme_folder(folder)
    with transaction(obj.db):
        counts = record_ratings(obj.db, ratings, via="labelme")
    click.echo(f"{len(ratings)} decisions read: {counts['new']} new, {counts['updated']} updated, "
               f"{counts['unchanged']} unchanged, {counts['older']} older than stored")
    reasons = Counter(p.reason for p in problems)
    for reason, count in reasons.most_common():
        click.echo(f"  {count:>5}  {reason}")
    for problem in [p for p in problems if p.reason != "not reviewed yet"][:5]:
        click.echo(f"    e.g. {problem}")


@cli.command()
@click.option("--host", help="Address to listen on. [default: serve.host, 127.0.0.1]")
@click.option("--port", type=int, help="Port. [default: serve.port, 8765]")
@click.option("--threads", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--insecure", is_flag=True, help="Accept deliveries without a secret (loopback addresses only, for tests).")
@click.pass_obj
def serve(obj: Context, host, port, threads, insecure) -> None:
    """Receive Label Studio's webhook deliveries into the database (waitress, production WSGI).

    POST /webhooks/label-studio with `Authorization: Bearer $HITL_WEBHOOK_SECRET`;
    GET /healthz. Every accepted delivery is stored raw before it is applied.

    \b
    Example:
        HITL_WEBHOOK_SECRET=... python -m hitl serve --port 8765
    """
    import waitress

    from .studio import is_loopback_url
    from .webhook import create_app

    host = host or obj.settings["serve"]["host"]
    port = port or obj.settings["serve"]["port"]
    secret = os.environ.get("HITL_WEBHOOK_SECRET")
    if not secret and not insecure:
        raise click.ClickException("set HITL_WEBHOOK_SECRET (the secret `hitl push` registers with the webhook), "
                                   "or pass --insecure for a loopback-only test")
    if insecure and not secret and not is_loopback_url(f"http://{host}"):
        raise click.ClickException(f"--insecure is for loopback addresses only, not {host}")
    from .studio import port_is_free

    if not port_is_free(host, port):
        raise click.ClickException(f"port {port} on {host} is taken; choose another with --port")
    app = create_app({"DATABASE": str(Path(obj.db_path).resolve()), "WEBHOOK_SECRET": secret, "INSECURE": insecure})
    click.echo(f"Webhook service on http://{host}:{port}/webhooks/label-studio (health: /healthz), "
               f"database {obj.db_path}. Ctrl+C stops.", err=True)
    waitress.serve(app, host=host, port=port, threads=threads, ident="hero-hitl", _quiet=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="A JSON list of objects.")
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted ratings.")
@click.pass_obj
def ratings(obj: Context, as_json, include_deleted) -> None:
    """List the curators' ratings (every curator's, every image).

    \b
    Example:
        python -m hitl ratings --json > ratings.json
    """
    sql = ("SELECT source, project, annotation_id, task_id, image_id, annotator_id, annotator_email, stars, hero, "
           "comment, boxes, lead_time, skipped, deleted, mode, created_at, updated_at, via FROM ratings "
           + ("" if include_deleted else "WHERE deleted = 0 ") + "ORDER BY image_id, updated_at")
    rows = []
    for r in obj.db.query(sql):
        r = dict(r)
        r["annotator"] = r["annotator_email"] or r["annotator_id"]
        r["hero"] = None if r["hero"] is None else bool(r["hero"])
        r["skipped"], r["deleted"] = bool(r["skipped"]), bool(r["deleted"])
        r["boxes"] = json.loads(r["boxes"] or "[]")
        rows.append(r)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No ratings yet.")
        return
    for r in rows:
        decision = "skipped" if r["skipped"] else (
            f"{r['stars'] or '-'}★ {'hero' if r['hero'] else 'not hero' if r['hero'] is False else 'undecided'}")
        click.echo(f"{r['image_id'] or '?':40} {decision:18} {r['annotator'] or '?':24} {r['mode'] or '':9} "
                   f"{r['updated_at'] or ''}{'  (deleted)' if r['deleted'] else ''}")


@cli.command()
@click.pass_obj
def replay(obj: Context) -> None:
    """Reprocess the webhook deliveries whose processing failed (they are stored raw).

    \b
    Example:
        python -m hitl replay
    """
    from .events import replay_failed

    counts = replay_failed(obj.db)
    click.echo(f"Replayed {sum(counts.values())} events: " + (", ".join(f"{v} {k}" for k, v in counts.items()) or "none"))


@cli.command()
@click.option("--url", help="Label Studio address. [default: studio.url]")
@click.option("--project", "titles", multiple=True, help="Project title (repeatable). [default: every pushed project]")
@click.option("--from-export", "export_file", type=click.Path(exists=True, dir_okay=False),
              help="Reconcile from a Label Studio JSON export file instead of the API.")
@click.option("--project-id", type=int, help="With --from-export: the project it came from (else read from the tasks).")
@click.option("--labelme", "labelme_dir", type=click.Path(exists=True, file_okay=False),
              help="Reconcile from a Labelme folder.")
@click.pass_obj
def sync(obj: Context, url, titles, export_file, project_id, labelme_dir) -> None:
    """Reconcile the ratings with Label Studio (or an export, or a Labelme folder).

    Every annotation is upserted, annotations no longer there are marked deleted, and a
    webhook Label Studio disabled is switched back on. Safe while `serve` is receiving.

    \b
    Examples:
        LABEL_STUDIO_API_KEY=... python -m hitl sync
        python -m hitl sync --from-export project-1-at-2026-11-21.json
        python -m hitl sync --labelme review/
    """
    from . import sync as reconcile

    db = obj.db

    def report(name: str, counts: Counter, extra: str = "") -> None:
        click.echo(f"{name}: {counts['new']} new, {counts['updated']} updated, {counts['deleted']} deleted, "
                   f"{counts['unchanged']} unchanged" + (f"; {extra}" if extra else ""))

    if labelme_dir:
        counts, problems = reconcile.sync_labelme(db, labelme_dir)
        report(f"Labelme {labelme_dir}", counts, f"{len(problems)} notes on files" if problems else "")
        return
    if export_file:
        tasks = reconcile.read_export_file(export_file)
        pid = project_id or next((t.get("project") for t in tasks if isinstance(t, dict) and t.get("project")), None)
        if pid is None:
            raise click.UsageError("the export does not say its project; pass --project-id")
        # the file is a snapshot taken when it was written: nothing that arrived later is marked deleted
        started = _mtime_iso(export_file)
        report(f"Export {export_file} (project {pid})", reconcile.reconcile_tasks(db, tasks, str(pid), started))
        return
    from .labelstudio import connect

    url = url or obj.settings["studio"]["url"]
    token = os.environ.get("LABEL_STUDIO_API_KEY")
    client = connect(url, token)
    projects = [dict(r) for r in db.query("SELECT id, title FROM ls_projects ORDER BY id")]
    if titles:
        projects = [p for p in projects if p["title"] in titles]
        missing = set(titles) - {p["title"] for p in projects}
        for title in missing:
            found = [p for p in client.projects.list(title=title) if p.title == title]
            if not found:
                raise click.ClickException(f"no project titled {title!r} at {url}")
            projects.append({"id": found[0].id, "title": title})
    if not projects:
        raise click.ClickException("no Label Studio project pushed from this database; pass --project TITLE")
    for project in projects:
        counts, webhook = reconcile.sync_project(db, client, url, token, project["id"])
        report(f"Project {project['id']} ({project['title']})", counts, f"webhook: {webhook}")


def _mtime_iso(path: str) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(Path(path).stat().st_mtime, timezone.utc).isoformat(timespec="milliseconds")


@cli.command()
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
    from .report import build_report

    paths = build_report(obj.db, out_dir, hero_threshold=hero_threshold, resamples=resamples, seed=seed, top=top,
                         echo=lambda m: click.echo(m, err=True))
    data = json.loads(paths["json"].read_text())
    for sentence in data.get("readings", [])[:8]:
        click.echo(f"- {sentence}")
    click.echo(f"Wrote {paths['html']}, {paths['json'].name} and {paths['csv'].name}")


@cli.command("export")
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
    from .heroset import export_heroset

    counts = export_heroset(obj.db, out_dir, policy=policy, min_stars=min_stars, link=link, layout=layout,
                            threshold=obj.settings["select"]["threshold"])
    click.echo(f"Hero set ({policy}{f', mean stars >= {min_stars}' if min_stars else ''}): {counts['heroes']} heroes; "
               f"{counts['exported']} exported, {counts['unchanged']} unchanged, {len(counts['conflicts'])} conflicts, "
               f"{counts['missing_files']} missing files")
    for path in counts["conflicts"][:5]:
        click.echo(f"  conflict (left untouched): {path}")
    for note in counts.get("notes", [])[:5]:
        click.echo(f"  note: {note}")
    click.echo(f"Wrote {Path(out_dir) / 'manifest.csv'}, manifest.json and index.html")


@cli.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--model", "models", multiple=True, help="Only these models (repeatable). [default: all]")
@click.pass_obj
def gallery(obj: Context, out_dir, models) -> None:
    """HTML gallery of the models' scores before review, sortable and filterable by species.

    \b
    Example:
        python -m hitl gallery --out gallery/
    """
    from .gallery import build_gallery

    path = build_gallery(obj.db, out_dir, models=list(models) or None, threshold=obj.settings["select"]["threshold"])
    click.echo(f"Wrote {path}")


@cli.command()
@click.option("-n", "n", type=click.IntRange(min=1), default=50, show_default=True, help="How many images.")
@click.option("--url", help="Label Studio address. [default: studio.url]")
@click.option("--project", "title", help="Adjudication project title. [default: '<push.project> (adjudication)']")
@click.option("--webhook-url", help="Register the webhook for it too.")
@click.pass_obj
def queue(obj: Context, n, url, title, webhook_url) -> None:
    """Send the top N disagreements to a blind adjudication project for a second curator.

    \b
    Example:
        python -m hitl queue -n 40 --webhook-url http://127.0.0.1:8765/webhooks/label-studio
    """
    from . import labelstudio
    from .disagreements import rank_disagreements
    from .reviews import long_table

    ranked = [r for r in rank_disagreements(long_table(obj.db)) if r["reason"] != "agree"][:n]
    if not ranked:
        raise click.ClickException("no disagreements yet: score with two models or collect curator ratings first")
    settings = obj.settings
    url = url or settings["studio"]["url"]
    client = labelstudio.connect(url, os.environ.get("LABEL_STUDIO_API_KEY"))
    summary = labelstudio.push(
        obj.db, client, url=url, title=title or f"{settings['push']['project']} (adjudication)", mode="blind",
        document_root=os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT"), webhook_url=webhook_url,
        secret=os.environ.get("HITL_WEBHOOK_SECRET"), threshold=settings["select"]["threshold"],
        image_ids=[r["image_id"] for r in ranked])
    click.echo(f"Adjudication project {summary.project_id} (blind): {summary.pushed} queued, {summary.already} already "
               f"there; the first: {ranked[0]['image_id']} ({ranked[0]['reason']})")
    for reason, count in summary.skipped.most_common():
        click.echo(f"  skipped {count:>5}  {reason}")
