"""The `select` step: detector files in, a stratified, sequence-aware candidate set out.

Glue between the converters (formats), :mod:`hitl.select.strata` (the choice) and the
store, in steps: who is eligible, sequences and capture times, species and rarity, the
pick (checking each file as it is taken), the record.
"""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import sqlite_utils

from converters.camtrapdp import CamtrapPackage, read_package
from converters.cct import CCTFile, CCTMetadata, normalise_datetime
from converters.common import gc_paused
from converters.megadetector import KIND_NAMES, MegaDetectorFile, load_megadetector
from hitl.config import Settings, check_frames_per_burst
from hitl.errors import HitlError
from hitl.progress import progress_bar
from hitl.select import bursts
from hitl.select import strata as selection
from hitl.select.checks import FileChecks
from hitl.select.duplicates import NEAR_DUPLICATE, near_duplicate_guard
from hitl.select.eligible import Ranker, SelectionRun, count_problems, eligible_mask, load_speciesnet_file
from hitl.select.output import SelectionSummary, candidate_reason, write_candidates_csv
from hitl.select.records import FileRecord, pack_in_background
from hitl.select.sequences import Frames, frames_of
from hitl.select.two_processes import TwoProcesses
from hitl.store import bursts as store_bursts
from hitl.store import in_chunks, transaction, upsert_many, utc_now

UNIDENTIFIED = "unidentified animal"
SPECIES_SOURCES = ("none", "megadetector-classifier", "speciesnet", "camtrap-dp")


def run_selection(db: sqlite_utils.Database, *, md: str | Path | None = None, images_root: str | Path | None = None,
                  n: int, settings: Settings, speciesnet: str | Path | None = None,
                  cct: str | Path | None = None, out_csv: str | Path | None = None, add: bool = False,
                  echo: Callable[[str], None] = lambda _msg: None, progress: bool | None = None,
                  ranker: Callable[[], Ranker] | None = None, camtrap_dp: str | Path | None = None,
                  media_root: str | Path | None = None, only: set[str] | None = None) -> SelectionSummary:
    """Select ``n`` candidates and record them (and the run) in ``db``.

    The images and their detections come from a MegaDetector file ``md`` (paths relative to
    ``images_root``, capture metadata from ``cct``), or from a Camtrap DP package ``camtrap_dp``
    (paths relative to its folder; remote media found in ``media_root``, see
    :func:`converters.camtrapdp.read_package`).

    With ``add`` the existing candidates stay and their images and sequences are not chosen
    again; otherwise the new set replaces them. With ``ranker`` (--learned: it builds the learned
    rater, :func:`hitl.learn.rank.learned_ranker`; called once the files are read, as their reading
    may fork) the images are ranked on their detector record instead of by the heuristic; the
    strata, sequence, species-cap and people rules are the same.
    With ``only`` just those images may be chosen (the rest are counted as excluded).
    With the setting ``frames_per_burst`` K > 0 each candidate's burst (its sequence's K best
    frames, see :mod:`hitl.select.bursts`) is recorded too; the candidates stay the same.
    """
    cfg = settings.select
    if n < 1:
        raise HitlError("-n must be at least 1")
    check_frames_per_burst(cfg.frames_per_burst, "--frames-per-burst")
    if (md is None) == (camtrap_dp is None):
        raise HitlError("give the detections as --md (MegaDetector) or --camtrap-dp (a Camtrap DP package), one of them")
    package = None
    if camtrap_dp is not None:
        if cct is not None:
            raise HitlError("--cct is for MegaDetector input; a Camtrap DP package carries its own metadata")
        package = read_package(camtrap_dp, media_root)
        if images_root is not None and Path(images_root).resolve() != package.root:
            raise HitlError("--images is for --md: a Camtrap DP package's filePaths are relative to its own folder "
                            f"({package.root}); downloaded remote media go in --media-root, inside it")
        images_root = package.root
    elif images_root is None:
        raise HitlError("--images is needed with --md: the folder MegaDetector's 'file' paths are relative to")
    root = Path(images_root).resolve()
    if cfg.check_files and not root.is_dir():
        raise HitlError(f"image root {images_root} is not a folder; pass --images with the folder "
                        f"MegaDetector's 'file' paths are relative to")
    started = utc_now()
    run_id = db["selection_runs"].insert({
        "started_at": started, "status": "running", "md_path": str(md or package.source),
        "speciesnet_path": str(speciesnet) if speciesnet else None, "cct_path": str(cct) if cct else None,
        "images_root": str(root), "n_requested": n, "parameters": json.dumps(msgspec.to_builtins(cfg), sort_keys=True),
    }).last_pk
    try:
        # The CCT file's whole-file check begins now, beside the MegaDetector file's reading.
        with gc_paused(), CCTFile(cct, TwoProcesses()) if cct else nullcontext() as cct_file:  # gc: see gc_paused
            source = package if package is not None else Path(md)
            summary = _select(db, run_id, source, root, n, cfg, speciesnet, cct_file, out_csv, add, echo,
                              progress, ranker, only)
    except BaseException as exc:
        db["selection_runs"].update(run_id, {"status": "failed", "finished_at": utc_now(),
                                             "counts": json.dumps({"error": str(exc)})})
        raise
    return summary


