"""Push pairs of hero-set images to a Label Studio project for pairwise comparison.

One run: the hero set (the images `hitl export` would export, by the same policy), the
Bradley-Terry fit of every answered comparison among them, the pairs already shown (every task
of this project, answered or not, read back from Label Studio itself, plus every comparison
answered anywhere), then :func:`hitl.compare.pairs.next_pairs` and one task per new pair.

Idempotent like ``hitl push``: the project is found by title, and a pair is never pushed twice,
because the pairs in the project are read from its tasks' data (a push that died between the
import and saving the task map has its tasks in Label Studio, so they count as shown, and the map
is completed). The answers come back as ratings through the webhook, ``hitl sync`` and the one
validator (``converters.labelstudio.rating_from_annotation``).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path

import numpy as np
import sqlite_utils

from converters.labelstudio import default_document_root, local_files_url
from hitl.compare.order import PREFERENCE_S
from hitl.compare.pairs import next_pairs
from hitl.compare.strength import fit_bradley_terry
from hitl.errors import HitlError
from hitl.review.push import PushSummary, cache_users, ensure_local_storage, ensure_webhook, import_tasks
from hitl.store import queries, transaction, utc_now
from hitl.store.detector import publishable
from hitl.store.heroes import select_heroes
from hitl.store.ratings import curator_comparisons

KIND, MODE = "pairwise", "blind"  # ls_projects.kind and .mode: no model output is shown in a comparison
CONFIG = "pairwise.xml"
MARK = "(pairwise mode)"  # how a project this database never saw is known as a comparison project
DESCRIPTION = (f"hero-hitl comparison {MARK}: pick the more beautiful of two hero images, "
               f"or say they are about the same.")


@dataclass
class CompareSummary(PushSummary):
    """What a comparison push did; ``pushed`` and ``already`` count pairs (tasks)."""

    heroes: int = 0  # hero images that can be shown (file there, URL known)
    answered: int = 0  # answered comparisons among them, from every curator and project
    waiting: int = 0  # pairs in this project no one has answered yet
    possible: int = 0  # pairs of heroes never shown before this run
    asked: int = 0
    left_out: list[str] = field(default_factory=list)  # heroes the publishing rule leaves out, named


def pairwise_config() -> str:
    """The shipped comparison config (label_config/pairwise.xml), as text."""
    return resources.files("label_config").joinpath(CONFIG).read_text(encoding="utf-8")


def pair_task(left_id: str, right_id: str, left_url: str, right_url: str) -> dict:
    """One comparison task. ``image_id`` is the left image, so the task ↔ image map works as for a review."""
    return {"data": {"left": left_url, "right": right_url, "left_id": left_id, "right_id": right_id,
                     "image_id": left_id, "mode": MODE}}


def comparison_outcomes(comparisons: Iterable[dict], index: dict[str, int]) -> list[tuple[int, int, float]]:
    """Answered comparisons (``curator_comparisons`` rows) among the indexed images as (i, j, s) outcomes."""
    return [(index[c["left"]], index[c["right"]], PREFERENCE_S[c["preference"]]) for c in comparisons
            if c["left"] in index and c["right"] in index and c["preference"] in PREFERENCE_S]


def choose_pairs(n_items: int, outcomes: list[tuple[int, int, float]], done: set[frozenset[int]], n: int,
                 min_per_item: int = 3, seed: int = 0) -> list[tuple[int, int]]:
    """The next ``n`` pairs as (left, right) indices: none in ``done``, sides drawn at random.

    Coverage counts the pairs each image is in, answered or still waiting (``done``), so a second
    run before the curators have answered does not cover the same images again.
    """
    strengths = fit_bradley_terry(n_items, outcomes) if outcomes else None
    if strengths is not None:
        shown = np.zeros(n_items, dtype=int)
        for pair in done:
            shown[list(pair)] += 1
        strengths = replace(strengths, n_compared=shown)
    # a new state draws new tie-breaks; the same state and seed give the same pairs
    state = int(np.random.SeedSequence([seed, len(done), len(outcomes)]).generate_state(1)[0])
    pairs = next_pairs(strengths, n_items, n, done, min_per_item=min_per_item, seed=state)
    # next_pairs gives i < j, i.e. image_id order; a side that always held the earlier name
    # would carry any left/right bias of the curators into the ranking
    flips = np.random.default_rng(state).random(len(pairs)) < 0.5
    return [(b, a) if flip else (a, b) for (a, b), flip in zip(pairs, flips)]


def hero_urls(db: sqlite_utils.Database, summary: CompareSummary, policy: str, min_stars: float | None,
              document_root: str | Path | None, url_template: str | None, *, threshold: float = 0.3,
              include_people: bool = False, include_undetected: bool = False
              ) -> tuple[dict[str, str], list[str], Path | None]:
    """The hero images that can be shown, as image_id → URL; their roots and the document root.

    A hero whose file is missing (or outside the document root) is counted, with the reason, and left
    out of the pairing altogether: paired, it would be chosen first every run (it is the least
    compared) and every batch would lose those pairs. So is a hero the publishing rule leaves out
    (a person detected, no detector record: :func:`hitl.store.detector.publishable`), named in
    ``summary.left_out``, unless ``include_people`` / ``include_undetected``.
    """
    heroes = select_heroes(db, policy, min_stars)
    if len(heroes) < 2:
        raise HitlError(f"the hero set ({policy}) has {len(heroes)} image(s); review in Label Studio and mark at "
                        f"least two hero (`hitl push`, then `hitl sync`) before comparing")
    rule = publishable(db, [h["image_id"] for h in heroes], threshold=threshold, include_people=include_people,
                       include_undetected=include_undetected)
    summary.left_out = rule.lines()
    shown = [h for h in heroes if rule.allows(h["image_id"])]
    roots = sorted({h["root"] for h in shown if h["root"]})
    root = None if url_template or not roots else Path(document_root or default_document_root(roots))
    urls: dict[str, str] = {}
    for hero in shown:
        image_id = hero["image_id"]
        path = Path(hero["root"] or "") / image_id
        if url_template is None and not hero["root"]:
            summary.skip("image not in the database", f"{image_id}: no root known; left out of the pairs")
            continue
        if url_template is None and not path.is_file():
            summary.skip("image file missing", f"{path}: missing; left out of the pairs")
            continue
        try:
            urls[image_id] = url_template.format(image_id=image_id) if url_template else local_files_url(path, root)
        except ValueError as exc:
            summary.skip("image outside the document root", f"{exc}; or start Label Studio with a document root "
                                                            f"covering it (`hitl studio --document-root`)")
        except (KeyError, IndexError) as exc:
            raise HitlError(f"--image-url-template {url_template!r} may only use {{image_id}} ({exc})") from None
    if len(urls) < 2:
        raise HitlError(f"only {len(urls)} of the {len(heroes)} hero images can be shown "
                        + (f"({'; '.join(rule.lines())}; " if rule.left_out else "(")
                        + "see the skipped reasons); restore their files or pass --image-url-template")
    summary.heroes = len(urls)
    return urls, roots, root


def ensure_pairwise_project(db: sqlite_utils.Database, client, url: str, title: str):
    """Find the comparison project by title, or create it; recorded in ls_projects (blind, pairwise)."""
    existing = [p for p in client.projects.list(title=title) if p.title == title]
    created = not existing
    if existing:
        project = existing[0]
        row = db.execute("SELECT kind FROM ls_projects WHERE id = ?", [project.id]).fetchone()
        pairwise = row[0] == KIND if row else MARK in (project.description or "")
        if not pairwise:
            raise HitlError(f"project {title!r} is a review project, not a comparison; compare in another "
                            f"title (--project)")
    else:
        project = client.projects.create(title=title, label_config=pairwise_config(), description=DESCRIPTION,
                                         show_skip_button=True, maximum_annotations=1)
    now = utc_now()
    with transaction(db):
        db["ls_projects"].upsert({"id": project.id, "url": url, "title": title, "mode": MODE, "kind": KIND,
                                  "created_at": now, "updated_at": now}, pk="id")
    return project, created


def pushed_pairs(db: sqlite_utils.Database, client, project_id: int) -> set[frozenset[str]]:
    """Every pair of the project (answered or not), from its tasks' data in Label Studio.

    Tasks the store does not map yet (a push that died before saving) are mapped on the way, and
    a task mapped without its right image (pushed before the map kept it) gets the one its data
    names when its left image is the one mapped. A pair once mapped is kept: an answer is checked
    against it, whatever the task's data says later.
    """
    found: dict[int, tuple[str, str]] = {}
    for task in client.tasks.list(project=project_id, fields="all", page_size=500):
        data = task.data or {}
        left, right = data.get("left_id"), data.get("right_id")
        if isinstance(left, str) and isinstance(right, str) and left and right:
            found[task.id] = (left, right)
    known = {r[0]: (r[1], r[2]) for r in db.execute(
        "SELECT task_id, image_id, other_image_id FROM ls_tasks WHERE project_id = ?", [project_id])}
    missing = [task_id for task_id, pair in found.items()
               if task_id not in known or (known[task_id][1] is None and known[task_id][0] in (None, pair[0]))]
    if missing:
        now = utc_now()
        with transaction(db):
            for task_id in missing:
                queries.map_task(db, project_id, task_id, found[task_id][0], now, found[task_id][1])
    return {frozenset(pair) for pair in found.values()}


def push_pairs(db: sqlite_utils.Database, client, *, url: str, title: str, n: int, min_per_image: int = 3,
               policy: str = "majority", min_stars: float | None = None, seed: int = 0,
               document_root: str | Path | None = None, url_template: str | None = None,
               webhook_url: str | None = None, secret: str | None = None, batch_size: int = 500,
               progress: bool | None = None, threshold: float = 0.3, include_people: bool = False,
               include_undetected: bool = False) -> CompareSummary:
    """Create or reuse the comparison project ``title`` and push ``n`` new pairs of hero images to it
    (of the heroes :func:`hero_urls` gives)."""
    summary = CompareSummary(0, False, MODE, "", asked=n)
    urls, roots, root = hero_urls(db, summary, policy, min_stars, document_root, url_template, threshold=threshold,
                                  include_people=include_people, include_undetected=include_undetected)
    ids = sorted(urls)
    index = {image_id: k for k, image_id in enumerate(ids)}
    project, summary.project_created = ensure_pairwise_project(db, client, url, title)
    summary.project_id = project.id
    if webhook_url:  # before the import: a missing secret stops the run with nothing pushed
        summary.webhook = ensure_webhook(client, project.id, webhook_url, secret)
        with transaction(db):
            db.execute("UPDATE ls_projects SET webhook_url = ? WHERE id = ?", [webhook_url, project.id])
    if root is not None:
        summary.storage = ensure_local_storage(client, project.id, roots, root)
    pushed = pushed_pairs(db, client, project.id)
    answered = [c for c in curator_comparisons(db) if c["left"] in index and c["right"] in index]
    outcomes = comparison_outcomes(answered, index)
    done = {frozenset(index[i] for i in pair) for pair in pushed if pair.issubset(index)}
    answered_pairs = {frozenset((index[c["left"]], index[c["right"]])) for c in answered}
    summary.already, summary.answered = len(pushed), len(outcomes)
    summary.waiting = len(done - answered_pairs)
    done |= answered_pairs
    summary.possible = len(ids) * (len(ids) - 1) // 2 - len(done)
    pairs = choose_pairs(len(ids), outcomes, done, n, min_per_image, seed)
    tasks = [pair_task(ids[a], ids[b], urls[ids[a]], urls[ids[b]]) for a, b in pairs]
    import_tasks(db, client, project.id, title, tasks, [ids[a] for a, _ in pairs], batch_size, summary,
                 progress, others=[ids[b] for _, b in pairs])
    cache_users(db, client)  # deliveries name annotators by id; keep their emails at hand
    return summary
