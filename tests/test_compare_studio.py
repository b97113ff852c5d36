"""`hitl compare` against a real Label Studio: pairs pushed in rounds, answered through its API,
brought back by `hitl sync` or the webhook (a real `hitl serve`), and fitted.

The acceptance: 40 hero images with planted Bradley-Terry log-strengths over [-20, 20], a
simulated curator answering each pair with the Bradley-Terry probability (seed SEED), six rounds
of `hitl compare -n 20` (120 comparisons: 3 per image read as comparisons / images), and the fit
orders the hero set with Kendall's tau >= 0.8. Why that spread and that reading: measured offline
over 200 seeds in tests/test_compare_push.py::test_planted_ranking_choice (at [-2, 2] or with 60
comparisons tau >= 0.8 is out of reach; at [-20, 20] with 120 every seed reaches it, the lowest 0.81).
"""
from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from itertools import combinations

import httpx
import numpy as np
from scipy.stats import kendalltau

from hitl import store
from hitl.compare.push import comparison_outcomes
from hitl.compare.strength import fit_bradley_terry
from hitl.review import studio
from hitl.review.configs import template
from hitl.store.ratings import curator_comparisons

from .conftest import CliProject, give_detector_record
from .helpers import wait_for
from .helpers.compare import COMPARISONS, LEFT, N_HEROES, PER_ROUND, RIGHT, SAME, beats, planted
from .helpers.labelstudio import SECRET, Service, studio_api

SEED = 3


class Heroes(CliProject):
    """A database whose hero set is ``n`` images (one sample photo under ``n`` names in the fixture's
    document root), registered by `hitl score --images` and marked hero by `hitl ratings --import`."""

    def __init__(self, tmp_path, label_studio, n: int):
        super().__init__(tmp_path / "h.db", {"HITL_DB": str(tmp_path / "h.db"), "LABEL_STUDIO_API_KEY": label_studio.token,
                                             "HITL_WEBHOOK_SECRET": None, "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": None})
        self.studio = label_studio
        self.folder = label_studio.document_root / f"heroes-{uuid.uuid4().hex[:8]}"
        self.folder.mkdir()
        photo = min((label_studio.document_root / "sample_data" / "images").rglob("*.JPG"))
        self.ids = [f"h{k:02d}.jpg" for k in range(n)]
        for name in self.ids:
            try:
                os.link(photo, self.folder / name)
            except OSError:  # a file system without hard links
                shutil.copy(photo, self.folder / name)
        self.run("score", "--model", "baseline", "--images", str(self.folder))
        give_detector_record(self.db, self.folder, self.ids)  # else a folder's images are left out of the pairs
        sheet = tmp_path / "heroes.csv"
        sheet.write_text("image_id,curator,stars,hero\n" + "".join(f"{i},ana@example.org,8,yes\n" for i in self.ids))
        assert f"{n} new" in self.run("ratings", "--import", str(sheet)).output
        self.client = studio_api(label_studio.url, label_studio.token)
        self.title = f"compare {uuid.uuid4().hex[:6]}"

    def compare(self, *extra: str, ok: bool = True):
        return self.run("compare", "--url", self.studio.url, "--project", self.title,
                        "--document-root", str(self.studio.document_root), *extra, ok=ok)

    def sync(self):
        return self.run("sync", "--url", self.studio.url, "--project", self.title)

    def project_id(self) -> int:
        return next(p.id for p in self.client.projects.list(title=self.title) if p.title == self.title)

    def tasks(self) -> list:
        return sorted(self.client.tasks.list(project=self.project_id(), fields="all"), key=lambda t: t.id)

    def pairs(self) -> list[frozenset[str]]:
        return [frozenset((t.data["left_id"], t.data["right_id"])) for t in self.tasks()]