@dataclass
class _Species:
    """Each eligible image's species (index into ``names``), its score and source, and rarity."""

    names: list[str]
    sp: np.ndarray
    score: np.ndarray
    source: np.ndarray  # an index into SPECIES_SOURCES
    rare: np.ndarray
    share: np.ndarray  # the share of the collection's sequences with the image's species (rarity)


def _select(db, run_id, source: Path | CamtrapPackage, root: Path, n: int, cfg, sn_path, cct_file: CCTFile | None,
            out_csv, add, echo, progress, ranker: Callable[[], Ranker] | None = None,
            only: set[str] | None = None) -> SelectionSummary:
    package = source if isinstance(source, CamtrapPackage) else None
    if package is None:
        echo(f"Reading {source} ({source.stat().st_size / 1e6:.1f} MB)")
        md = load_megadetector(source, root, TwoProcesses())
    else:
        md = package.detector
        cct_file = _PackageMetadata(package.metadata)
    md_path = md.source
    summary = SelectionSummary(run_id=run_id, images_read=len(md.image_ids), eligible=0, sequences=0,
                               selected=0, requested=n, frames_per_burst=cfg.frames_per_burst)
    summary.notes.extend(md.notes)
    count_problems(summary, md.problems)
    if package is not None:
        count_problems(summary, package.problems)
        if package.remote:
            summary.excluded["remote media (a URL): not downloaded, or not found under --media-root"] += package.remote
    for reason in md.failures.values():
        summary.failed[f"detector failure: {reason}"] += 1
    det = md.detections
    feats = selection.image_features(det.image, det.kind, det.conf, det.bbox, det.species, len(md.image_ids),
                                     cfg.threshold, cfg.edge_margin, cfg.data_strip)
    sn = load_speciesnet_file(sn_path, root, md, summary, echo)
    run = SelectionRun(db, root, n, cfg, add, summary, md, feats, sn, None, echo, progress, ranker, package,
               FileChecks(root, cfg.check_files, summary, package is not None), only=only)
    run.records.append(FileRecord(package.source if package is not None else str(Path(md.source).resolve())))
    if sn_path:
        run.records.append(FileRecord(str(Path(sn_path).resolve())))

    ok, sn_species, existing_seqs = eligible_mask(run)
    elig = np.flatnonzero(ok)
    summary.eligible = len(elig)
    keys = list(map(md.image_ids.__getitem__, elig.tolist()))
    if cct_file:  # read after the eligible images are known: only their rows are kept
        if package is None:
            echo(f"Reading {cct_file.source} ({Path(cct_file.source).stat().st_size / 1e6:.1f} MB)")
        run.cct = cct_file.read(root, only=keys)
        count_problems(summary, run.cct.problems)
    cct = run.cct
    if len(elig) == 0:
        raise HitlError(f"no image in {md_path} is eligible (see the counts: {dict(summary.excluded)}); "
                        f"lower the threshold (--threshold) or check the file")
    run.records[0].packed = pack_in_background(md, package)  # every image's record, packed while choosing
    echo(f"Building sequences for {len(elig):,} eligible images")
    frames = frames_of(elig, keys, cct, root, cfg, summary, progress)
    if add and existing_seqs:
        already = np.array([frames.seq_id(k) in existing_seqs for k in range(len(elig))], dtype=bool)
        summary.excluded["sequence already has a candidate"] += int(already.sum())
        frames = frames.keep(~already)
    rows, members = _choose(run, frames, sn_species)
    run.files.refuse_most_missing()  # before anything is written: the candidates stay as they are
    summary.selected = len(rows)
    echo(f"Writing {len(rows):,} candidates" + (f" and {len(members):,} burst frames" if members else ""))
    summary.candidates = rows
    if len(rows) < n:
        summary.notes.append(f"only {len(rows)} of {n} requested: the collection has {summary.sequences} "
                             f"eligible sequences and at most one frame of each is taken"
                             + (", and one image of each near-duplicate group" if summary.excluded[NEAR_DUPLICATE]
                                else ""))
    _write(db, run_id, rows, md, root, add, summary, package, members, run.records)
    if out_csv:
        write_candidates_csv(out_csv, rows)
    return summary


