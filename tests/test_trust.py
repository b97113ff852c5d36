"""What a hostile or careless user does changes nothing: impossible decisions are refused on every
path, sync deletes only what it can prove, bad files and names are counted and skipped, files
outside their place are never written, spreadsheets cannot run what the tool writes."""
from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from converters.decisions import DecisionError, check_box, check_stars
from converters.labelstudio import MAX_ID
from hitl import store
from hitl.review import events
from hitl.review.labelme import read_labelme_folder
from hitl.review.reconcile import sync_export_file
from hitl.tables import csv_cell

from .conftest import CliProject, give_detector_record
from .helpers import examples
from .helpers.records import annotation, export_of, labelme_doc, rating_item
from .helpers.webhook import CREATED, JSON, SECRET, fingerprint, leaf_paths, mutate, post


def box_item(**value):
    return {"from_name": "boxes", "to_name": "image", "type": "rectanglelabels",
            "value": {"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["fox"], **value}}


def with_result(*items, **annotation):
    body = json.loads(json.dumps(CREATED))
    body["annotation"]["result"] = list(items)
    body["annotation"].update(annotation)
    return body


# ---- impossible values are refused, on the webhook ----------------------------------------------

@pytest.mark.parametrize("body", [
    with_result(rating_item(11)), with_result(rating_item(1e18)), with_result(rating_item(0.5)),
    with_result(rating_item(-3)), with_result(rating_item(1e30)), with_result(rating_item(0)),
    with_result(rating_item(True)),
    with_result(box_item(x=-5)), with_result(box_item(width=300)), with_result(box_item(rectanglelabels=[7])),
    with_result({"from_name": "hero", "to_name": "image", "type": "choices", "value": {"choices": ["hero", "not_hero"]}}),
    with_result({"from_name": "hero", "to_name": "image", "type": "choices", "value": {"choices": ["maybe"]}}),
    with_result(lead_time=-1), with_result(was_cancelled="false"), with_result(completed_by=[1, 2]),
    with_result(completed_by={"id": 1, "email": 7}), with_result(completed_by={"id": 1, "email": "not-an-email"}),
    with_result(created_at="yesterday"), with_result(id=-4),
    with_result(updated_at="9999-12-31T00:00:00Z"), with_result(created_at="3026-01-01T00:00:00"),
], ids=lambda b: json.dumps(b["annotation"].get("result") or
                            {k: b["annotation"][k] for k in ("lead_time", "was_cancelled", "completed_by",
                                                             "created_at", "updated_at", "id")})[:80])
def test_impossible_decisions_get_400_and_store_nothing(tmp_path, webhook_app, body):
    app = webhook_app({"DATABASE": str(tmp_path / "h.db"), "WEBHOOK_SECRET": SECRET, "TESTING": True})
    before = fingerprint(app.config["DATABASE"])
    response = post(app.test_client(), body)
    assert response.status_code == 400, response.json
    assert fingerprint(app.config["DATABASE"]) == before


def test_a_bad_mode_in_the_task_is_400(tmp_path, webhook_app):
    body = json.loads(json.dumps(CREATED))
    body["task"]["data"]["mode"] = "<evil>"
    app = webhook_app({"DATABASE": str(tmp_path / "h.db"), "WEBHOOK_SECRET": SECRET, "TESTING": True})
    assert post(app.test_client(), body).status_code == 400


@pytest.mark.parametrize("raw", [
    # not JSON as the standard has it: Infinity and NaN, and lone surrogates
    json.dumps(with_result(rating_item(8), lead_time=float("inf"))),
    json.dumps(with_result(box_item(x=float("nan")))),
    json.dumps(with_result({"from_name": "comment", "to_name": "image", "type": "textarea",
                            "value": {"text": ["\ud800"]}})),
    json.dumps({**CREATED, "action": "\ud800"}),
])
def test_non_standard_json_is_400_never_a_failed_event(tmp_path, webhook_app, raw):
    app = webhook_app({"DATABASE": str(tmp_path / "h.db"), "WEBHOOK_SECRET": SECRET, "TESTING": True})
    before = fingerprint(app.config["DATABASE"])
    response = post(app.test_client(), None, raw=raw)
    assert response.status_code == 400, response.data
    assert fingerprint(app.config["DATABASE"]) == before


def test_the_validator_itself():
    assert check_stars(8.0) == 8
    for bad in (11, 0.5, 1e18, "8", None, float("inf")):
        with pytest.raises(DecisionError):
            check_stars(bad)
    assert check_box(0, 0, 1.0004, 1)["w"] == 1.0  # rounding at the edge is inside
    for bad in ((-0.5, 0, 0.1, 0.1), (0, 0, 0, 0.1), (0.5, 0.5, 0.6, 0.1), (float("nan"), 0, 0.1, 0.1)):
        with pytest.raises(DecisionError):
            check_box(*bad)


def test_events_keep_no_credentials(tmp_path, webhook_app):
    body = json.loads(json.dumps(CREATED))
    body["project"].update(token="ls-token-123", task_data_login="admin", task_data_password="hunter2")
    app = webhook_app({"DATABASE": str(tmp_path / "h.db"), "WEBHOOK_SECRET": SECRET, "TESTING": True})
    assert post(app.test_client(), body).status_code == 200
    stored = next(store.connect(tmp_path / "h.db")["events"].rows)["body"]
    assert "ls-token-123" not in stored and "hunter2" not in stored and "task_data_login" not in stored
    assert json.loads(stored)["annotation"]["id"] == CREATED["annotation"]["id"]  # the decision is kept


# ---- sync from an export deletes only what it can prove ---------------------------------------------

def deliver(db_path, aid, stars, task=3, updated="2026-11-21T13:00:00Z"):
    body = json.loads(json.dumps(CREATED))
    body["annotation"].update(id=aid, task=task, result=[rating_item(stars)], created_at=updated, updated_at=updated)
    body["task"]["id"] = task
    body["task"]["data"]["image_id"] = f"img{task}.jpg"
    db = store.connect(db_path)
    events.store_event(db, body, via="webhook")


def live(db_path) -> dict[str, int]:
    return {r["annotation_id"]: r["stars"] for r in store.connect(db_path)["ratings"].rows_where("deleted = 0")}


def test_a_copied_old_export_deletes_no_newer_rating(tmp_path):
    db_path = tmp_path / "h.db"
    old = tmp_path / "export.json"
    old.write_text(json.dumps(export_of(annotation(1, 5, "2026-11-21T12:00:00Z"))))
    sync_export_file(store.connect(db_path), old, None)
    deliver(db_path, 2, 7, updated="2026-11-21T13:00:00Z")  # rated after the export was taken
    copy = tmp_path / "copy.json"
    shutil.copy(old, copy)  # a fresh mtime, old content
    _, result = sync_export_file(store.connect(db_path), copy, None)
    assert live(db_path) == {"1": 5, "2": 7} and result.counts["deleted"] == 0
    assert store.connect(db_path)["ls_tasks"].count_where("deleted_at IS NOT NULL") == 0  # no task tombstoned
    deliver(db_path, 3, 9, updated="2026-11-21T14:00:00Z")  # a new rating on that task is kept on arrival
    assert live(db_path)["3"] == 9


def test_an_export_proves_a_deletion_and_only_a_later_one_restores_it(tmp_path):
    db_path = tmp_path / "h.db"
    both = tmp_path / "both.json"
    both.write_text(json.dumps(export_of(annotation(1, 5, "2026-11-21T12:00:00Z"),
                                         annotation(2, 6, "2026-11-21T12:05:00Z"))))
    sync_export_file(store.connect(db_path), both, None)
    later = tmp_path / "later.json"  # annotation 2 gone, and the file is newer than it
    later.write_text(json.dumps(export_of(annotation(1, 5, "2026-11-21T12:30:00Z"))))
    sync_export_file(store.connect(db_path), later, None)
    assert live(db_path) == {"1": 5}
    _, result = sync_export_file(store.connect(db_path), both, None)  # older than the proof: it stays gone
    assert live(db_path) == {"1": 5} and result.counts["restored"] == 0 and result.counts["kept deleted"] == 1
    newest = tmp_path / "newest.json"  # the proof was wrong (a filtered export, say): a newer one has it
    newest.write_text(json.dumps(export_of(annotation(1, 5, "2026-11-21T12:30:00Z"),
                                           annotation(2, 6, "2026-11-21T12:45:00Z"))))
    _, result = sync_export_file(store.connect(db_path), newest, None)
    assert live(db_path) == {"1": 5, "2": 6} and result.counts["restored"] == 1


def test_an_older_export_does_not_undo_what_an_api_sync_proved(tmp_path):
    """(1b) An API sync at T finds annotation 2 gone; an export file taken before T still holds it."""
    from datetime import datetime, timezone

    from hitl.review.reconcile import Snapshot, reconcile_tasks

    db_path = tmp_path / "h.db"
    both = export_of(annotation(1, 5, "2026-11-21T12:00:00Z"), annotation(2, 6, "2026-11-21T12:05:00Z"))
    old = tmp_path / "project-4-at-12-10.json"
    old.write_text(json.dumps(both))
    sync_export_file(store.connect(db_path), old, None)
    api = Snapshot(datetime(2026, 11, 21, 13, 0, tzinfo=timezone.utc), "ours")
    db = store.connect(db_path)
    db.execute("UPDATE ratings SET received_at = '2026-11-21T12:10:00+00:00'")  # stored before the API sync
    db.conn.commit()
    gone = reconcile_tasks(db, export_of(annotation(1, 5, "2026-11-21T12:00:00Z")), "4", api)
    assert gone.counts["deleted"] == 1 and live(db_path) == {"1": 5}
    project = CliProject(db_path, {"HITL_DB": str(db_path)})
    again = project.run("sync", "--from-export", str(old)).output
    assert live(db_path) == {"1": 5} and "restored" not in again and "1 kept deleted" in again, again


def test_an_export_without_project_ids_must_agree_with_the_task_map(tmp_path):
    """(2b) Task 3 is project 1's; an export of it that names no project, given as project 2, is
    refused instead of copying project 1's decisions into project 2."""
    db_path = tmp_path / "h.db"
    project = CliProject(db_path, {"HITL_DB": str(db_path)})
    named = tmp_path / "named.json"
    named.write_text(json.dumps(export_of(annotation(1, 5, "2026-11-21T12:00:00Z"), project=1)))
    project.run("sync", "--from-export", str(named))
    bare = tmp_path / "bare.json"
    tasks = export_of(annotation(1, 7, "2026-11-21T12:30:00Z"), project=None)
    bare.write_text(json.dumps([{k: v for k, v in t.items() if k != "project"} for t in tasks]))
    refused = project.run("sync", "--from-export", str(bare), "--project-id", "2", ok=False)
    assert refused.exit_code == 1 and "task 3 is project 1's" in refused.output and "Traceback" not in refused.output
    assert project.db["ratings"].count_where("project = '2'") == 0
    unknown = project.run("sync", "--from-export", str(bare), "--project-id", "9", ok=False).output
    assert "task 3 is project 1's" in unknown
    agreed = project.run("sync", "--from-export", str(bare), "--project-id", "1").output
    assert "1 updated" in agreed and live(db_path) == {"1": 7}
    fresh = CliProject(tmp_path / "fresh.db", {"HITL_DB": str(tmp_path / "fresh.db")})
    nothing = fresh.run("sync", "--from-export", str(bare), "--project-id", "1", ok=False).output
    assert "none of them is a task of project 1" in nothing


def test_an_explicit_delete_is_not_undone_by_a_sync(tmp_path):
    db_path = tmp_path / "h.db"
    deliver(db_path, 1, 5)
    body = {"action": "ANNOTATIONS_DELETED", "project": {"id": 4}, "annotations": [{"id": 1}]}
    events.store_event(store.connect(db_path), body, via="webhook")
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(export_of(annotation(1, 5, "2026-11-21T13:00:00Z"))))
    sync_export_file(store.connect(db_path), stale, None)
    assert live(db_path) == {}


def test_project_id_must_agree_with_the_tasks(tmp_path):
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    p5 = tmp_path / "p5.json"
    p5.write_text(json.dumps(export_of(annotation(1, 5, "2026-11-21T12:00:00Z"), project=5)))
    refused = project.run("sync", "--from-export", str(p5), "--project-id", "4", ok=False)
    assert refused.exit_code == 1 and "not --project-id 4" in refused.output
    assert project.db["ratings"].count == 0
    huge = project.run("sync", "--from-export", str(p5), "--project-id", str(2 ** 63), ok=False)
    assert huge.exit_code == 1 and "is not a Label Studio project id" in huge.output and "Traceback" not in huge.output
    unnamed = tmp_path / "unnamed.json"  # no project named: the task map is asked, and a task id past SQLite's
    unnamed.write_text(json.dumps(export_of(annotation(1, 5, "2026-11-21T12:00:00Z"), project=None, task_id=2 ** 63)))
    counted = project.run("sync", "--from-export", str(unnamed), "--project-id", "5").output
    assert "malformed task" in counted and project.db["ratings"].count == 0
    mixed = tmp_path / "mixed.json"
    mixed.write_text(json.dumps(export_of(project=5) + export_of(project=6, task_id=9)))
    assert "several projects" in project.run("sync", "--from-export", str(mixed), ok=False).output


def test_bad_records_in_an_export_are_counted_and_the_rest_goes_on(tmp_path):
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    tasks = export_of(annotation(1, 5, "2026-11-21T12:00:00Z"), annotation(2, 10 ** 30, "2026-11-21T12:00:00Z"),
                      "an annotation that is a string", annotation(3, 7, "2026-11-21T12:00:00Z"))
    tasks.append("a task that is a string")
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    result = project.run("sync", "--from-export", str(path))
    assert "2 new" in result.output and "stars out of range" in result.output and "malformed task" in result.output
    assert sorted(live(tmp_path / "h.db")) == ["1", "3"]
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    line = project.run("sync", "--from-export", str(deep), ok=False).output
    assert "not a JSON file" in line and "Traceback" not in line


@settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 10_000), value=JSON | st.just(KeyError))
@example(pick=838, value=None)  # a task's annotations null: one bad annotation (found by a CI run)
@example(pick=1, value=2 ** 63)  # a project id beyond SQLite's integers: the file refused in one line (found by a run)
def test_fuzz_sync_from_export(tmp_path_factory, pick, value):
    tmp = tmp_path_factory.mktemp("fuzz-export")
    tasks = export_of(annotation(1, 5, "2026-11-21T12:00:00Z"), annotation(2, 8, "2026-11-21T12:01:00Z"))
    paths = [p for p in leaf_paths(tasks) if p]
    mutated = mutate(tasks, list(paths[pick % len(paths)]), value)
    path = tmp / "export.json"
    path.write_text(json.dumps(mutated))
    db = store.connect(tmp / "h.db")
    try:
        named = any(isinstance(t, dict) and t.get("project") is not None for t in mutated)
        _, result = sync_export_file(db, path, None if named else 4)
    except Exception as exc:  # a whole-file refusal is one line with the fix, never a crash
        from hitl.errors import HitlError

        assert isinstance(exc, HitlError), repr(exc)
        return
    for row in store.connect(tmp / "h.db")["ratings"].rows:  # whatever got in passed the validator
        assert row["stars"] is None or 1 <= row["stars"] <= 10
        json.loads(row["boxes"])
    # every record is accounted for: stored, or counted as a problem (never silently dropped)
    expected = 0
    for task in mutated:
        if not (isinstance(task, dict) and isinstance(task.get("id"), int) and not isinstance(task["id"], bool)
                and 0 <= task["id"] <= MAX_ID):  # a task id Label Studio never gives is a malformed task
            expected += 1
            continue
        found = task.get("annotations", [])  # anything but a list (null, 0 and "" too) is one bad annotation
        expected += len(found) if isinstance(found, list) else 1
    seen = sum(result.counts[k] for k in ("new", "updated", "unchanged", "older"))
    assert seen + sum(result.problems.values()) == expected, (mutated, result)


