"""The learned rater: grouped validation, out-of-fold predictions only for what it learned from,
a clear refusal on too few decisions, and `next` into a real Label Studio."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pytest

from hitl.learn import model as M
from hitl.learn.features import Features
from hitl.learn.next import order, take

from .conftest import CliProject, scored_project
from .helpers.learn import CURATORS, copied_project, sheet_for


@pytest.fixture(scope="module")
def scored_store(tmp_path_factory, sample_data) -> Path:
    """conftest's `scored` project, made once per module."""
    return scored_project(tmp_path_factory.mktemp("scored") / "h.db", sample_data).db_path


@pytest.fixture
def scored(scored_store, tmp_path) -> CliProject:
    """conftest's `scored`, as a copy of :func:`scored_store` of the test's own."""
    return copied_project(scored_store, tmp_path)


def test_grouped_validation_never_splits_a_sequence():
    rng = np.random.default_rng(1)
    n = 120
    groups = np.repeat(np.arange(30), 4)  # 30 bursts of 4 frames
    X = rng.normal(size=(n, 3))
    stars = np.clip(np.rint(5 + 2 * X[:, 0] + rng.normal(size=n)), 1, 10)
    hero = (X[:, 0] > 0.5).astype(np.int8)
    with M.threads_for(n):  # as learn fits: one native thread on small data
        _, _, fold = M.out_of_fold(Features(["a", "b", "c"], X), stars, hero, groups)
    for g in np.unique(groups):
        assert len(set(fold[groups == g])) == 1  # a burst's frames are all in one validation fold
    assert len(set(fold)) == M.FOLDS


