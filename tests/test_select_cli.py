"""`python -m hitl select` end to end: real files in, database and CSV out."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from hitl import store
from hitl.cli import cli

from .conftest import REPO, write_json

NOT_ANIMALS = {"blank.jpg", "blank2.jpg", "blank3.jpg", "human.jpg", "vehicle.jpg",
               "african_elephants_truncated_file.jpg"}


def run(tmp_path, *args, ok=True):
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "h.db"), *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_shared_camera_traps_picks_only_animals(tmp_path, camera_traps):
    out = tmp_path / "c.csv"
    result = run(tmp_path, "select", "--md", str(camera_traps / "md_results.json"),
                 "--speciesnet", str(camera_traps / "speciesnet_predictions.json"),
                 "--images", str(camera_traps / "images"), "-n", "5", "--out", str(out))
    rows = read_csv(out)
    assert len(rows) == 5
    assert not {r["image_id"] for r in rows} & NOT_ANIMALS
    assert {"image_id", "category", "score", "reason", "species", "seq_id"} <= set(rows[0])
    assert len({r["seq_id"] for r in rows}) == 5
    assert "detector failure: Failure image access" in result.output
    assert "person above threshold" in result.output and "vehicle above threshold" in result.output
    assert "no animal above threshold" in result.output
    for r in rows:
        assert r["reason"] and r["species"] and 0 <= float(r["score"]) <= 1

    db = store.connect(tmp_path / "h.db")
    assert db["candidates"].count == 5
    run_row = next(db["selection_runs"].rows)
    counts = json.loads(run_row["counts"])
    assert run_row["status"] == "finished" and counts["failed"] == {"detector failure: Failure image access": 1}
    assert counts["excluded"]["person above threshold"] == 1
    dets = list(db["detections"].rows_where("image_id = ?", [rows[0]["image_id"]]))
    assert dets and all(0 <= d["x"] <= 1 and d["w"] > 0 for d in dets)


def test_include_people_flag(tmp_path, camera_traps):
    out = tmp_path / "c.csv"
    run(tmp_path, "select", "--md", str(camera_traps / "md_results.json"), "--images",
        str(camera_traps / "images"), "-n", "14", "--out", str(out), "--include-people", "--threshold", "0.5")
    ids = {r["image_id"] for r in read_csv(out)}
    assert "human.jpg" not in ids  # a person alone is no animal image: still not a candidate
    assert "blank.jpg" not in ids


def make_collection(root: Path, frames: dict[str, datetime | None]) -> None:
    for name, when in frames.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.new("RGB", (320, 240), (90, 120, 60))
        exif = Image.Exif()
        if when is not None:
            exif.get_ifd(0x8769)[0x9003] = when.strftime("%Y:%m:%d %H:%M:%S")
        image.save(path, exif=exif)


def animal(x=0.3, conf=0.9, w=0.3):
    return {"category": "1", "conf": conf, "bbox": [x, 0.3, w, 0.3]}


def test_exif_sequences_one_frame_per_burst(tmp_path):
    t0 = datetime(2024, 5, 1, 12, 0, 0)
    frames = {
        "camA/001.jpg": t0, "camA/002.jpg": t0 + timedelta(seconds=2), "camA/003.jpg": t0 + timedelta(seconds=4),
        "camA/004.jpg": t0 + timedelta(minutes=30),
        "camB/001.jpg": t0 + timedelta(seconds=1),  # same time, other camera: its own sequence
        "camB/002.jpg": None,  # no EXIF time: its own sequence, never dropped
        "camB/003.jpg": None,
    }
    root = tmp_path / "images"
    make_collection(root, frames)
    md = write_json(tmp_path / "md.json", {
        "info": {"format_version": "1.4"}, "detection_categories": {"1": "animal"},
        "images": [{"file": name, "detections": [animal(x=0.1 + 0.05 * k)]} for k, name in enumerate(frames)]})
    out = tmp_path / "c.csv"
    result = run(tmp_path, "select", "--md", str(md), "--images", str(root), "-n", "10", "--out", str(out))
    rows = read_csv(out)
    seqs = [r["seq_id"] for r in rows]
    assert len(rows) == 5 and len(set(seqs)) == 5  # burst of 3 counts once
    assert sum(r["image_id"].startswith("camA/00") and r["image_id"] < "camA/004" for r in rows) == 1
    assert {"camB/002.jpg", "camB/003.jpg", "camA/004.jpg", "camB/001.jpg"} <= {r["image_id"] for r in rows}
    assert "only 5 of 10 requested" in result.output
    assert "2 eligible images have no usable capture time" in result.output


def test_cct_sequences_and_gap_rule_on_cct_times(tmp_path):
    root = tmp_path / "images"
    names = ["s/1.jpg", "s/2.jpg", "s/3.jpg", "s/4.jpg"]
    make_collection(root, dict.fromkeys(names))
    md = write_json(tmp_path / "md.json", {"detection_categories": {"1": "animal"},
                                           "images": [{"file": n, "detections": [animal()]} for n in names]})
    cct = write_json(tmp_path / "cct.json", {"images": [
        {"file_name": "s/1.jpg", "seq_id": "q1", "frame_num": 0, "datetime": "2024-01-01 23:00:00"},
        {"file_name": "s/2.jpg", "seq_id": "q1", "frame_num": 1, "datetime": "2024-01-01 23:00:01"},
        {"file_name": "s/3.jpg", "datetime": "2024-01-01 12:00:00"},  # no seq_id: gap rule on CCT time
        {"file_name": "s/4.jpg", "datetime": "2024-01-01 12:00:30"},
    ]})
    out = tmp_path / "c.csv"
    run(tmp_path, "select", "--md", str(md), "--cct", str(cct), "--images", str(root), "-n", "4", "--out", str(out))
    rows = read_csv(out)
    assert len(rows) == 2
    by_seq = {r["seq_id"]: r for r in rows}
    assert "cct:q1" in by_seq and by_seq["cct:q1"]["night"] == "1"
    db = store.connect(tmp_path / "h.db")
    image = db["images"].get(by_seq["cct:q1"]["image_id"])
    assert image["frame_num"] in (0, 1) and image["datetime"].startswith("2024-01-01T23:00")


def test_missing_and_unreadable_picks_are_replaced_and_counted(tmp_path):
    root = tmp_path / "images"
    make_collection(root, {"a/good.jpg": datetime(2024, 1, 1, 12), "a/other.jpg": datetime(2024, 1, 2, 12)})
    (root / "a" / "broken.jpg").write_bytes(b"not a jpeg at all")
    md = write_json(tmp_path / "md.json", {"detection_categories": {"1": "animal"}, "images": [
        {"file": "a/missing.jpg", "detections": [animal(w=0.4)]},
        {"file": "a/broken.jpg", "detections": [animal(w=0.35)]},
        {"file": "a/good.jpg", "detections": [animal()]},
        {"file": "a/other.jpg", "detections": [animal(w=0.2)]},
    ]})
    out = tmp_path / "c.csv"
    result = run(tmp_path, "select", "--md", str(md), "--images", str(root), "-n", "2", "--out", str(out))
    assert {r["image_id"] for r in read_csv(out)} == {"a/good.jpg", "a/other.jpg"}
    assert "image file missing" in result.output and "unreadable image" in result.output


def test_same_seed_same_candidates_and_add_mode(tmp_path, camera_traps):
    args = ["select", "--md", str(camera_traps / "md_results.json"), "--images", str(camera_traps / "images")]
    run(tmp_path, *args, "-n", "3", "--out", str(tmp_path / "a.csv"), "--seed", "7")
    run(tmp_path, *args, "-n", "3", "--out", str(tmp_path / "b.csv"), "--seed", "7")
    first, second = read_csv(tmp_path / "a.csv"), read_csv(tmp_path / "b.csv")
    assert first == second
    db = store.connect(tmp_path / "h.db")
    assert db["candidates"].count == 3  # a rerun replaces, it does not pile up
    run(tmp_path, *args, "-n", "2", "--out", str(tmp_path / "c.csv"), "--add")
    added = read_csv(tmp_path / "c.csv")
    assert not {r["image_id"] for r in added} & {r["image_id"] for r in first}
    assert not {r["seq_id"] for r in added} & {r["seq_id"] for r in first}
    assert db["candidates"].count == 5


@pytest.mark.parametrize("payload, expected", [
    (b'{"images": [{"file": "a.jpg", "detections": [', "looks truncated"),
    (b"<html>nope</html>", "not valid JSON"),
    (b'{"predictions": []}', "--speciesnet"),
])
def test_bad_detector_file_is_one_clear_line(tmp_path, payload, expected):
    md = tmp_path / "md.json"
    md.write_bytes(payload)
    (tmp_path / "images").mkdir()
    result = run(tmp_path, "select", "--md", str(md), "--images", str(tmp_path / "images"), "-n", "1", ok=False)
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(error) == 1 and str(md) in error[0] and expected in error[0]
    assert "Traceback" not in result.output


def test_bad_records_do_not_stop_the_run(tmp_path):
    root = tmp_path / "images"
    make_collection(root, {"a/1.jpg": datetime(2024, 1, 1, 12)})
    md = write_json(tmp_path / "md.json", {"detection_categories": {"1": "animal"}, "images": [
        {"file": "a/1.jpg", "detections": [animal()]},
        {"file": "../x.jpg", "detections": [animal()]},
        {"file": "a/2.jpg", "detections": [{"category": "9", "conf": 0.9, "bbox": [0, 0, 1, 1]}]},
        {"file": "a/3.jpg", "detections": [{"category": "1", "conf": 0.9, "bbox": [0.5, 0.5, 0.9, 0.1]}]},
    ]})
    result = run(tmp_path, "select", "--md", str(md), "--images", str(root), "-n", "1", "--json")
    counts = json.loads(result.output[result.output.index("{"):])
    assert counts["selected"] == 1
    assert counts["problems"] == {f"{md}: bad path": 1, f"{md}: unknown detection category": 1,
                                  f"{md}: bbox outside [0,1]": 1}


def test_no_eligible_image_is_a_clear_error(tmp_path):
    (tmp_path / "images").mkdir()
    md = write_json(tmp_path / "md.json", {"images": [{"file": "a.jpg", "detections": []}]})
    result = run(tmp_path, "select", "--md", str(md), "--images", str(tmp_path / "images"), "-n", "1", ok=False)
    assert result.exit_code == 1 and "no image" in result.output and "eligible" in result.output


def test_config_file_and_env_database(tmp_path, camera_traps):
    config = tmp_path / "hitl.toml"
    config.write_text("[select]\nthreshold = 0.965\n")
    result = CliRunner().invoke(cli, ["--config", str(config), "select", "--md", str(camera_traps / "md_results.json"),
                                      "--images", str(camera_traps / "images"), "-n", "5"],
                                env={"HITL_DB": str(tmp_path / "env.db")})
    assert result.exit_code == 0, result.output
    assert (tmp_path / "env.db").exists()
    db = store.connect(tmp_path / "env.db")
    assert json.loads(next(db["selection_runs"].rows)["parameters"])["threshold"] == 0.965
    assert db["candidates"].count == 2  # only the dog and the ocelot are that confident


def test_an_option_overrides_the_file_and_the_rest_of_the_file_stays(tmp_path, camera_traps):
    """Options make a new [select] section over the file's: the run records both."""
    config = tmp_path / "hitl.toml"
    config.write_text("[select]\nthreshold = 0.965\nrare_min_sequences = 7\nseed = 3\n")
    result = CliRunner().invoke(cli, ["--db", str(tmp_path / "h.db"), "--config", str(config), "select",
                                      "--md", str(camera_traps / "md_results.json"), "--images",
                                      str(camera_traps / "images"), "-n", "5", "--threshold", "0.5", "--no-check-files"])
    assert result.exit_code == 0, result.output
    parameters = json.loads(next(store.connect(tmp_path / "h.db")["selection_runs"].rows)["parameters"])
    assert (parameters["threshold"], parameters["check_files"]) == (0.5, False)  # the options
    assert (parameters["rare_min_sequences"], parameters["seed"]) == (7, 3)  # the file
    assert parameters["shares"]["well_framed"] == 0.30 and parameters["sequence_gap_seconds"] == 60.0  # the defaults


