"""A model's near-duplicate threshold, calibrated on the collection itself: planted copies of a few
of its own photos, embedded by the same model, say how close "the same photograph" stays.

Every model spreads copies differently (a re-encoded photo may keep 0.999 of its CLIP vector and
0.99 of the baseline's; a 95% crop moves the baseline more than CLIP), so no one number serves.
After a run, `hitl embed` takes :data:`PHOTOS` of the images it embedded (seeded), makes the four
copies of :func:`planted_copies` of each, embeds them as it embeds any image, and stores as the
model's threshold the lowest similarity of a copy to its photo, lowered by as much as that kind of
copy spreads (:func:`hitl.analyse.neighbours.copy_threshold`), with what it rests on. It also says how many of a sample of the collection's photos
have a photo of another camera as close (:func:`hitl.analyse.neighbours.nearest_other`): the
share that vectors alone would wrongly call near-duplicates, which the camera and box rules keep
apart. A model is calibrated again once it has twice the vectors it had at its calibration.
"""
from __future__ import annotations

import io
import random
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import sqlite_utils
from PIL import Image, ImageEnhance

from hitl import retry
from hitl.analyse.neighbours import copy_threshold, nearest_other
from hitl.config import Settings
from hitl.embed.backends.base import Box, EmbedBackend, EmbedTarget
from hitl.embed.runner import embed_call, senders
from hitl.imageprep import ImagePrepError, load_upright_rgb
from hitl.store import transaction
from hitl.store.embeddings import vectors
from hitl.store.near_duplicates import Calibration, calibration, camera_of, save_calibration

PHOTOS = 12  # photos of the collection copied; four copies each
DISTINCT_SAMPLE = 2000  # photos whose nearest neighbour of another camera is looked for
COPY_SIDE = 1024  # the copies are made at this longest side (larger than any encoder's input)
KINDS = ("re-encoded", "brighter", "cropped", "minutes later")


def planted_copies(image: Image.Image, boxes: list[Box], rng: np.random.Generator
                   ) -> list[tuple[str, Image.Image, list[Box]]]:
    """Four near-duplicates of an upright RGB photo, each with its animal boxes moved as the pixels
    moved: re-encoded at JPEG quality 40; 5% brighter; a 95% crop (the middle); and the same
    camera minutes later, the subject where it was: the light 7% up or down and a little warmer or
    cooler, a cloud's soft shadow, fresh sensor noise, and the camera nudged by up to 1% and 0.5 degrees."""
    w, h = image.size
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=40)
    reencoded = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    x0 = y0 = 0.025
    crop = image.crop((round(x0 * w), round(y0 * h), round((x0 + 0.95) * w), round((y0 + 0.95) * h)))
    cropped_boxes = [_clipped(((x - x0) / 0.95, (y - y0) / 0.95, bw / 0.95, bh / 0.95)) for x, y, bw, bh in boxes]
    later, (dx, dy) = _minutes_later(image, rng)
    return [("re-encoded", reencoded, list(boxes)), ("brighter", ImageEnhance.Brightness(image).enhance(1.05), list(boxes)),
            ("cropped", crop, [b for b in cropped_boxes if b[2] > 0 and b[3] > 0]),
            ("minutes later", later, [_clipped((x + dx, y + dy, bw, bh)) for x, y, bw, bh in boxes])]


def _minutes_later(image: Image.Image, rng: np.random.Generator) -> tuple[Image.Image, tuple[float, float]]:
    # in place, in float64, the shadow as the product of its two sines (a column's and a row's): the
    # pixels of the whole-array version of this (byte for byte, on 53 photos), at four fifths of its time
    noisy = np.asarray(image, dtype=np.float64)
    h, w = noisy.shape[:2]
    gain = rng.uniform(0.93, 1.07) * (1.0 + rng.uniform(-0.03, 0.03, 3))
    across = np.sin(np.arange(w, dtype=np.float32) / w * rng.uniform(2, 5) + rng.uniform(0, 6))
    down = np.sin(np.arange(h, dtype=np.float32) / h * rng.uniform(2, 5) + rng.uniform(0, 6))
    noisy *= gain
    noisy *= (1.0 + 0.05 * across[None, :] * down[:, None])[..., None]
    noise = rng.standard_normal(noisy.shape)  # rng.normal(0, 3) draws these and scales them by 3
    noise *= 3
    noisy += noise
    later = Image.fromarray(np.clip(noisy, 0, 255, out=noisy).astype(np.uint8))
    dx, dy = (int(rng.integers(-int(0.01 * size), int(0.01 * size) + 1)) for size in (w, h))
    later = later.rotate(float(rng.uniform(-0.5, 0.5)), resample=Image.Resampling.BILINEAR, translate=(dx, dy))
    return later, (dx / w, dy / h)