# ---- Labelme: validated, robust per file ---------------------------------------------------------

def test_labelme_import_counts_bad_files_and_goes_on(tmp_path):
    folder = tmp_path / "review"
    folder.mkdir()
    (folder / "good.json").write_text(json.dumps(labelme_doc()))
    (folder / ".hidden.json").write_text(json.dumps(labelme_doc(imagePath=".hidden.jpg")))  # export wrote it
    (folder / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (folder / "nan.json").write_text(json.dumps(labelme_doc(shapes=[{"label": "x", "points": [[float("nan"), 1], [2, 3]],
                                                                      "shape_type": "rectangle"}])))
    (folder / "mode.json").write_text(json.dumps(labelme_doc(hero_hitl={"mode": "<evil>", "image_id": "a.jpg"})))
    os.mkfifo(folder / "fifo.json")  # opening it would hang the import
    (folder.joinpath(os.fsdecode(b"caf\xe9.json"))).write_text(json.dumps(labelme_doc()))  # not UTF-8
    ratings, problems = read_labelme_folder(folder)
    assert sorted(r.annotation_id for r in ratings) == [".hidden.json", "good.json"]
    reasons = {p.reason for p in problems}
    assert {"not valid JSON", "not a regular file", "file name is not UTF-8"} <= reasons, problems
    assert any("finite" in p.reason for p in problems)
    # a mode that is not a mode is not stored as one
    assert all(r.mode in (None, "assisted", "blind") for r in ratings)


@settings(max_examples=examples(100), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pick=st.integers(0, 10_000), value=JSON | st.just(KeyError))
def test_fuzz_labelme_import(tmp_path_factory, pick, value):
    folder = tmp_path_factory.mktemp("fuzz-labelme")
    doc = labelme_doc(hero_hitl={"image_id": "a.jpg", "mode": "blind", "export_digest": "x"})
    paths = [p for p in leaf_paths(doc) if p]
    (folder / "a.json").write_text(json.dumps(mutate(doc, list(paths[pick % len(paths)]), value)))
    ratings, problems = read_labelme_folder(folder)  # never raises for one file
    assert len(ratings) + len(problems) >= 1
    for rating in ratings:
        assert rating.hero in (None, True, False) and rating.mode in (None, "assisted", "blind")
        for box in rating.boxes:
            assert 0 <= box["x"] <= 1 and 0 < box["w"] <= 1


# ---- files outside their place -------------------------------------------------------------------

def scored_project(tmp_path, names=("=1+2.jpg", "@cmd.jpg", "+SUM(A1).jpg", "cam/ok.jpg")) -> CliProject:
    folder = tmp_path / "photos"
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (64, 48), (90, 120, 60)).save(folder / name)
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("score", "--model", "baseline", "--images", str(folder))
    give_detector_record(project.db, folder, list(names))  # else a folder's images are left out of the export
    return project


