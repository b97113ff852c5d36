"""The schema as small named migrations, applied once each, in order, and recorded in ``_migrations``.

A migration's function name is its identity: never rename or edit one that has shipped; add
the next one instead.
"""
from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]
MIGRATIONS: list[tuple[str, Migration]] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration; its name is its identity, so never rename one."""
    MIGRATIONS.append((fn.__name__, fn))
    return fn


@migration
def m001_selection(db: sqlite_utils.Database) -> None:
    """Selection runs, the selected images, their detections and the candidates."""
    db["selection_runs"].create(
        {
            "id": int,
            "started_at": str,
            "finished_at": str,
            "status": str,  # running, finished, failed
            "md_path": str,
            "speciesnet_path": str,
            "cct_path": str,
            "images_root": str,
            "n_requested": int,
            "n_selected": int,
            "parameters": str,  # JSON
            "counts": str,  # JSON: read, eligible, failed/excluded/problems by reason
        },
        pk="id",
    )
    db["images"].create(
        {
            "image_id": str,  # POSIX path relative to the collection root, as MegaDetector's `file`
            "root": str,  # absolute collection root the image_id is relative to
            "width": int,  # upright (EXIF-rotated) size in pixels, when known
            "height": int,
            "datetime": str,  # ISO 8601 capture time, when known
            "location": str,
            "seq_id": str,
            "frame_num": int,
            "seq_num_frames": int,
            "species": str,  # readable name of the image's main species
            "species_score": float,
            "species_source": str,  # speciesnet, megadetector-classifier, none
            "night": int,
            "updated_at": str,
        },
        pk="image_id",
    )
    db["detections"].create(
        {
            "image_id": str,
            "det_index": int,  # position in the detector file, so boxes can be matched later
            "kind": str,  # animal, person, vehicle, other
            "category": str,  # the detector's category id
            "conf": float,
            "x": float,  # MegaDetector box: normalised [x_min, y_min, width, height], upright image
            "y": float,
            "w": float,
            "h": float,
            "species": str,
            "species_conf": float,
        },
        pk=("image_id", "det_index"),
        foreign_keys=[("image_id", "images", "image_id")],
    )
    db["candidates"].create(
        {
            "image_id": str,
            "run_id": int,
            "rank": int,
            "category": str,
            "score": float,
            "reason": str,
        },
        pk="image_id",
        foreign_keys=[("image_id", "images", "image_id"), ("run_id", "selection_runs", "id")],
    )
    db["candidates"].create_index(["run_id"])


@migration
def m002_scoring(db: sqlite_utils.Database) -> None:
    """Model scores keyed by (image_id, model, prompt_version), scoring runs and Gemini batch jobs."""
    db["score_runs"].create(
        {
            "id": int,
            "model": str,
            "prompt_version": str,
            "mode": str,  # sync, batch, offline
            "started_at": str,
            "finished_at": str,
            "status": str,  # running, finished, stopped, failed
            "n_targets": int,
            "estimate_usd": float,
            "parameters": str,  # JSON
            "counts": str,  # JSON summary
        },
        pk="id",
    )
    db["scores"].create(
        {
            "image_id": str,
            "model": str,
            "prompt_version": str,
            "status": str,  # ok or failed
            "score": float,
            "hero": int,
            "reasoning": str,
            "tags": str,  # JSON list
            "raw_response": str,  # kept whatever happened, so a parse failure can be read
            "latency_ms": float,
            "tokens_in": int,
            "tokens_out": int,
            "cost_usd": float,
            "error": str,
            "error_kind": str,  # short and countable: parse: ..., http 500, timeout, prepare: ...
            "attempts": int,
            "run_id": int,
            "batch_job": str,
            "created_at": str,
            "updated_at": str,
        },
        pk=("image_id", "model", "prompt_version"),
    )
    db["scores"].create_index(["model", "prompt_version", "status"])
    db["batch_jobs"].create(
        {
            "name": str,  # the provider's job name, e.g. batches/abc123
            "model": str,
            "prompt_version": str,
            "state": str,
            "input_file": str,
            "output_file": str,
            "n_requests": int,
            "run_id": int,
            "created_at": str,
            "updated_at": str,
            "collected_at": str,
            "error": str,
        },
        pk="name",
    )
    db["batch_items"].create({"job_name": str, "key": str, "image_id": str}, pk=("job_name", "key"))
    db["batch_items"].create_index(["image_id"])


@migration
def m003_review(db: sqlite_utils.Database) -> None:
    """Label Studio projects and tasks we pushed, and every human rating with its history."""
    db["ls_projects"].create(
        {"id": int, "url": str, "title": str, "mode": str, "model_version": str, "images_root": str,
         "created_at": str, "updated_at": str},
        pk="id",
    )
    db["ls_tasks"].create({"project_id": int, "task_id": int, "image_id": str, "pushed_at": str, "deleted_at": str},
                          pk=("project_id", "task_id"))
    db["ls_tasks"].create_index(["project_id", "image_id"])
    db["ls_tasks"].create_index(["task_id"])
    rating_columns = {
        "source": str,  # labelstudio or labelme
        "project": str,  # Label Studio project id, or the Labelme folder
        "annotation_id": str,
        "task_id": int,
        "image_id": str,
        "annotator_id": str,
        "annotator_email": str,
        "stars": int,  # 1-10, NULL when not given
        "hero": int,  # 1, 0, NULL when undecided
        "comment": str,
        "boxes": str,  # JSON list of {x, y, w, h, label}, normalised on the upright image
        "lead_time": float,
        "skipped": int,
        "deleted": int,
        "mode": str,  # assisted or blind
        "created_at": str,  # as the source reports it
        "updated_at": str,
        "received_at": str,  # when it reached us
        "via": str,  # webhook, sync, export, labelme
    }
    db["ratings"].create(rating_columns, pk=("source", "project", "annotation_id"))
    db["ratings"].create_index(["image_id"])
    # Every version a rating had, so an update or a delete never erases what a curator did.
    db["rating_history"].create({"id": int, **rating_columns, "change": str}, pk="id")
    db["rating_history"].create_index(["source", "project", "annotation_id"])


@migration
def m004_events(db: sqlite_utils.Database) -> None:
    """Every accepted webhook delivery, raw, before it is processed; Label Studio's users."""
    db["events"].create(
        {
            "id": int,
            "received_at": str,
            "action": str,
            "project": str,
            "body": str,  # the raw delivery, so a processing failure loses nothing
            "outcome": str,  # ok, ignored, failed
            "detail": str,
            "processed_at": str,
            "attempts": int,
        },
        pk="id",
    )
    db["events"].create_index(["outcome"])
    db["ls_users"].create({"id": int, "email": str, "updated_at": str}, pk="id")
    db["ls_projects"].add_column("webhook_url", str)


