"""A camera-trap collection drawn for the loop: the curators' taste lies in what only the pixels
show, which the detector record cannot.

Frames come in bursts over eight cameras, each camera with its own fixed view (sky, ground,
horizon, trunks). Each frame has a detector record (box, confidence, species, time) and three
things no record holds: how sharp the animal is (it moves, the lens fogs), the light (dusk,
overcast, a dark, flat frame) and its pose (head up, or down grazing). The light is the burst's;
sharpness and pose change from frame to frame. The curators reward sharp, well-lit, head-up
animals far more than size and centring; about 6% of the frames are heroes. Drawn with PIL,
embedded by the baseline embedder's own descriptor (:func:`hitl.embed.descriptors.baseline_descriptor`).

Used by tests/test_learn_vectors.py (a small collection) and scripts/bench/bench_loop_pixels.py.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from hitl.embed.descriptors import baseline_descriptor

CAMERAS = 8
SPECIES = 6
HERO_SHARE = 0.06
# the hidden taste: weights of sharpness, light, head up; then of log area and centring (which the record shows)
TASTE = (1.3, 1.0, 0.8, 0.35, 0.25)
COATS = [(120, 84, 52), (150, 140, 128), (176, 136, 86), (92, 70, 56), (200, 190, 170), (60, 56, 52)]


@dataclass
class Drawn:
    """The frames' detector records, their hidden qualities and the curators' verdicts."""

    record: dict[str, np.ndarray]  # burst, location, species, rarity, area, centrality, cut_off, max_conf, night,
    # hour, n_animals, n_species, and the box x, y, w, h (normalised)
    sharp: np.ndarray  # 0 blurred .. 1 sharp
    light: np.ndarray  # 0 dark and flat .. 1 well lit
    head_up: np.ndarray  # bool
    utility: np.ndarray
    stars: np.ndarray  # 1-10
    hero: np.ndarray  # 0/1

    def __len__(self) -> int:
        return len(self.hero)


def collection(n: int, rng: np.random.Generator) -> Drawn:
    """``n`` frames in bursts of 1-6, with their records, hidden qualities and verdicts."""
    burst = np.repeat(np.arange(n), rng.integers(1, 7, n))[:n]
    bursts = int(burst.max()) + 1
    location = rng.integers(0, CAMERAS, bursts)[burst]
    species_of_burst = rng.choice(SPECIES, bursts, p=np.array([35, 25, 15, 12, 8, 5]) / 100)
    species = species_of_burst[burst]
    hour = rng.integers(0, 24, bursts)[burst]
    area = np.clip(np.exp(rng.normal(-2.4, 0.6, bursts)[burst] + rng.normal(0, 0.15, n)), 0.01, 0.5)
    side = np.sqrt(area)
    w, h = np.clip(side * 1.3, 0.05, 0.95), np.clip(side / 1.3, 0.05, 0.95)
    centrality = np.clip(rng.uniform(0.2, 1.0, bursts)[burst] + rng.normal(0, 0.05, n), 0, 1)
    angle = rng.uniform(0, 2 * np.pi, n)
    cx = np.clip(0.5 + (1 - centrality) * 0.45 * np.cos(angle), w / 2, 1 - w / 2)
    cy = np.clip(0.6 + (1 - centrality) * 0.3 * np.sin(angle), h / 2, 1 - h / 2)
    x, y = cx - w / 2, cy - h / 2
    record = {
        "burst": burst, "location": location, "species": species,
        "rarity": (np.bincount(species_of_burst, minlength=SPECIES) / bursts)[species],
        "area": w * h, "centrality": centrality,
        "cut_off": ((x < 0.02) | (y < 0.02) | (x + w > 0.98) | (y + h > 0.98)).astype(float),
        "max_conf": np.clip(rng.beta(6, 2, n), 0.3, 1.0), "night": ((hour >= 20) | (hour < 5)).astype(float),
        "hour": hour, "n_animals": np.ones(n), "n_species": np.ones(n), "x": x, "y": y, "w": w, "h": h,
    }
    light = rng.beta(2.0, 1.6, bursts)[burst]
    sharp = np.clip(rng.beta(1.6, 1.2, n), 0, 1)
    head_up = rng.random(n) < 0.5
    z = lambda v: (v - v.mean()) / (v.std() or 1)  # noqa: E731
    w_ = TASTE
    utility = (w_[0] * z(sharp) + w_[1] * z(light) + w_[2] * (head_up - 0.5) * 2 + w_[3] * z(np.log(area))
               + w_[4] * z(centrality) + rng.normal(0, 0.5, n))
    stars = np.clip(np.rint(5.5 + 1.7 * z(utility)), 1, 10)
    hero = (utility >= np.quantile(utility, 1 - HERO_SHARE)).astype(np.int8)
    return Drawn(record, sharp, light, head_up, utility, stars, hero)


def _background(camera: int, size: tuple[int, int]) -> Image.Image:
    """A camera's fixed view: sky, ground, its horizon and trunks."""
    rng = np.random.default_rng(1000 + camera)
    width, height = size
    horizon = int(height * rng.uniform(0.3, 0.5))
    rows = np.arange(height)[:, None, None]
    sky, ground = rng.uniform(150, 220, 3), rng.uniform(60, 120, 3) * np.array([0.9, 1.0, 0.7])
    image = np.where(rows < horizon, sky - rows * 0.2, ground + (rows - horizon) * 0.15) * np.ones((1, width, 1))
    image = image + rng.normal(0, 3, (height, width, 1))  # a little texture: grass, leaves
    picture = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    for _ in range(rng.integers(2, 5)):
        x = int(rng.uniform(0, width))
        trunk = int(rng.uniform(0.03, 0.07) * width)
        draw.rectangle([x, 0, x + trunk, height], fill=tuple(int(v) for v in rng.uniform(40, 80, 3)))
    return picture


