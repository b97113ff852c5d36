"""`hitl embed`: one image vector per image and model, for the candidates, a folder or a whole collection."""
from __future__ import annotations

import json

import click
import msgspec

from hitl.cli.context import Context, echo_err, json_option
from hitl.config import overridden


@click.command()
@click.option("--model", "model", required=True,
              help="baseline, openai:<model> (an embedding server: vLLM --runner pooling) or onnx:<model.onnx>.")
@click.option("--base-url", "base_urls", multiple=True,
              help="Embedding server, repeatable (default: HITL_OPENAI_BASE_URL, comma-separated).")
@click.option("--concurrency", type=click.IntRange(min=1), help="Calls in flight to a server. [default: 16]")
@click.option("--images", "images_dir", type=click.Path(file_okay=False),
              help="Alone: embed every image of this folder. With --md: the folder its 'file' paths are under.")
@click.option("--md", "md_path", type=click.Path(dir_okay=False),
              help="Embed every eligible image of this MegaDetector file's collection (with --images ROOT), "
                   "read as `select` reads it: same threshold, same people rule; nothing is selected.")
@click.option("--camtrap-dp", "camtrap_dp", type=click.Path(),
              help="Embed every eligible image of this Camtrap DP package (instead of --md).")
@click.option("--media-root", type=click.Path(file_okay=False), help="With --camtrap-dp: as for `select`.")
@click.option("--speciesnet", type=click.Path(dir_okay=False), help="With --md: as for `select` (its people rule).")
@click.option("--retry-failed", is_flag=True, help="Embed again the images whose last try failed, whatever the cause.")
@click.option("--limit", type=click.IntRange(min=1), help="Embed at most this many images now.")
@json_option()
@click.pass_obj
def embed(obj: Context, model, base_urls, concurrency, images_dir, md_path, camtrap_dp, media_root, speciesnet,
          retry_failed, limit, as_json) -> None:
    """Compute one image vector per image with a model and store it (float16, unit length).

    By default the candidates and their burst frames; --images a folder; --md (or --camtrap-dp)
    every eligible image of a collection. Images already embedded by this model are never sent
    again (a rerun continues where a run stopped); 429, 5xx and timeouts are retried with backoff.

    \b
    Examples:
        python -m hitl embed --model baseline
        python -m hitl embed --model openai:openai/clip-vit-large-patch14 --base-url http://gpu1:8000/v1
        python -m hitl embed --model onnx:models/bioclip-2.onnx --md md.json --images photos/
        python -m hitl embed --model baseline --images photos/
    """
    from hitl.embed.backends import make_embedder
    from hitl.embed.runner import run_embed
    from hitl.embed.targets import pending

    collection = bool(md_path or camtrap_dp)
    if md_path and camtrap_dp:
        raise click.UsageError("--md or --camtrap-dp: one collection at a time")
    if collection and not md_path and images_dir:
        raise click.UsageError("--images goes with --md (a Camtrap DP package's paths are relative to its folder)")
    if (media_root and not camtrap_dp) or (speciesnet and not md_path):
        raise click.UsageError("--media-root goes with --camtrap-dp, --speciesnet with --md")
    obj.creates_db = bool(images_dir or collection)  # a folder or a collection can start a database
    settings = obj.settings = msgspec.structs.replace(obj.settings, embed=overridden(obj.settings.embed,
                                                                                      concurrency=concurrency))
    backend = make_embedder(model, settings, list(base_urls) or None)
    backend.probe()
    targets, where = _targets(obj, images_dir, md_path, camtrap_dp, media_root, speciesnet)
    todo, skipped = pending(obj.db, backend.name, targets, retry_failed)
    if limit:
        todo = todo[:limit]
    if not todo:
        click.echo(f"Nothing to embed with {backend.name}: {skipped} of {where} already done"
                   + ("" if retry_failed else "; --retry-failed embeds the failures again"))
        return
    summary = run_embed(obj.db, backend, todo, settings, skipped=skipped)
    click.echo(json.dumps(summary.as_counts(), indent=2, sort_keys=True) if as_json else summary_text(summary, where))
    if not summary.embedded and summary.failed and not summary.stopped:
        kind, count = summary.failed.most_common(1)[0]
        raise click.ClickException(f"every image of this run failed ({count} x {kind}); fix the cause, then rerun "
                                   f"(failures on the way to a server are tried again; --retry-failed for the rest)")


def _targets(obj: Context, images_dir, md_path, camtrap_dp, media_root, speciesnet):
    """The images asked for, and how the summary names them."""
    from hitl.embed.targets import collection_targets, stored_targets

    if md_path or camtrap_dp:
        from hitl.select.eligible import eligible_images

        found = eligible_images(obj.db, obj.settings, md=md_path, images_root=images_dir, camtrap_dp=camtrap_dp,
                                media_root=media_root, speciesnet=speciesnet)
        left_out = sum(found.excluded.values())
        echo_err(f"{found.read:,} images in the collection, {len(found.image_ids):,} eligible"
                 + (f" ({left_out:,} left out: " + ", ".join(f"{n:,} {why}" for why, n in found.excluded.items()) + ")"
                    if left_out else ""))
        for problem in found.problems[:5]:
            echo_err(f"  skipped {problem}")
        return collection_targets(found.root, found.image_ids, found.boxes), "the collection's eligible images"
    if images_dir:
        from hitl.score.targets import register_folder

        image_ids, skipped_files = register_folder(obj.db, images_dir)
        for problem in skipped_files[:10]:
            echo_err(f"Skipped {problem}")
        return stored_targets(obj.db, image_ids, obj.threshold), f"the images of {images_dir}"
    from hitl.store import queries
    from hitl.store.bursts import candidate_frames

    if not queries.candidates(obj.db):
        raise click.ClickException("no candidates yet: run `python -m hitl select` first, embed a folder with "
                                   "--images DIR, or a whole collection with --md FILE --images ROOT")
    ids = candidate_frames(obj.db)
    order = {image_id: k for k, image_id in enumerate(ids)}
    targets = sorted(stored_targets(obj.db, ids, obj.threshold), key=lambda t: order[t.image_id])
    return targets, "the candidates and their burst frames"


def summary_text(summary, where: str) -> str:
    """A run's summary as a curator reads it."""
    counts = summary.as_counts()
    lines = [f"{summary.model} ({summary.mode}): {summary.embedded} embedded, {sum(summary.failed.values())} failed "
             f"of {summary.targets}" + (f"; {summary.skipped_done} already done before" if summary.skipped_done else "")
             + f" ({where})"]
    for kind, count in summary.failed.most_common():
        lines.append(f"  failed {count:>6}  {kind}")
    if summary.dim:
        lines.append(f"Vectors: {summary.dim} dimensions, float16, unit length (table embeddings)")
    if summary.mode == "offline":
        lines.append("The baseline describes how an image looks (layout, edges, colour); it is not a learned "
                     "representation.")
    if counts["images_per_s"]:
        lines.append(f"Speed: {counts['images_per_s']} images/s over {summary.elapsed_s:.1f} s")
    if summary.stopped:
        lines.append(f"Stopped: {summary.stopped}")
    return "\n".join(lines)


COMMANDS = [embed]
