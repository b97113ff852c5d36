"""The learned rater that sees the pixels: learn with and without the image vectors side by side,
--embeddings none the rater without them, each image rated by the rater its vector allows (learn,
next, select --learned), and a taste only the pixels show learned better with them."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from hitl.learn import model as M
from hitl.learn import raters as R
from hitl.learn.features import Features

from .conftest import CliProject, scored_project
from .helpers.learn import copied_project, sheet_for


@pytest.fixture(scope="module")
def embedded_store(tmp_path_factory, sample_data) -> Path:
    """The sample's 12 candidates scored and embedded by the baseline, 36 decisions on them: made once
    (the embedding's calibration is most of its cost), copied for each test."""
    folder = tmp_path_factory.mktemp("embedded")
    project = scored_project(folder / "h.db", sample_data)
    project.run("embed", "--model", "baseline")
    sheet_for(project, folder / "d.csv")
    project.run("ratings", "--import", str(folder / "d.csv"))
    return project.db_path


@pytest.fixture
def embedded(embedded_store, tmp_path) -> CliProject:
    """A copy of :func:`embedded_store` of the test's own."""
    return copied_project(embedded_store, tmp_path)


def _learned(db) -> dict[str, dict]:
    return {r["image_id"]: json.loads(r["raw_response"]) for r in db["scores"].rows_where("model = 'learned'")}


def test_learn_prints_the_figures_with_and_without_vectors_side_by_side(embedded, tmp_path):
    out = embedded.run("learn").output
    assert "Image vectors of baseline: 36 of 36 decisions and 12 of 12 images have one" in out
    assert "it is not a learned representation" in out
    header = out.index("Spearman         QWK")
    rows = {line[:42].strip(): line[42:].split() for line in out[header:].splitlines()[1:4]}
    assert set(rows) == {"learned@v1, with vectors", "learned@v1, without vectors", "baseline@hero-v1"}
    assert all(len(cells) == 6 for cells in rows.values())
    assert re.search(r"With the vectors against without: hero AUC [+-]\d\.\d{3} \[[+-]\d\.\d\d, [+-]\d\.\d\d\], "
                     r"Spearman [+-]\d\.\d{3} \[.*\] \(95% intervals resampling whole locations\): ", out)
    from hitl.store.queries import latest_run

    run = latest_run(embedded.db)
    assert run["parameters"]["vectors"]["model"] == "baseline" and run["parameters"]["vectors"]["used"]
    stored = run["figures"]
    assert f"{stored['learned']['spearman']:.3f}" == rows["learned@v1, with vectors"][0]
    assert f"{stored['without_vectors']['spearman']:.3f}" == rows["learned@v1, without vectors"][0]
    assert stored["learned"]["hero_auc_ci"] and stored["without_vectors"]["hero_auc_ci"]
    assert {"hero_auc", "hero_auc_ci", "spearman", "spearman_ci"} <= set(run["parameters"]["vectors"]["gain"])
    embedded.run("report", "--out", str(tmp_path / "r"), "--resamples", "0")
    page = (tmp_path / "r" / "report.html").read_text()
    assert "learned@v1, with vectors" in page and "learned@v1, without vectors" in page
    assert "Image vectors of baseline: 36 of 36 decisions" in page


def test_embeddings_none_is_the_rater_without_vectors(embedded):
    with_vectors = json.loads(embedded.run("learn", "--json").output)
    assert with_vectors["vectors"]["model"] == "baseline" and with_vectors["without_vectors"]
    text = embedded.run("learn", "--embeddings", "none").output
    assert "Image vectors: not read (--embeddings none)" in text and "without vectors" not in text
    none = json.loads(embedded.run("learn", "--embeddings", "none", "--json").output)
    assert none["without_vectors"] is None and none["vectors"]["model"] is None
    assert none["figures"] == with_vectors["without_vectors"]  # the same folds, the same trees
    ignored = _learned(embedded.db)
    assert all(facts["vectors"] is None for facts in ignored.values())
    db = embedded.db
    with db.conn:
        db.execute("DELETE FROM embeddings")
    plain = json.loads(embedded.run("learn", "--json").output)  # a store that never had a vector
    assert plain["figures"] == none["figures"] and plain["importance"] == none["importance"]
    assert plain["curve"] == none["curve"] and _learned(embedded.db) == ignored
    wrong = embedded.run("learn", "--embeddings", "openai:nothing-here", ok=False)
    assert wrong.exit_code == 1 and "no image vectors of that model" in wrong.output
    assert "--embeddings none" in wrong.output and "Traceback" not in wrong.output


def test_each_image_is_rated_by_the_rater_its_vector_allows(embedded, sample_data, tmp_path):
    md = ["--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
          "--images", str(sample_data / "images")]
    embedded.run("select", *md, "-n", "2", "--add")  # two unreviewed candidates, not embedded
    db = embedded.db
    new = sorted(r["image_id"] for r in db.query(
        "SELECT image_id FROM candidates WHERE run_id = (SELECT MAX(id) FROM selection_runs)"))
    assert len(new) == 2
    embedded.run("embed", "--model", "baseline")  # both embedded, then one vector lost
    with db.conn:
        db.execute("DELETE FROM embeddings WHERE image_id = ?", [new[1]])
    out = embedded.run("learn").output
    assert "36 of 36 decisions and 13 of 14 images have one" in out
    facts = _learned(db)
    assert facts[new[0]]["vectors"] == "baseline" and facts[new[1]]["vectors"] is None

    # the stored predictions are the vector-aware rater's and the detector-only rater's, refitted here
    from hitl.config import load_settings
    from hitl.learn.data import Layout, decision_features, image_features, load_decisions, load_images, load_vectors

    images = load_images(db, load_settings().select)
    decisions = load_decisions(db, images)
    layout = Layout.of(images)
    vectors = load_vectors(db, "baseline", images)
    rows = np.asarray(decisions.rows)
    F = decision_features(images, layout, decisions)
    groups, _ = M.validation_groups([images.meta["sequences"][r] for r in rows],
                                    [images.meta["location_names"][r] for r in rows])
    splits = M.splits(groups)
    has = vectors.has(rows)
    with M.threads_for(len(rows)):  # as learn fits: one native thread on small data
        detector = R.validate_detector(F, decisions.stars, decisions.hero, splits)
        pixels = R.validate_pixels(F, vectors.of(rows), has, decisions.stars, decisions.hero, groups, splits)
        full = R.fit(F, decisions.stars, decisions.hero, groups, 0, vectors.of(rows), has, detector, pixels)
    k = [images.ids.index(i) for i in new]
    X = image_features(images, layout, k).X
    with_vector = full.pixels.predict(X[:1], vectors.of(k[:1]))[1][0]
    without = full.detector.predict(X[1:])[1][0]
    assert facts[new[0]]["p_hero"] == pytest.approx(with_vector, abs=1e-4)
    assert facts[new[1]]["p_hero"] == pytest.approx(without, abs=1e-4)
    assert with_vector != pytest.approx(full.detector.predict(X[:1])[1][0], abs=1e-6)  # the vector changed it

    chosen = embedded.run("next", "-n", "2", "--dry-run", "--out", str(tmp_path / "next.csv")).output
    assert "1 predicted with their baseline image vectors, 1 without one" in chosen


def test_select_learned_ranks_each_image_by_the_rater_its_vector_allows(embedded, sample_data):
    embedded.run("embed", "--model", "baseline", "--md", str(sample_data / "md_results.json"), "--images",
                 str(sample_data / "images"))
    from hitl.config import load_settings
    from hitl.learn.rank import learned_ranker

    db = embedded.db
    ranker = learned_ranker(db, load_settings().select)()
    assert ranker.model == "baseline" and ranker.raters.pixels is not None
    root = db.execute("SELECT root FROM images LIMIT 1").fetchone()[0]
    ids = ["cam_a/IMG_0001.JPG", "cam_b/IMG_0008.JPG", "cam_c/not-embedded.JPG"]
    columns = {"area": np.array([0.2, 0.05, 0.1]), "cut_off": np.zeros(3), "centrality": np.array([0.9, 0.4, 0.7]),
               "n_animals": np.ones(3), "n_species": np.ones(3), "max_conf": np.array([0.95, 0.6, 0.8]),
               "night": np.zeros(3), "rarity": np.full(3, 0.3), "hour": np.array([10, 22, 14])}
    names, places = ["red deer"] * 3, ["cam_a", "cam_b", "cam_c"]
    p = ranker.p_hero(columns, names, places, ids, root)
    assert ranker.counts == {"with vectors": 2, "without": 1}
    from hitl.learn.features import meta_matrix

    X = np.column_stack([meta_matrix(columns, ranker.species, ranker.location, names, places), np.zeros(3)])
    assert p[2] == pytest.approx(ranker.raters.detector.p_hero(X[2:])[0])
    head, has = ranker.head_columns(ids, root)
    assert has.tolist() == [True, True, False]
    assert p[:2] == pytest.approx(ranker.raters.pixels.p_hero(X[:2], head[:2]))
    elsewhere = ranker.p_hero(columns, names, places, ids, "/another/collection")  # the same paths, other photos
    assert ranker.counts == {"with vectors": 0, "without": 3}
    assert elsewhere == pytest.approx(ranker.raters.detector.p_hero(X))

    out = embedded.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                       "--images", str(sample_data / "images"), "-n", "2", "--add", "--learned").output
    ranked = int(re.search(r"Ranking ([\d,]+) images by the learned rater", out).group(1))
    counted = re.search(r"Learned rater: ([\d,]+) images ranked with their baseline vectors, ([\d,]+) without", out)
    assert ranked > 0 and int(counted.group(1)) == ranked and int(counted.group(2)) == 0  # every eligible one embedded
    alone = embedded.run("select", "--md", str(sample_data / "md_results.json"), "--images", str(sample_data / "images"),
                         "-n", "2", "--add", "--learned", "--embeddings", "none").output
    assert "ranked with their" not in alone


