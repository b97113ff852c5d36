"""The review and ingest commands: `studio`, `push`, `labelme`, `serve`, `sync`, `ratings`,
`replay` and `queue` (the disagreements to a blind adjudication project)."""
from __future__ import annotations

import json
import os
from collections import Counter
from datetime import timezone
from pathlib import Path

import click

from hitl.cli.context import (
    Context,
    echo_err,
    echo_skipped,
    json_option,
    printable,
    studio_client,
    studio_options,
    url_option,
)


@click.command()
@studio_options("Project title: created if missing, reused if it exists. [default: push.project]")
@click.option("--mode", type=click.Choice(["assisted", "blind"]), help="Show model opinions or not. [default: assisted]")
@click.option("--prefill", help="Assisted mode: the model whose rating and hero choice are prefilled.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Tasks per import request. [default: 500]")
@click.option("--bursts", is_flag=True,
              help="One task per candidate with the frames of its burst (kept by `select --frames-per-burst`): "
                   "the curator picks the best frame and rates it. Use a project of its own.")
@click.pass_obj
def push(obj: Context, studio, mode, prefill, batch_size, bursts) -> None:
    """Push the candidates into Label Studio for review, with every model's opinion.

    Creates or reuses the project by title, makes the images reachable (local-files storage
    or a URL template), imports only images not yet in the project, and registers the
    webhook (or re-enables it): --webhook-url, else the `serve` address when HITL_WEBHOOK_SECRET
    is set. API token from LABEL_STUDIO_API_KEY.

    \b
    Examples:
        LABEL_STUDIO_API_KEY=... python -m hitl push --project "Hero review" --prefill gemini-2.5-flash \\
            --webhook-url http://127.0.0.1:8765/webhooks/label-studio
        python -m hitl push --project "Hero review (blind)" --mode blind
        python -m hitl push --image-url-template "https://example.org/traps/{image_id}"
        python -m hitl push --bursts --project "Best frame of each burst"
    """
    from hitl.review import push as review

    settings = obj.settings
    summary = review.push(
        obj.db, studio.client(), **studio.push_arguments(),
        title=studio.title or settings.push.project + (" (bursts)" if bursts else ""),
        mode=mode or settings.push.mode, prefill=prefill, batch_size=batch_size or settings.push.batch_size,
        threshold=obj.threshold, echo=echo_err, with_bursts=bursts, settings=settings)
    click.echo(f"Project {summary.project_id} ({'created' if summary.project_created else 'reused'}, "
               f"{summary.mode}, prefilled: {summary.model_version}): {summary.pushed} tasks pushed, "
               f"{summary.already} already there")
    echo_skipped(summary)
    click.echo(f"Image storage: {summary.storage}; webhook: {summary.webhook}")
    click.echo(f"Open {studio.url.rstrip('/')}/projects/{summary.project_id}/data")


@click.command()
@click.option("--port", type=int, help="Port. [default: studio.port, 8080]")
@click.option("--data-dir", type=click.Path(file_okay=False), help="Label Studio's data (default: beside the database).")
@click.option("--document-root", type=click.Path(file_okay=False, exists=True),
              help="Folder Label Studio may serve images from (default: the folder above the images' root).")
@click.option("--webhook-url", help="Where the webhook will go; SSRF protection is switched off only if it is loopback. "
                                    "[default: the `serve` address]")
