"""Decisions from a spreadsheet go through the same validator as every other path."""
from __future__ import annotations

from .conftest import CliProject


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
    assert "Ben" in listed and "sheet decisions.csv" in listed  # named by the sheet, never a path
    again = project.run("ratings", "--import", str(sheet))
    assert "2 unchanged" in again.output


def test_a_file_that_is_not_a_sheet_is_one_line(tmp_path, sample_data):
    project = project_with_candidates(tmp_path, sample_data)
    bad = tmp_path / "notes.csv"
    bad.write_text("a,b\n1,2\n")
    result = project.run("ratings", "--import", str(bad), ok=False)
    assert result.exit_code == 1 and "missing column(s) image_id, curator, stars, hero" in result.output
