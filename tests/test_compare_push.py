"""The pure parts of `hitl compare` (hitl.compare.push): the shipped config, the task and how its
answers read back through the one validator, the choice of pairs, and the hero set it pairs.

The planted-ranking simulation here is the offline half of the acceptance of
tests/test_compare_studio.py: there the same curator answers through a real Label Studio.
"""
from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from collections import Counter

import numpy as np
import pytest
from scipy.stats import kendalltau

from converters.common import HumanRating
from converters.decisions import DecisionError
from converters.labelstudio import FROM_COMPARISON, FROM_SAME, rating_from_annotation
from hitl import store
from hitl.compare.push import (
    CompareSummary,
    choose_pairs,
    comparison_outcomes,
    hero_urls,
    pair_task,
    pairwise_config,
    push_pairs,
)
from hitl.compare.strength import fit_bradley_terry
from hitl.errors import HitlError
from hitl.store.ratings import record_ratings

from .conftest import REPO, give_detector_record
from .helpers.compare import COMPARISONS, LEFT, N_HEROES, PER_ROUND, RIGHT, SAME, SPREAD, beats, planted
from .helpers.labelstudio import label_interface


def simulate(seed: int, comparisons: int, spread: float = SPREAD, n: int = N_HEROES) -> float:
    """Rounds of PER_ROUND pairs by choose_pairs (what `hitl compare -n 20` pushes), each answered
    by the simulated curator before the next; Kendall's tau of the final fit against the truth."""
    truth, coin = planted(seed, n, spread), np.random.default_rng([seed, 2])
    done: set[frozenset[int]] = set()
    outcomes: list[tuple[int, int, float]] = []
    while len(outcomes) < comparisons:
        pairs = choose_pairs(n, outcomes, done, min(PER_ROUND, comparisons - len(outcomes)), seed=seed)
        assert pairs
        for a, b in pairs:
            done.add(frozenset((a, b)))
            outcomes.append((a, b, 1.0 if beats(coin, truth[a], truth[b]) else 0.0))
    return float(kendalltau(fit_bradley_terry(n, outcomes).log_strength, truth)[0])