@click.pass_obj
def studio(obj: Context, port, data_dir, document_root, webhook_url) -> None:
    """Start a local Label Studio for this workflow and wait (Ctrl+C stops it).

    Installs Label Studio into .venv-studio (in $HITL_HOME, default the working directory) on
    first use, or uses $LABEL_STUDIO_BIN. The login is LABEL_STUDIO_USERNAME (an email) and
    LABEL_STUDIO_PASSWORD, the API token LABEL_STUDIO_API_KEY; any not set are generated and
    printed. The preset user and token are created on the first start of a data folder.

    \b
    Example:
        LABEL_STUDIO_API_KEY=$(openssl rand -hex 20) python -m hitl studio --port 8080
    """
    from converters.labelstudio import default_document_root
    from hitl.errors import HitlError
    from hitl.process import stopped_on_exit
    from hitl.review import studio as ls
    from hitl.store import queries

    obj.creates_db = True
    settings = obj.settings.studio
    given_password, given_token = os.environ.get("LABEL_STUDIO_PASSWORD"), os.environ.get("LABEL_STUDIO_API_KEY")
    if document_root is None:
        roots = sorted(set(queries.image_roots(obj.db).values()))
        document_root = default_document_root(roots) if roots else os.getcwd()
    config = ls.StudioConfig(
        data_dir=Path(data_dir) if data_dir else Path(obj.db_path).resolve().parent / settings.data_dir,
        document_root=Path(document_root).resolve(),
        username=os.environ.get("LABEL_STUDIO_USERNAME") or settings.username,
        password=given_password or ls.new_token()[:16],
        token=given_token or ls.new_token(),
        port=port or settings.port,
        webhook_url=webhook_url or obj.webhook_url_default(),
    )
    log = config.data_dir / "label-studio.log"
    # Stop signals are heard from before the install, which would otherwise be cut off with pip left
    # writing .venv-studio (it stops its pip itself, run_to_end); Label Studio is stopped on the way out.
    with stopped_on_exit("Label Studio", echo_err) as started:
        binary = ls.find_binary(install=True, echo=echo_err)
        process = ls.start(config, binary, log)
        started.append(process)
        seconds = ls.wait_until_healthy(config, process, log)
        click.echo(f"Label Studio is up at {config.url} ({seconds:.0f} s); log: {log}")
        # only what was made up here is shown: a secret the user set stays where they put it
        click.echo(f"Login: {config.username}  password: "
                   + ("(LABEL_STUDIO_PASSWORD)" if given_password else config.password))
        if not given_token:
            click.echo(f"API token (first start of {config.data_dir} only): export LABEL_STUDIO_API_KEY={config.token}")
        else:
            click.echo("API token: LABEL_STUDIO_API_KEY (as set)")
        click.echo(f"Images served from {config.document_root}; SSRF protection "
                   f"{'off (loopback webhook)' if ls.is_loopback_url(config.webhook_url) else 'on'}. Ctrl+C stops.")
        code = process.wait()
        raise HitlError(f"Label Studio stopped by itself (exit code {code}); see its log {log}")


@click.group()
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
@click.option("--bursts", is_flag=True, help="One JSON per frame of each candidate's burst (`select --frames-per-burst`), "
                                             "with a best_frame flag ticked on the candidate's: tick it on the frame "
                                             "you pick instead. Use a folder of its own (--out).")
@click.pass_obj
def labelme_export(obj: Context, out_dir, mode, prefill, overwrite, bursts) -> None:
    """Write one Labelme JSON per candidate: boxes, hero/not_hero flags, model opinions.

    \b
    Example:
        python -m hitl labelme export --out review/ --prefill gemini-2.5-flash
        python -m hitl labelme export --bursts --out bursts/
        labelme bursts/ --flags hero,not_hero,reviewed,best_frame
    """
    from hitl.review.labelme import export_labelme

    counts = export_labelme(obj.db, out_dir, mode=mode, prefill_model=prefill, threshold=obj.threshold,
                            overwrite=overwrite, with_bursts=bursts, settings=obj.settings)
    if bursts:
        click.echo(f"Bursts: {counts['burst_frames']} frame files for {counts['candidates']} candidates")
        for reason, count in counts["left_out"].items():
            click.echo(f"  left out {count:>5}  {reason}")
    click.echo(f"Labelme files ({counts['mode']}, prefilled: {counts['prefill_model'] or 'none'}): "
               f"{counts['written']} written, {counts['unchanged']} unchanged, "
               f"{counts['kept_existing']} kept (edited since; --overwrite replaces)")
    for key in ("skipped_missing_image", "skipped_unreadable_image", "skipped_name_clash", "skipped_link",
                "write_failed"):
        if counts.get(key):
            click.echo(f"  {key.replace('_', ' ')}: {counts[key]}")
    for note in counts.get("notes", [])[:5]:
        click.echo(f"  note: {note}")
    where = out_dir or "beside the images"
    flags = "hero,not_hero,reviewed" + (",best_frame" if bursts else "")
    click.echo(f"Open them with: labelme <folder of images or JSON files in {where}> --flags {flags}")


# `labelme import` and `sync --labelme` read a folder the same way, curator included
curator_option = click.option("--curator", help="Who made the Labelme folder's decisions (a name or an email). "
                                                "[default: the folder's name]")


@labelme.command("import")
@click.argument("folder", type=click.Path(file_okay=False, exists=True))
@curator_option
@click.pass_obj
def labelme_import(obj: Context, folder, curator) -> None:
    """Read curators' decisions back from a folder of Labelme files into the database.

    A file nobody changed since the export is not a decision; tick "reviewed" to confirm a
    pre-ticked choice. The file's modification time is the edit time.

    \b
    Example:
        python -m hitl labelme import review/
    """
    from hitl.review.labelme import record_labelme_folder

    obj.creates_db = True
    ratings, problems, counts = record_labelme_folder(obj.db, folder, curator)
    click.echo(f"{len(ratings)} decisions read: {counts['new']} new, {counts['updated']} updated, "
               f"{counts['unchanged']} unchanged, {counts['older']} older than stored")
    reasons = Counter(p.reason for p in problems)
    for reason, count in reasons.most_common():
        click.echo(f"  {count:>5}  {reason}")
    for problem in [p for p in problems if p.reason != "not reviewed yet"][:5]:
        click.echo(printable(f"    e.g. {problem}"))


