"""`hitl score --import`: hero-images label files into the store, matched to the images already there."""
from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from converters.herolabels import hitl_model_name, match_results, parse_label_file
from hitl import store
from hitl.errors import HitlError, InputFormatError
from hitl.score.labels import import_scores
from hitl.store import transaction, utc_now

from .conftest import CliProject
from .helpers import examples

FIELDS = ("score", "hero", "reasoning", "status", "error")


def selected(tmp_path, sample_data, name: str = "h") -> CliProject:
    project = CliProject(tmp_path / f"{name}.db", {"HITL_DB": str(tmp_path / f"{name}.db")})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--images", str(sample_data / "images"),
                "-n", "10")
    return project


def scores_of(project: CliProject, model: str, pv: str) -> dict[str, dict]:
    return {r["image_id"]: r for r in project.db.query(
        "SELECT * FROM scores WHERE model = ? AND prompt_version = ? ORDER BY image_id", [model, pv])}


def test_export_then_import_into_a_fresh_database_reproduces_the_scores(tmp_path, sample_data):
    first = selected(tmp_path, sample_data, "first")
    first.run("score", "--model", "baseline")
    failed_id = sorted(scores_of(first, "baseline", "hero-v1"))[3]
    db = first.db
    with transaction(db):  # one failure, so the round trip carries a failure too
        db.execute("UPDATE scores SET status = 'failed', score = NULL, hero = NULL, reasoning = NULL, error = ?, "
                   "error_kind = 'http 500' WHERE image_id = ? AND model = 'baseline'",
                   ["HTTP 500: the server broke", failed_id])
    exported = tmp_path / "baseline_labels.json"
    first.run("score", "--model", "baseline", "--export", str(exported))

    second = selected(tmp_path, sample_data, "second")
    result = second.run("score", "--import", str(exported))
    assert result.output.splitlines()[0] == (
        f"{exported}: 9 scores imported as baseline@hero-v1 (9 new), 1 failure"), result.output
    before, after = scores_of(first, "baseline", "hero-v1"), scores_of(second, "baseline", "hero-v1")
    assert len(after) == 10 and sorted(after) == sorted(before)
    for image_id, row in before.items():
        assert {k: after[image_id][k] for k in FIELDS} == {k: row[k] for k in FIELDS}, image_id
    assert after[failed_id]["status"] == "failed" and after[failed_id]["error"] == "HTTP 500: the server broke"
    assert after[failed_id]["error_kind"] == "imported"  # not transient: a plain rerun does not call it again
    assert any(r["hero"] == 1 for r in after.values()) and all(r["reasoning"] for r in after.values()
                                                               if r["status"] == "ok")
    # the scores already paid for are not asked for again, and export gives back the same results
    assert "Nothing to score with baseline (hero-v1): 10 already done" in second.run(
        "score", "--model", "baseline").output
    again = tmp_path / "again.json"
    second.run("score", "--model", "baseline", "--export", str(again))
    assert json.loads(again.read_text())["results"] == json.loads(exported.read_text())["results"]
    run = next(second.db.query("SELECT * FROM score_runs WHERE mode = 'import'"))
    assert json.loads(run["parameters"])["file"] == str(exported) and json.loads(run["counts"])["scored"] == 9