@migration
def m005_deletion_reason(db: sqlite_utils.Database) -> None:
    """Why a rating is deleted: ``event`` (Label Studio said so, for good) or ``absent`` (a sync
    did not find it; it comes back if a later sync sees it again)."""
    for table in ("ratings", "rating_history"):
        db[table].add_column("deleted_because", str)
        db.execute(f"UPDATE [{table}] SET deleted_because = CASE WHEN via IN ('webhook', 'replay') THEN 'event' "
                   f"ELSE 'absent' END WHERE deleted = 1")


@migration
def m006_learning(db: sqlite_utils.Database) -> None:
    """What the learned rater needs: each image's species rarity (known only at selection), and
    every learn run with its figures."""
    db["images"].add_column("rarity", float)  # share of the collection's sequences with the image's species
    db["learn_runs"].create(
        {
            "id": int,
            "version": str,  # the learned rater is stored as model "learned", prompt_version this
            "created_at": str,
            "status": str,  # finished, refused
            "n_decisions": int,
            "n_images": int,
            "parameters": str,  # JSON: seed, strategy of the validation (grouped by sequence or location)
            "features": str,  # JSON list of names
            "figures": str,  # JSON: the learned rater's and each single model's out-of-fold figures
            "curve": str,  # JSON learning curve
            "importance": str,  # JSON: permutation importance, and the sentence it says
        },
        pk="id",
    )


@migration
def m007_camtrap_dp(db: sqlite_utils.Database) -> None:
    """Where an image selected from a Camtrap DP package came from, for the export back to it."""
    db["camtrap_media"].create(
        {"image_id": str, "package": str, "media_id": str, "deployment_id": str},  # package: its datapackage.json
        pk="image_id",
    )


@migration
def m008_bursts_and_comparisons(db: sqlite_utils.Database) -> None:
    """Bursts and comparisons. A burst pick is a rating whose ``image_id`` is the frame the curator
    picked and ``burst_of`` the frame the task marked; a comparison is a rating of ``image_id``
    (left) against ``other_image_id`` (right) with a ``preference``. ``burst_members``: the frames
    of each candidate's sequence kept at selection (``selected``: the frame selection chose)."""
    for table in ("ratings", "rating_history"):
        db[table].add_column("burst_of", str)
        db[table].add_column("other_image_id", str)
        db[table].add_column("preference", str)  # left, right or same
    db["burst_members"].create(
        {"seq_id": str, "image_id": str, "position": int, "quality": float, "selected": int, "run_id": int},
        pk=("seq_id", "image_id"),
    )
    db["burst_members"].create_index(["image_id"])
    db["ls_projects"].add_column("kind", str)  # review (one image), burst or pairwise; NULL: review