def test_a_taste_only_the_pixels_show_is_learned_better_with_the_vectors():
    """tests/fakes/drawn.py's collection, small: 300 decisions on drawn frames whose heroes are the
    sharp, well-lit, head-up animals; the same grouped folds for both raters."""
    from tests.fakes import drawn

    rng = np.random.default_rng(3)
    d = drawn.collection(900, rng)
    pick = np.sort(rng.permutation(len(d))[:300])
    V = drawn.vectors(d, size=(128, 96), frames=pick.tolist())
    r = d.record
    from hitl.learn.features import META, hour_features

    hour_sin, hour_cos = hour_features(r["hour"])
    columns = {**r, "hour_sin": hour_sin, "hour_cos": hour_cos}
    F = Features([name for name, _ in META], np.column_stack([columns[name] for name, _ in META])[pick].astype(float))
    groups, stars, hero = r["burst"][pick], d.stars[pick], d.hero[pick]
    splits = M.splits(groups)
    with M.threads_for(len(pick)):  # as learn fits: one native thread on small data
        detector = R.validate_detector(F, stars, hero, splits)
        pixels = R.validate_pixels(F, V, np.ones(len(pick), dtype=bool), stars, hero, groups, splits)
    without = M.figures(detector.stars, detector.p, stars, hero, 10, ranking=detector.ranking)
    with_vectors = M.figures(pixels.stars, pixels.p, stars, hero, 10, ranking=pixels.ranking)
    assert with_vectors["spearman"] > without["spearman"] + 0.25, (with_vectors, without)
    assert with_vectors["hero_auc"] > without["hero_auc"] + 0.1, (with_vectors, without)
    gain = M.gain((pixels.stars, pixels.ranking), (detector.stars, detector.ranking), stars, hero, groups, 200)
    assert gain["spearman_ci"][0] > 0 and gain["hero_auc_ci"][0] > 0  # clear of zero, whole bursts resampled