def hand_written(project: CliProject, sample_data, tmp_path):
    """A file as hero-images' batch script writes it, with every kind of result worth importing or refusing."""
    root = str((sample_data / "images").resolve())
    ids = sorted(r["image_id"] for r in project.db.query("SELECT image_id FROM images"))
    flat, absolute, failed, windows = ids[0], ids[1], ids[2], ids[3]
    db = project.db
    with transaction(db):  # one image whose file name no other image has, and two that share one
        db["images"].insert_all([{"image_id": i, "root": root, "updated_at": utc_now()}
                                 for i in ("extra/only_one.jpg", "x1/same.jpg", "x2/same.jpg")])
    candidates = "/mnt/c/temp/hero-images/candidates"

    def ok(path, score, name=None, **extra):
        return {"image_path": path, "image_filename": name or path.replace("\\", "/").rsplit("/", 1)[-1],
                "aesthetic_score": score, "reasoning": f"reasoning for {path}", "success": True, **extra}

    results = [
        ok(f"{candidates}/{flat.replace('/', '#')}", 8.5),  # copied a/b.jpg -> a#b.jpg
        ok(f"{root}/{absolute}", 3),  # absolute, under the images' root
        {"image_path": failed, "image_filename": failed.rsplit("/", 1)[-1], "success": False,
         "error": "HTTP 503: model overloaded"},
        ok("D:\\camera traps\\" + windows.replace("/", "\\"), 6.5),  # under --images, written on Windows
        ok("/elsewhere/only_one.jpg", 9.0),  # matched by a file name only one image has
        ok("/elsewhere/nothing.jpg", 5.0),  # unmatched
        ok("/elsewhere/same.jpg", 5.0),  # two images are called same.jpg: unmatched
        ok(f"{candidates}/{flat.replace('/', '#')}", 2.0),  # the same image again: the first one counts
        ok(f"{candidates}/a.jpg", 11),
        ok(f"{candidates}/b.jpg", "x"),
        ok(f"{candidates}/c.jpg", float("nan")),
        ok(f"{candidates}/d.jpg", float("inf")),
        "oops",
    ]
    data = {"labeling_info": {"timestamp": "2025-09-23 14:30:22", "model_used": "models/gemini-2.5-flash",
                              "processing_method": "batch_api", "total_images": len(results)},
            "results": results}
    path = tmp_path / "gemini_batch_labels_20250923_143022.json"
    path.write_text(json.dumps(data, indent=2))
    assert "NaN" in path.read_text() and "Infinity" in path.read_text()  # as Python's json.dump writes them
    return path, {"flat": flat, "absolute": absolute, "failed": failed, "windows": windows,
                  "unique": "extra/only_one.jpg"}


def test_a_hero_images_file_with_every_kind_of_result(tmp_path, sample_data):
    project = selected(tmp_path, sample_data)
    path, ids = hand_written(project, sample_data, tmp_path)
    result = project.run("score", "--import", str(path), "--images", "D:\\camera traps")
    lines = result.output.splitlines()
    assert lines[0] == (f"{path}: 4 scores imported as gemini-2.5-flash@imported (4 new), 1 failure, "
                        f"2 unmatched, 1 duplicate, 5 bad records"), result.output
    for reason, count in (("score not a number", 3), ("no image in the database matches", 1),
                          ("file name matches several images", 1), ("the same image twice", 1),
                          ("score out of range", 1), ("result not an object", 1)):
        assert f"skipped {count:>6}  {reason}" in result.output, reason
    assert "e.g. " in result.output and "'nothing.jpg'" in result.output and "11 is outside 0-10" in result.output
    rows = scores_of(project, "gemini-2.5-flash", "imported")
    assert set(rows) == set(ids.values())
    assert rows[ids["flat"]]["score"] == 8.5  # the first of the two results for it
    assert rows[ids["absolute"]]["score"] == 3.0 and rows[ids["windows"]]["score"] == 6.5
    assert rows[ids["unique"]]["score"] == 9.0
    assert rows[ids["flat"]]["hero"] is None  # hero-images' files do not say
    assert rows[ids["flat"]]["reasoning"].startswith("reasoning for /mnt/c/temp/hero-images/candidates/")
    failure = rows[ids["failed"]]
    assert (failure["status"], failure["score"], failure["error"]) == ("failed", None, "HTTP 503: model overloaded")
    assert json.loads(failure["raw_response"])["success"] is False