@click.command()
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
    from hitl.review.server import serve as serve_http
    from hitl.review.studio import is_loopback_host, port_is_free
    from hitl.review.webhook import DEFAULT_MAX_BYTES, check_secret, create_app

    host = host or obj.settings.serve.host
    port = port or obj.settings.serve.port
    secret = os.environ.get("HITL_WEBHOOK_SECRET")
    if not secret and not insecure:
        raise click.ClickException("set HITL_WEBHOOK_SECRET (the secret `hitl push` registers with the webhook), "
                                   "or pass --insecure for a loopback-only test")
    if not secret and not is_loopback_host(host):
        raise click.ClickException(f"--insecure is for loopback addresses only, not {host}")
    if secret:
        check_secret(secret, loopback=is_loopback_host(host))
    if not port_is_free(host, port):
        raise click.ClickException(f"port {port} on {host} is taken; choose another with --port")
    app = create_app({"DATABASE": str(Path(obj.db_path).resolve()), "WEBHOOK_SECRET": secret, "INSECURE": insecure})
    echo_err(f"Webhook service on http://{host}:{port}/webhooks/label-studio (health: /healthz), "
             f"database {obj.db_path}. Ctrl+C stops.")
    # Limits before the app sees a byte: a POST without the secret is refused from its headers, a
    # body past 10 MB while it is read (not buffered to /tmp first), headers must be in within 5 s
    # and a connection that sends nothing for 10 s is dropped; at the connection limit the slowest
    # give way, so a crowd of slow connections cannot lock Label Studio out.
    with app:  # once the server has stopped: the writer writes what it was given, threads end, connections close
        serve_http(app, host=host.strip("[]"), port=port, threads=threads, secret=secret, ident="hero-hitl",
                   max_request_body_size=DEFAULT_MAX_BYTES, channel_timeout=10, cleanup_interval=1,
                   max_request_header_size=64 * 1024)


@click.command()
@json_option("A JSON list of objects.")
@click.option("--all", "include_deleted", is_flag=True, help="Include deleted ratings.")
@click.option("--import", "sheet", type=click.Path(exists=True, dir_okay=False),
              help="Store the decisions of a CSV sheet (image_id, curator, stars, hero[, mode, comment, updated_at]).")
@click.pass_obj
def ratings(obj: Context, as_json, include_deleted, sheet) -> None:
    """List the curators' ratings (every curator's, every image), or import a sheet of decisions.

    \b
    Examples:
        python -m hitl ratings --json > ratings.json
        python -m hitl ratings --import decisions.csv
    """
    from hitl.store.ratings import list_ratings

    if sheet:
        obj.creates_db = True
        return _import_sheet(obj, sheet)
    rows = list_ratings(obj.db, include_deleted)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No ratings yet.")
        return
    click.echo(f"{'image':40} {'decision':18} {'curator':24} {'mode':9} {'source':22} updated")
    for r in rows:
        decision = "skipped" if r["skipped"] else (
            f"{r['stars'] or '-'}★ {'hero' if r['hero'] else 'not hero' if r['hero'] is False else 'undecided'}")
        source = (f"Label Studio {r['project']}" if r["source"] == "labelstudio" else "sheet" if r["source"] == "sheet"
                  else f"{r['source']} {Path(r['project']).name}")
        click.echo(printable(f"{r['image_id'] or '?':40} {decision:18} {r['curator']:24} {r['mode'] or '':9} "
                             f"{source:22} {r['updated_at'] or ''}{'  (deleted)' if r['deleted'] else ''}"))


def _import_sheet(obj: Context, path: str) -> None:
    """Decisions made outside Label Studio and Labelme, through the same validator as every path."""
    from hitl.review.sheet import import_sheet

    stored, result = import_sheet(obj.db, path)
    counts = result.counts
    click.echo(printable(f"{path}: {stored} decisions: {counts['new']} new, {counts['updated']} updated, "
                         f"{counts['unchanged']} unchanged, {counts['older']} older than stored"))
    for reason, count in result.problems.most_common():
        click.echo(printable(f"  skipped {count:>5}  {reason}"))
    for example in result.examples[:5]:
        click.echo(printable(f"    e.g. {example}"))


@click.command()
@click.pass_obj
def replay(obj: Context) -> None:
    """Reprocess the webhook deliveries whose processing failed (they are stored raw).

    \b
    Example:
        python -m hitl replay
    """
    from hitl.review.events import replay_failed

    counts = replay_failed(obj.db)
    click.echo(f"Replayed {sum(counts.values())} events: " + (", ".join(f"{v} {k}" for k, v in counts.items()) or "none"))