def plant_hero(project: CliProject, image_id: str, species: str | None = None) -> None:
    db = project.db
    with store.transaction(db):
        if species:
            db.execute("UPDATE images SET species = ? WHERE image_id = ?", [species, image_id])
        store.insert_row(db, "ratings", {"source": "labelstudio", "project": "1", "annotation_id": image_id,
                                         "image_id": image_id, "annotator_email": "a@example.org", "stars": 9,
                                         "hero": 1, "skipped": 0, "deleted": 0, "boxes": "[]", "mode": "blind",
                                         "updated_at": "2026-01-01T00:00:00+00:00"})


def cells(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [cell for row in csv.reader(fh) for cell in row]


def test_no_csv_the_tool_writes_can_run_a_formula(tmp_path):
    project = scored_project(tmp_path)
    for image_id in ("=1+2.jpg", "@cmd.jpg", "+SUM(A1).jpg"):
        plant_hero(project, image_id, species="=cmd|' /C calc'!A0")
    project.run("export", "--out", str(tmp_path / "heroes"))
    project.run("report", "--out", str(tmp_path / "report"), "--resamples", "0")
    for path in (tmp_path / "heroes" / "manifest.csv", tmp_path / "report" / "disagreements.csv"):
        written = cells(path)
        assert "'=1+2.jpg" in written and "'@cmd.jpg" in written, written
        assert not [c for c in written if c[:1] in ("=", "+", "@", "\t", "\r")], (path, written)
    assert csv_cell("-3.5") == "-3.5" and csv_cell("-x") == "'-x" and csv_cell(7) == 7


def test_candidates_csv_is_neutralised(tmp_path, sample_data):
    md = json.loads((sample_data / "md_results.json").read_text())
    images = tmp_path / "images"
    shutil.copytree(sample_data / "images", images)
    first = md["images"][0]["file"]
    renamed = str(Path(first).parent / "=HYPERLINK(1).JPG")
    (images / first).rename(images / renamed)
    md["images"][0]["file"] = renamed
    (tmp_path / "md.json").write_text(json.dumps(md))
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(tmp_path / "md.json"), "--images", str(images), "-n", "40",
                "--out", str(tmp_path / "c.csv"))
    written = cells(tmp_path / "c.csv")
    assert not [c for c in written if c[:1] in ("=", "+", "@")]