def _clipped(box: Box) -> Box:
    x, y, w, h = box
    left, top, right, bottom = max(0.0, x), max(0.0, y), min(1.0, x + w), min(1.0, y + h)
    return left, top, max(0.0, right - left), max(0.0, bottom - top)


def needs_calibration(db: sqlite_utils.Database, model: str, n_vectors: int) -> bool:
    """Never calibrated, or calibrated when the model had less than half the vectors it has now."""
    found = calibration(db, model)
    return n_vectors > 0 and (not found.calibrated or 2 * found.n_vectors < n_vectors)


def calibrate(db: sqlite_utils.Database, backend: EmbedBackend, targets: list[EmbedTarget], settings: Settings,
              *, photos: int = PHOTOS, seed: int = 0) -> Calibration | None:
    """Calibrate ``backend``'s threshold on copies of ``photos`` of ``targets`` (those with a vector)
    and store it; None when no copy could be embedded (nothing stored). AuthError propagates."""
    ids, _ = vectors(db, backend.name, [t.image_id for t in targets])
    have = set(ids)
    pool = [t for t in targets if t.image_id in have]
    chosen = random.Random(seed).sample(pool, min(photos, len(pool)))
    rng = np.random.default_rng(seed)
    similarities: dict[str, list[float]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory(prefix="hitl-calibrate-") as folder:
        jobs = []
        for k, target in enumerate(chosen):
            try:
                image, _ = load_upright_rgb(target.path, COPY_SIDE)
            except ImagePrepError:
                continue
            for kind, copy, boxes in planted_copies(image, list(target.boxes), rng):
                name = f"{k:03d}-{kind.replace(' ', '-')}.jpg"
                copy.save(Path(folder) / name, "JPEG", quality=95)
                jobs.append((target.image_id, kind, EmbedTarget(name, folder, boxes)))
        found = _embedded(backend, [job[2] for job in jobs], settings)
    originals = dict(zip(*vectors(db, backend.name, [job[0] for job in jobs])))
    for (image_id, kind, _), vector in zip(jobs, found):
        original = originals.get(image_id)
        if vector is None or original is None or vector.size != original.size or not np.isfinite(vector).all() \
                or not np.linalg.norm(vector):
            continue  # failed, or not a vector the run would have stored
        similarities[kind].append(float(original @ (vector / np.linalg.norm(vector))))
    every = [s for sims in similarities.values() for s in sims]
    if not every:
        return None
    threshold = copy_threshold(similarities)
    share, n_distinct = _distinct_share(db, backend.name, threshold, seed)
    result = Calibration(backend.name, threshold, len({job[0] for job in jobs}), len(every),
                         {kind: round(min(sims), 4) for kind, sims in similarities.items() if sims}, share, n_distinct,
                         _count(db, backend.name))
    with transaction(db):
        save_calibration(db, result)
    return result


def _embedded(backend: EmbedBackend, targets: list[EmbedTarget], settings: Settings) -> list[np.ndarray | None]:
    """Each target's vector (None where it failed), prepared here and sent as a run sends."""
    policy = retry.retrying(settings.embed, threading.Event())

    def one(target: EmbedTarget) -> np.ndarray | None:
        fn, args = backend.job(target)
        try:
            prepared = fn(*args)
        except ImagePrepError:
            return None
        result = embed_call(policy, backend, prepared)
        return None if result is None or result.vector is None else np.asarray(result.vector, np.float64).ravel()

    with ThreadPoolExecutor(max_workers=max(1, min(senders(backend, settings), 8))) as pool:
        return list(pool.map(one, targets))  # an AuthError stops the calibration


def _distinct_share(db: sqlite_utils.Database, model: str, threshold: float, seed: int) -> tuple[float | None, int]:
    """Of a sample of the model's vectors, the share whose nearest photo of another camera is at least
    ``threshold`` similar (None with one camera), and the sample's size."""
    rows = db.execute("SELECT e.image_id, e.root, i.location FROM embeddings e LEFT JOIN images i USING (image_id) "
                      "WHERE e.model = ? AND e.status = 'ok'", [model]).fetchall()
    rows = random.Random(seed).sample(rows, min(DISTINCT_SAMPLE, len(rows)))
    camera = {image_id: camera_of(root, location, image_id) for image_id, root, location in rows}
    if len(set(camera.values())) < 2:
        return None, 0
    ids, matrix = vectors(db, model, list(camera))
    nearest = nearest_other(matrix, range(len(ids)), np.array([camera[i] for i in ids]))
    return float(np.mean(nearest >= threshold)), len(ids)


def _count(db: sqlite_utils.Database, model: str) -> int:
    return db.execute("SELECT COUNT(*) FROM embeddings WHERE model = ? AND status = 'ok'", [model]).fetchone()[0]