@click.command()
@url_option("studio.url")
@click.option("--project", "titles", multiple=True, help="Project title (repeatable). [default: every pushed project]")
@click.option("--from-export", "export_file", type=click.Path(exists=True, dir_okay=False),
              help="Reconcile from a Label Studio JSON export file instead of the API.")
@click.option("--project-id", type=int, help="With --from-export: the project it came from (must agree with the tasks).")
@click.option("--taken-at", type=click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
              help="With --from-export: when the export was taken (default: the newest time written in it; "
                   "times without a zone are UTC).")
@click.option("--labelme", "labelme_dir", type=click.Path(exists=True, file_okay=False),
              help="Reconcile from a Labelme folder.")
@curator_option
@click.pass_obj
def sync(obj: Context, url, titles, export_file, project_id, taken_at, labelme_dir, curator) -> None:
    """Reconcile the ratings with Label Studio (or an export, or a Labelme folder).

    Every decision is checked and upserted; annotations the export proves gone (older than
    it, of tasks it holds, missing from it) are marked deleted until a later sync sees them
    again; a task is deleted only when Label Studio answers 404 for it. A webhook Label
    Studio disabled is switched back on. Safe while `serve` is receiving.

    \b
    Examples:
        LABEL_STUDIO_API_KEY=... python -m hitl sync
        python -m hitl sync --from-export project-1-at-2026-11-21.json
        python -m hitl sync --labelme review/ --curator ana@example.org
    """
    from hitl.review import reconcile

    if curator and not labelme_dir:
        raise click.UsageError("--curator names who made a Labelme folder's decisions: use it with --labelme")
    obj.creates_db = True
    db = obj.db
    if labelme_dir:
        _sync_line(f"Labelme {labelme_dir}", reconcile.sync_labelme(db, labelme_dir, curator))
        return
    if export_file:
        when = taken_at if taken_at is None or taken_at.tzinfo else taken_at.replace(tzinfo=timezone.utc)
        pid, result = reconcile.sync_export_file(db, export_file, project_id, when)
        _sync_line(f"Export {export_file} (project {pid})", result)
        return
    url = obj.studio_url(url)
    client = studio_client(url)
    for project in reconcile.projects_to_sync(db, client, url, list(titles)):
        result = reconcile.sync_project(db, client, project["id"])
        _sync_line(f"Project {project['id']} ({project['title']})", result, f"webhook: {result.webhook}")


def _sync_line(name: str, result, extra: str = "") -> None:
    counts = result.counts
    click.echo(f"{name}: {counts['new']} new, {counts['updated']} updated, {counts['deleted']} deleted, "
               f"{counts['unchanged']} unchanged" + (f", {counts['restored']} restored" if counts["restored"] else "")
               + (f", {counts['kept deleted']} kept deleted (a newer source found them gone)"
                  if counts["kept deleted"] else "") + (f"; {extra}" if extra else ""))
    for reason, count in result.problems.most_common():
        click.echo(printable(f"  skipped {count:>5}  {reason}"))
    for example in result.examples[:5]:
        click.echo(printable(f"    e.g. {example}"))


@click.command()
@click.option("-n", "n", type=click.IntRange(min=1), default=50, show_default=True, help="How many images.")
@studio_options("Adjudication project title. [default: '<the last project pushed> (adjudication)']")
@click.pass_obj
def queue(obj: Context, n, studio) -> None:
    """Send the top N disagreements to a blind adjudication project for a second curator.

    \b
    Example:
        python -m hitl queue -n 40 --webhook-url http://127.0.0.1:8765/webhooks/label-studio
        python -m hitl queue -n 40 --image-url-template "https://example.org/traps/{image_id}"
    """
    from hitl.analyse.disagreements import rank_disagreements
    from hitl.review import push as review
    from hitl.store import queries
    from hitl.store.ratings import long_table

    ranked = [r for r in rank_disagreements(long_table(obj.db)) if r["reason"] != "agree"][:n]
    if not ranked:
        raise click.ClickException("no disagreements yet: score with two models or collect curator ratings first")
    summary = review.push(
        obj.db, studio.client(), **studio.push_arguments(),
        title=studio.title or f"{queries.last_review_title(obj.db) or obj.settings.push.project} (adjudication)",
        mode="blind", threshold=obj.threshold, image_ids=[r["image_id"] for r in ranked])
    click.echo(f"Adjudication project {summary.project_id} (blind): {summary.pushed} queued, {summary.already} already "
               f"there; the first: {ranked[0]['image_id']} ({ranked[0]['reason']})")
    echo_skipped(summary)


COMMANDS = [studio, push, labelme, serve, sync, ratings, replay, queue]
