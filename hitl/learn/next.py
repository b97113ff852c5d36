"""`hitl next`: the unreviewed candidates most worth a curator's time, by the learned rater.

``hero``: the highest probability of hero first (fill the hero set); ``uncertain``: where the
model is least sure (p nearest 0.5: the decisions it learns most from); ``mixed``: both, in a
stated share. Never two frames of one sequence, and never a sequence a curator already saw.
Where the candidates have vectors, a round is spread over them (maximal marginal relevance over
the strategy's order, :func:`hitl.analyse.neighbours.spread`) and holds no two near-duplicates.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import sqlite_utils

from hitl.analyse.neighbours import near_duplicate, spread
from hitl.errors import HitlError
from hitl.learn import HERO_P
from hitl.learn.data import LEARNED
from hitl.store import queries
from hitl.store.near_duplicates import Aligned, aligned

STRATEGIES = ("hero", "uncertain", "mixed")
MIXED_HERO_SHARE = 0.5
UNSURE = 0.15  # a probability this close to 0.5 is "unsure"


def order(p_hero: np.ndarray, strategy: str, hero_share: float = MIXED_HERO_SHARE) -> list[tuple[int, str]]:
    """Rows in the order the strategy reviews them, each with why ("hero" or "uncertain"). Pure.

    ``mixed`` takes from the two orders so that every prefix holds ``hero_share`` likely heroes.
    """
    p = np.asarray(p_hero, dtype=float)
    ranked = {"hero": iter(np.argsort(-p, kind="mergesort").tolist()),
              "uncertain": iter(np.argsort(np.abs(p - 0.5), kind="mergesort").tolist())}
    if strategy in ranked:
        return [(row, strategy) for row in ranked[strategy]]
    if strategy != "mixed":
        raise HitlError(f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    out: list[tuple[int, str]] = []
    seen: set[int] = set()
    heroes = 0
    while len(out) < len(p):
        why = "hero" if heroes < hero_share * (len(out) + 1) else "uncertain"
        row = next((r for r in ranked[why] if r not in seen), None)
        if row is None:  # that order is used up: the rest come from the other
            why = "uncertain" if why == "hero" else "hero"
            row = next(r for r in ranked[why] if r not in seen)
        seen.add(row)
        heroes += why == "hero"
        out.append((row, why))
    return out


def take(ranked: list[tuple[int, str]], sequences: list[str | None], n: int,
         reviewed: set[str], vectors: Aligned | None = None) -> list[tuple[int, str]]:
    """The first ``n`` of ``ranked`` with no sequence twice and none already reviewed. With ``vectors``
    (the rows' vectors, subjects and calibration), a round is spread over the vector space instead
    (maximal marginal relevance over the ranked order) and holds no two near-duplicates."""
    if vectors is not None:
        return _spread(ranked, sequences, n, reviewed, vectors)
    out, used = [], set(reviewed)
    for row, why in ranked:
        seq = sequences[row]
        if seq is not None and seq in used:
            continue
        out.append((row, why))
        if seq is not None:
            used.add(seq)
        if len(out) == n:
            break
    return out


def _spread(ranked: list[tuple[int, str]], sequences: list[str | None], n: int, reviewed: set[str],
            vectors: Aligned) -> list[tuple[int, str]]:
    matrix, subjects, cal = vectors

    def allowed(row: int, taken: list[int]) -> bool:
        seq = sequences[row]
        if seq is not None and (seq in reviewed or any(sequences[t] == seq for t in taken)):
            return False
        return not any(near_duplicate(float(matrix[row] @ matrix[t]), subjects[row], subjects[t], cal.threshold)
                       for t in taken)

    why = dict(ranked)
    return [(row, why[row]) for row in spread([row for row, _ in ranked], matrix, n, allowed)]


@dataclass
class Next:
    image_id: str
    p_hero: float
    stars_pred: float
    reason: str
    chosen_as: str  # "hero" or "uncertain": which order chose it
    spread_by: str | None = None  # the model whose vectors spread the round, if any
    vectors: str | None = None  # the model whose image vector the prediction read (None: the detector record alone)

    def row(self) -> dict:
        """The CSV row of `next --out`."""
        return {"image_id": self.image_id, "p_hero": self.p_hero, "stars_pred": self.stars_pred, "reason": self.reason}


def choose_next(db: sqlite_utils.Database, n: int, strategy: str = "mixed", threshold: float = 0.3) -> list[Next]:
    """The next ``n`` unreviewed candidates by the newest learned rater's stored predictions; spread over
    the newest model's vectors where the store has them (animal boxes at the detection ``threshold``)."""
    candidates = queries.candidates(db)
    predictions = {image_id: s for image_id, results in queries.scores_by_image(db, raw=True).items()
                   for s in results if s["model"] == LEARNED}
    if not predictions:
        raise HitlError("no learned rater yet: run `python -m hitl learn` (it needs 30 curator decisions)")
    reviewed_images = {r["image_id"] for r in db.query(
        "SELECT DISTINCT image_id FROM ratings WHERE deleted = 0 AND image_id IS NOT NULL")}
    seq_of = {c["image_id"]: c["seq_id"] for c in candidates}
    reviewed_seqs = {seq_of[i] for i in reviewed_images if seq_of.get(i)}
    unreviewed = [c for c in candidates if c["image_id"] not in reviewed_images]
    pool = [c for c in unreviewed if c["image_id"] in predictions]
    if not pool:
        if unreviewed:
            raise HitlError(f"{len(unreviewed)} unreviewed candidates have no prediction of the learned rater yet "
                            f"(selected after it was fitted): run `python -m hitl learn` again")
        return []
    facts = [json.loads(predictions[c["image_id"]]["raw_response"] or "{}") for c in pool]
    p = np.array([f.get("p_hero", 0.5) for f in facts], dtype=float)
    vectors = aligned(db, [c["image_id"] for c in pool], threshold)
    chosen = take(order(p, strategy), [c["seq_id"] for c in pool], n, reviewed_seqs, vectors)
    spread_by = vectors[2].model if vectors is not None else None
    return [Next(pool[k]["image_id"], round(float(p[k]), 4), round(float(facts[k].get("stars", np.nan)), 2),
                 reason(float(p[k]), why), why, spread_by, facts[k].get("vectors")) for k, why in chosen]


def reason(p_hero: float, why: str) -> str:
    """Why an image is next, in words that follow its probability: "likely hero" only from
    HERO_P, whichever order chose it; "unsure" only within UNSURE of 0.5."""
    likely = f"{'likely' if p_hero >= HERO_P else 'unlikely'} hero (p = {p_hero:.2f})"
    if why == "hero":
        return likely if p_hero >= HERO_P else f"{likely}, yet among the likeliest left"
    if abs(p_hero - 0.5) <= UNSURE:
        return f"the model is unsure (p = {p_hero:.2f}): a decision here teaches it most"
    return f"{likely}, yet among the least certain left: a decision here teaches the model most"