def test_planted_ranking_choice():
    """The spread and reading the real-Label-Studio acceptance uses, measured.

    40 images, seeds 0-199, rounds of 20 pairs through choose_pairs, mean tau at 60 / 120
    comparisons: strengths over [-2, 2] 0.45 / 0.57; [-5, 5] 0.62 / 0.77 (23% of seeds >= 0.8 at
    120); [-10, 10] 0.67 / 0.85 (96%); [-15, 15] 0.69 / 0.87 (99.5%, lowest 0.79); [-20, 20]
    0.70 / 0.88 (100%, lowest 0.81). 60 comparisons (each image
    in 3) never suffice at any spread: even a curator who never errs gives 60 bits for an order of
    40 images (log2 40! = 159 bits). So "3 per image" is read as comparisons / images = 3, i.e. 120
    comparisons (each image in about 6), and the planted spread is [-20, 20]: neighbours 1.03
    apart, so a curator prefers the better of two neighbours 74% of the time.
    """
    taus = np.array([simulate(seed, COMPARISONS) for seed in range(200)])
    assert np.mean(taus >= 0.8) >= 0.99, (taus.mean(), np.sort(taus)[:5])
    few = np.array([simulate(seed, COMPARISONS // 2) for seed in range(50)])
    assert np.mean(few >= 0.8) < 0.1 and few.mean() < taus.mean() - 0.1


# -- the config and the task ----------------------------------------------------------------------

def test_config_names_what_the_reader_reads():
    root = ET.fromstring(pairwise_config())
    images = [e.get("name") for e in root.iter("Image")]
    assert images == ["left", "right"]
    pairwise = [e.attrib for e in root.iter("Pairwise")]
    assert pairwise == [{"name": FROM_COMPARISON, "toName": "left,right"}]
    same = next(e for e in root.iter("Choices") if e.get("name") == FROM_SAME)
    assert [(c.get("value"), c.get("alias")) for c in same.iter("Choice")] == [("About the same", "same")]
    assert "Which photo" in next(root.iter("Header")).get("value")
    interface = label_interface(pairwise_config())  # Label Studio's own parser accepts it
    assert interface.get_control(FROM_COMPARISON).to_name == ["left", "right"]


def answer(task: dict, result: list[dict], **extra) -> HumanRating:
    annotation = {"id": 7, "result": result, "completed_by": 1, "task": 3, **extra}
    return rating_from_annotation(annotation, {"id": 3, **task}, 5)


@pytest.mark.parametrize(("result", "preference"), [([LEFT], "left"), ([RIGHT], "right"), ([SAME], "same"),
                                                   ([], None)])
def test_task_answers_read_back(result, preference):
    task = pair_task("cam/a.jpg", "cam/b.jpg", "/data/local-files/?d=a", "/data/local-files/?d=b")
    assert task["data"]["image_id"] == "cam/a.jpg" and task["data"]["mode"] == "blind"
    rating = answer(task, result)
    assert (rating.image_id, rating.other_image_id, rating.preference) == ("cam/a.jpg", "cam/b.jpg", preference)
    assert (rating.stars, rating.hero, rating.mode, rating.skipped) == (None, None, "blind", False)


def test_skip_and_contradiction_read_back():
    task = pair_task("a.jpg", "b.jpg", "u1", "u2")
    skipped = answer(task, [], was_cancelled=True)
    assert (skipped.skipped, skipped.other_image_id, skipped.preference) == (True, "b.jpg", None)
    with pytest.raises(DecisionError, match="both 'left' and 'same'"):
        answer(task, [LEFT, SAME])


def test_outcomes_are_the_left_images_score():
    index = {"a": 0, "b": 1, "c": 2}
    rows = [{"left": "a", "right": "b", "preference": "left"}, {"left": "c", "right": "a", "preference": "right"},
            {"left": "b", "right": "c", "preference": "same"}, {"left": "a", "right": "gone", "preference": "left"}]
    assert comparison_outcomes(rows, index) == [(0, 1, 1.0), (2, 0, 0.0), (1, 2, 0.5)]


# -- the choice of pairs --------------------------------------------------------------------------

def test_pairs_are_new_distinct_and_deterministic():
    done = {frozenset((0, 1)), frozenset((2, 3))}
    outcomes = [(0, 1, 1.0), (3, 2, 0.5)]
    pairs = choose_pairs(10, outcomes, done, 15, seed=4)
    keys = [frozenset(p) for p in pairs]
    assert len(pairs) == 15 and len(set(keys)) == 15 and not set(keys) & done
    assert all(a != b for a, b in pairs)
    assert pairs == choose_pairs(10, outcomes, done, 15, seed=4)
    assert pairs != choose_pairs(10, outcomes, done, 15, seed=5)


def test_sides_are_drawn_not_the_name_order():
    pairs = choose_pairs(40, [], set(), 200, seed=0)
    left_first = sum(a < b for a, b in pairs)
    assert 70 < left_first < 130  # about half: the earlier image_id is not always on the left


def test_waiting_pairs_count_toward_coverage():
    """A second run before any answer pairs the images not yet shown, not the same ones again."""
    first = choose_pairs(12, [], set(), 6, min_per_item=1, seed=0)
    shown = {k for pair in first for k in pair}
    assert len(shown) == 12  # six pairs cover twelve images once
    outcomes = [(a, b, 1.0) for a, b in first[:3]]  # half answered, half still waiting
    second = choose_pairs(12, outcomes, {frozenset(p) for p in first}, 6, min_per_item=2, seed=0)
    counts = Counter(k for pair in first + second for k in pair)
    assert set(counts.values()) == {2}, counts


def test_every_pair_once_then_none():
    done: set[frozenset[int]] = set()
    for _ in range(10):
        for pair in choose_pairs(6, [], done, 4, seed=1):
            assert frozenset(pair) not in done
            done.add(frozenset(pair))
    assert len(done) == 15 and choose_pairs(6, [], done, 4) == []


# -- the hero set ---------------------------------------------------------------------------------

@pytest.fixture
def heroes(tmp_path):
    """A store with five images, four of them heroes (one with its file gone), one not."""
    folder = tmp_path / "files" / "heroes"
    folder.mkdir(parents=True)
    source = min((REPO / "sample_data" / "images").rglob("*.JPG"))
    db = store.connect(tmp_path / "h.db")
    ratings = []
    for k in range(5):
        name = f"h{k}.jpg"
        shutil.copy(source, folder / name)
        db["images"].insert({"image_id": name, "root": str(folder)})
        ratings.append(HumanRating(source="sheet", project="s.csv", annotation_id=f"ana/{name}", image_id=name,
                                   annotator_id="ana", stars=8, hero=k != 4, updated_at="2026-01-01T00:00:00+00:00"))
    with store.transaction(db):
        record_ratings(db, ratings, via="sheet")
    give_detector_record(db, folder, [f"h{k}.jpg" for k in range(5)])
    (folder / "h3.jpg").unlink()
    return db, tmp_path / "files"


def test_hero_urls_leave_out_missing_files_and_non_heroes(heroes):
    db, root = heroes
    summary = CompareSummary(0, False, "blind", "")
    urls, roots, document_root = hero_urls(db, summary, "majority", None, root, None)
    assert urls == {f"h{k}.jpg": f"/data/local-files/?d=heroes/h{k}.jpg" for k in range(3)}
    assert summary.skipped == Counter({"image file missing": 1}) and summary.heroes == 3
    assert document_root == root and roots == [str(root / "heroes")]
    templated, _, none = hero_urls(db, CompareSummary(0, False, "blind", ""), "majority", None, None,
                                   "https://example.org/{image_id}")
    assert templated["h3.jpg"] == "https://example.org/h3.jpg" and none is None  # a web server has it


def test_too_few_heroes_is_one_line_before_any_call(heroes):
    db, root = heroes
    db.execute("UPDATE ratings SET hero = 0 WHERE image_id != 'h0.jpg'")
    db.conn.commit()
    with pytest.raises(HitlError, match=r"has 1 image\(s\); review in Label Studio and mark at least two hero"):
        push_pairs(db, None, url="http://127.0.0.1:9", title="t", n=5, document_root=root)  # no client needed


class FakeStudio:
    """Just enough of label-studio-sdk's LabelStudio for `hitl compare` to reach its choice of pairs."""

    def __init__(self, base_url: str, api_key: str, timeout: float):
        from types import SimpleNamespace as Part

        self.users = Part(whoami=lambda **_: Part(id=1), list=lambda: [])
        self.projects = Part(list=lambda title: [], create=lambda **kw: Part(id=7, description=kw["description"]))
        self.import_storage = Part(local=Part(list=lambda project: [], create=lambda **kw: Part(id=1)))
        self.tasks = Part(list=lambda **kw: [])


def test_a_fault_of_compare_itself_is_never_said_to_be_label_studios(heroes, monkeypatch):
    """Only a call to Label Studio is mapped to a StudioError: a ValueError of the pairing (the
    Bradley-Terry fit, say) between two calls is a fault of ours, raised as itself."""
    from click.testing import CliRunner

    from hitl.cli import cli

    db, root = heroes

    def faulty_fit(*_args, **_kwargs):
        raise ValueError("the fit's own fault")
    monkeypatch.setattr("label_studio_sdk.LabelStudio", FakeStudio)
    monkeypatch.setattr("hitl.compare.push.choose_pairs", faulty_fit)
    with pytest.raises(ValueError, match="the fit's own fault"):
        CliRunner().invoke(cli, ["--db", str(root.parent / "h.db"), "compare", "--url", "http://127.0.0.1:9",
                                 "--no-webhook", "--document-root", str(root)],
                           env={"LABEL_STUDIO_API_KEY": "k"}, catch_exceptions=False)


def test_label_studio_gone_in_the_middle_of_compare_is_one_studio_error(heroes, monkeypatch):
    from label_studio_sdk import LabelStudio
    from label_studio_sdk.core import http_client

    from hitl.errors import StudioError
    from hitl.review.client import StudioClient

    db, root = heroes
    waits = []  # the SDK's backoffs, counted instead of slept (~3 s for a server known to be gone)
    monkeypatch.setattr(http_client.time, "sleep", waits.append)
    gone = "http://127.0.0.1:9"  # the discard port: nothing listens there
    client = StudioClient(LabelStudio(base_url=gone, api_key="k"), gone)
    with pytest.raises(StudioError, match=r"lost Label Studio at http://127.0.0.1:9 while calling projects.list"):
        push_pairs(db, client, url=gone, title="t", n=2, document_root=root)
    assert len(waits) == 2  # a call in the middle keeps the SDK's retries, for a Label Studio that blips


def test_bad_url_template_is_one_line(heroes):
    db, _ = heroes
    with pytest.raises(HitlError, match="may only use {image_id}"):
        hero_urls(db, CompareSummary(0, False, "blind", ""), "majority", None, None, "https://x/{path}")


# -- an answer may name only the pair its task was pushed with -------------------------------------

def pair_store(tmp_path):
    """Images a, b, c in the store and task 3 of comparison project 9 pushed as a (left) vs b (right)."""
    from types import SimpleNamespace

    from hitl.review.push import PushSummary, import_tasks

    db = store.connect(tmp_path / "h.db")
    with store.transaction(db):
        for name in ("a.jpg", "b.jpg", "c.jpg"):
            db["images"].insert({"image_id": name, "root": str(tmp_path)})
    client = SimpleNamespace(projects=SimpleNamespace(import_tasks=lambda **_: SimpleNamespace(task_ids=[3])))
    import_tasks(db, client, 9, "pairs", [pair_task("a.jpg", "b.jpg", "u1", "u2")], ["a.jpg"], 500,
                 PushSummary(9, False, "blind", ""), False, others=["b.jpg"])
    return db


def pair_delivery(left: str, right: str, task_id: int = 3, annotation_id: int = 70) -> dict:
    task = {"id": task_id, "data": pair_task(left, right, "u1", "u2")["data"]}
    return {"action": "ANNOTATION_CREATED", "project": {"id": 9}, "task": task,
            "annotation": {"id": annotation_id, "task": task_id, "result": [LEFT], "completed_by": 1,
                           "created_at": "2026-11-21T12:00:00Z", "updated_at": "2026-11-21T12:00:00Z"}}


def test_the_push_keeps_both_images_of_a_pair(tmp_path):
    db = pair_store(tmp_path)
    assert [tuple(r) for r in db.execute("SELECT task_id, image_id, other_image_id FROM ls_tasks")] == [
        (3, "a.jpg", "b.jpg")]


def test_a_comparison_naming_another_pair_is_refused_by_the_webhook(tmp_path, webhook_app):
    pair_store(tmp_path)
    app = webhook_app({"DATABASE": str(tmp_path / "h.db"), "WEBHOOK_SECRET": "s", "TESTING": True})
    client = app.test_client()

    def post(body):
        return client.post("/webhooks/label-studio", json=body, headers={"Authorization": "Bearer s"})

    for forged in (pair_delivery("a.jpg", "c.jpg"),  # the task's data edited in Label Studio
                   pair_delivery("b.jpg", "a.jpg"),  # the sides swapped
                   pair_delivery("a.jpg", "nowhere.jpg"),  # an image not in the database
                   pair_delivery("a.jpg", "b.jpg", task_id=4)):  # a task never pushed
        response = post(forged)
        assert response.status_code == 400 and "comparison of a pair not pushed" in response.json["error"], (
            forged["task"], response.json)
    assert store.connect(tmp_path / "h.db")["ratings"].count == 0
    assert post(pair_delivery("a.jpg", "b.jpg")).json["outcome"] == "ok"
    stored = next(store.connect(tmp_path / "h.db")["ratings"].rows)
    assert (stored["image_id"], stored["other_image_id"], stored["preference"]) == ("a.jpg", "b.jpg", "left")


def test_a_comparison_naming_another_pair_is_a_counted_bad_record_in_a_sync(tmp_path):
    from hitl.review import events
    from hitl.review.reconcile import sync_export_file

    db = pair_store(tmp_path)
    good, edited = pair_delivery("a.jpg", "b.jpg"), pair_delivery("a.jpg", "c.jpg", annotation_id=71)
    task = {**good["task"], "project": 9, "annotations": [good["annotation"], edited["annotation"]]}
    task["data"] = edited["task"]["data"]  # the data as edited since: both answers now read a vs c
    export = tmp_path / "export.json"
    export.write_text(json.dumps([task]))
    _, result = sync_export_file(db, export, None)
    assert result.problems["comparison of a pair not pushed"] == 2 and db["ratings"].count == 0
    # a stored delivery replayed later is held to the same map, and says what it refused
    event_id, outcome, detail = events.store_event(db, edited, via="replay")
    assert outcome == "ok" and "refused (comparison of a pair not pushed)" in detail and db["ratings"].count == 0


def test_pairs_pushed_before_the_map_kept_right_images_get_them_once(tmp_path):
    from types import SimpleNamespace

    from hitl.compare.push import pushed_pairs
    from hitl.store import queries

    db = store.connect(tmp_path / "h.db")
    with store.transaction(db):
        queries.map_task(db, 9, 5, "a.jpg")  # an older push: the left image only
        queries.map_task(db, 9, 6, "a.jpg")  # ... and one whose data was edited since (left is c now)
        queries.map_task(db, 9, 7, "b.jpg", other_image_id="c.jpg")
    tasks = [SimpleNamespace(id=5, data={"left_id": "a.jpg", "right_id": "b.jpg"}),
             SimpleNamespace(id=6, data={"left_id": "c.jpg", "right_id": "b.jpg"}),
             SimpleNamespace(id=7, data={"left_id": "b.jpg", "right_id": "a.jpg"}),  # edited: the map stands
             SimpleNamespace(id=8, data={"left_id": "b.jpg", "right_id": "c.jpg"})]  # a push that died unsaved
    client = SimpleNamespace(tasks=SimpleNamespace(list=lambda **_: tasks))
    pushed_pairs(db, client, 9)
    assert {r[0]: (r[1], r[2]) for r in db.execute("SELECT task_id, image_id, other_image_id FROM ls_tasks")} == {
        5: ("a.jpg", "b.jpg"), 6: ("a.jpg", None), 7: ("b.jpg", "c.jpg"), 8: ("b.jpg", "c.jpg")}