def test_a_feature_missing_from_every_training_row_is_no_failure():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 3))
    X[:40, 2] = np.nan  # a model that scored only the second half: empty in some folds' training rows
    X[:, 1] = np.nan  # a feature nobody has
    stars = np.clip(np.rint(5 + 2 * X[:, 0]), 1, 10)
    hero = (X[:, 0] > 0.3).astype(np.int8)
    groups = np.arange(80) // 40  # two groups: one fold trains on the half without column 2
    with M.threads_for(len(X)):  # as learn fits: one native thread on small data
        pred_stars, p, _ = M.out_of_fold(Features(["a", "b", "c"], X), stars, hero, groups)
        fitted = M.fit(Features(["a", "b", "c"], X[:40]), stars[:40], hero[:40], np.arange(40) // 10)
    assert np.isfinite(pred_stars).all() and ((0 <= p) & (p <= 1)).all()
    # a value in a column that had none in training changes nothing: that column is a constant to it
    only_c = X[40:].copy()
    only_c[:, 2] = 99.0
    assert np.allclose(fitted.predict(X[40:])[1], fitted.predict(only_c)[1])


def test_intervals_resample_whole_groups():
    groups = np.repeat(np.arange(10), 3)
    rows = np.arange(30)
    seen = []

    def sizes(i):
        counts = np.bincount(groups[i], minlength=10)
        seen.append(counts)
        return float(len(i))
    ci = M.group_bootstrap_ci(sizes, groups, rows, resamples=50)
    assert ci == [30.0, 30.0] and len(seen) == 50  # ten groups drawn each time, three frames each
    assert all((c % 3 == 0).all() for c in seen) and any((c == 0).any() for c in seen)
    stars = np.tile(np.arange(1.0, 11.0), 3)
    noisy = stars + np.random.default_rng(0).normal(0, 2, 30)
    f = M.figures(noisy, np.clip(noisy / 10, 0, 1), stars, (stars >= 7).astype(np.int8), 5, groups, 200)
    low, high = f["spearman_ci"]
    assert low < f["spearman"] < high and 0 < high - low < 1
    assert "spearman_ci" not in M.figures(noisy, noisy / 10, stars, (stars >= 7).astype(np.int8), 5)


def test_validation_is_by_location_from_three_locations():
    _, by = M.validation_groups(["s1", "s2", "s3"], ["cam_a", "cam_b", "cam_a"])
    assert by == "sequence"
    groups, by = M.validation_groups(["s1", "s2", "s3", "s4"], ["cam_a", "cam_b", "cam_c", "cam_a"])
    assert by == "location" and groups[0] == groups[3] != groups[1]


def test_too_few_decisions_refuse_and_name_the_best_model(scored, tmp_path):
    sheet_for(scored, tmp_path / "few.csv", curators=CURATORS[:2], images=6)  # 12 decisions
    scored.run("ratings", "--import", str(tmp_path / "few.csv"))
    result = scored.run("learn", ok=False)
    assert result.exit_code == 1 and "only 12 curator decisions" in result.output and "at least 30" in result.output
    assert "baseline@hero-v1 agrees best" in result.output
    assert scored.db["scores"].count_where("model = 'learned'") == 0


def test_learn_stores_out_of_fold_predictions_for_what_it_learned_from(scored, tmp_path):
    trained = sheet_for(scored, tmp_path / "d.csv")  # 12 images x 3 curators = 36 decisions
    scored.run("ratings", "--import", str(tmp_path / "d.csv"))
    result = scored.run("learn", "--json")
    figures = json.loads(result.output)
    assert figures["n_decisions"] == 36 and figures["split"]["blind"] == 24 and figures["split"]["assisted"] == 12
    assert figures["grouped_by"] in ("sequence", "location")
    assert "baseline@hero-v1" in figures["singles"]
    for key in ("spearman", "qwk", "mae", "hero_auc", "precision_at_k", "ece"):
        assert key in figures["figures"]
    db = scored.db
    stored = {r["image_id"]: r for r in db["scores"].rows_where("model = 'learned'")}
    assert set(trained) <= set(stored)
    assert {r["prompt_version"] for r in stored.values()} == {figures["version"]}
    for image_id in trained:  # never the model's view of its own training data
        facts = json.loads(stored[image_id]["raw_response"])
        assert facts["out_of_fold"] is True and "out of fold" in stored[image_id]["reasoning"]
    # the out-of-fold values are what a model that never saw the image's group predicts
    from hitl.config import load_settings
    from hitl.learn.data import Layout, decision_features, load_decisions, load_images

    images = load_images(db, load_settings().select)
    decisions = load_decisions(db, images)
    F = decision_features(images, Layout.of(images), decisions)
    groups, _ = M.validation_groups([images.meta["sequences"][r] for r in decisions.rows],
                                    [images.meta["location_names"][r] for r in decisions.rows])
    with M.threads_for(len(decisions)):  # as learn fits
        oof_stars, _, _ = M.out_of_fold(F, decisions.stars, decisions.hero, groups, seed=0)
    for image_id in trained[:3]:
        mine = [k for k, r in enumerate(decisions.rows) if images.ids[r] == image_id]
        assert stored[image_id]["score"] == pytest.approx(float(np.mean(oof_stars[mine])), abs=1e-3)
    # and the report's agreement sees it as a rater
    report = scored.run("report", "--out", str(tmp_path / "r"), "--resamples", "0")
    assert "learned@" in (tmp_path / "r" / "agreement.json").read_text()
    page = (tmp_path / "r" / "report.html").read_text()
    assert "The learned rater" in page and "never its view of its own training data" in page
    assert f"learned@{figures['version']}" in page and "baseline@hero-v1" in page
    assert report.exit_code == 0


def test_next_orders_and_never_takes_a_sequence_twice():
    p = np.array([0.9, 0.52, 0.8, 0.1, 0.95, 0.48])
    assert [r for r, _ in order(p, "hero")][:2] == [4, 0]
    assert [r for r, _ in order(p, "uncertain")][:2] == [1, 5]
    mixed = order(p, "mixed")
    assert sorted(r for r, _ in mixed) == list(range(6))
    assert [why for _, why in mixed[:4]].count("hero") == 2  # the stated share in every prefix
    chosen = take(order(p, "hero"), ["a", "b", "a", "c", "d", "e"], 3, reviewed={"d"})
    assert [r for r, _ in chosen] == [0, 1, 5]  # 4 is a reviewed sequence, 2 repeats "a"


def test_next_pushes_to_label_studio_and_a_rerun_pushes_nothing_twice(tmp_path, label_studio):
    from .helpers.labelstudio import Review

    review = Review(tmp_path, label_studio, n=12)
    rated = sheet_for(review, tmp_path / "d.csv", images=10)  # 30 decisions on 10 images
    review.run("ratings", "--import", str(tmp_path / "d.csv"))
    review.run("learn")
    dry = review.run("next", "-n", "5", "--dry-run", "--out", str(tmp_path / "next.csv"))
    rows = (tmp_path / "next.csv").read_text().splitlines()
    assert rows[0] == "image_id,p_hero,stars_pred,reason" and 1 <= len(rows) - 1 <= 2
    assert not set(r.split(",")[0] for r in rows[1:]) & set(rated)  # only unreviewed images
    assert "Next" in dry.output
    title = f"next {uuid.uuid4().hex[:6]}"
    first = review.run("next", "-n", "5", "--url", label_studio.url, "--project", title,
                       "--mode", "blind")
    pushed = len(rows) - 1
    assert f"{pushed} pushed, 0 already there" in first.output
    again = review.run("next", "-n", "5", "--url", label_studio.url, "--project", title, "--mode", "blind")
    assert f"0 pushed, {pushed} already there" in again.output
    assert review.project(title).task_number == pushed


def test_next_into_an_assisted_project_keeps_what_it_prefills(tmp_path, label_studio):
    """The learned rater has a prediction for every new image (the most complete model there), but
    the project prefilled gemini from its first push: it keeps doing so, and Label Studio accepts."""
    from .helpers.labelstudio import Review

    review = Review(tmp_path, label_studio, n=12)
    rated = sheet_for(review, tmp_path / "d.csv", images=10)
    title = f"assisted next {uuid.uuid4().hex[:6]}"
    review.push(title, "--prefill", "gemini-2.5-flash", "--no-webhook")
    with review.db.conn:  # the first push covered only the rated images
        review.db.execute("DELETE FROM ls_tasks WHERE image_id NOT IN (%s)" % ",".join("?" * len(rated)), rated)
    for task in review.tasks(review.project(title).id):
        if task.data["image_id"] not in rated:
            review.client.tasks.delete(id=task.id)
    review.run("ratings", "--import", str(tmp_path / "d.csv"))
    review.run("learn")
    result = review.run("next", "-n", "5", "--url", label_studio.url, "--project", title, "--mode", "assisted",
                        "--no-webhook")
    assert "pushed, 0 already there" in result.output and "0 pushed" not in result.output
    project = review.project(title)
    assert project.model_version == "gemini-2.5-flash@hero-v1"
    new = [t for t in review.tasks(project.id) if t.data["image_id"] not in rated]
    assert new and all(t.predictions and t.predictions[0].model_version == "gemini-2.5-flash@hero-v1" for t in new)


def test_select_learned_ranks_by_the_learned_rater(scored, tmp_path, sample_data):
    sheet_for(scored, tmp_path / "d.csv")
    scored.run("ratings", "--import", str(tmp_path / "d.csv"))
    result = scored.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
                        "--images", str(sample_data / "images"), "-n", "2", "--add", "--learned")
    assert "Ranking" in result.output and "by the learned rater (36 curator decisions)" in result.output
    added = [r for r in scored.db["candidates"].rows_where("run_id = (SELECT MAX(id) FROM selection_runs)")]
    assert added and all("learned rater: p(hero)" in r["reason"] for r in added)
    assert all(0 <= r["score"] <= 1 for r in added)