def test_the_words_say_whether_the_vectors_help_as_far_as_the_interval_does():
    from hitl.learn.words import vector_words

    facts = {"model": "openai:bioclip", "asked": "newest", "used": True, "decisions": 300, "of_decisions": 320,
             "images": 4000, "of_images": 5000, "needed": 30}
    helps = {**facts, "gain": {"hero_auc": 0.06, "hero_auc_ci": [0.02, 0.1], "spearman": 0.04,
                               "spearman_ci": [-0.01, 0.09]}}
    assert vector_words(helps, "sequence")[-1].endswith("the pixels help on this collection.")
    unclear = {**facts, "gain": {"hero_auc": 0.01, "hero_auc_ci": [-0.03, 0.05]}}
    assert vector_words(unclear, "sequence")[-1].endswith("no difference distinguishable from zero yet.")
    worse = {**facts, "gain": {"hero_auc": -0.05, "hero_auc_ci": [-0.09, -0.01]}}
    assert "do worse here (--embeddings none learns without them)" in vector_words(worse, "sequence")[-1]
    assert not any("not a learned representation" in s for s in vector_words(helps, "sequence"))
    few = {**facts, "used": False, "decisions": 12}
    assert "fewer than the 30 the vector-aware rater needs: the detector-only rater is used" in \
        vector_words(few, "sequence")[0]
    assert "embed --model baseline" in vector_words({"model": None, "asked": "newest"}, "sequence")[0]


def test_a_resample_as_a_weighting_gives_the_resample_s_statistics():
    """The bootstrap intervals weight the rows instead of copying them: the same numbers, one sort."""
    from hitl.analyse.statistics import spearman

    rng = np.random.default_rng(5)
    n = 90
    groups = np.arange(n) // 3
    truth = np.clip(np.rint(5 + 2 * rng.normal(size=n)), 1, 10)
    pred = np.round(truth + rng.normal(0, 1.5, n), 1)  # ties on both sides
    scores = np.round(rng.normal(size=(3, n)), 1)
    y = truth >= 7
    draws = list(M.group_resamples(groups, np.arange(n), 60, seed=2))
    counts = M.resample_counts(groups, 60, seed=2)
    assert counts.sum(axis=1).tolist() == [len(i) for i in draws]
    assert M.weighted_aucs(scores, y, counts) == pytest.approx(np.array([M.aucs(scores[:, i], y[i]) for i in draws]))
    assert M.bootstrap_spearman(pred, truth, counts) == pytest.approx([spearman(pred[i], truth[i]) for i in draws])