def test_reimport_changes_nothing_and_an_edit_is_an_update(tmp_path, sample_data):
    project = selected(tmp_path, sample_data)
    path, ids = hand_written(project, sample_data, tmp_path)
    project.run("score", "--import", str(path), "--images", "D:\\camera traps")
    snapshot = list(project.db.query("SELECT * FROM scores ORDER BY image_id, model"))
    runs = project.db["score_runs"].count
    again = project.run("score", "--import", str(path), "--images", "D:\\camera traps", "--json")
    counts = json.loads(again.output)
    assert counts["scores"] == {"new": 0, "updated": 0, "unchanged": 4}
    assert counts["failures"] == {"new": 0, "updated": 0, "unchanged": 1}
    assert (counts["unmatched"], counts["duplicates"], counts["bad_records"]) == (2, 1, 5)
    assert counts["problems"]["score not a number"] == 3 and counts["matched_by"]["unique file name"] == 1
    assert list(project.db.query("SELECT * FROM scores ORDER BY image_id, model")) == snapshot
    assert project.db["score_runs"].count == runs

    data = json.loads(path.read_text())
    data["results"][1]["aesthetic_score"] = 6.0
    path.write_text(json.dumps(data))
    edited = project.run("score", "--import", str(path), "--images", "D:\\camera traps")
    assert "4 scores imported as gemini-2.5-flash@imported (1 updated, 3 unchanged)" in edited.output
    rows = scores_of(project, "gemini-2.5-flash", "imported")
    old = {r["image_id"]: r for r in snapshot if r["model"] == "gemini-2.5-flash"}
    assert rows[ids["absolute"]]["score"] == 6.0
    assert rows[ids["absolute"]]["created_at"] == old[ids["absolute"]]["created_at"]
    assert rows[ids["flat"]]["updated_at"] == old[ids["flat"]]["updated_at"]  # untouched

    named = project.run("score", "--import", str(path), "--images", "D:\\camera traps", "--model", "gemini-2.5-pro",
                        "--prompt-version", "hero-images-v0")
    assert "4 scores imported as gemini-2.5-pro@hero-images-v0 (4 new), 1 failure" in named.output
    assert scores_of(project, "gemini-2.5-pro", "hero-images-v0")[ids["absolute"]]["score"] == 6.0


@pytest.mark.parametrize("content, expected", [
    ("label,score\na.jpg,7\n", "it is not valid JSON"),
    ("", "is empty"),
    ('[{"image_path": "a.jpg"}]', "the JSON is a list"),
    ('{"labeling_info": {"model": "m"}}', "it has no results list (its keys: labeling_info)"),
    ('{"results": {"a.jpg": 7}}', "its results is a object, not a list"),
    ('{"results": ["a.jpg", 7]}', "none of its 2 results has image_path"),
    ("cct.json", "looks like a COCO (Camera Traps) file"),
    ("md_results.json", "looks like a MegaDetector results file"),
])
def test_a_file_that_is_not_a_label_file_is_one_line(tmp_path, sample_data, content, expected):
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    if content.endswith(".json"):
        path = sample_data / content
    else:
        path = tmp_path / "labels.json"
        path.write_text(content)
    result = project.run("score", "--import", str(path), ok=False)
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1, result.output
    assert result.output.startswith(f"Error: {path}: ") and expected in result.output, result.output
    assert project.db["scores"].count == 0


def test_unusable_requests_are_clear(tmp_path, sample_data):
    project = selected(tmp_path, sample_data)
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"results": [{"image_path": "/elsewhere/a.jpg", "aesthetic_score": 5,
                                             "success": True}]}))
    nameless = project.run("score", "--import", str(path), ok=False)
    assert nameless.exit_code == 1 and "labeling_info names no model; pass --model NAME" in nameless.output
    nothing = project.run("score", "--import", str(path), "--model", "m", ok=False)
    assert nothing.exit_code == 1 and f"{path}: 0 scores imported as m@imported, 1 unmatched" in nothing.output
    assert "nothing imported: none of its 1 results matches an image" in nothing.output
    clash = project.run("score", "--import", str(path), "--export", "out.json", "--batch", ok=False)
    assert clash.exit_code == 2 and "cannot be combined with --export, --batch" in clash.output
    assert project.db["scores"].count == 0


