"""The gallery of model scores before review: one page, opens from disk, sorts and filters."""
from __future__ import annotations

import base64
import io
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from hitl import store
from hitl.cli import cli
from hitl.publish.gallery import GalleryError, build_gallery

from .conftest import REPO, SHARED

ELEPHANT = "african_elephants_with_exif_orientation.jpg"
GEMINI = "gemini-2.5-flash@hero-v1"
BASELINE = "baseline@hero-v1"


def run(db_path: Path, *args: str) -> None:
    result = CliRunner().invoke(cli, ["--db", str(db_path), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def copy_images(tmp_path: Path) -> Path:
    images = tmp_path / "images"
    shutil.copytree(REPO / "sample_data" / "images", images)
    return images


def add_second_model(db, image_ids: list[str]) -> None:
    """Gemini-like scores: hero on every third image, and one failure."""
    for n, image_id in enumerate(sorted(image_ids)):
        failed = n == 1
        store.insert_row(db, "scores", {
            "image_id": image_id, "model": "gemini-2.5-flash", "prompt_version": "hero-v1",
            "status": "failed" if failed else "ok", "score": None if failed else 2.0 + n,
            "hero": None if failed else int(n % 3 == 0), "reasoning": None if failed else f"<b>sharp</b> & {n}",
            "error_kind": "http 500" if failed else None})
    db.conn.commit()


@pytest.fixture
def selected(tmp_path):
    """select -n 8 and score --model baseline through the CLI, then a second model's scores."""
    sample = REPO / "sample_data"
    db_path = tmp_path / "h.db"
    run(db_path, "select", "--md", str(sample / "md_results.json"), "--cct", str(sample / "cct.json"),
        "--speciesnet", str(sample / "speciesnet_predictions.json"), "--images", str(copy_images(tmp_path)), "-n", "8")
    run(db_path, "score", "--model", "baseline")
    db = store.connect(db_path)
    add_second_model(db, [r[0] for r in db.execute("SELECT image_id FROM candidates")])
    return db


class Page(HTMLParser):
    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.options: dict[str, list[tuple[str, str]]] = {}
        self._select: str | None = None
        self._option: str | None = None
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "select":
            self._select = attrs.get("id")
            self.options[self._select] = []
        elif tag == "option" and self._select:
            self._option = attrs.get("value")

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None

    def handle_data(self, data):
        self.text.append(data)
        if self._option is not None and self._select:
            self.options[self._select].append((self._option, data.strip()))
            self._option = None

    def all(self, tag: str, cls: str | None = None) -> list[dict]:
        return [a for t, a in self.tags if t == tag and (cls is None or cls in (a.get("class") or "").split())]


def thumbnail(src: str, base: Path) -> Image.Image:
    """The image a src points at: a data URI, or a file relative to the page."""
    if src.startswith("data:"):
        assert src.startswith("data:image/jpeg;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
    else:
        assert not Path(src).is_absolute() and ".." not in Path(src).parts
        assert (base / src).is_file(), src
        image = Image.open(base / src)
    image.load()
    return image


def assert_offline(page: Page, text: str) -> None:
    for _, attrs in page.tags:
        for key in ("src", "href", "action"):
            value = attrs.get(key) or ""
            assert not re.match(r"\s*(https?:)?//", value), (key, value)
    assert "http://" not in text and "https://" not in text  # no CDN, no font, no xmlns fetched


def test_gallery_page(selected, tmp_path):
    index = build_gallery(selected, tmp_path / "gallery", progress=False)
    assert index == tmp_path / "gallery" / "index.html"
    text = index.read_text(encoding="utf-8")
    page = Page(text)
    candidates = [dict(r) for r in selected.query(
        "SELECT c.image_id, c.rank, i.species FROM candidates c JOIN images i USING (image_id) ORDER BY c.rank")]
    cards = page.all("article", "card")
    assert [c["data-id"] for c in cards] == [c["image_id"] for c in candidates]
    assert [int(c["data-rank"]) for c in cards] == [c["rank"] for c in candidates]

    # sort by rank, species and each model's score; filter by species and hero per model
    sort_values = [v for v, _ in page.options["sort"]]
    assert {"rank", "species", "score-0:desc", "score-0:asc", "score-1:desc", "score-1:asc"} <= set(sort_values)
    sort_labels = " ".join(label for _, label in page.options["sort"])
    assert BASELINE in sort_labels and GEMINI in sort_labels
    assert {v for v, _ in page.options["species"]} == {""} | {c["species"] for c in candidates}
    hero_labels = [label for _, label in page.options["hero"]]
    assert f"hero by {BASELINE}" in hero_labels and f"hero by {GEMINI}" in hero_labels
    assert "models disagree" in hero_labels

    # every card carries each model's score and hero for the script; the failed one has none
    scores = {(r["image_id"], f"{r['model']}@{r['prompt_version']}"): r for r in selected.query(
        "SELECT image_id, model, prompt_version, status, score, hero FROM scores")}
    for card in cards:
        for i, model in enumerate((BASELINE, GEMINI)):
            row = scores[(card["data-id"], model)]
            if row["status"] == "ok":
                assert float(card[f"data-score-{i}"]) == pytest.approx(row["score"])
                assert card[f"data-hero-{i}"] == str(row["hero"])
            else:
                assert card[f"data-score-{i}"] == "" and card[f"data-hero-{i}"] == ""
    body = "".join(page.text)
    assert "failed: http 500" in body
    assert "<b>sharp</b> & 2" in body and "<b>sharp" not in text  # reasoning shown, escaped

    # summary: number of images, per model mean and hero share, an 11-bar histogram each
    assert "8 candidates" in body
    baseline_scores = [r["score"] for k, r in scores.items() if k[1] == BASELINE]
    assert f"mean {sum(baseline_scores) / len(baseline_scores):.2f}" in body
    assert len(page.all("svg", "hist")) == 2 and len(page.all("rect")) == 22
    gemini_ok = [r for k, r in scores.items() if k[1] == GEMINI and r["status"] == "ok"]
    assert f"hero {sum(r['hero'] for r in gemini_ok)}/{len(gemini_ok)}" in body

    images = page.all("img")
    assert len(images) == len(cards)
    for img in images:
        assert max(thumbnail(img["src"], index.parent).size) == 320
    assert page.all("div", "box")  # the detector's boxes drawn over the thumbnails
    assert_offline(page, text)


def test_thumbnail_files_when_not_embedded(selected, tmp_path):
    index = build_gallery(selected, tmp_path / "g", embed=False, thumb_side=200, progress=False)
    page = Page(index.read_text(encoding="utf-8"))
    sources = [img["src"] for img in page.all("img")]
    assert len(sources) == 8 and len(set(sources)) == 8
    for src in sources:
        assert src.startswith("thumbs/")
        assert max(thumbnail(src, index.parent).size) == 200
    assert len(list((index.parent / "thumbs").iterdir())) == 8
    assert_offline(page, index.read_text(encoding="utf-8"))


def test_only_some_models(selected, tmp_path):
    page = Page(build_gallery(selected, tmp_path / "g", models=["gemini-2.5-flash"], progress=False).read_text())
    labels = " ".join(label for _, label in page.options["sort"])
    assert GEMINI in labels and BASELINE not in labels
    assert "models disagree" not in [label for _, label in page.options["hero"]]
    with pytest.raises(GalleryError, match="scored so far: baseline@hero-v1, gemini-2.5-flash@hero-v1"):
        build_gallery(selected, tmp_path / "g2", models=["gpt-9"])


def test_scored_folder_without_candidates(tmp_path):
    """Scored with --images and no selection: one card per scored image, EXIF-rotated shown upright."""
    images = copy_images(tmp_path)
    elephant = SHARED / "camera_traps" / "images" / ELEPHANT
    if not elephant.exists():
        pytest.fail(f"{elephant} is missing: put shared/ beside the repo or set HITL_SHARED_DIR")
    shutil.copy2(elephant, images / ELEPHANT)
    db_path = tmp_path / "h.db"
    run(db_path, "score", "--model", "baseline", "--images", str(images))
    db = store.connect(db_path)
    scored = [r[0] for r in db.execute("SELECT image_id FROM scores ORDER BY image_id")]
    assert len(scored) == 42

    index = build_gallery(db, tmp_path / "g", progress=False)
    text = index.read_text(encoding="utf-8")
    page = Page(text)
    cards = page.all("article", "card")
    assert [c["data-id"] for c in cards] == scored
    assert "rank" not in [v for v, _ in page.options["sort"]]  # no selection, no rank
    by_id = dict(zip([c["data-id"] for c in cards], range(len(cards))))
    imgs = {a["alt"]: a for a in page.all("img")}
    assert ELEPHANT in by_id and ELEPHANT in imgs
    width, height = thumbnail(imgs[ELEPHANT]["src"], index.parent).size
    assert width > height  # stored 1536x2048 with orientation 6: upright is landscape
    # the truncated file has a card with no picture and says why
    assert "cam_c/IMG_0009.JPG" in by_id and "cam_c/IMG_0009.JPG" not in imgs
    assert "no preview: truncated or corrupt" in "".join(page.text)
    assert "failed:" in "".join(page.text)  # baseline could not score it either
    assert_offline(page, text)


def test_empty_database_says_what_to_do(tmp_path):
    from hitl.errors import NothingToDo

    with pytest.raises(NothingToDo, match="run `select` or `score` first"):
        build_gallery(store.connect(tmp_path / "h.db"), tmp_path / "g")