class _PackageMetadata:
    """A Camtrap DP package's capture metadata, read as a COCO Camera Traps file is (see CCTFile)."""

    def __init__(self, metadata: CCTMetadata):
        self.metadata, self.source = metadata, metadata.source

    def read(self, _root: Path, only: list[str]) -> CCTMetadata:
        rows = self.metadata.rows()
        return dataclasses.replace(self.metadata, only_rows=np.array([rows.get(k, -1) for k in only], np.int64))


def _species(run: SelectionRun, frames: Frames, seq_index: np.ndarray, sn_species: dict) -> _Species:
    """Each image's species: SpeciesNet's image-level answer where it names an animal, else the
    detector-side classifier's label of the largest animal, else "unidentified animal"; and
    which species are rare, counted in sequences, not frames (a 10-frame burst is one sighting)."""
    md, feats, elig = run.md, run.feats, frames.elig
    det = md.detections
    names = list(md.species_names) + [UNIDENTIFIED]
    main = det.species[feats.main_det[elig]]
    sp = np.where(main >= 0, main, len(names) - 1).astype(np.int64)
    sp_score = np.where(main >= 0, det.species_conf[feats.main_det[elig]], np.nan).astype(np.float64)
    source_code = np.where(main >= 0, 3 if run.package is not None else 1, 0)
    if sn_species:
        name_index = {name: k for k, name in enumerate(names)}
        position = {int(i): k for k, i in enumerate(elig.tolist())}
        for i, (name, score) in sn_species.items():
            k = position.get(i)
            if k is None:
                continue
            if name not in name_index:
                name_index[name] = len(names)
                names.append(name)
            sp[k] = name_index[name]
            sp_score[k] = np.nan if score is None else score
            source_code[k] = 2
    seq_species = np.unique(seq_index * len(names) + sp) % len(names)
    per_species_seqs = np.bincount(seq_species, minlength=len(names))
    rare_limit = max(run.cfg.rare_min_sequences, run.cfg.rare_max_share * run.summary.sequences)
    rare_species = (per_species_seqs <= rare_limit) & (np.array([nm != UNIDENTIFIED for nm in names]))
    if len(names) == 1:
        rare_species[:] = False  # a single-species collection has no rare species
    share = per_species_seqs[sp] / max(1, run.summary.sequences)
    return _Species(names, sp, sp_score, source_code, rare_species[sp], share)


def _choose(run: SelectionRun, frames: Frames, sn_species: dict) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Pick the candidates (checking each file as it is taken) and describe each as a row; and
    their bursts' members (--frames-per-burst), chosen after the pick so it cannot change it."""
    cfg, summary, feats, e = run.cfg, run.summary, run.feats, frames.elig
    seq_index = frames.seq
    summary.sequences = len(np.unique(seq_index))
    start, end = cfg.night_start_hour, cfg.night_end_hour
    hours = frames.hours
    night = (hours >= 0) & ((hours >= start) | (hours < end)) if start > end else (hours >= start) & (hours < end)
    species = _species(run, frames, seq_index, sn_species)
    quality = (_learned_quality(run, frames, species, night) if run.ranker is not None else
               selection.quality_score(feats.area[e], feats.centrality[e], feats.max_conf[e], feats.cut_off[e], night))
    masks = selection.category_masks(feats.n_animals[e], feats.n_species[e], feats.area[e], feats.cut_off[e],
                                     feats.centrality[e], night, species.rare, cfg.close_up_area)
    cap = max(1, int(np.ceil(cfg.species_max_share * run.n)))
    run.echo(f"Choosing {run.n:,} candidates from {summary.sequences:,} sequences")
    bar = progress_bar(run.progress, total=run.n, desc="Selecting", unit="img", leave=False)
    checked_sizes: dict[int, tuple[int, int]] = {}
    readable = run.files.checker(frames, checked_sizes)
    unique = near_duplicate_guard(run, frames)

    def accept(row: int) -> bool:
        if not readable(row) or (unique is not None and not unique(row)):
            return False
        bar.update(1)
        return True

    picks = selection.pick(run.n, quality, masks, seq_index, species.sp, cfg.shares, cap, cfg.seed,
                           accept=accept)
    bar.close()
    rows = [_row(run, frames, species, p, rank, night, quality, cap, checked_sizes)
            for rank, p in enumerate(picks, start=1)]
    members: list[dict[str, Any]] = []
    if cfg.frames_per_burst and picks:
        run.echo(f"Choosing up to {cfg.frames_per_burst} frames of each candidate's burst")
        members = bursts.burst_rows(frames, quality, [p.row for p in picks], cfg.frames_per_burst,
                                    run.files.checker(frames, checked_sizes, "burst frame unreadable: "),
                                    lambda r: _image_fields(run, frames, species, r, night, checked_sizes))
        summary.burst_frames = len(members)
        summary.bursts = len({m["seq_id"] for m in members})
    return rows, members