def test_the_converter_reads_the_layouts_hero_images_writes():
    vllm = parse_label_file({"checkpoint_info": {"model_used": "Qwen/Qwen2.5-VL-7B-Instruct",
                                                 "processing_method": "local_vllm"},
                             "results": [{"image_path": "/c/cam1#a.jpg", "image_filename": "cam1#a.jpg",
                                          "aesthetic_score": "7.5", "reasoning": "sharp"},
                                         {"image_filename": "site#cam2#b.jpg", "success": False, "error": None},
                                         {"image_filename": "c.jpg", "success": "yes"}]}, "v.json")
    assert vllm.model == "openai:Qwen/Qwen2.5-VL-7B-Instruct" and vllm.prompt_version is None
    assert [(r.success, r.score) for r in vllm.results] == [(True, 7.5), (False, None)]
    assert [(p.record, p.reason) for p in vllm.problems] == [("results[2] ('c.jpg')", "success not true or false")]
    known = {"cam1/a.jpg": "/data", "cam2/b.jpg": "/data"}
    matched = match_results(vllm.results, known, source="v.json")
    assert [i for i, _ in matched.pairs] == ["cam1/a.jpg", "cam2/b.jpg"]  # site#cam2#b.jpg: a folder above the root
    assert matched.by == {"file name with # for /": 2}
    assert hitl_model_name("models/gemini-2.5-flash", "batch_api") == "gemini-2.5-flash"
    assert hitl_model_name("unknown", "local_vllm") is None  # then --model is asked for
    assert hitl_model_name("openai:Qwen/Qwen2.5-VL-7B-Instruct", "local_vllm") == "openai:Qwen/Qwen2.5-VL-7B-Instruct"


def test_the_readme_sequence_puts_every_score_on_its_own_image(tmp_path, sample_data):
    """README: the walk-through's database (candidates, bursts, a folder scored) exports its baseline
    scores; a second database holding only 12 candidates imports them. An entry naming an image the
    second database does not hold is unmatched, never put on another camera's image of the same name."""
    walk = CliProject(tmp_path / "hitl.db", {"HITL_DB": str(tmp_path / "hitl.db")})
    walk.run("select", "--md", str(sample_data / "md_results.json"), "--speciesnet",
             str(sample_data / "speciesnet_predictions.json"), "--cct", str(sample_data / "cct.json"),
             "--images", str(sample_data / "images"), "-n", "12", "--frames-per-burst", "3")
    walk.run("score", "--model", "baseline")
    walk.run("score", "--model", "baseline", "--images", str(sample_data / "images"))
    labels = tmp_path / "baseline_labels.json"
    walk.run("score", "--model", "baseline", "--export", str(labels))
    exported = {r["image_id"]: r for r in json.loads(labels.read_text())["results"]}

    imported = CliProject(tmp_path / "imported.db", {"HITL_DB": str(tmp_path / "imported.db")})
    imported.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                 "--images", str(sample_data / "images"), "-n", "12")
    held = {r["image_id"] for r in imported.db.query("SELECT image_id FROM images")}
    result = imported.run("score", "--import", str(labels), "--json")
    counts = json.loads(result.output)
    rows = scores_of(imported, "baseline", "hero-v1")
    assert set(rows) == held & set(exported) and len(rows) == 12, sorted(rows)
    for image_id, row in rows.items():  # every score on the image it was exported for
        assert row["score"] == exported[image_id]["aesthetic_score"], image_id
    assert counts["scores"]["new"] == 12 and counts["duplicates"] == 0
    assert counts["unmatched"] == len(exported) - 12 == counts["problems"]["image_id not in the database"]