def test_rounds_of_pairs_recover_a_planted_ranking(tmp_path, label_studio):
    heroes = Heroes(tmp_path, label_studio, N_HEROES)
    truth = dict(zip(heroes.ids, planted(SEED)))
    coin = np.random.default_rng([SEED, 2])
    answered: set[int] = set()
    for round_ in range(COMPARISONS // PER_ROUND):
        result = heroes.compare("-n", str(PER_ROUND), "--no-webhook")
        assert f"{PER_ROUND} pairs pushed, {round_ * PER_ROUND} already there (0 waiting" in result.output, result.output
        assert f"{N_HEROES} heroes, {round_ * PER_ROUND} comparisons answered" in result.output
        for task in heroes.tasks():
            if task.id in answered:
                continue
            side = "left" if beats(coin, truth[task.data["left_id"]], truth[task.data["right_id"]]) else "right"
            heroes.client.annotations.create(id=task.id, result=[LEFT if side == "left" else RIGHT])
            answered.add(task.id)
        assert f"{PER_ROUND} new" in heroes.sync().output

    pairs = heroes.pairs()
    assert len(pairs) == len(set(pairs)) == COMPARISONS  # never a pair twice
    shown = Counter(image for pair in pairs for image in pair)
    assert set(shown) == set(heroes.ids) and min(shown.values()) >= 3
    db = heroes.db
    rows = list(db.query("SELECT * FROM ratings WHERE other_image_id IS NOT NULL"))
    assert len(rows) == COMPARISONS
    assert {(r["mode"], r["annotator_email"], r["stars"], r["hero"]) for r in rows} == {
        ("blind", "curator@example.org", None, None)}
    assert db["ls_projects"].get(heroes.project_id())["kind"] == "pairwise"
    index = {image_id: k for k, image_id in enumerate(heroes.ids)}
    fit = fit_bradley_terry(N_HEROES, comparison_outcomes(curator_comparisons(db), index))
    tau = kendalltau(fit.log_strength, [truth[i] for i in heroes.ids])[0]
    assert tau >= 0.8, tau

    task = heroes.tasks()[0]  # Label Studio serves both images of a task
    for side in ("left", "right"):
        response = httpx.get(label_studio.url + task.data[side], headers={"Authorization": f"Token {label_studio.token}"})
        assert response.status_code == 200 and response.content[:2] == b"\xff\xd8", (side, response.status_code)


def test_same_by_webhook_skip_and_a_bad_answer_counted_by_sync(tmp_path, label_studio):
    heroes = Heroes(tmp_path, label_studio, 6)
    heroes.env["HITL_WEBHOOK_SECRET"] = SECRET
    gone = heroes.ids[-1]
    (heroes.folder / gone).unlink()  # a hero whose file is missing
    port = studio.free_port()
    service = Service(heroes.db_path, port)
    try:
        result = heroes.compare("-n", "4", "--webhook-url", f"http://127.0.0.1:{port}/webhooks/label-studio")
        assert "4 pairs pushed" in result.output and "5 heroes" in result.output, result.output
        assert "skipped     1  image file missing" in result.output and "webhook: created" in result.output
        tasks = heroes.tasks()
        assert len(tasks) == 4 and all(gone not in (t.data["left_id"], t.data["right_id"]) for t in tasks)
        same, skipped, bad, late = tasks
        heroes.client.annotations.create(id=same.id, result=[SAME])
        heroes.client.annotations.create(id=skipped.id, result=[], was_cancelled=True)
        heroes.client.annotations.create(id=bad.id, result=[LEFT, SAME])  # a side and "same": refused

        def row(task):
            return heroes.db.execute("SELECT image_id, other_image_id, preference, skipped FROM ratings "
                                     "WHERE task_id = ?", [task.id]).fetchone()

        assert wait_for(lambda: row(same) is not None and row(skipped) is not None), (row(same), row(skipped))
        assert tuple(row(same)) == (same.data["left_id"], same.data["right_id"], "same", 0)
        assert tuple(row(skipped)) == (skipped.data["left_id"], skipped.data["right_id"], None, 1)
        assert row(bad) is None
    finally:
        service.stop()

    heroes.client.annotations.create(id=late.id, result=[RIGHT])  # the service is down: only sync brings it
    result = heroes.sync()
    assert "1 new" in result.output and "2 unchanged" in result.output, result.output
    assert "skipped     1  bad comparison" in result.output and "both 'left' and 'same'" in result.output
    assert tuple(row(late)) == (late.data["left_id"], late.data["right_id"], "right", 0)

    result = heroes.compare("-n", "3", "--no-webhook")  # the skipped and the bad pair count as shown
    assert "3 pairs pushed, 4 already there (2 waiting" in result.output, result.output
    pairs = heroes.pairs()
    assert len(pairs) == len(set(pairs)) == 7


def test_no_pair_twice_across_reruns_and_a_lost_task_map(tmp_path, label_studio):
    heroes = Heroes(tmp_path, label_studio, 8)  # 28 pairs in all
    assert "10 pairs pushed, 0 already there" in heroes.compare("-n", "10", "--no-webhook").output
    project_id = heroes.project_id()
    db = heroes.db
    # a push that died between the import and saving the task map: the store knows none of its tasks
    with store.transaction(db):
        db.execute("DELETE FROM ls_tasks WHERE project_id = ?", [project_id])
    assert "10 pairs pushed, 10 already there" in heroes.compare("-n", "10", "--no-webhook").output
    mapped = {r["task_id"]: r["image_id"] for r in heroes.db["ls_tasks"].rows_where("project_id = ?", [project_id])}
    assert mapped == {t.id: t.data["left_id"] for t in heroes.tasks()}
    assert "8 pairs pushed, 20 already there" in heroes.compare("-n", "10", "--no-webhook").output
    result = heroes.compare("-n", "10", "--no-webhook")
    assert "0 pairs pushed, 28 already there" in result.output
    assert "Nothing new to pair: every pair of these heroes is answered or waiting" in result.output
    assert sorted(map(sorted, heroes.pairs())) == sorted(map(sorted, combinations(heroes.ids, 2)))

    other = f"review {uuid.uuid4().hex[:6]}"  # a review project is never compared into
    heroes.client.projects.create(title=other, label_config=template("blind"))
    result = heroes.run("compare", "--url", label_studio.url, "--project", other, "--no-webhook", ok=False)
    assert result.exit_code == 1 and "is a review project, not a comparison" in result.output


def test_fewer_than_two_heroes_is_one_line(tmp_path, label_studio):
    heroes = Heroes(tmp_path, label_studio, 1)
    result = heroes.compare("--no-webhook", ok=False)
    assert result.exit_code == 1 and "mark at least two hero" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_curator_compares_in_the_browser(chromium, tmp_path, label_studio):
    """Label Studio's own comparison page, in Chromium: both photos shown side by side; the curator
    clicks the right one and submits, then ticks "About the same" on the next pair; what Label
    Studio stores reads back through `hitl sync` as "right" and "same" for those pairs."""
    from .helpers.browser import bottom_button, curator_page

    heroes = Heroes(tmp_path, label_studio, 4)
    assert "2 pairs pushed" in heroes.compare("-n", "2", "--no-webhook").output
    first, second = heroes.tasks()
    with curator_page(chromium, label_studio.url, label_studio.username, label_studio.password, tmp_path) as page:
        for task, answer in ((first, "right"), (second, "same")):
            page.goto(f"{label_studio.url}/projects/{heroes.project_id()}/data?task={task.id}")
            bottom_button(page, "Submit").wait_for(timeout=60000)
            images = page.locator(".lsf-image img:visible")  # the task's two photos, not the table's
            images.nth(1).wait_for(timeout=30000)
            for k in range(2):
                page.wait_for_function("img => img.complete && img.naturalWidth > 0",
                                       arg=images.nth(k).element_handle(), timeout=30000)
            assert images.count() == 2
            if answer == "right":
                box = images.nth(1).bounding_box()  # a click where the curator sees the photo
                page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            else:
                page.locator(".lsf-choices label", has_text="About the same").click()
            bottom_button(page, "Submit").click()
            page.wait_for_load_state("networkidle", timeout=30000)
            assert wait_for(lambda t=task: heroes.client.annotations.list(id=t.id), timeout=15), \
                f"task {task.id}: no annotation reached Label Studio"
    stored = {a.id: a.result for t in (first, second) for a in heroes.client.annotations.list(id=t.id)}
    result = heroes.sync()
    assert "2 new" in result.output and "skipped" not in result.output, (result.output, stored)
    rows = {r["task_id"]: (r["image_id"], r["other_image_id"], r["preference"])
            for r in heroes.db.query("SELECT * FROM ratings WHERE other_image_id IS NOT NULL")}
    assert rows == {first.id: (first.data["left_id"], first.data["right_id"], "right"),
                    second.id: (second.data["left_id"], second.data["right_id"], "same")}, stored
