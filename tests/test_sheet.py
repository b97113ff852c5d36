"""Decisions from a spreadsheet go through the same validator as every other path, are the same
decisions under any file name, and are stored in parts that leave the webhook its turns."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time

from hitl import store

from .conftest import REPO, CliProject


def project_with_candidates(tmp_path, sample_data) -> CliProject:
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    project.run("select", "--md", str(sample_data / "md_results.json"), "--images", str(sample_data / "images"),
                "-n", "4")
    return project


def test_a_sheet_of_decisions_with_bad_rows(tmp_path, sample_data):
    project = project_with_candidates(tmp_path, sample_data)
    ids = [r["image_id"] for r in project.db.query("SELECT image_id FROM candidates ORDER BY rank")]
    sheet = tmp_path / "decisions.csv"
    sheet.write_text("\ufeffimage_id,curator,stars,hero,mode,comment\n"
                     f"{ids[0]},ana@example.org,9,yes,blind,lovely\n"
                     f"{ids[1]},Ben,4,no,,\n"
                     f"{ids[2]},ana@example.org,11,yes,,\n"        # stars out of range
                     f"{ids[2]},ana@example.org,,maybe,,\n"       # not a hero choice
                     f"{ids[3]},ana@example.org,0.5,,,\n"         # not whole stars
                     f"{ids[3]},cy,7,,<evil>,\n"                  # not a mode
                     f"nowhere/x.jpg,ana@example.org,7,yes,,\n"   # not in the database
                     f"{ids[0]},ana@example.org,8,yes,,\n")      # the same curator and image twice
    result = project.run("ratings", "--import", str(sheet))
    assert "2 decisions: 2 new" in result.output, result.output
    for reason in ("stars out of range", "bad hero choice", "bad mode", "image not in the database",
                   "the same curator and image twice"):
        assert reason in result.output, reason
    rows = {(r["annotator_email"] or r["annotator_id"]): r for r in project.db["ratings"].rows}
    assert rows["ana@example.org"]["stars"] == 9 and rows["ana@example.org"]["hero"] == 1
    assert rows["Ben"]["hero"] == 0 and rows["ana@example.org"]["mode"] == "blind"
    listed = project.run("ratings").output
    assert "Ben" in listed and "sheet" in listed and str(tmp_path) not in listed  # never a path
    again = project.run("ratings", "--import", str(sheet))
    assert "2 unchanged" in again.output


def test_a_file_that_is_not_a_sheet_is_one_line(tmp_path, sample_data):
    project = project_with_candidates(tmp_path, sample_data)
    bad = tmp_path / "notes.csv"
    bad.write_text("a,b\n1,2\n")
    result = project.run("ratings", "--import", str(bad), ok=False)
    assert result.exit_code == 1 and "missing column(s) image_id, curator, stars, hero" in result.output


def test_the_same_sheet_under_another_name_is_the_same_decisions(tmp_path, sample_data):
    project = project_with_candidates(tmp_path, sample_data)
    ids = [r["image_id"] for r in project.db.query("SELECT image_id FROM candidates ORDER BY rank")]
    sheet = tmp_path / "decisions.csv"
    sheet.write_text(f"image_id,curator,stars,hero\n{ids[0]},ana@example.org,9,yes\n{ids[1]},Ben,4,no\n")
    written = time.time() - 2  # the copy made now is newer to the second: its rows without updated_at take its time
    os.utime(sheet, (written, written))  # (the sheet dated back rather than the copy made after a wait)
    assert "2 new" in project.run("ratings", "--import", str(sheet)).output
    copy = tmp_path / "decisions (copy).csv"
    shutil.copy(sheet, copy)
    again = project.run("ratings", "--import", str(copy)).output
    assert "0 new, 0 updated, 2 unchanged" in again, again
    assert project.db["ratings"].count == 2
    # a later version of the sheet updates what changed, and only that
    copy.write_text(f"image_id,curator,stars,hero\n{ids[0]},ana@example.org,10,yes\n{ids[1]},Ben,4,no\n"
                    f"{ids[2]},Ben,6,no\n")
    edited = project.run("ratings", "--import", str(copy)).output
    assert "1 new, 1 updated, 1 unchanged" in edited, edited
    stars = {(r["annotator_email"] or r["annotator_id"], r["image_id"]): r["stars"] for r in project.db["ratings"].rows}
    assert stars == {("ana@example.org", ids[0]): 10, ("Ben", ids[1]): 4, ("Ben", ids[2]): 6}
    assert "1 older than stored" in project.run("ratings", "--import", str(sheet)).output  # the old file is older


def test_rows_no_reader_can_take_are_counted_and_the_rest_imported(tmp_path, sample_data):
    project = project_with_candidates(tmp_path, sample_data)
    ids = [r["image_id"] for r in project.db.query("SELECT image_id FROM candidates ORDER BY rank")]
    sheet = tmp_path / "decisions.csv"
    sheet.write_bytes(b"image_id,curator,stars,hero,comment,updated_at\n"
                      + f"{ids[0]},ana,9,yes,,\n".encode()
                      + f'{ids[1]},ana,8,yes,"{"x" * 200_000}",\n'.encode()  # over the CSV reader's 128 KiB
                      + f"{ids[2]},ana,7,no,caf\xe9,\n".encode("latin-1")  # not UTF-8
                      + f"{ids[3]},ana,6,no,,9999-12-31T00:00:00Z\n".encode()  # in no one's past
                      + f"{ids[3]},ben,5,no,,\n".encode())
    result = project.run("ratings", "--import", str(sheet))
    assert "2 decisions: 2 new" in result.output, result.output
    for reason in ("unreadable row", "not UTF-8 text", "more than a day in the future"):
        assert reason in result.output, reason
    assert "Traceback" not in result.output
    assert {(r["annotator_id"], r["image_id"]) for r in project.db["ratings"].rows} == {("ana", ids[0]), ("ben", ids[3])}


def test_curator_names_never_reach_the_terminal_raw(tmp_path, sample_data):
    project = project_with_candidates(tmp_path, sample_data)
    image_id = next(project.db.query("SELECT image_id FROM candidates"))["image_id"]
    sheet = tmp_path / "decisions.csv"
    sheet.write_text(f"image_id,curator,stars,hero\n{image_id},\x1b[2J\x1b[31mmallory\u202e,9,yes\n"
                     f"nowhere.jpg,\x1b]0;owned\x07eve,9,yes\n")
    imported = project.run("ratings", "--import", str(sheet)).output
    listed = project.run("ratings").output
    for output in (imported, listed):
        assert "\x1b" not in output and "\u202e" not in output and "\x07" not in output, output
    assert "\\x1b[31mmallory\\u202e" in listed and "\\x1b]0;owned\\x07eve" in imported


# ---- a long import beside the webhook ------------------------------------------------------------

def big_sheet(tmp_path, n_images: int, n_curators: int) -> tuple[CliProject, object]:
    """A database of ``n_images`` images and a sheet rating each once per curator."""
    project = CliProject(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db")})
    db = project.db
    with store.transaction(db):
        db.conn.executemany("INSERT INTO images (image_id, root) VALUES (?, ?)",
                            [(f"cam/{k:06d}.jpg", "/photos") for k in range(n_images)])
    sheet = tmp_path / "big.csv"
    with sheet.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image_id", "curator", "stars", "hero"])
        writer.writerows([f"cam/{k:06d}.jpg", f"curator{c}", (k + c) % 10 + 1, "yes" if k % 3 == 0 else "no"]
                         for c in range(n_curators) for k in range(n_images))
    return project, sheet


def import_process(project: CliProject, sheet) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hitl", "--db", str(project.db_path), "ratings", "--import",
                             str(sheet)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_long_import_leaves_the_webhook_its_turns(tmp_path, camera_traps, webhook_app):
    """While `ratings --import` stores 30,000 decisions (seconds), the webhook's writer commits every
    delivery within a fraction of Label Studio's 1 s: the import holds the lock a part at a time."""
    from .helpers.webhook import SECRET, fresh

    project, sheet = big_sheet(tmp_path, 3_000, 10)
    app = webhook_app({"DATABASE": str(project.db_path), "WEBHOOK_SECRET": SECRET, "TESTING": True})
    writer = app.extensions["hitl_writer"]
    waits: list[float] = []
    importing = import_process(project, sheet)
    k = 0
    while importing.poll() is None:
        started = time.monotonic()
        event_id, outcome, detail = writer.submit(fresh(k)).result(timeout=30)
        waits.append(time.monotonic() - started)
        assert outcome == "ok", detail
        k += 1
        time.sleep(0.02)
    output = importing.communicate()[0].decode()
    assert importing.returncode == 0 and "30000 decisions: 30000 new" in output, output
    assert len(waits) >= 10, "the import was over before the deliveries could meet it"
    assert max(waits) < 0.5, sorted(waits)[-5:]
    assert store.connect(project.db_path)["ratings"].count == 30_000 + k


def test_an_import_killed_midway_finishes_without_counting_twice(tmp_path):
    # 10,000 decisions, 20 parts of 500: killed after the first 4, it still has 16 parts to go
    project, sheet = big_sheet(tmp_path, 1_000, 10)
    importing = import_process(project, sheet)
    db = store.connect(project.db_path)
    while importing.poll() is None and db["ratings"].count < 2_000:  # some parts committed
        time.sleep(0.01)
    importing.kill()
    importing.wait()
    stored = db["ratings"].count
    assert 0 < stored < 10_000, stored
    result = project.run("ratings", "--import", str(sheet)).output
    assert f"{10_000 - stored} new, 0 updated, {stored} unchanged" in result, (stored, result)
    assert db["ratings"].count == 10_000
    assert db["rating_history"].count_where("change = 'created'") == 10_000  # nothing created twice
