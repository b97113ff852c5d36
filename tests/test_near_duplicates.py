"""Near-duplicates through the loop, with the baseline embedder (and the fake embeddings server): `embed`
calibrates the threshold on the collection; `select` takes one image of a group (the shared
elephant photographed three times); `export` keeps the best of the walk-through's lynx burst and
lists the others; `compare` never pairs two of a group; the report counts the groups; `next`
spreads a round and puts no two near-duplicates in it."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from hitl import store
from hitl.learn import LEARNED
from hitl.store.embeddings import embedding_row, unit_float16, vectors, write_embeddings

from .helpers.near_duplicates import LYNX, FakeStudio, copy_of, run

ELEPHANTS = {"african_elephants.jpg", "african_elephants_bw.jpg", "african_elephants_cmyk.jpg"}


def candidates(db: Path) -> set[str]:
    return {r[0] for r in store.connect(db).execute("SELECT image_id FROM candidates")}


def test_select_takes_one_of_the_elephants_once_the_collection_is_embedded(tmp_path, camera_traps):
    collection = ["--md", str(camera_traps / "md_results.json"), "--images", str(camera_traps / "images")]
    select = ["select", *collection, "--speciesnet", str(camera_traps / "speciesnet_predictions.json"), "-n", "10"]
    db = tmp_path / "hitl.db"
    run(db, *select)
    assert candidates(db) >= ELEPHANTS  # without vectors: the same photograph three times, as before
    embedded = run(db, "embed", "--model", "baseline", *collection)
    assert "Near-duplicate threshold" in embedded.output
    result = run(db, *select)
    chosen = candidates(db)
    assert len(chosen & ELEPHANTS) == 1 and len(chosen) == 5, result.output
    assert "2  near-duplicate of a candidate" in result.output
    for other in ELEPHANTS - chosen:
        assert f"{other}: passed over, a near-duplicate of {next(iter(chosen & ELEPHANTS))}" in result.output


def test_embed_calibrates_the_threshold_on_the_collection_once(tmp_path, camera_traps):
    collection = ["--md", str(camera_traps / "md_results.json"), "--images", str(camera_traps / "images")]
    db = tmp_path / "hitl.db"
    run(db, "embed", "--model", "baseline", *collection)
    rows = [dict(r) for r in store.connect(db).query("SELECT * FROM embedding_calibrations")]
    assert len(rows) == 1 and rows[0]["model"] == "baseline" and rows[0]["n_photos"] == 8
    assert rows[0]["n_copies"] == 32 and set(json.loads(rows[0]["copies"])) == {
        "re-encoded", "brighter", "cropped", "minutes later"}
    ids, matrix = vectors(store.connect(db), "baseline")
    sims = dict(zip(ids, matrix @ matrix[ids.index("african_elephants.jpg")]))
    threshold = rows[0]["threshold"]
    assert sims["african_elephants_bw.jpg"] >= threshold > max(sims["ocelot.jpg"], sims["american_black_bear.jpg"])
    again = run(db, "embed", "--model", "baseline", *collection)
    assert "Nothing to embed" in again.output and f"{threshold:.3f}" in again.output
    assert store.connect(db).execute("SELECT computed_at FROM embedding_calibrations").fetchone()[0] == \
        rows[0]["computed_at"]  # not calibrated again


def manifest(folder: Path) -> dict[str, dict]:
    with (folder / "manifest.csv").open(newline="", encoding="utf-8") as fh:
        return {row["image_id"]: row for row in csv.DictReader(fh)}


def test_export_keeps_the_best_frame_of_the_lynx_burst_and_lists_the_others(walkthrough, tmp_path):
    db = copy_of(walkthrough, tmp_path)
    result = run(db, "export", "--out", str(tmp_path / "heroes"))
    rows = manifest(tmp_path / "heroes")
    assert set(LYNX) <= set(rows) and "1 near-duplicate group(s) of 3 heroes" in result.output
    best = "cam_b/IMG_0013.JPG"  # the curators' highest mean stars of the three
    assert rows[best]["file"] == best and rows[best]["duplicate_of"] == ""
    for other in set(LYNX) - {best}:
        assert rows[other]["file"] == "" and rows[other]["duplicate_of"] == best
        assert not (tmp_path / "heroes" / other).exists()
    header = json.loads((tmp_path / "heroes" / "manifest.json").read_text())["header"]["counts"]
    assert header["near_duplicates"]["groups"] == 1 and header["near_duplicates"]["left_out"] == 2
    every = run(db, "export", "--out", str(tmp_path / "all"), "--near-duplicates", "keep-all")
    rows = manifest(tmp_path / "all")
    assert all((tmp_path / "all" / i).is_file() for i in LYNX) and "all exported" in every.output
    assert [rows[i]["duplicate_of"] for i in LYNX] == [best, "", best]


def test_without_vectors_the_export_is_as_before(walkthrough, tmp_path):
    db = copy_of(walkthrough, tmp_path)
    with store.transaction(connected := store.connect(db)):
        connected.execute("DELETE FROM embeddings")
    run(db, "export", "--out", str(tmp_path / "heroes"))
    rows = manifest(tmp_path / "heroes")
    assert all(rows[i]["file"] == i for i in LYNX) and "duplicate_of" not in next(iter(rows.values()))


def test_compare_never_pairs_two_of_a_group(walkthrough, tmp_path, sample_data):
    from hitl.compare.push import push_pairs

    db = store.connect(copy_of(walkthrough, tmp_path))
    client = FakeStudio()
    summary = push_pairs(db, client, url="http://studio", title="Hero comparison", n=10,
                         document_root=sample_data.parent)
    pairs = {frozenset((t["data"]["left_id"], t["data"]["right_id"])) for t in client.made}
    assert summary.heroes == 4 and summary.near_duplicate_pairs == 3
    assert len(pairs) == 3 and not any(pair <= set(LYNX) for pair in pairs)  # 6 pairs of 4, less the lynx's 3


def test_the_report_counts_the_hero_sets_groups(walkthrough, tmp_path):
    from hitl.publish.report import build_report

    db = store.connect(copy_of(walkthrough, tmp_path))
    paths = build_report(db, tmp_path / "report", resamples=10)
    groups = json.loads(paths["json"].read_text())["near_duplicates"]
    assert groups["groups"] == 1 and groups["images_in_groups"] == 3 and groups["examples"] == [LYNX]
    assert "Near-duplicates in the hero set" in paths["html"].read_text()


def next_store(tmp_path: Path, with_vectors: bool) -> store.Database:
    """Twenty candidates of one camera, each its own sequence, with learned predictions (the best
    first): 0 and 1 the same photograph in the same place; 0-7 one cluster of look-alikes, the rest
    three others."""
    tmp_path.mkdir()
    db = store.connect(tmp_path / "next.db")
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((4, 32))
    cluster = [0] * 8 + [1, 2, 3] * 4
    rows = centres[cluster] + 0.15 * rng.standard_normal((20, 32))
    rows[1] = rows[0] + 0.001 * rng.standard_normal(32)
    with store.transaction(db):
        db["selection_runs"].insert({"id": 1, "status": "finished"})
        for k in range(20):
            image_id = f"cam/IMG_{k:02d}.JPG"
            db["images"].insert({"image_id": image_id, "root": str(tmp_path), "location": "cam", "seq_id": f"s{k}"})
            db["candidates"].insert({"image_id": image_id, "run_id": 1, "rank": k + 1})
            box = (0.4, 0.5, 0.2, 0.2) if k < 2 else (0.05 * (k % 10), 0.3, 0.1, 0.1)
            db["detections"].insert({"image_id": image_id, "det_index": 0, "kind": "animal", "conf": 0.9,
                                     **dict(zip("xywh", box))})
            db["scores"].insert({"image_id": image_id, "model": LEARNED, "prompt_version": "v1", "status": "ok",
                                 "score": 5.0, "raw_response": json.dumps({"p_hero": 0.9 - 0.01 * k, "stars": 5})})
        if with_vectors:
            write_embeddings(db, [embedding_row(f"cam/IMG_{k:02d}.JPG", "test-model", str(tmp_path),
                                                vector=unit_float16(rows[k])) for k in range(20)])
    return db


def test_next_puts_no_two_near_duplicates_in_a_round_and_spreads_it(tmp_path):
    from hitl.learn.next import choose_next

    plain = [c.image_id for c in choose_next(next_store(tmp_path / "a", False), 4, "hero")]
    assert plain == [f"cam/IMG_{k:02d}.JPG" for k in range(4)]  # no vectors: the ranked order
    chosen = choose_next(next_store(tmp_path / "b", True), 4, "hero")
    ids = [c.image_id for c in chosen]
    assert ids[0] == "cam/IMG_00.JPG" and "cam/IMG_01.JPG" not in ids  # its near-duplicate is not
    assert len({int(i[-6:-4]) < 8 for i in ids}) == 2  # beyond the look-alikes of the best
    assert chosen[0].spread_by == "test-model"
