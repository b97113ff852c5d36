"""`hitl report`, `export` and `queue` on a project with curators and two models."""
from __future__ import annotations

import base64
import csv
import io
import json
import random
import re
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from hitl import store
from hitl.cli import cli
from hitl.store import insert_row, transaction

from .helpers.copies import copy_project
from .helpers.labelstudio import studio_api

SECTIONS = ("What this says", "Raters", "Models against the curators", "Across all raters", "Hero decisions",
            "Curators among themselves", "By review mode", "By species", "Plots", "Top disagreements")


def rated_project(tmp_path: Path, sample_data: Path, images: Path | None = None, n: int = 12) -> Path:
    """sample_data selected and scored by two models, rated by three curators (overlapping)."""
    db_path = tmp_path / "h.db"
    runner = CliRunner()
    images = images or sample_data / "images"
    for args in (["select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                  "--speciesnet", str(sample_data / "speciesnet_predictions.json"), "--images", str(images),
                  "-n", str(n)],
                 ["score", "--model", "baseline"]):
        result = runner.invoke(cli, ["--db", str(db_path), *args])
        assert result.exit_code == 0, result.output
    db = store.connect(db_path)
    rng = random.Random(3)
    ids = [r[0] for r in db.execute("SELECT image_id FROM candidates ORDER BY rank")]
    baseline = dict(db.execute("SELECT image_id, score FROM scores WHERE model = 'baseline'").fetchall())
    with transaction(db):
        for k, image_id in enumerate(ids):
            quality = baseline[image_id]
            insert_row(db, "scores", {"image_id": image_id, "model": "gemini-2.5-flash", "prompt_version": "hero-v1",
                                      "status": "ok", "score": round(min(10, max(0, quality + rng.uniform(-2, 3))), 1),
                                      "hero": int(quality > 5), "reasoning": f"gemini reasoning {k}"})
            for c, curator in enumerate(("ana@example.org", "ben@example.org", "cho@example.org")):
                if (k + c) % 4 == 0:
                    continue  # not every curator rates every image
                stars = int(min(10, max(1, round(quality + rng.uniform(-1.5, 2.5)))))
                insert_row(db, "ratings", {
                    "source": "labelstudio", "project": "7", "annotation_id": f"{k}-{c}", "task_id": k,
                    "image_id": image_id, "annotator_id": str(c + 1), "annotator_email": curator, "stars": stars,
                    "hero": int(stars >= 6), "comment": "lovely light" if (k, c) == (0, 1) else None, "boxes": "[]",
                    "skipped": 0, "deleted": 0, "mode": "blind" if c == 2 else "assisted",
                    "updated_at": f"2026-11-21T10:00:{k:02d}Z"})
    return db_path


@pytest.fixture(scope="module")
def rated_once(tmp_path_factory, sample_data: Path) -> Path:
    return rated_project(tmp_path_factory.mktemp("rated"), sample_data)


@pytest.fixture
def rated(rated_once: Path, tmp_path: Path) -> Path:
    """rated_project's database, built once for the module, copied for the test (which may write to it)."""
    copy_project(rated_once.parent, tmp_path, rated_once.name, ()).conn.close()
    return tmp_path / rated_once.name


class Sections(HTMLParser):
    def __init__(self):
        super().__init__()
        self.headings, self.images, self.text, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        if tag in ("h1", "h2", "h3"):
            self._in = tag
        if tag == "img":
            self.images.append(dict(attrs)["src"])

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        self.text.append(data)
        if self._in:
            self.headings.append(data.strip())


