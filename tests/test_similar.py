"""`hitl similar`: the closest images by their vectors (the baseline's, and the fake embeddings server's),
unreviewed first; --heroes; --push of what the store knows and the command that brings the rest in;
and the float32 copy of a model's matrix it searches, never read stale."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner
from PIL import Image

from hitl import store
from hitl.cli import cli
from hitl.store.embeddings import embedding_row, unit_float16, vectors, write_embeddings
from hitl.store.vector_file import cache_paths, matrix

from .fakes import FakeOpenAI
from .helpers.near_duplicates import FakeStudio, copy_of

CLIP = "openai:openai/clip-vit-large-patch14"


def run(db: Path, *args: str, ok: bool = True, env: dict | None = None):
    result = CliRunner().invoke(cli, ["--db", str(db), *args], env=env or {}, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def reviewed(db: Path) -> set[str]:
    return {r[0] for r in store.connect(db).execute("SELECT image_id FROM ratings WHERE deleted = 0")}


def test_the_closest_images_unreviewed_first_with_their_similarity(walkthrough, tmp_path):
    db = copy_of(walkthrough, tmp_path)
    result = run(db, "similar", "cam_b/IMG_0013.JPG", "-n", "12", "--out", str(tmp_path / "more.csv"))
    found = rows(tmp_path / "more.csv")
    assert len(found) == 12 and "cam_b/IMG_0013.JPG" not in {r["image_id"] for r in found}
    ids, all_vectors = vectors(store.connect(db), "baseline")
    sims = dict(zip(ids, all_vectors @ all_vectors[ids.index("cam_b/IMG_0013.JPG")]))
    best = sorted((i for i in ids if i != "cam_b/IMG_0013.JPG"), key=lambda i: -sims[i])[:12]
    assert {r["image_id"] for r in found} == set(best)  # the 12 closest of the whole collection
    done = reviewed(db)
    flags = [r["reviewed"] for r in found]
    assert flags == sorted(flags) and {r["image_id"] for r in found if r["reviewed"] == "yes"} <= done
    for block in ("no", "yes"):
        values = [float(r["similarity"]) for r in found if r["reviewed"] == block]
        assert values == sorted(values, reverse=True)
    by_id = {r["image_id"]: r for r in found}
    assert all(by_id[i]["near_duplicate_of"] == "cam_b/IMG_0013.JPG" for i in ("cam_b/IMG_0012.JPG", "cam_b/IMG_0014.JPG"))
    known = {r[0] for r in store.connect(db).execute("SELECT image_id FROM images")}
    assert all(r["in_store"] == ("yes" if r["image_id"] in known else "no") for r in found)
    assert set(ids) - known  # the whole collection's vectors are searched
    assert f"12 closest to cam_b/IMG_0013.JPG among {len(ids)} baseline vectors" in result.output


def test_around_the_hero_sets_centre(walkthrough, tmp_path):
    from hitl.store.heroes import select_heroes

    db = copy_of(walkthrough, tmp_path)
    run(db, "similar", "--heroes", "-n", "5", "--out", str(tmp_path / "more.csv"))
    heroes = [h["image_id"] for h in select_heroes(store.connect(db), "majority")]
    ids, all_vectors = vectors(store.connect(db), "baseline")
    centre = all_vectors[[ids.index(h) for h in heroes]].mean(axis=0)
    sims = all_vectors @ (centre / np.linalg.norm(centre))
    expected = [ids[k] for k in np.argsort(-sims) if ids[k] not in heroes][:5]
    assert {r["image_id"] for r in rows(tmp_path / "more.csv")} == set(expected)


def test_push_sends_what_the_store_knows_and_says_how_to_bring_in_the_rest(walkthrough, tmp_path, monkeypatch,
                                                                            sample_data):
    db = copy_of(walkthrough, tmp_path)
    with store.transaction(connected := store.connect(db)):  # a decision taken back: unreviewed again
        connected.execute("UPDATE ratings SET deleted = 1 WHERE image_id = 'cam_a/IMG_0010.JPG'")
    studio = FakeStudio()
    monkeypatch.setattr("hitl.cli.context.studio_client", lambda url: studio)
    monkeypatch.setenv("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", str(sample_data.parent))
    out = tmp_path / "more.csv"
    result = run(db, "similar", "cam_c/IMG_0010.JPG", "-n", "20", "--out", str(out), "--push")
    found = rows(out)
    known = [r["image_id"] for r in found if r["reviewed"] == "no" and r["in_store"] == "yes"]
    outside = [r["image_id"] for r in found if r["reviewed"] == "no" and r["in_store"] == "no"]
    assert known == ["cam_a/IMG_0010.JPG"] and [t["data"]["image_id"] for t in studio.made] == known
    assert outside and "Project 7: 1 pushed" in result.output
    listed = tmp_path / "more-to-select.csv"
    assert [r["image_id"] for r in rows(listed)] == outside
    command = (f"python -m hitl select --md {sample_data / 'md_results.json'} --images {sample_data / 'images'} "
               f"--add --only {listed} -n {len(outside)}")
    assert f"{len(outside)} of them are only whole-collection vectors" in result.output and command in result.output
    # the command said brings them in (each sequence once, none a near-duplicate of a candidate)
    before = {r[0] for r in store.connect(db).execute("SELECT image_id FROM images")}
    run(db, *command.split()[3:])
    added = {r[0] for r in store.connect(db).execute("SELECT image_id FROM candidates WHERE run_id = 2")}
    assert added and added <= set(outside) and not added & before


def test_similar_says_what_is_missing_in_one_line(tmp_path, walkthrough):
    empty = tmp_path / "empty.db"
    run(empty, "select", "--md", str(Path(__file__).parents[1] / "sample_data" / "md_results.json"), "--images",
        str(Path(__file__).parents[1] / "sample_data" / "images"), "-n", "2", "--no-check-files")
    result = run(empty, "similar", "cam_a/IMG_0001.JPG", ok=False)
    assert result.exit_code == 1 and "no image vectors yet: run `python -m hitl embed" in result.output
    db = copy_of(walkthrough, tmp_path)
    result = run(db, "similar", "cam_z/nowhere.jpg", ok=False)
    assert result.exit_code == 1 and "cam_z/nowhere.jpg has no baseline vector: run `python -m hitl embed " \
        "--model baseline`" in result.output and "Traceback" not in result.output
    assert run(db, "similar", ok=False).exit_code != 0  # neither an image nor --heroes


def test_vectors_of_the_fake_embeddings_server(tmp_path):
    photos = tmp_path / "photos" / "cam"
    photos.mkdir(parents=True)
    for k in range(6):
        rng = np.random.default_rng(k)
        Image.fromarray(np.kron(rng.integers(0, 255, (6, 8, 3)), np.ones((80, 80, 1))).astype(np.uint8)).save(
            photos / f"IMG_{k:03d}.jpg", quality=92)
    buffer = io.BytesIO()
    Image.open(photos / "IMG_002.jpg").save(buffer, "JPEG", quality=40)
    (photos / "IMG_002_copy.jpg").write_bytes(buffer.getvalue())  # the same photo, re-encoded
    db = tmp_path / "hitl.db"
    config = tmp_path / "settings.toml"
    config.write_text("[embed]\nattempts = 2\nretry_base_seconds = 0.01\n")
    with FakeOpenAI() as server:
        embedded = run(db, "--config", str(config), "embed", "--model", CLIP, "--base-url", server.url,
                       "--images", str(tmp_path / "photos"))
    assert "7 embedded" in embedded.output and "Near-duplicate threshold" in embedded.output
    result = run(db, "similar", "cam/IMG_002.jpg", "-n", "3", "--out", str(tmp_path / "more.csv"))
    first = rows(tmp_path / "more.csv")[0]
    assert first["image_id"] == "cam/IMG_002_copy.jpg" and float(first["similarity"]) > 0.99
    assert first["near_duplicate_of"] == "cam/IMG_002.jpg" and CLIP in result.output


def test_the_searched_copy_follows_every_vector_written(tmp_path):
    db = store.connect(tmp_path / "hitl.db")
    rng = np.random.default_rng(0)

    def write(names):
        with store.transaction(db):
            write_embeddings(db, [embedding_row(n, "m", str(tmp_path), vector=unit_float16(rng.standard_normal(8)))
                                  for n in names])

    write([f"a/{k}.jpg" for k in range(5)])
    ids, mapped = matrix(db, "m")
    data, _, header = cache_paths(tmp_path / "hitl.db", "m")
    assert isinstance(mapped, np.memmap) and data.is_file() and json.loads(header.read_text())["n"] == 5
    expected_ids, expected = vectors(db, "m")
    ids = list(ids)
    assert np.array_equal(mapped[[ids.index(i) for i in expected_ids]], expected)
    made = data.stat().st_mtime_ns
    assert list(matrix(db, "m")[0]) == ids and data.stat().st_mtime_ns == made  # read again, not made again
    write(["a/new.jpg"])  # the version rises: the copy is stale and made again
    assert "a/new.jpg" in matrix(db, "m")[0]
    write(["a/0.jpg"])  # a vector replaced
    ids, mapped = matrix(db, "m")
    assert np.allclose(mapped[list(ids).index("a/0.jpg")], vectors(db, "m", ["a/0.jpg"])[1][0])
    header.write_text("not json")
    assert len(matrix(db, "m")[0]) == 6  # a broken header: made again
    none_ids, none = matrix(db, "none")
    assert none_ids == [] and none.shape == (0, 0)


def test_the_copy_is_never_written_through_a_planted_link(tmp_path):
    """The copy's temporary files get unguessable names, created exclusively: a link planted under
    the name a process id would give leads nowhere (it was followed, and the file it named overwritten)."""
    import os

    db = store.connect(tmp_path / "hitl.db")
    with store.transaction(db):
        write_embeddings(db, [embedding_row(f"a/{k}.jpg", "m", str(tmp_path),
                                            vector=unit_float16(np.arange(1, 9, dtype=np.float32) + k))
                              for k in range(3)])
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    data, ids_path, header = cache_paths(tmp_path / "hitl.db", "m")
    data.parent.mkdir()
    for path in (data, ids_path, ids_path.with_suffix(".starts"), header):
        path.with_name(f"{path.name}.{os.getpid()}.tmp").symlink_to(victim)
    assert len(matrix(db, "m")[0]) == 3
    assert victim.read_text() == "precious"
    assert json.loads(header.read_text())["n"] == 3 and not header.is_symlink()


def test_only_lists_a_csv_with_an_image_id_column(tmp_path, sample_data):
    bad = tmp_path / "bad.csv"
    bad.write_text("file,score\ncam_a/IMG_0001.JPG,3\n")
    result = run(tmp_path / "hitl.db", "select", "--md", str(sample_data / "md_results.json"), "--images",
                 str(sample_data / "images"), "-n", "3", "--only", str(bad), ok=False)
    assert result.exit_code == 2 and "no image_id column" in result.output
    listed = tmp_path / "listed.csv"
    listed.write_text("image_id,similarity\ncam_c/IMG_0010.JPG,0.9\ncam_a/IMG_0008.JPG,0.8\n\n")
    result = run(tmp_path / "hitl.db", "select", "--md", str(sample_data / "md_results.json"), "--images",
                 str(sample_data / "images"), "-n", "5", "--only", str(listed))
    chosen = {r[0] for r in store.connect(tmp_path / "hitl.db").execute("SELECT image_id FROM candidates")}
    assert chosen == {"cam_c/IMG_0010.JPG", "cam_a/IMG_0008.JPG"} and "not listed in --only" in result.output