def test_python_dash_m_entry_point_lists_commands(tmp_path):
    out = subprocess.run([sys.executable, "-m", "hitl", "--help"], capture_output=True, text=True, cwd=tmp_path,
                         env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0 and "select" in out.stdout and "--db" in out.stdout


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_commands_examples_stand_on_their_own_lines(name):
    """Click keeps a paragraph's lines only after a \\b line (a backspace); a docstring that
    spells it \\\\b shows a literal \\b and runs the example into one line."""
    doc = cli.commands[name].help or ""
    shown = CliRunner().invoke(cli, [name, "--help"], terminal_width=200).output
    assert "\\b" not in shown
    examples = [line.strip() for line in doc.splitlines() if line.strip().startswith("python -m hitl")]
    for example in examples:
        assert any(line.strip() == example for line in shown.splitlines()), f"{name}: {example!r} not on its own line"


def test_header_check_reports_the_upright_size(camera_traps):
    from hitl.imageprep import read_upright_size as _check_image

    images = camera_traps / "images"
    # stored as 1536 x 2048 pixels with EXIF Orientation=6: upright it is 2048 x 1536, as MegaDetector saw it
    with Image.open(images / "african_elephants_with_exif_orientation.jpg") as im:
        assert im.size == (1536, 2048)
    assert _check_image(images / "african_elephants_with_exif_orientation.jpg") == (None, (2048, 1536))
    assert _check_image(images / "african_elephants.jpg") == (None, (2048, 1536))
    assert _check_image(images / "nope.jpg") == ("image file missing", None)


def test_sample_data_selection(tmp_path, sample_data):
    out = tmp_path / "c.csv"
    result = run(tmp_path, "select", "--md", str(sample_data / "md_results.json"),
                 "--speciesnet", str(sample_data / "speciesnet_predictions.json"), "--cct", str(sample_data / "cct.json"),
                 "--images", str(sample_data / "images"), "-n", "12", "--out", str(out))
    rows = read_csv(out)
    assert len(rows) == 12 and len({r["seq_id"] for r in rows}) == 12
    ids = {r["image_id"] for r in rows}
    assert "cam_a/IMG_0011.JPG" not in ids  # the person
    assert "cam_c/IMG_0009.JPG" not in ids  # the truncated file
    assert "eurasian lynx" in {r["species"] for r in rows}  # the rare species is found
    assert {"rare_species", "group", "multi_species", "close_up", "well_framed"} <= {r["category"] for r in rows}
    assert all(r["seq_id"].startswith("cct:") for r in rows)
    assert "detector failure: Failure image access" in result.output


def test_speciesnet_5x_layout_names_species_and_flags_people(tmp_path):
    root = tmp_path / "images"
    make_collection(root, {"c/1.jpg": datetime(2024, 1, 1, 12), "c/2.jpg": datetime(2024, 1, 2, 12),
                           "c/3.jpg": datetime(2024, 1, 3, 12)})
    md = write_json(tmp_path / "md.json", {"detection_categories": {"1": "animal"}, "images": [
        {"file": f"c/{k}.jpg", "detections": [animal()]} for k in (1, 2, 3)]})

    def record(k, label):
        taxonomy = {"ocelot": "uuid-o;mammalia;carnivora;felidae;leopardus;pardalis;ocelot",
                    "human": "990ae9dd-7a59-4344-afcb-1b7b21368000;mammalia;primates;hominidae;homo;sapiens;human"}[label]
        return {"filepath": str(root / f"c/{k}.jpg"), "detections": [
            {"category": "1", "label": "animal", "conf": 0.9, "bbox": [0.3, 0.3, 0.3, 0.3],
             "raw_classifications": {"classes": [taxonomy], "scores": [0.9]},
             "processed_classification": {"class": taxonomy, "score": 0.9, "source": "classifier"}}]}

    sn = write_json(tmp_path / "sn.json", {"info": {"format_version": "20261015"},
                                           "predictions": [record(1, "ocelot"), record(2, "human"), record(3, "ocelot")]})
    out = tmp_path / "c.csv"
    result = run(tmp_path, "select", "--md", str(md), "--speciesnet", str(sn), "--images", str(root), "-n", "3",
                 "--out", str(out))
    rows = read_csv(out)
    assert {r["image_id"] for r in rows} == {"c/1.jpg", "c/3.jpg"}
    assert {r["species"] for r in rows} == {"ocelot"}
    assert "person (SpeciesNet)" in result.output


def test_unparseable_cct_dates_are_counted(tmp_path):
    root = tmp_path / "images"
    make_collection(root, {"s/1.jpg": None, "s/2.jpg": None})
    md = write_json(tmp_path / "md.json", {"detection_categories": {"1": "animal"},
                                           "images": [{"file": n, "detections": [animal()]} for n in ("s/1.jpg", "s/2.jpg")]})
    cct = write_json(tmp_path / "cct.json", {"images": [
        {"file_name": "s/1.jpg", "seq_id": "a", "datetime": "yesterday at noon"},
        {"file_name": "s/2.jpg", "seq_id": "b", "datetime": "2024-02-30 12:00:00"}]})
    result = run(tmp_path, "select", "--md", str(md), "--cct", str(cct), "--images", str(root), "-n", "2", "--json")
    counts = json.loads(result.output[result.output.index("{"):])
    assert counts["selected"] == 2
    assert counts["problems"] == {f"{cct}: unparseable datetime": 2}
