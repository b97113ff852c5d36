"""The hero set: which images the curators validated as hero, by a policy, and who said what.

The vote counts each curator once per image: their most recent live decision (not deleted,
not skipped; :data:`hitl.analyse.consensus.DEFINITION`). These are rules over the store's
decisions, as :func:`hitl.store.detector.publishable` is over its detections, so they live
in the store, the layer every stage reads: `compare` pushes the hero set's pairs, `publish`
exports it (folder, Camtrap DP, training data) and the report ranks it, all by these rules
and none through another stage. The statistics they use (:mod:`hitl.analyse`) stay pure.
"""
from __future__ import annotations

import statistics
from collections import Counter, defaultdict

import sqlite_utils

from hitl.analyse.consensus import latest_per_curator
from hitl.errors import HitlError
from hitl.store.curators import time_key
from hitl.store.ratings import curator_decisions

POLICIES = ("any", "majority", "all")


class HerosetError(HitlError, ValueError):
    """A bad hero-set request (unknown policy, say); the message lists what is allowed."""


def curator_opinions(db: sqlite_utils.Database) -> dict[str, list[dict]]:
    """Per image, one opinion per curator: their most recent live decision (consensus.DEFINITION)."""
    by_image: dict[str, list[dict]] = defaultdict(list)
    for decision in curator_decisions(db):
        by_image[decision["image_id"]].append(decision)
    return {image_id: sorted(latest_per_curator(rows, key="curator"), key=lambda o: o["curator"])
            for image_id, rows in sorted(by_image.items())}


def latest_opinion(opinions: list[dict]) -> dict | None:
    """Of some curators' opinions on one image, the most recent (the first of those as recent)."""
    return max(opinions, key=lambda o: time_key(o["updated_at"])) if opinions else None


def latest_drawn(opinions: list[dict]) -> dict | None:
    """Of the curators' opinions on one image, the most recent that has boxes."""
    return latest_opinion([o for o in opinions if o["boxes"]])


def _passes(policy: str, yes: int, decided: int) -> bool:
    if policy == "any":
        return yes >= 1
    if policy == "majority":
        return 2 * yes > decided  # a tie is no majority
    return decided > 0 and yes == decided


def check_policy(policy: str, min_stars: float | None) -> None:
    """Refuse a policy or a min_stars the hero set cannot be chosen by (HerosetError)."""
    if policy not in POLICIES:
        raise HerosetError(f"policy must be one of {', '.join(POLICIES)}, not {policy!r}")
    if min_stars is not None and not isinstance(min_stars, (int, float)):
        raise HerosetError(f"min_stars must be a number, not {min_stars!r}")


def select_with_counts(db: sqlite_utils.Database, policy: str = "majority", min_stars: float | None = None
                       ) -> tuple[list[dict], dict[str, int]]:
    """:func:`select_heroes` and how the images fared: rated_images, candidates_considered (a
    curator decided), excluded_by_policy, excluded_by_min_stars (of which excluded_no_stars), heroes."""
    check_policy(policy, min_stars)
    images = {r["image_id"]: r for r in db.query(
        "SELECT image_id, root, width, height, species, seq_id, datetime, location FROM images")}
    counts: Counter = Counter()
    heroes = []
    for image_id, opinions in sorted(curator_opinions(db).items()):
        counts["rated_images"] += 1
        decided = [o for o in opinions if o["hero"] is not None]
        if not decided:
            continue
        counts["candidates_considered"] += 1
        yes = sum(1 for o in decided if o["hero"])
        if not _passes(policy, yes, len(decided)):
            counts["excluded_by_policy"] += 1
            continue
        stars = [o["stars"] for o in opinions if o["stars"] is not None]
        mean = round(statistics.fmean(stars), 3) if stars else None
        if min_stars is not None and (mean is None or mean < min_stars):
            counts["excluded_by_min_stars"] += 1
            counts["excluded_no_stars"] += mean is None
            continue
        info = images.get(image_id) or {}
        heroes.append({
            "image_id": image_id, "root": info.get("root"), "species": info.get("species"),
            "seq_id": info.get("seq_id"), "datetime": info.get("datetime"), "location": info.get("location"),
            "width": info.get("width"), "height": info.get("height"),
            "hero_votes": yes, "decided": len(decided), "votes": f"{yes}/{len(decided)}",
            "mean_stars": mean, "n_stars": len(stars),
            "curators": [{k: v for k, v in o.items() if k != "image_id"} for o in opinions],
        })
    counts["heroes"] = len(heroes)
    for key in ("rated_images", "candidates_considered", "excluded_by_policy", "excluded_by_min_stars",
                "excluded_no_stars"):
        counts.setdefault(key, 0)
    return heroes, dict(counts)


def select_heroes(db: sqlite_utils.Database, policy: str = "majority", min_stars: float | None = None) -> list[dict]:
    """The images curators validated as hero, in image_id order.

    ``policy``: ``any`` (one curator said hero), ``majority`` (more than half of those who
    decided; a tie is not), ``all`` (everyone who decided). With ``min_stars`` the curators'
    mean stars must also reach it (an image nobody gave stars to fails). Each dict has the
    image's metadata (``root`` None when the image is not in the images table), the votes
    (``hero_votes``, ``decided``, ``votes`` as "2/3"), ``mean_stars`` and ``curators``: one
    opinion per curator (stars, hero, comment, boxes, mode, updated_at).
    """
    return select_with_counts(db, policy, min_stars)[0]