def test_export_never_overwrites_what_it_did_not_write(tmp_path):
    project = scored_project(tmp_path)
    plant_hero(project, "cam/ok.jpg")
    out = tmp_path / "heroes"
    out.mkdir()
    (out / "index.html").write_text("<p>the curator's own page</p>")
    (out / "manifest.json").write_bytes((tmp_path / "photos" / "cam" / "ok.jpg").read_bytes())  # a JPEG
    result = project.run("export", "--out", str(out))
    assert (out / "index.html").read_text() == "<p>the curator's own page</p>"
    assert (out / "manifest.json").read_bytes()[:2] == b"\xff\xd8"
    assert "conflict" in result.output and (out / "manifest.csv").exists()
    again = project.run("export", "--out", str(out))  # its own manifest.csv it may replace
    assert "conflict (left untouched)" in again.output and (out / "manifest.csv").exists()


def test_export_does_not_write_through_a_link_out_of_its_folder(tmp_path):
    project = scored_project(tmp_path)
    plant_hero(project, "cam/ok.jpg")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    out = tmp_path / "heroes"
    out.mkdir()
    (out / "cam").symlink_to(outside, target_is_directory=True)
    result = project.run("export", "--out", str(out))
    assert list(outside.iterdir()) == [] and "conflict" in result.output