@migration
def m009_score_inputs(db: sqlite_utils.Database) -> None:
    """What each score was computed from: ``inputs`` is a digest of the image's detection record then
    (``none``: it had none; NULL: not recorded), so a score whose detections changed since is known
    stale. A batch job's images carry theirs from submission to collection."""
    db["scores"].add_column("inputs", str)
    db["batch_items"].add_column("inputs", str)


@migration
def m010_detector_records(db: sqlite_utils.Database) -> None:
    """What each detector file said about every image it names, the unselected ones too: which
    images it has a usable record of (``image_ids``: their ids, NUL-separated and zlib-compressed,
    a few MB for a million images) and which show a person (``detector_people``: the few flagged,
    at or above the run's threshold, with the highest confidence and who said so). One row per
    file and collection root; a later reading of the same file replaces it."""
    db["detector_files"].create(
        {"id": int, "run_id": int, "source": str, "images_root": str, "n_images": int, "image_ids": bytes,
         "recorded_at": str},
        pk="id",
    )
    db["detector_files"].create_index(["source", "images_root"], unique=True)
    db["detector_people"].create(
        {"file_id": int, "image_id": str, "conf": float, "said_by": str},  # said_by: megadetector, speciesnet, camtrap-dp
        pk=("file_id", "image_id"),
    )


SHEETS = "sheets"  # the project of every decision imported from a sheet (see m012_store)


@migration
def m012_store(db: sqlite_utils.Database) -> None:
    """Three records the store needs to refuse what it cannot trust.

    ``ls_tasks.other_image_id``: the right image of a comparison task as `hitl compare` pushed it,
    so an answer naming another pair is refused. ``absent_since``: when the source that proved a
    rating gone (a sync, an export) was taken, so an older source does not bring it back. And a
    sheet's decisions belong to one project, ``sheets``, not to the file's name: the same sheet
    under another name is the same decisions. Decisions already imported under several file names
    become one, the newest (the others go to the history as "merged").
    """
    db["ls_tasks"].add_column("other_image_id", str)
    for table in ("ratings", "rating_history"):
        db[table].add_column("absent_since", str)
    rows = [dict(r) for r in db.query("SELECT rowid AS _rowid, * FROM ratings WHERE source = 'sheet'")]
    newest: dict[str, dict] = {}
    for row in sorted(rows, key=_sheet_row_age):
        newest[row["annotation_id"]] = row
    keep = {row["_rowid"] for row in newest.values()}
    for row in rows:
        if row["_rowid"] in keep:
            continue
        merged = {k: v for k, v in row.items() if k != "_rowid"}
        db["rating_history"].insert({**merged, "change": "merged"})
        db.execute("DELETE FROM ratings WHERE rowid = ?", [row["_rowid"]])
    db.execute("UPDATE ratings SET project = ? WHERE source = 'sheet'", [SHEETS])
    db.execute("UPDATE rating_history SET project = ? WHERE source = 'sheet'", [SHEETS])


def _sheet_row_age(row: dict) -> tuple:
    """Oldest first: by the decision's own time (UTC when it names no zone), then by when it was stored."""
    try:
        when = datetime.fromisoformat(row["updated_at"] or row["created_at"] or "")
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    except (TypeError, ValueError):
        when = datetime.min.replace(tzinfo=timezone.utc)
    return when, row["received_at"] or "", row["_rowid"]


@migration
def m013_embeddings(db: sqlite_utils.Database) -> None:
    """One image vector per image and model (`hitl embed`): float16, little-endian, unit length, with
    its dimension; the image's root too, since a whole collection's images are not all in ``images``.
    A failure is a row without a vector, with its reason. ``embed_runs``: every run and its counts."""
    db["embeddings"].create(
        {"image_id": str, "model": str, "root": str, "dim": int, "vector": bytes, "status": str, "error": str,
         "error_kind": str, "attempts": int, "latency_ms": float, "run_id": int, "created_at": str},
        pk=("image_id", "model"),
    )
    db["embeddings"].create_index(["model", "status"])
    db["embed_runs"].create(
        {"id": int, "model": str, "started_at": str, "finished_at": str, "status": str, "n_targets": int,
         "parameters": str, "counts": str},
        pk="id",
    )