def test_a_weaker_key_is_used_only_when_the_entry_says_nothing_more_specific():
    known = {"cam_a/IMG_0001.JPG": "/data", "cam_b/IMG_0006.JPG": "/data", "cam_b/IMG_0002.JPG": "/data"}
    entries = [
        {"image_id": "cam_a/IMG_0006.JPG", "aesthetic_score": 1},  # an image we do not hold
        {"image_path": "/data/cam_a/IMG_0006.JPG", "aesthetic_score": 2},  # under the root: the same
        {"image_path": "cam_c/IMG_0006.JPG", "aesthetic_score": 3},  # relative: to the root
        {"image_id": "cam_a/IMG_0001.JPG", "image_path": "/data/cam_b/IMG_0002.JPG", "aesthetic_score": 4},
        {"image_path": "/elsewhere/IMG_0006.JPG", "aesthetic_score": 5},  # outside every root: its name only
        {"image_path": "/data/candidates/cam_b#IMG_0002.JPG", "aesthetic_score": 6},  # a flattened copy
        {"image_path": "IMG_0001.JPG", "aesthetic_score": 7},  # a bare name
    ]
    labels = parse_label_file({"results": entries}, "l.json")
    matched = match_results(labels.results, known, source="l.json")
    assert [(i, r.score) for i, r in matched.pairs] == [
        ("cam_b/IMG_0006.JPG", 5.0), ("cam_b/IMG_0002.JPG", 6.0), ("cam_a/IMG_0001.JPG", 7.0)]
    assert [p.reason for p in matched.unmatched] == [
        "image_id not in the database", "image_path names no image in the database",
        "image_path names no image in the database", "image_id and image_path name different images"]


# ---- hostile values: every result imported or counted, nothing escapes ---------------------------

class Raw(str):
    """JSON text put into the file as it is (what json.dumps cannot write: 1e999, 5000 digits)."""


SURROGATE = st.integers(0xD800, 0xDFFF).map(chr)
HOSTILE = st.one_of(
    st.sampled_from([Raw("1e999"), Raw("-1e999"), Raw("9" * 5000), Raw("-" + "9" * 5000), Raw("9" * 400),
                     Raw("1e-999"), Raw("NaN"), Raw("-Infinity"), Raw("[" * 3000 + "]" * 3000)]),
    st.tuples(st.text(max_size=5), SURROGATE, st.text(max_size=5)).map("".join),
    st.floats(), st.integers(), st.integers(min_value=10 ** 300, max_value=10 ** 3000), st.booleans(), st.none(),
    st.text(), st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
KEYS = ("image_id", "image_path", "image_filename", "aesthetic_score", "score", "reasoning", "error", "success",
        "hero", "inputs", "other")


def hostile_file(path, where: str, index: int, key: str, value) -> None:
    results = [{"image_id": f"cam/{n}.jpg", "image_path": f"/data/cam/{n}.jpg", "image_filename": f"{n}.jpg",
                "aesthetic_score": 7.5, "reasoning": "sharp", "success": True, "error": None, "hero": True}
               for n in "abc"]
    data = {"labeling_info": {"model": "m", "prompt_version": "v"}, "results": results}
    target = data["labeling_info"] if where == "info" else results[index]
    target[key if where != "info" else ("model", "prompt_version")[index % 2]] = "@@RAW@@" if isinstance(
        value, Raw) else value
    text = json.dumps(data)  # ensure_ascii: a lone surrogate is written as its \ud800 escape
    path.write_text(text.replace('"@@RAW@@"', value) if isinstance(value, Raw) else text)


@settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["result", "result", "result", "info"]), index=st.integers(0, 2),
       key=st.sampled_from(KEYS), value=HOSTILE)