def test_score_images_skips_links_out_fifos_and_names_not_utf8(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (64, 48)).save(folder / "ok.jpg")
    secret = tmp_path / "private"
    secret.mkdir()
    Image.new("RGB", (64, 48)).save(secret / "private.jpg")
    (folder / "link.jpg").symlink_to(secret / "private.jpg")
    (folder / "linked_folder").symlink_to(secret, target_is_directory=True)
    os.mkfifo(folder / "trap.jpg")
    Image.new("RGB", (64, 48)).save(folder / os.fsdecode(b"caf\xe9.jpg"))
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    result = project.run("score", "--model", "baseline", "--images", str(folder))
    assert {r["image_id"] for r in project.db["images"].rows} == {"ok.jpg"}
    for reason in ("a link out of the folder", "not a regular file", "file name is not UTF-8", "linked folder"):
        assert reason in result.output, result.output


def test_select_does_not_hang_on_a_fifo(tmp_path, sample_data):
    images = tmp_path / "images"
    shutil.copytree(sample_data / "images", images)
    chosen = CliProject(tmp_path / "a.db", {"HITL_DB": str(tmp_path / "a.db")})
    chosen.run("select", "--md", str(sample_data / "md_results.json"), "--images", str(images), "-n", "1")
    first = next(chosen.db["candidates"].rows)["image_id"]
    (images / first).unlink()
    os.mkfifo(images / first)
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    result = project.run("select", "--md", str(sample_data / "md_results.json"), "--images", str(images), "-n", "1")
    assert "not a regular file" in result.output
    assert next(project.db["candidates"].rows)["image_id"] != first