def test_select_learned_refuses_before_reading_without_decisions(scored, sample_data):
    result = scored.run("select", "--md", str(sample_data / "md_results.json"), "--images",
                        str(sample_data / "images"), "-n", "2", "--add", "--learned", ok=False)
    assert result.exit_code == 1 and "select without --learned meanwhile" in result.output
    assert "Reading" not in result.output


def test_next_after_select_add_asks_for_learn_then_takes_only_the_new(scored, tmp_path, sample_data):
    sheet_for(scored, tmp_path / "d.csv")  # every candidate reviewed
    scored.run("ratings", "--import", str(tmp_path / "d.csv"))
    scored.run("learn")
    nothing = scored.run("next", "-n", "3", "--dry-run", ok=False)
    assert nothing.exit_code == 1 and "no unreviewed candidate left" in nothing.output
    scored.run("select", "--md", str(sample_data / "md_results.json"), "--cct", str(sample_data / "cct.json"),
               "--images", str(sample_data / "images"), "-n", "2", "--add")
    added = {r["image_id"] for r in scored.db.query(
        "SELECT image_id FROM candidates WHERE run_id = (SELECT MAX(id) FROM selection_runs)")}
    stale = scored.run("next", "-n", "3", "--dry-run", ok=False)
    assert stale.exit_code == 1 and f"{len(added)} unreviewed candidates have no prediction" in stale.output
    scored.run("learn")
    scored.run("next", "-n", "3", "--dry-run", "--out", str(tmp_path / "next.csv"))
    chosen = [line.split(",")[0] for line in (tmp_path / "next.csv").read_text().splitlines()[1:]]
    assert chosen and set(chosen) <= added


def test_the_learned_rater_is_never_the_default_prefill():
    from hitl.review.push import choose_prefill

    def row(*models):
        return {"scores": [{"model": m, "prompt_version": pv} for m, pv in models]}
    learned, baseline, gemini = ("learned", "v3"), ("baseline", "hero-v1"), ("gemini-2.5-flash", "hero-v1")
    rows = [row(learned, baseline, gemini), row(learned, baseline), row(learned, baseline)]
    assert choose_prefill(rows, None) == baseline  # the most complete after the learned rater
    assert choose_prefill([row(learned, gemini), row(learned, gemini)], None) == gemini
    assert choose_prefill(rows, "learned") == learned  # asked for by name, it is
    assert choose_prefill([row(learned)], None) == learned  # nothing else to show