def test_fuzz_label_file_values(tmp_path_factory, where, index, key, value):
    tmp = tmp_path_factory.mktemp("fuzz-labels")
    path = tmp / "labels.json"
    hostile_file(path, where, index, key, value)
    db = store.connect(tmp / "h.db")
    with transaction(db):
        db["images"].insert_all([{"image_id": f"cam/{n}.jpg", "root": "/data", "updated_at": utc_now()}
                                 for n in "abc"])
    try:
        summary = import_scores(db, path)
    except (HitlError, InputFormatError) as exc:  # refusing the whole file: only for the file's own fields,
        deep = isinstance(value, Raw) and value.startswith("[")  # or nesting past any decoder
        assert where == "info" or deep, repr(exc)
        assert "\n" not in str(exc) and db["scores"].count == 0
        return
    # every result accounted for: stored, or counted with its reason (never silently dropped)
    counted = len(summary.bad) + len(summary.unmatched) + len(summary.duplicates)
    assert summary.total == 3 and summary.matched + counted == 3, summary.as_counts()
    rows = list(db.query("SELECT * FROM scores"))
    assert len(rows) == summary.matched
    for row in rows:
        assert row["status"] == "failed" or (math.isfinite(row["score"]) and 0 <= row["score"] <= 10)


def test_the_values_of_the_issue_are_counted_bad_records_and_the_rest_is_imported(tmp_path, sample_data):
    project = selected(tmp_path, sample_data)
    ids = sorted(r["image_id"] for r in project.db.query("SELECT image_id FROM candidates"))
    results = [{"image_id": i, "aesthetic_score": 5.0, "reasoning": "fine", "success": True} for i in ids[:4]]
    results[1]["aesthetic_score"] = "@1e999@"
    results[2]["reasoning"] = "a lone \ud800 surrogate"
    results[3]["aesthetic_score"] = "@huge@"
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"labeling_info": {"model": "m"}, "results": results})
                    .replace('"@1e999@"', "1e999").replace('"@huge@"', "1" + "0" * 400))
    result = project.run("score", "--import", str(path))
    assert result.output.splitlines()[0] == f"{path}: 1 score imported as m@imported (1 new), 3 bad records"
    for reason in ("score not a number", "text not valid Unicode", "score out of range"):
        assert f"skipped      1  {reason}" in result.output, result.output
    assert [r["image_id"] for r in project.db.query("SELECT image_id FROM scores")] == ids[:1]


def test_an_import_does_not_replace_scores_of_another_origin_without_replace(tmp_path, sample_data):
    project = selected(tmp_path, sample_data)
    project.run("score", "--model", "baseline")
    real = scores_of(project, "baseline", "hero-v1")
    exported = tmp_path / "baseline_labels.json"
    project.run("score", "--model", "baseline", "--export", str(exported))
    same = project.run("score", "--import", str(exported), "--json")  # the same scores: nothing replaced
    assert json.loads(same.output)["scores"] == {"new": 0, "updated": 0, "unchanged": 10}

    data = json.loads(exported.read_text())
    for entry in data["results"]:
        entry["aesthetic_score"] = 10.0 - entry["aesthetic_score"]
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    refused = project.run("score", "--import", str(other), ok=False)
    assert refused.exit_code == 1 and len(refused.output.strip().splitlines()) == 1, refused.output
    assert refused.output.startswith(f"Error: {other}: 10 of its results would replace baseline@hero-v1 scores "
                                     f"made by a scoring run here (e.g. ") and "pass --replace" in refused.output
    assert scores_of(project, "baseline", "hero-v1") == real

    replaced = project.run("score", "--import", str(other), "--replace")
    assert "10 scores imported as baseline@hero-v1 (10 updated)" in replaced.output
    after = scores_of(project, "baseline", "hero-v1")
    assert all(after[i]["score"] == 10.0 - real[i]["score"] for i in real)
    again = project.run("score", "--import", str(other), "--json")  # its own scores now: a no-op
    assert json.loads(again.output)["scores"] == {"new": 0, "updated": 0, "unchanged": 10}
    back = project.run("score", "--import", str(exported), ok=False)  # another file's scores now
    assert f"would replace baseline@hero-v1 scores imported from {other.resolve()}" in back.output
    assert project.run("score", "--model", "baseline", "--replace", ok=False).exit_code == 2