def render(d: Drawn, k: int, size: tuple[int, int] = (256, 192), _views: dict = {}) -> np.ndarray:  # noqa: B006
    """Frame ``k`` as an H x W x 3 uint8 image (each camera's view drawn once)."""
    width, height = size
    r = d.record
    camera = int(r["location"][k])
    view = _views.get((camera, size))
    if view is None:
        view = _views[(camera, size)] = _background(camera, size)
    frame = view.copy()
    layer = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    x0, y0 = r["x"][k] * width, r["y"][k] * height
    w, h = r["w"][k] * width, r["h"][k] * height
    coat = COATS[int(r["species"][k]) % len(COATS)] + (255,)
    draw.ellipse([x0, y0 + 0.15 * h, x0 + 0.8 * w, y0 + 0.7 * h], fill=coat)  # the body
    for leg in (0.1, 0.25, 0.5, 0.65):
        draw.rectangle([x0 + leg * w, y0 + 0.6 * h, x0 + (leg + 0.06) * w, y0 + h], fill=coat)
    head = 0.28 * h
    hx, hy = (x0 + 0.7 * w, y0) if d.head_up[k] else (x0 + 0.78 * w, y0 + 0.62 * h)  # up, or down grazing
    draw.ellipse([hx, hy, hx + head, hy + head], fill=coat)
    if d.head_up[k]:  # ears and eyes, only seen from the front
        draw.polygon([(hx, hy + 0.2 * head), (hx + 0.1 * head, hy - 0.3 * head), (hx + 0.3 * head, hy)], fill=coat)
        for ex in (0.3, 0.65):
            draw.ellipse([hx + ex * head, hy + 0.35 * head, hx + (ex + 0.12) * head, hy + 0.47 * head],
                         fill=(15, 15, 15, 255))
    blur = float((1 - d.sharp[k]) * 0.02 * width)
    if blur > 0.2:
        layer = layer.filter(ImageFilter.GaussianBlur(blur))  # the animal moved
    frame.paste(layer, (0, 0), layer)
    if d.sharp[k] < 0.4:  # and a fogged lens softens the whole frame
        frame = frame.filter(ImageFilter.GaussianBlur(float((0.4 - d.sharp[k]) * 0.01 * width)))
    pixels = np.asarray(frame, dtype=np.float32)
    light = d.light[k]
    mean = pixels.mean()
    pixels = (mean + (pixels - mean) * (0.45 + 0.55 * light)) * (0.35 + 0.75 * light)  # dark and flat, or well lit
    if r["night"][k]:
        pixels = pixels.mean(axis=2, keepdims=True).repeat(3, axis=2)  # infrared: grey
    noise = np.random.default_rng(k).normal(0, 3, pixels.shape)
    return np.clip(pixels + noise, 0, 255).astype(np.uint8)


def vectors(d: Drawn, size: tuple[int, int] = (256, 192), frames: Iterable[int] | None = None) -> np.ndarray:
    """The baseline vector (float32, unit length) of every frame (or of ``frames``), its box's share
    included as the embedder does."""
    frames = range(len(d)) if frames is None else frames
    return np.array([baseline_descriptor(render(d, k, size), float(d.record["area"][k])) for k in frames],
                    dtype=np.float32)
