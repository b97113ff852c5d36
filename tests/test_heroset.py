"""Exporting the validated hero set: a real selection and score run, curators' ratings, then export."""
from __future__ import annotations

import base64
import copy as copy_module
import csv
import errno
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from hitl import store
from hitl.cli import cli
from hitl.publish import heroset
from hitl.publish.heroset import export_heroset, flat_names
from hitl.store.heroes import POLICIES, HerosetError, select_heroes, select_with_counts

from .conftest import REPO, SHARED, give_detector_record
from .helpers.copies import copy_project

ELEPHANT = "african_elephants_with_exif_orientation.jpg"  # stored portrait, EXIF orientation 6


def run(db_path: Path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["--db", str(db_path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


class Project:
    """A database built by the real CLI, with a second model and curators' ratings added."""

    def __init__(self, tmp: Path):
        self.root = tmp
        sample = REPO / "sample_data"
        self.images = tmp / "images"
        shutil.copytree(sample / "images", self.images)
        self.extra = tmp / "extra"
        self.extra.mkdir()
        elephant = SHARED / "camera_traps" / "images" / ELEPHANT
        if not elephant.exists():
            pytest.fail(f"{elephant} is missing: put shared/ beside the repo or set HITL_SHARED_DIR")
        shutil.copy2(elephant, self.extra / ELEPHANT)
        self.db_path = tmp / "h.db"
        run(self.db_path, "select", "--md", str(sample / "md_results.json"), "--cct", str(sample / "cct.json"),
            "--speciesnet", str(sample / "speciesnet_predictions.json"), "--images", str(self.images), "-n", "8")
        run(self.db_path, "score", "--model", "baseline")
        run(self.db_path, "score", "--model", "baseline", "--images", str(self.extra))
        self.db = store.connect(self.db_path)
        give_detector_record(self.db, self.extra, [ELEPHANT])  # else an image scored from a folder is left out
        ranked = [r[0] for r in self.db.execute("SELECT image_id FROM candidates ORDER BY rank")]
        assert len(ranked) == 8
        self.ids = dict(zip("ABCDEFGH", ranked))
        self.ids["X"] = ELEPHANT
        for n, image_id in enumerate(sorted(self.ids.values())):
            store.insert_row(self.db, "scores", {
                "image_id": image_id, "model": "gemini-2.5-flash", "prompt_version": "hero-v1", "status": "ok",
                "score": 3.0 + n * 0.5, "hero": int(n % 3 == 0), "reasoning": f"gemini says {n}"})
        self.edited_box = {"x": 0.1, "y": 0.2, "w": 0.3, "h": 0.4, "label": "red deer"}
        self._n = 0
        r = self.rate
        r("A", "ana@example.org", 9, 1, comment="Lovely light, crop a little tighter")
        r("A", "ben@example.org", 8, 1)
        r("A", "cy@example.org", 6, 0, mode="blind")
        r("B", "ana@example.org", 7, 1, boxes=[self.edited_box])
        r("B", "ben@example.org", 5, 0)  # 1 of 2: a tie is no majority
        r("C", "ana@example.org", 10, 1, comment="Piglets!")
        r("D", "ana@example.org", 3, 0)
        r("D", "ben@example.org", None, 0)
        r("E", "ana@example.org", 9, 1, deleted=1)  # a deleted yes does not count
        r("E", "ben@example.org", 4, 0)
        r("F", "ana@example.org", 9, 1, skipped=1)  # nor a skipped one
        r("F", "cy@example.org", None, 1)  # hero, but nobody gave stars
        r("G", "ana@example.org", 8, 1, updated="2026-01-01T10:00:00+00:00")
        r("G", "ana@example.org", 8, 0, updated="2026-01-05T10:00:00+00:00", project="2", mode="blind")  # changed mind
        r("G", "ben@example.org", 8, None)  # stars, no decision
        r("X", None, 8, 1, source="labelme", project=str(self.extra))
        r("X", "ben@example.org", 9, 1)
        self.db.conn.commit()

    def rate(self, key: str, email: str | None, stars: int | None, hero: int | None, *, comment: str | None = None,
             boxes: list | None = None, mode: str = "assisted", skipped: int = 0, deleted: int = 0,
             updated: str = "2026-01-02T10:00:00+00:00", source: str = "labelstudio", project: str = "1") -> None:
        self._n += 1
        store.insert_row(self.db, "ratings", {
            "source": source, "project": project, "annotation_id": str(self._n), "image_id": self.ids[key],
            "annotator_id": None if email is None else str(self._n), "annotator_email": email, "stars": stars,
            "hero": hero, "comment": comment, "boxes": json.dumps(boxes or []), "skipped": skipped,
            "deleted": deleted, "mode": mode, "created_at": updated, "updated_at": updated,
            "received_at": updated, "via": "webhook"})

    def keys(self, image_ids) -> set[str]:
        back = {v: k for k, v in self.ids.items()}
        return {back[i] for i in image_ids}

    def source(self, key: str) -> Path:
        return (self.extra if key == "X" else self.images) / self.ids[key]

    def copy_to(self, tmp: Path) -> Project:
        """The same project under ``tmp``, as if it had been built there."""
        copy = copy_module.copy(self)
        copy.root, copy.images, copy.extra, copy.db_path = tmp, tmp / "images", tmp / "extra", tmp / "h.db"
        copy.db = copy_project(self.root, tmp, "h.db", ("images", "extra"))
        roots = {r[0] for r in copy.db.execute("SELECT DISTINCT root FROM images")}
        assert roots == {str(copy.images), str(copy.extra)}, roots
        return copy


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Project:
    """The project, built once for the module (select, two baseline runs, the ratings: ~0.3 s)."""
    return Project(tmp_path_factory.mktemp("heroset"))


@pytest.fixture
def project(built, tmp_path) -> Project:
    """A copy of ``built`` of the test's own: tests delete photos, put files in the way, change ratings."""
    return built.copy_to(tmp_path)


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


class Page(HTMLParser):
    """Collects every tag with its attributes, and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)

    def all(self, tag: str, cls: str | None = None) -> list[dict]:
        return [a for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())]


def decode_data_uri(src: str) -> Image.Image:
    assert src.startswith("data:image/jpeg;base64,")
    image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    image.load()
    return image


# ---- who is a hero ------------------------------------------------------------------------------

def test_policies_give_exact_sets(project):
    ids = lambda policy: project.keys(h["image_id"] for h in select_heroes(project.db, policy))  # noqa: E731
    assert ids("any") == {"A", "B", "C", "F", "X"}
    assert ids("majority") == {"A", "C", "F", "X"}
    assert ids("all") == {"C", "F", "X"}
    by_key = {project.keys([h["image_id"]]).pop(): h for h in select_heroes(project.db, "any")}
    assert by_key["A"]["votes"] == "2/3" and by_key["A"]["mean_stars"] == pytest.approx(23 / 3, abs=1e-3)
    assert by_key["B"]["votes"] == "1/2"
    assert by_key["X"]["votes"] == "2/2" and by_key["X"]["mean_stars"] == 8.5
    assert by_key["F"]["mean_stars"] is None and by_key["F"]["votes"] == "1/1"
    # the Labelme curator has no email: named by the folder's name, never its path
    assert {o["curator"] for o in by_key["X"]["curators"]} == {"ben@example.org", "extra"}


def test_latest_opinion_per_curator_counts_once(project):
    heroes, counts = select_with_counts(project.db, "any", None)
    assert "G" not in project.keys(h["image_id"] for h in heroes)  # ana's later "not hero" replaced her "hero"
    assert counts["candidates_considered"] == 8  # A-G and the elephant; H has no rating
    assert counts["excluded_by_policy"] == 3  # D, E, G


def test_min_stars(project):
    heroes, counts = select_with_counts(project.db, "majority", 8)
    assert project.keys(h["image_id"] for h in heroes) == {"C", "X"}
    assert counts["excluded_by_min_stars"] == 2  # A (7.67) and F (no stars)
    assert counts["excluded_no_stars"] == 1
    assert counts["heroes"] == 2


def test_the_commands_offer_the_stores_policies():
    """`export` and `compare` list the policies in their options (the command line imports no store
    module before a command runs): the same as hitl.store.heroes'."""
    for name in ("export", "compare"):
        option = next(p for p in cli.commands[name].params if p.name == "policy")
        assert tuple(option.type.choices) == POLICIES, name


def test_bad_arguments_are_refused(project, tmp_path):
    with pytest.raises(HerosetError, match="policy must be one of any, majority, all"):
        select_heroes(project.db, "most")
    with pytest.raises(HerosetError, match="link must be"):
        export_heroset(project.db, tmp_path / "out", link="symlink")
    with pytest.raises(HerosetError, match="layout must be"):
        export_heroset(project.db, tmp_path / "out", layout="nested")


# ---- files --------------------------------------------------------------------------------------

def test_tree_copy_then_rerun_is_unchanged(project, tmp_path):
    out = tmp_path / "out"
    counts = export_heroset(project.db, out, policy="any", progress=False)
    assert counts["exported"] == 5 and counts["unchanged"] == 0 and counts["conflicts"] == []
    assert counts["missing_files"] == 0 and counts["hardlink_fallbacks"] == 0 and counts["heroes"] == 5
    for key in "ABCFX":
        target = out / project.ids[key]
        assert target.read_bytes() == project.source(key).read_bytes()
        assert os.stat(target).st_ino != os.stat(project.source(key)).st_ino  # a copy, not a link
        assert os.stat(target).st_mtime == pytest.approx(os.stat(project.source(key)).st_mtime)  # copy2 keeps it
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.JPG")}

    again = export_heroset(project.db, out, policy="any", progress=False)
    assert again["exported"] == 0 and again["unchanged"] == 5 and again["conflicts"] == []
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.JPG")} == stamps  # nothing rewritten
    assert not list(out.rglob("*.part"))

    narrower = export_heroset(project.db, out, policy="all", progress=False)
    assert narrower["unchanged"] == 3
    # files from the wider export stay, and are reported
    assert sorted(narrower["not_in_manifest"]) == sorted(project.ids[k] for k in "AB")


def test_flat_layout_safe_unique_names(project, tmp_path):
    out = tmp_path / "flat"
    counts = export_heroset(project.db, out, policy="any", layout="flat", progress=False)
    assert counts["exported"] == 5
    files = sorted(p.name for p in out.iterdir() if p.name not in heroset.RESERVED)
    assert all(p.is_file() for p in out.iterdir())  # no folders
    expected = sorted(project.ids[k].replace("/", "__") for k in "ABCFX")
    assert files == expected
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files)


def test_flat_names_rules():
    names = flat_names(["cam_a/IMG_0001.JPG", "a b/x.jpg", "a_b/x.jpg", "A/Y.JPG", "a/y.jpg", "../etc/passwd",
                        ".hidden.jpg", "manifest.csv", "x__y/z.jpg", "x/y__z.jpg"])
    assert names["cam_a/IMG_0001.JPG"] == "cam_a__IMG_0001.JPG"
    assert len(set(n.casefold() for n in names.values())) == len(names)  # unique, even case-blind
    assert all(re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9._-]*", n) for n in names.values())
    assert names["a_b/x.jpg"] != names["a b/x.jpg"] and names["a_b/x.jpg"].startswith("a_b__x-")
    assert names["A/Y.JPG"].endswith(".JPG") and names["A/Y.JPG"] != names["a/y.jpg"]
    assert names["manifest.csv"] != "manifest.csv"
    assert "/" not in names["../etc/passwd"] and not names["../etc/passwd"].startswith(".")
    # deterministic: the same image_id gets the same name whatever else is exported, in any order
    again = flat_names(list(reversed(list(names))))
    assert again == names


def test_hardlink_shares_the_inode(project, tmp_path):
    out = tmp_path / "linked"
    counts = export_heroset(project.db, out, policy="majority", link="hardlink", progress=False)
    assert counts["exported"] == 4 and counts["hardlink_fallbacks"] == 0
    for key in "ACFX":
        assert os.stat(out / project.ids[key]).st_ino == os.stat(project.source(key)).st_ino
    again = export_heroset(project.db, out, policy="majority", link="hardlink", progress=False)
    assert again["unchanged"] == 4 and again["exported"] == 0


def test_hardlink_falls_back_to_copy_across_file_systems(project, tmp_path, monkeypatch):
    def cross_device(src, dst, *a, **k):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    out = tmp_path / "other-fs"
    counts = export_heroset(project.db, out, policy="all", link="hardlink", progress=False)
    assert counts["exported"] == 3 and counts["hardlink_fallbacks"] == 3
    assert any("EXDEV" in note for note in counts["notes"])
    for key in "CFX":
        target = out / project.ids[key]
        assert target.read_bytes() == project.source(key).read_bytes()
        assert os.stat(target).st_ino != os.stat(project.source(key)).st_ino
    assert not list(out.rglob("*.part"))


def test_a_different_file_in_the_way_is_a_conflict_left_untouched(project, tmp_path):
    out = tmp_path / "out"
    blocker = out / project.ids["A"]
    blocker.parent.mkdir(parents=True)
    blocker.write_bytes(b"someone else's file")
    counts = export_heroset(project.db, out, policy="any", progress=False)
    assert counts["conflicts"] == [str(blocker.resolve())]
    assert blocker.read_bytes() == b"someone else's file"
    assert counts["exported"] == 4 and counts["in_manifest"] == 4
    manifest = read_csv(out / "manifest.csv")
    assert project.ids["A"] not in {r["image_id"] for r in manifest}
    # same size, different bytes: still a conflict (content is compared, not only the size)
    same_size = out / project.ids["B"]
    data = bytearray(same_size.read_bytes())
    data[-3] ^= 0xFF
    same_size.write_bytes(bytes(data))
    again = export_heroset(project.db, out, policy="any", progress=False)
    assert sorted(again["conflicts"]) == sorted([str(blocker.resolve()), str(same_size.resolve())])
    assert same_size.read_bytes() == bytes(data) and again["unchanged"] == 3


def test_missing_source_is_counted_not_fatal(project, tmp_path):
    project.source("C").unlink()
    counts = export_heroset(project.db, tmp_path / "out", policy="all", progress=False)
    assert counts["missing_files"] == 1 and [Path(m).resolve() for m in counts["missing"]] == [project.source("C").resolve()]
    assert counts["exported"] == 2 and counts["in_manifest"] == 2


# ---- manifest and contact sheet -----------------------------------------------------------------

def test_manifests(project, tmp_path):
    out = tmp_path / "out"
    counts = export_heroset(project.db, out, policy="any", progress=False)
    rows = {r["image_id"]: r for r in read_csv(out / "manifest.csv")}
    assert set(rows) == {project.ids[k] for k in "ABCFX"}
    columns = list(next(iter(rows.values())))
    for column in ("image_id", "file", "species", "seq_id", "datetime", "mean_stars", "votes", "comments", "boxes",
                   "score_baseline@hero-v1", "score_gemini-2.5-flash@hero-v1", "stars_ana@example.org",
                   "stars_ben@example.org", "stars_cy@example.org"):
        assert column in columns
    a = rows[project.ids["A"]]
    assert a["file"] == project.ids["A"] and a["votes"] == "2/3" and float(a["mean_stars"]) == pytest.approx(7.667)
    assert a["stars_ana@example.org"] == "9" and a["stars_cy@example.org"] == "6"
    assert "ana@example.org: Lovely light, crop a little tighter" in a["comments"]
    assert a["species"] and a["seq_id"] and a["datetime"]
    baseline = project.db.execute("SELECT score FROM scores WHERE image_id = ? AND model = 'baseline'",
                                  [project.ids["A"]]).fetchone()[0]
    assert float(a["score_baseline@hero-v1"]) == baseline
    # boxes: the curator's edit wins; otherwise the detector's animal boxes
    b = rows[project.ids["B"]]
    assert json.loads(b["boxes"]) == [project.edited_box] and b["boxes_source"] == "curator ana@example.org"
    detected = project.db.execute("SELECT x, y, w, h FROM detections WHERE image_id = ? AND kind = 'animal' "
                                  "AND conf >= 0.3 ORDER BY det_index", [project.ids["A"]]).fetchall()
    a_boxes = json.loads(a["boxes"])
    assert a["boxes_source"] == "detector" and len(a_boxes) == len(detected) > 0
    assert [(b["x"], b["y"], b["w"], b["h"]) for b in a_boxes] == [
        pytest.approx(tuple(round(v, 6) for v in d)) for d in detected]

    data = json.loads((out / "manifest.json").read_text())
    header = data["header"]
    assert header["policy"] == "any" and header["min_stars"] is None and header["exported_at"]
    assert header["counts"]["exported"] == counts["exported"] == 5
    assert header["models"] == ["baseline@hero-v1", "gemini-2.5-flash@hero-v1"]
    entry = next(i for i in data["images"] if i["image_id"] == project.ids["A"])
    assert set(entry["models"]) == {"baseline@hero-v1", "gemini-2.5-flash@hero-v1"}
    assert set(entry["models"]["gemini-2.5-flash@hero-v1"]) == {"score", "hero", "reasoning"}
    curators = {c["curator"]: c for c in entry["curators"]}
    assert curators["cy@example.org"] == {"curator": "cy@example.org", "stars": 6, "hero": False, "comment": None,
                                          "mode": "blind", "updated_at": "2026-01-02T10:00:00+00:00"}
    assert curators["ana@example.org"]["comment"] == "Lovely light, crop a little tighter"
    assert [i["file"] for i in data["images"]] == [r["file"] for r in read_csv(out / "manifest.csv")]


def test_contact_sheet(project, tmp_path):
    out = tmp_path / "out"
    counts = export_heroset(project.db, out, policy="any", layout="flat", progress=False)
    text = (out / "index.html").read_text(encoding="utf-8")
    page = Page(text)
    cards = page.all("article", "card")
    assert len(cards) == counts["in_manifest"] == 5
    images = page.all("img")
    assert len(images) == 5
    sizes = {}
    for card, img in zip(cards, images):
        thumb = decode_data_uri(img["src"])
        assert max(thumb.size) == 320
        sizes[card["data-id"]] = thumb.size
    width, height = sizes[ELEPHANT]
    assert width > height  # stored portrait, EXIF says rotate: the thumbnail is upright, landscape
    body = "".join(page.text)
    assert "Lovely light, crop a little tighter" in body and "Piglets!" in body
    assert "2/3" in body and "gemini-2.5-flash@hero-v1" in body
    for _, attrs in page.tags:
        for key in ("src", "href"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(key) or ""), attrs  # nothing fetched from anywhere
    assert "<script" not in text.lower()  # a static sheet: nothing to run


def test_nothing_passes_still_writes_empty_manifest(project, tmp_path):
    project.db.execute("UPDATE ratings SET hero = 0")
    project.db.conn.commit()
    counts = export_heroset(project.db, tmp_path / "out", policy="any", progress=False)
    assert counts["heroes"] == 0 and counts["in_manifest"] == 0
    assert read_csv(tmp_path / "out" / "manifest.csv") == []
    assert "No image passed the policy" in (tmp_path / "out" / "index.html").read_text()