# ---- against a real Label Studio --------------------------------------------------------------------

WEIRD_SPECIES = ["it's 'single' & \"double\"", "two\nlines", "<b>bold</b>", "café ñandú"]


def test_the_label_config_is_written_once_for_any_species_name(tmp_path, label_studio):
    import uuid

    from hitl.review.configs import config_labels

    from .helpers.labelstudio import Review

    review = Review(tmp_path, label_studio, n=6)
    db = review.db
    ids = [r["image_id"] for r in db.query("SELECT image_id FROM candidates ORDER BY rank")]
    with store.transaction(db):
        for image_id, name in zip(ids, WEIRD_SPECIES):
            db.execute("UPDATE images SET species = ? WHERE image_id = ?", [name, image_id])
            db.execute("UPDATE detections SET species = NULL WHERE image_id = ?", [image_id])
    db.conn.close()
    title = f"weird species {uuid.uuid4().hex[:6]}"
    configs = []
    for _ in range(3):
        review.push(title)
        configs.append(review.project(title).label_config)
    assert configs[0] == configs[1] == configs[2]
    labels = config_labels(configs[0])
    for name in WEIRD_SPECIES:
        assert labels.count(name) == 1, (name, labels)


def test_a_key_echoed_in_a_provider_error_is_redacted(tmp_path):
    from .fakes import FakeGemini
    from .fakes import behaviours as B
    from .helpers.scoring import Project, gemini_env, make_folder

    make_folder(tmp_path / "photos", 1)
    with FakeGemini() as server:
        key = gemini_env(server)["GEMINI_API_KEY"]
        server.script(*[B.bad_request(f"Invalid request https://x/v1beta?key={key}&alt=json")] * 3)
        project = Project(tmp_path, gemini_env(server))
        result = project.run("score", "--model", "gemini-2.5-flash", "--images", str(tmp_path / "photos"), ok=False)
        stored = json.dumps(list(project.db["scores"].rows))
    assert key not in result.output and key not in stored
    assert "[redacted]" in stored


def test_deeply_nested_detector_json_is_one_line(tmp_path, sample_data):
    deep = tmp_path / "md.json"
    deep.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    result = project.run("select", "--md", str(deep), "--images", str(sample_data / "images"), "-n", "2", ok=False)
    assert result.exit_code == 1 and "nests deeper" in result.output and "Traceback" not in result.output
