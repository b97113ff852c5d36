"""`select` takes at most one image of a near-duplicate group when the store has vectors: a pick
that is a near-duplicate of one already taken (or, with --add, of a candidate already there) is
passed over, counted and named, and the next best is taken instead. The rule and the threshold are
the store's (:mod:`hitl.store.near_duplicates`), each image judged by its vector of the newest
model, its camera and sequence as this selection reads them, and its animal boxes."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from converters.megadetector import KIND_ANIMAL
from hitl.analyse.neighbours import Subject, Taken
from hitl.select.eligible import SelectionRun
from hitl.select.sequences import Frames
from hitl.store.embeddings import newest_model, vectors
from hitl.store.near_duplicates import calibration, camera_of, subjects

NEAR_DUPLICATE = "near-duplicate of a candidate (same camera, vectors this close)"
NAMED = 5  # near-duplicates passed over that the summary names


def near_duplicate_guard(run: SelectionRun, frames: Frames) -> Callable[[int], bool] | None:
    """A check of an eligible row: False (counted, named) when it is a near-duplicate of a row taken
    before (each row it accepts counts as taken); None when the store has no vectors."""
    model = newest_model(run.db)
    if model is None:
        return None
    threshold = calibration(run.db, model).threshold
    taken = Taken(threshold)
    if run.add:
        existing = [r[0] for r in run.db.execute("SELECT image_id FROM candidates")]
        found = dict(zip(*vectors(run.db, model, existing)))
        for image_id, subject in zip(existing, subjects(run.db, existing, run.cfg.threshold, model)):
            taken.add(found.get(image_id), subject, image_id)
    det, md, root = run.md.detections, run.md, str(run.root)
    names = 0

    def check(row: int) -> bool:
        nonlocal names
        i = int(frames.elig[row])
        image_id = md.image_ids[i]
        ids, matrix = vectors(run.db, model, [image_id])
        vector = matrix[0] if ids else None
        first, last = np.searchsorted(det.image, [i, i + 1])
        animal = [k for k in range(first, last) if det.kind[k] == KIND_ANIMAL and det.conf[k] >= run.cfg.threshold]
        subject = Subject(camera_of(root, frames.location(row), image_id), frames.seq_id(row),
                          tuple(tuple(det.bbox[k].tolist()) for k in animal))
        duplicate = taken.duplicate_of(vector, subject)
        if duplicate is not None:
            run.summary.excluded[NEAR_DUPLICATE] += 1
            if names < NAMED:
                run.summary.notes.append(f"{image_id}: passed over, a near-duplicate of {duplicate[0]} "
                                         f"(similarity {duplicate[1]:.3f} >= {threshold:.3f}, {model})")
                names += 1
            return False
        taken.add(vector, subject, image_id)
        return True

    return check