def _learned_quality(run: SelectionRun, frames: Frames, species: _Species, night: np.ndarray) -> np.ndarray:
    """Every eligible image's probability of hero by the learned rater on its detector record."""
    ranker = run.ranker()
    e, feats = frames.elig, run.feats
    run.echo(f"Ranking {len(e):,} images by the learned rater ({ranker.n_decisions} curator decisions)")
    columns = {"area": feats.area[e], "cut_off": feats.cut_off[e], "centrality": feats.centrality[e],
               "n_animals": feats.n_animals[e], "n_species": feats.n_species[e], "max_conf": feats.max_conf[e],
               "night": night, "rarity": species.share, "hour": frames.hours}
    names = [species.names[k] for k in species.sp.tolist()]
    p = ranker.p_hero(columns, names, [frames.location(k) for k in range(len(e))],
                      list(map(run.md.image_ids.__getitem__, e.tolist())), str(run.root))
    if ranker.model is not None:
        said = (f"learned rater: {ranker.counts['with vectors']:,} images ranked with their {ranker.model} vectors, "
                f"{ranker.counts['without']:,} without one on the detector record alone")
        run.echo(said[0].upper() + said[1:])
        run.summary.notes.append(said)
    return p


def _row(run: SelectionRun, frames: Frames, species: _Species, p: selection.Pick, rank: int, night: np.ndarray,
         quality: np.ndarray, cap: int, checked_sizes: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """One candidate as the CSV and the store see it (columns starting with _ are store-only)."""
    summary, feats = run.summary, run.feats
    r, i = p.row, int(frames.elig[p.row])
    fields = _image_fields(run, frames, species, r, night, checked_sizes)
    when_text, name = frames.time(r), fields["species"]
    if when_text and fields["datetime"] is None:  # looked like a date but is none, e.g. 30 February
        summary.problems[f"{run.cct.source if run.cct else 'capture times'}: unparseable datetime"] += 1
    row = {
        "rank": rank, "image_id": fields["image_id"], "category": p.category,
        "score": round(float(quality[r]), 4),
        "reason": candidate_reason(p, feats, i, name, bool(night[r]), bool(species.rare[r]), when_text, cap)
                  + (f"; learned rater: p(hero) {quality[r]:.2f}" if run.ranker is not None else ""),
        **fields,
    }
    summary.by_category[p.category] += 1
    summary.by_species[name] += 1
    if p.relaxed:
        summary.notes.append(f"{row['image_id']}: taken after relaxing the per-species cap ({cap})")
    return row


def _image_fields(run: SelectionRun, frames: Frames, species: _Species, r: int, night: np.ndarray,
                  checked_sizes: dict[int, tuple[int, int]]) -> dict[str, Any]:
    """What the store keeps of eligible row ``r``'s image, a candidate's or a burst member's."""
    feats, i = run.feats, int(frames.elig[r])
    when_text = frames.time(r)
    width, height = checked_sizes.get(i) or frames.sizes.get(i) or (None, None)
    return {
        "image_id": run.md.image_ids[i], "species": species.names[species.sp[r]], "seq_id": frames.seq_id(r),
        "location": frames.location(r), "datetime": normalise_datetime(when_text) if when_text else None,
        "night": int(night[r]), "n_animals": int(feats.n_animals[i]), "area": round(float(feats.area[i]), 4),
        "width": width, "height": height,
        "_frame": int(frames.frames[r]), "_nframes": int(frames.nframes[r]),
        "_species_score": None if np.isnan(species.score[r]) else float(species.score[r]),
        "_source": SPECIES_SOURCES[species.source[r]],
        "_rarity": round(float(species.share[r]), 6),
        "_md_index": i,
    }


def _write(db, run_id, rows, md: MegaDetectorFile, root: Path, add: bool, summary: SelectionSummary,
           package: CamtrapPackage | None, members: Sequence[dict[str, Any]], records: Sequence[FileRecord]) -> None:
    """Record the candidates, their bursts' members (``burst_rows``), what the input files said of
    every image (``records``) and the run, in one transaction."""
    now = utc_now()
    # every image the run keeps, each once: a burst's selected frame is its candidate
    kept = [*rows, *(m for m in members if not m["_selected"])]
    det_rows = _detection_rows(md, kept)
    image_rows = [{
        "image_id": row["image_id"], "root": str(root), "width": row["width"], "height": row["height"],
        "datetime": row["datetime"], "location": row["location"], "seq_id": row["seq_id"],
        "frame_num": row["_frame"] if row["_frame"] >= 0 else None,
        "seq_num_frames": row["_nframes"] if row["_nframes"] >= 0 else None,
        "species": row["species"], "species_score": row["_species_score"], "species_source": row["_source"],
        "night": row["night"], "rarity": row["_rarity"], "updated_at": now,
    } for row in kept]
    cand_rows = [{"image_id": row["image_id"], "run_id": run_id, "rank": row["rank"], "category": row["category"],
                  "score": row["score"], "reason": row["reason"]} for row in rows]
    with transaction(db):  # one transaction: a crash leaves the previous candidate set intact
        if not add:
            db.execute("DELETE FROM candidates")
            db.execute("DELETE FROM burst_members")  # the bursts belong to the candidate set they replace
        ids = [r["image_id"] for r in image_rows]
        for marks, part in in_chunks(ids):
            db.execute(f"DELETE FROM detections WHERE image_id IN ({marks})", part)
        upsert_many(db, "images", image_rows, "image_id")
        upsert_many(db, "detections", det_rows, ("image_id", "det_index"))
        upsert_many(db, "candidates", cand_rows, "image_id")
        upsert_many(db, "burst_members", bursts.store_rows(members, run_id), ("seq_id", "image_id"))
        if members:  # a curator's earlier pick of a frame of one of these bursts still holds
            picked = store_bursts.settle(db, store_bursts.picked_sequences(db) & {m["seq_id"] for m in members})
            if picked:
                summary.notes.append(f"{picked} candidates are the frame a curator picked from its burst, "
                                     f"not the one selection chose")
        if package is not None:
            upsert_many(db, "camtrap_media", [
                {"image_id": r["image_id"], "package": package.source, "media_id": package.media[r["image_id"]]["mediaID"],
                 "deployment_id": package.media[r["image_id"]]["deploymentID"]} for r in kept], "image_id")
        for record in records:
            record.write(db, run_id, str(root))
        db["selection_runs"].update(run_id, {
            "status": "finished", "finished_at": utc_now(), "n_selected": len(rows),
            "counts": json.dumps(summary.as_counts(), sort_keys=True),
        })


def _detection_rows(md: MegaDetectorFile, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The detections of the images of ``rows`` (candidates, burst members), in row order, as the store keeps them."""
    det = md.detections
    # Detection rows are in file order, so each image's rows are one sorted run.
    wanted = np.array([row["_md_index"] for row in rows], dtype=det.image.dtype)
    first, last = np.searchsorted(det.image, wanted, "left"), np.searchsorted(det.image, wanted, "right")
    runs = last - first
    d = np.arange(runs.sum()) - np.repeat(np.cumsum(runs) - runs, runs) + np.repeat(first, runs)
    image_ids = [rows[k]["image_id"] for k in np.repeat(np.arange(len(rows)), runs).tolist()]
    names = md.species_names
    return [{"image_id": image_id, "det_index": j, "kind": KIND_NAMES[kind], "category": str(category),
             "conf": round(conf, 4), "x": round(x, 6), "y": round(y, 6), "w": round(w, 6), "h": round(h, 6),
             "species": names[s] if s >= 0 else None, "species_conf": round(s_conf, 4) if s >= 0 else None}
            for image_id, j, kind, category, conf, (x, y, w, h), s, s_conf in zip(
                image_ids, det.det_index[d].tolist(), det.kind[d].tolist(), det.category[d].tolist(),
                det.conf[d].tolist(), det.bbox[d].tolist(), det.species[d].tolist(), det.species_conf[d].tolist())]