def test_report_from_sample_data(tmp_path, rated):
    db_path = rated
    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["--db", str(db_path), "report", "--out", str(out), "--resamples", "300"])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    parser = Sections()
    parser.feed(page)
    for section in SECTIONS:
        assert any(h.startswith(section) for h in parser.headings), section
    words = " ".join(parser.text)
    assert not re.search(r"\b(nan|NaN|inf)\b", words)  # too little data is said in words
    assert "http://" not in page and "https://" not in page  # opens from disk, no network
    # every plot and thumbnail is embedded and decodes
    assert len(parser.images) >= 6
    for src in parser.images:
        assert src.startswith("data:image/")
        Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
    assert "lovely light" in page and "gemini reasoning" in page
    data = json.loads((out / "agreement.json").read_text())  # strict JSON: no NaN allowed
    assert data["readings"] and data["parameters"]["resamples"] == 300
    pair = next(p for p in data["pairs"] if p["a"] == "humans" and p["b"].startswith("gemini"))
    assert pair["n"] == 12 and pair["spearman"] is not None and pair["ci"]["spearman"]
    assert data["inter_human"]["pairs"]  # three curators overlap
    with (out / "disagreements.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 12 and rows[0]["rank"] == "1"
    assert float(rows[0]["max_abs_diff"]) >= float(rows[-1]["max_abs_diff"] or 0)


def test_report_with_too_little_data_says_so_in_words(tmp_path, sample_data):
    db_path = tmp_path / "h.db"
    runner = CliRunner()
    runner.invoke(cli, ["--db", str(db_path), "select", "--md", str(sample_data / "md_results.json"),
                        "--images", str(sample_data / "images"), "-n", "3"])
    runner.invoke(cli, ["--db", str(db_path), "score", "--model", "baseline"])
    result = runner.invoke(cli, ["--db", str(db_path), "report", "--out", str(tmp_path / "r"), "--resamples", "50"])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r" / "report.html").read_text()
    parser = Sections()
    parser.feed(page)
    assert not re.search(r"\b(nan|NaN|inf)\b", " ".join(parser.text))
    assert "No image has both a curator rating and a model score yet" in page
    store.connect(tmp_path / "empty.db")  # a database with nothing in it (no database at all is another error)
    empty = CliRunner().invoke(cli, ["--db", str(tmp_path / "empty.db"), "report", "--out", str(tmp_path / "e")])
    assert empty.exit_code == 1 and "nothing to report" in empty.output


@pytest.mark.parametrize("policy, minimum", [("any", 1), ("majority", 1), ("all", 0)])
def test_export_command(tmp_path, rated, policy, minimum):
    db_path = rated
    out = tmp_path / "heroes"
    result = CliRunner().invoke(cli, ["--db", str(db_path), "export", "--out", str(out), "--policy", policy])
    assert result.exit_code == 0, result.output
    with (out / "manifest.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) >= minimum
    for row in rows:
        assert (out / row["file"]).is_file()
    again = CliRunner().invoke(cli, ["--db", str(db_path), "export", "--out", str(out), "--policy", policy])
    assert "0 exported" in again.output and "0 conflicts" in again.output


def test_queue_lands_in_label_studio_blind(tmp_path, label_studio, sample_data):
    images = label_studio.document_root / "sample_data" / "images"
    db_path = rated_project(tmp_path, sample_data, images=images)
    title = f"adjudication {uuid.uuid4().hex[:6]}"
    env = {"LABEL_STUDIO_API_KEY": label_studio.token, "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT":
           str(label_studio.document_root)}
    result = CliRunner().invoke(cli, ["--db", str(db_path), "queue", "-n", "5", "--url", label_studio.url,
                                      "--project", title], env=env)
    assert result.exit_code == 0, result.output
    assert "5 queued" in result.output
    client = studio_api(label_studio.url, label_studio.token)
    project = next(p for p in client.projects.list(title=title) if p.title == title)
    tasks = list(client.tasks.list(project=project.id, fields="all"))
    from hitl.analyse.disagreements import rank_disagreements
    from hitl.store.ratings import long_table

    top = [r["image_id"] for r in rank_disagreements(long_table(store.connect(db_path)))[:5]]
    assert sorted(t.data["image_id"] for t in tasks) == sorted(top)
    assert all("model_scores" not in t.data for t in tasks)  # blind: no model output
    assert project.model_version == "detector"


# ---- the report never contradicts itself --------------------------------------------------------------

def test_confusion_rows_are_the_model_decision():
    from hitl.analyse.agreement import compute_agreement
    from hitl.publish.report import confusion_grid

    rows = []
    for k in range(8):  # the model calls exactly one image hero; the curators call six
        rows.append({"image_id": f"i{k}", "rater": "m@v1", "kind": "model", "score": 5.0, "hero": k == 0})
        rows.append({"image_id": f"i{k}", "rater": "ana", "kind": "human", "score": 7.0, "hero": k < 6})
    hero = next(h for h in compute_agreement(rows, resamples=0)["hero"] if h["via"] == "flag")
    grid = confusion_grid(hero["confusion"])
    assert sum(grid[0]) == 1 and sum(grid[1]) == 7  # rows: the model's hero, not hero
    assert grid[0][0] + grid[1][0] == 6  # columns: the curators'


def test_one_curator_in_two_projects_counts_once_everywhere(tmp_path):
    from hitl.analyse.disagreements import rank_disagreements
    from hitl.publish.report import _per_image
    from hitl.store.ratings import long_table

    db = store.connect(tmp_path / "h.db")
    with transaction(db):
        db["images"].insert({"image_id": "a.jpg", "root": str(tmp_path)})
        store.insert_row(db, "scores", {"image_id": "a.jpg", "model": "m", "prompt_version": "v1", "status": "ok",
                                        "score": 5.0, "hero": 0})
        for project, stars, when in (("1", 2, "2026-01-01T00:00:00+00:00"), ("2", 8, "2026-01-02T00:00:00+00:00")):
            store.insert_row(db, "ratings", {"source": "labelstudio", "project": project, "annotation_id": project,
                                             "image_id": "a.jpg", "annotator_email": "ana@example.org", "stars": stars,
                                             "hero": 1, "skipped": 0, "deleted": 0, "boxes": "[]",
                                             "updated_at": when})
        store.insert_row(db, "ratings", {"source": "labelstudio", "project": "1", "annotation_id": "9",
                                         "image_id": "a.jpg", "annotator_email": "ben@example.org", "stars": 4,
                                         "hero": 0, "skipped": 0, "deleted": 0, "boxes": "[]",
                                         "updated_at": "2026-01-01T00:00:00+00:00"})
    rows = long_table(db)
    ranked = rank_disagreements(rows)[0]
    assert ranked["n_curators"] == 2 and ranked["human_mean"] == 6.0  # ana's newer 8 and ben's 4
    human, _ = _per_image(rows)
    assert human["a.jpg"] == 6.0  # the plots use the same consensus


def test_thin_data_in_words(tmp_path, sample_data):
    db_path = tmp_path / "h.db"
    runner = CliRunner()
    runner.invoke(cli, ["--db", str(db_path), "select", "--md", str(sample_data / "md_results.json"),
                        "--images", str(sample_data / "images"), "-n", "5"], catch_exceptions=False)
    runner.invoke(cli, ["--db", str(db_path), "score", "--model", "baseline"], catch_exceptions=False)
    result = runner.invoke(cli, ["--db", str(db_path), "report", "--out", str(tmp_path / "r"), "--resamples", "0"],
                           catch_exceptions=False)
    first = next(line for line in result.output.splitlines() if line.startswith("- "))
    assert first.startswith("- No curator ratings yet") and "1 model " in first
    page = (tmp_path / "r" / "report.html").read_text()
    assert "1 model<" in page and "1 models" not in page and "0 curators" in page
    assert "each curator counts once" in page  # the consensus is defined where it is used
