"""`select --frames-per-burst K`: each candidate's burst (its sequence's K best eligible frames)
kept beside it in burst_members, with its images and detections rows; the candidates unchanged."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from hitl import store
from hitl.cli import cli
from hitl.select.bursts import choose_members, time_order

from .conftest import CliProject, write_json
from .helpers.camtrapdp import EXAMPLE, HERON_MEDIA
from .helpers.learn import sheet_for


def run(db, *args, ok=True):
    result = CliRunner().invoke(cli, ["--db", str(db), *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def animal(w, conf=0.9, n=1):
    """``n`` animals ``w`` wide, centred (so the heuristic quality grows with ``w`` and ``conf``)."""
    return [{"category": "1", "conf": conf, "bbox": [0.5 - w / 2, 0.3 + 0.1 * k, w, 0.15]} for k in range(n)]


# Sequence q1: four frames listed out of time order, file names not in frame order either.
# Its best frames are 2-animal groups; its single animal (q1/c.jpg) is the one well-framed frame,
# so with -n 1 selection chooses it although it is q1's worst frame.
FRAMES = {  # image_id: (seq_id, frame_num, detections)
    "q1/d.jpg": ("q1", 1, animal(0.25, 0.95, n=2)),
    "q1/c.jpg": ("q1", 3, animal(0.2, 0.6)),
    "q1/b.jpg": ("q1", 0, animal(0.25, 0.85, n=2)),
    "q1/a.jpg": ("q1", 2, animal(0.25, 0.75, n=2)),
    "q2/only.jpg": ("q2", 0, animal(0.3)),  # a sequence of one eligible frame: no burst
    "q2/empty.jpg": ("q2", 1, []),  # not eligible: never a member
    "q3/x.jpg": ("q3", 0, animal(0.1)),
    "q3/y.jpg": ("q3", 1, animal(0.3)),
    "q3/z.jpg": ("q3", 2, animal(0.2)),
}


def build(where, folder: str = "") -> list[str]:
    """The images of FRAMES (in ``where``/images) and the select options for those in ``folder``."""
    root = where / "images"
    for name in FRAMES:
        if not (root / name).exists():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (320, 240), (90, 120, 60)).save(root / name)
    names = [name for name in FRAMES if name.startswith(folder)]
    md = write_json(where / f"md{folder}.json", {"detection_categories": {"1": "animal"}, "images": [
        {"file": name, "detections": FRAMES[name][2]} for name in names]})
    cct = write_json(where / f"cct{folder}.json", {"images": [
        {"file_name": name, "seq_id": FRAMES[name][0], "frame_num": FRAMES[name][1],
         "datetime": f"2024-01-01 12:00:0{FRAMES[name][1]}"} for name in names]})
    return ["--md", str(md), "--cct", str(cct), "--images", str(root)]


@pytest.fixture
def collection(tmp_path):
    return build(tmp_path)


def members(db) -> dict[str, list[dict]]:
    """burst_members by seq_id, each burst in position order."""
    out: dict[str, list[dict]] = {}
    for row in store.connect(db).query("SELECT * FROM burst_members ORDER BY seq_id, position"):
        out.setdefault(row["seq_id"], []).append(row)
    return out


def candidates(db) -> list[tuple]:
    return [(r["image_id"], r["rank"], r["category"], r["score"], r["reason"])
            for r in store.connect(db).query("SELECT * FROM candidates ORDER BY rank")]


def test_members_are_the_best_frames_in_time_order_with_their_rows(tmp_path, collection):
    db = tmp_path / "h.db"
    result = run(db, "select", *collection, "-n", "3", "--frames-per-burst", "3", "--json")
    counts = json.loads(result.output[result.output.index("{"):])
    bursts = members(db)
    assert set(bursts) == {"cct:q1", "cct:q3"}  # q2 has a single eligible frame
    chosen = {r["image_id"] for r in store.connect(db)["candidates"].rows}
    for seq, burst in bursts.items():
        assert len(burst) == 3 and [m["position"] for m in burst] == [1, 2, 3]
        assert [m["selected"] for m in burst].count(1) == 1
        (pick,) = [m["image_id"] for m in burst if m["selected"]]
        assert pick in chosen and pick.startswith(seq[4:])
    # q1: frames 0, 1, 2 of 4 (the best three, or the candidate in third place), in frame order
    q1 = [m["image_id"] for m in bursts["cct:q1"]]
    assert [FRAMES[k][1] for k in q1] == sorted(FRAMES[k][1] for k in q1)
    assert [m["image_id"] for m in bursts["cct:q3"]] == ["q3/x.jpg", "q3/y.jpg", "q3/z.jpg"]
    assert counts["burst_frames"] == 6 and counts["bursts"] == 2 and counts["frames_per_burst"] == 3

    s = store.connect(db)
    for burst in bursts.values():
        for m in burst:
            image = s["images"].get(m["image_id"])
            seq, frame, dets = FRAMES[m["image_id"]]
            assert (image["seq_id"], image["frame_num"], image["width"], image["height"]) == (f"cct:{seq}", frame, 320, 240)
            assert image["datetime"] == f"2024-01-01T12:00:0{frame}" and image["species"] and image["rarity"] > 0
            stored = list(s["detections"].rows_where("image_id = ?", [m["image_id"]], order_by="det_index"))
            assert [(d["x"], d["w"], d["conf"]) for d in stored] == [
                pytest.approx((d["bbox"][0], d["bbox"][2], d["conf"])) for d in dets]
    run_row = next(s.query("SELECT * FROM selection_runs ORDER BY id DESC LIMIT 1"))
    assert json.loads(run_row["parameters"])["frames_per_burst"] == 3
    assert all(m["run_id"] == run_row["id"] for burst in bursts.values() for m in burst)


def test_a_candidate_outside_the_best_k_takes_the_kth_place(tmp_path):
    db = tmp_path / "h.db"
    run(db, "select", *build(tmp_path, "q1"), "-n", "1", "--frames-per-burst", "2")
    assert [r[0] for r in candidates(db)] == ["q1/c.jpg"]  # well-framed, q1's worst frame
    burst = members(db)["cct:q1"]
    # q1/d.jpg is q1's best frame; the candidate, in time order after it, is the second member
    assert [(m["image_id"], m["position"], m["selected"]) for m in burst] == [("q1/d.jpg", 1, 0), ("q1/c.jpg", 2, 1)]
    assert burst[0]["quality"] > burst[1]["quality"]
    score = store.connect(db)["candidates"].get("q1/c.jpg")["score"]
    assert burst[1]["quality"] == score  # the selection's own quality


def test_the_candidate_set_is_the_same_with_and_without_bursts(tmp_path, collection):
    plain, with_bursts = tmp_path / "a.db", tmp_path / "b.db"
    out_a, out_b = tmp_path / "a.csv", tmp_path / "b.csv"
    run(plain, "select", *collection, "-n", "3", "--out", str(out_a))
    result = run(with_bursts, "select", *collection, "-n", "3", "--frames-per-burst", "10", "--out", str(out_b))
    assert candidates(plain) == candidates(with_bursts) and len(candidates(plain)) == 3
    assert out_a.read_text() == out_b.read_text()
    assert store.connect(plain)["burst_members"].count == 0
    assert {k: len(v) for k, v in members(with_bursts).items()} == {"cct:q1": 4, "cct:q3": 3}
    assert "Burst frames kept: 7 in 2 bursts (up to 10" in result.output
    assert "Burst frames" not in run(plain, "select", *collection, "-n", "3").output


def test_add_keeps_the_bursts_and_a_new_set_replaces_them(tmp_path, collection):
    db = tmp_path / "h.db"
    run(db, "select", *build(tmp_path, "q1"), "-n", "1", "--frames-per-burst", "2")
    assert set(members(db)) == {"cct:q1"}
    first_run = members(db)["cct:q1"][0]["run_id"]
    run(db, "select", *collection, "-n", "2", "--add", "--frames-per-burst", "2")
    bursts = members(db)
    assert set(bursts) == {"cct:q1", "cct:q3"} and len(bursts["cct:q1"]) == 2
    assert bursts["cct:q1"][0]["run_id"] == first_run and bursts["cct:q3"][0]["run_id"] != first_run
    assert store.connect(db)["candidates"].count == 3

    run(db, "select", *collection, "-n", "3", "--frames-per-burst", "1")  # replaces: K = 1 is the candidate alone
    bursts = members(db)
    assert set(bursts) == {"cct:q1", "cct:q3"} and all(len(b) == 1 and b[0]["selected"] == 1 for b in bursts.values())
    run(db, "select", *collection, "-n", "3")  # and without the option: no bursts at all
    assert store.connect(db)["burst_members"].count == 0 and store.connect(db)["candidates"].count == 3


def test_a_reselect_keeps_a_curators_pick(tmp_path):
    """A curator picked q1's best frame over selection's: the same selection run again keeps the
    pick as the candidate (and says so); a selection without bursts has nothing to pick from."""
    from converters.common import HumanRating
    from hitl.store.ratings import record_ratings

    db = tmp_path / "h.db"
    options = build(tmp_path, "q1")
    run(db, "select", *options, "-n", "1", "--frames-per-burst", "2")
    assert [r[0] for r in candidates(db)] == ["q1/c.jpg"]
    s = store.connect(db)
    with store.transaction(s):
        record_ratings(s, [HumanRating("labelstudio", "5", "1", "q1/d.jpg", task_id=1, annotator_email="ana@example.org",
                                       stars=9, hero=True, burst_of="q1/c.jpg", updated_at="2026-12-01T10:00:00Z")],
                       via="test")
    assert [r[0] for r in candidates(db)] == ["q1/d.jpg"]
    result = run(db, "select", *options, "-n", "1", "--frames-per-burst", "2")
    assert [r[0] for r in candidates(db)] == ["q1/d.jpg"]
    assert "1 candidates are the frame a curator picked from its burst" in result.output
    assert "picked from its burst by ana@example.org" in candidates(db)[0][4]
    run(db, "select", *options, "-n", "1")
    assert [r[0] for r in candidates(db)] == ["q1/c.jpg"]


def test_an_unreadable_member_is_left_out_and_counted(tmp_path, collection):
    root = tmp_path / "images"
    (root / "q3/z.jpg").write_bytes(b"not a jpeg")
    (root / "q1/d.jpg").unlink()
    db = tmp_path / "h.db"
    result = run(db, "select", *collection, "-n", "3", "--frames-per-burst", "3")
    bursts = members(db)
    assert [m["image_id"] for m in bursts["cct:q3"]] == ["q3/x.jpg", "q3/y.jpg"]
    assert "q1/d.jpg" not in {m["image_id"] for m in bursts["cct:q1"]} and len(bursts["cct:q1"]) == 3
    assert "burst frame unreadable: image file missing" in result.output
    assert "burst frame unreadable: unreadable image" in result.output
    counts = json.loads(next(store.connect(db)["selection_runs"].rows)["counts"])
    assert sum(v for k, v in counts["failed"].items() if k.startswith("burst frame unreadable")) == 2
    s = store.connect(db)
    assert s["images"].get("q3/x.jpg") and not list(s["images"].rows_where("image_id = ?", ["q3/z.jpg"]))


@pytest.mark.parametrize("value", ["11", "-1"])
def test_k_out_of_range_is_one_line(tmp_path, collection, value):
    result = run(tmp_path / "h.db", "select", *collection, "-n", "3", "--frames-per-burst", value, ok=False)
    assert result.exit_code == 1 and "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "--frames-per-burst" in errors[0] and "0 (off) to 10" in errors[0]
    assert value in errors[0]


def test_the_setting_in_a_config_file(tmp_path, collection):
    config = tmp_path / "hitl.toml"
    config.write_text("[select]\nframes_per_burst = 2\n")
    db = tmp_path / "h.db"
    run(db, "--config", str(config), "select", *collection, "-n", "3")
    assert {k: len(v) for k, v in members(db).items()} == {"cct:q1": 2, "cct:q3": 2}
    config.write_text("[select]\nframes_per_burst = 12\n")
    bad = run(db, "--config", str(config), "select", *collection, "-n", "3", ok=False)
    errors = [line for line in bad.output.splitlines() if line.startswith("Error: ")]
    assert bad.exit_code == 1 and len(errors) == 1
    assert "select.frames_per_burst" in errors[0] and "0 (off) to 10" in errors[0] and "12" in errors[0]


def test_the_camtrap_dp_example_burst(tmp_path):
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    plain = CliProject(tmp_path / "p.db", {"HITL_DB": str(tmp_path / "p.db")})
    plain.run("select", "--camtrap-dp", str(EXAMPLE), "-n", "5")
    result = project.run("select", "--camtrap-dp", str(EXAMPLE), "-n", "5", "--frames-per-burst", "10", "--json")
    counts = json.loads(result.stdout)
    assert counts["selected"] == 1 and counts["burst_frames"] == HERON_MEDIA and counts["bursts"] == 1
    assert candidates(tmp_path / "h.db") == candidates(tmp_path / "p.db")
    ((seq, burst),) = members(tmp_path / "h.db").items()
    db = project.db
    (candidate,) = db["candidates"].rows
    assert [m["image_id"] for m in burst if m["selected"]] == [candidate["image_id"]]
    with (EXAMPLE / "media.csv").open(newline="", encoding="utf-8") as f:
        media = {m["filePath"]: m for m in csv.DictReader(f) if m["filePath"].startswith("media/")}
    ids = [m["image_id"] for m in burst]
    assert sorted(ids) == sorted(media)  # all 10 local heron frames
    assert ids == sorted(ids, key=lambda k: (media[k]["timestamp"], k))  # time order, ties by image_id
    assert [m["position"] for m in burst] == list(range(1, HERON_MEDIA + 1))
    assert db["images"].count == HERON_MEDIA and db["camtrap_media"].count == HERON_MEDIA
    assert {r["image_id"] for r in db["detections"].rows} == set(ids)
    assert {db["camtrap_media"].get(k)["media_id"] for k in ids} == {media[k]["mediaID"] for k in ids}
    assert all(db["images"].get(k)["seq_id"] == seq and db["images"].get(k)["species"] == "Ardea" for k in ids)


def test_learned_bursts_rank_by_the_learned_rater(scored, tmp_path, sample_data):  # noqa: F811
    sheet_for(scored, tmp_path / "d.csv")
    scored.run("ratings", "--import", str(tmp_path / "d.csv"))
    scored.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
               "--images", str(sample_data / "images"), "-n", "3", "--add", "--learned", "--frames-per-burst", "3")
    db = scored.db
    added = {r["image_id"]: r for r in db["candidates"].rows_where("run_id = (SELECT MAX(id) FROM selection_runs)")}
    bursts = list(db["burst_members"].rows)
    assert bursts and {m["image_id"] for m in bursts if m["selected"]} <= set(added)
    for m in bursts:
        assert 0 <= m["quality"] <= 1
        if m["selected"]:  # its quality is the learned p(hero) the candidate was ranked by
            assert m["quality"] == added[m["image_id"]]["score"]


def test_choose_members_takes_the_best_others_and_only_the_chosen_sequences():
    seq = np.array([0, 0, 0, 0, 1, 1, 2, 3, 3])
    quality = np.array([0.1, 0.9, 0.5, 0.7, 0.3, 0.4, 0.8, 0.2, 0.2])
    got = choose_members(seq, quality, [0, 4, 6], 3)
    assert [g.tolist() for g in got] == [[0, 1, 3], [4, 5], []]  # row 0 in third place; row 6 alone
    vetoed = choose_members(seq, quality, [2], 3, accept=lambda r: r != 1)
    assert vetoed[0].tolist() == [2, 3, 0]  # the unreadable best is replaced by the next best
    assert choose_members(seq, quality, [7], 1)[0].tolist() == [7]
    assert [g.tolist() for g in choose_members(seq, quality, [0], 0)] == [[]]
    assert choose_members(seq, quality, [8], 2)[0].tolist() == [8, 7]  # ties by row


def test_time_order_frame_number_then_time_then_id():
    assert time_order([2, 0, 1], [None, None, None], ["a", "b", "c"]) == [1, 2, 0]
    assert time_order([-1, -1, -1], ["2024-01-01T12:00:02", "2024-01-01T12:00:01", "2024-01-01T12:00:01"],
                      ["a", "c", "b"]) == [2, 1, 0]
    assert time_order([-1, -1], [None, None], ["b", "a"]) == [1, 0]
