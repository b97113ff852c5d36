"""Offline BASELINE scorer: image statistics plus the detector's boxes. NOT an aesthetic model.

It needs no network, no key and no model weights, and is deterministic, so it gives every
run a free reference point: a vision-language model that cannot beat it is not worth paying
for. It only knows what numpy can measure on the prepared (upright, <= 768 px) image:

=============  ======  ==============================================================
component      weight  what it measures (each scored 0..1)
=============  ======  ==============================================================
sharpness       0.35   variance of a 4-neighbour Laplacian on the grey crop of the
                       largest animal box: absolute (log10-scaled) 0.75, and relative
                       to the whole frame's (subject sharper than background) 0.25
exposure        0.30   frame mean luminance distance from mid-grey; clipped shadows
                       (Y <= 8) and highlights (Y >= 247) fractions
contrast        0.15   std of luminance, half in the box and half over the frame
colour          0.10   mean chroma (max - min of R, G, B), absolute, so dark frames are
                       dull too; ~0 on infrared night frames
placement       0.10   largest box centre near the frame centre or a thirds point
=============  ======  ==============================================================

score = 10 * (weighted sum) * subject, where subject multiplies two disqualifying defects:

* size: largest box area fraction. 0.45 for a speck (<= 0.5%), rising (log scale) to 1.0 at
  5%, 1.0 up to 40%, then down to 0.8 for a box filling the frame;
* cut-off: 0.55 when the largest box touches any frame edge (within 1%).

Without boxes the features are whole-frame and subject is 0.6 (no animal to judge), so such a
frame is never a hero. The number of animals only sets the "group" tag (>= 3), and the
"night-ir" tag uses saturation (chroma / brightness) so a dark colour frame is not called
infrared. hero = score >= 7.
"""
from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict

import numpy as np
from PIL import Image

from hitl.score.backends.base import Backend, Outcome, ScoreRequest
from hitl.score.verdict import Verdict

__all__ = ["BaselineBackend", "baseline_features", "baseline_verdict", "WEIGHTS", "TAGS", "HERO_THRESHOLD"]

Box = tuple[float, float, float, float]

WEIGHTS: dict[str, float] = {
    "sharpness": 0.35,
    "exposure": 0.30,
    "contrast": 0.15,
    "colour": 0.10,
    "placement": 0.10,
}
TAGS = ("sharp", "blurry", "dark", "overexposed", "cut-off", "small-subject",
        "close-up", "night-ir", "centred", "group")
HERO_THRESHOLD = 7.0

EDGE_TOLERANCE = 0.01   # a box within 1% of a frame edge counts as cut off
CUT_OFF_FACTOR = 0.55
NO_BOX_FACTOR = 0.6     # max 6.0: below the hero threshold
SPECK_FACTOR = 0.45
IR_SATURATION = 0.05    # mean chroma / mean brightness below this: near-greyscale (infrared) frame
# Laplacian variance (0..255 luminance) mapped to 0..1 on a log scale: ~30 is soft, ~1000 crisp.
SHARP_LOG_LO, SHARP_LOG_HI = 1.5, 3.0


_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """Rec. 601 luminance, float32 0..255."""
    return rgb.astype(np.float32) @ _LUMA


def _laplacian_var(y: np.ndarray) -> float:
    if y.shape[0] < 3 or y.shape[1] < 3:
        return 0.0
    lap = 4.0 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
    return float(lap.var())


def _clip01(x: float) -> float:
    return 0.0 if x < 0.0 else 1.0 if x > 1.0 else x


def _pixel_box(box: Box, w: int, h: int) -> tuple[int, int, int, int]:
    """Normalised x, y, w, h -> integer x0, y0, x1, y1 clipped to the frame (at least 1 px)."""
    bx, by, bw, bh = box
    x0 = min(max(int(math.floor(bx * w)), 0), w - 1)
    y0 = min(max(int(math.floor(by * h)), 0), h - 1)
    x1 = min(max(int(math.ceil((bx + bw) * w)), x0 + 1), w)
    y1 = min(max(int(math.ceil((by + bh) * h)), y0 + 1), h)
    return x0, y0, x1, y1


def _clipped_area(box: Box) -> float:
    bx, by, bw, bh = box
    return max(0.0, min(bx + bw, 1.0) - max(bx, 0.0)) * max(0.0, min(by + bh, 1.0) - max(by, 0.0))


def baseline_features(rgb: np.ndarray, boxes: list[Box]) -> dict[str, float]:
    """Measure an HxWx3 uint8 image and its largest animal box. All values are plain floats."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 1:
        raise ValueError(f"expected an HxWx3 uint8 image, got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[:2]
    y = _luma(rgb)
    boxes = [b for b in boxes if all(map(math.isfinite, b)) and _clipped_area(b) > 0.0]
    n = len(boxes)

    frame_var = _laplacian_var(y)
    frame_mean = float(y.mean()) / 255.0
    frame_std = float(y.std()) / 255.0
    # Chroma: max - min over channels, ~0 for greyscale or IR frames. Element-wise
    # maximum/minimum: a reduction over the last axis is ~30x slower.
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    brightest = np.maximum(np.maximum(r, g), b)
    chroma = float((brightest - np.minimum(np.minimum(r, g), b)).mean()) / 255.0
    # Saturation as a ratio of means: brightness-free, so a dark colour frame is not "IR".
    value = float(brightest.mean()) / 255.0
    saturation = chroma / value if value > 0 else 0.0

    if n:
        largest = max(boxes, key=_clipped_area)
        area = _clipped_area(largest)
        x0, y0, x1, y1 = _pixel_box(largest, w, h)
        crop = y[y0:y1, x0:x1]
        box_var = _laplacian_var(crop)
        box_mean = float(crop.mean()) / 255.0
        box_std = float(crop.std()) / 255.0
        bx, by, bw, bh = largest
        edges = sum((bx <= EDGE_TOLERANCE, by <= EDGE_TOLERANCE,
                     bx + bw >= 1.0 - EDGE_TOLERANCE, by + bh >= 1.0 - EDGE_TOLERANCE))
        # Placement from the visible part of the box.
        cx = (max(bx, 0.0) + min(bx + bw, 1.0)) / 2.0
        cy = (max(by, 0.0) + min(by + bh, 1.0)) / 2.0
    else:
        area, box_var, box_mean, box_std, edges, cx, cy = 0.0, frame_var, frame_mean, frame_std, 0, 0.5, 0.5

    centre_dist = math.hypot(cx - 0.5, cy - 0.5)
    thirds_dist = min(math.hypot(cx - tx, cy - ty) for tx in (1 / 3, 2 / 3) for ty in (1 / 3, 2 / 3))
    shadows = float((y <= 8.0).mean())
    highlights = float((y >= 247.0).mean())

    return {
        "has_box": float(n > 0),
        "n_animals": float(n),
        "area_fraction": area,
        "edges_touched": float(edges),
        "cut_off": float(edges > 0),
        "sharpness_box": box_var,
        "sharpness_frame": frame_var,
        "sharpness_log": math.log10(1.0 + box_var),
        "sharpness_rel": box_var / frame_var if frame_var > 0 else 1.0,
        "luminance_mean": frame_mean,
        "luminance_box": box_mean,
        "exposure_distance": abs(frame_mean - 0.5) * 2.0,
        "shadows_clipped": shadows,
        "highlights_clipped": highlights,
        "contrast_frame": frame_std,
        "contrast_box": box_std,
        "centre_distance": centre_dist,
        "thirds_distance": thirds_dist,
        "chroma_mean": chroma,
        "saturation": saturation,
    }


def _components(f: dict[str, float]) -> dict[str, float]:
    """Features -> 0..1 component scores (the weighted ones plus the subject factors)."""
    sharp_abs = _clip01((f["sharpness_log"] - SHARP_LOG_LO) / (SHARP_LOG_HI - SHARP_LOG_LO))
    # Relative: 1x the frame -> 0.5, 4x -> 1, 1/4 -> 0 (subject in focus, background soft is good).
    sharp_rel = _clip01(0.5 + 0.25 * math.log2(max(f["sharpness_rel"], 1e-6)))
    exposure = _clip01(1.0
                       - max(0.0, f["exposure_distance"] - 0.25) / 0.55
                       - max(0.0, f["shadows_clipped"] - 0.05) * 1.5
                       - max(0.0, f["highlights_clipped"] - 0.02) * 3.0)
    contrast = 0.5 * _clip01(f["contrast_box"] / 0.15) + 0.5 * _clip01(f["contrast_frame"] / 0.18)
    colour = _clip01(f["chroma_mean"] / 0.10)
    placement = max(_clip01(1.0 - f["centre_distance"] / 0.3), _clip01(1.0 - f["thirds_distance"] / 0.2))

    area = f["area_fraction"]
    if not f["has_box"]:
        size = NO_BOX_FACTOR
    elif area < 0.05:
        rise = _clip01(math.log10(max(area, 1e-9) / 0.005))  # 0.5% -> 0, 5% -> 1
        size = SPECK_FACTOR + (1.0 - SPECK_FACTOR) * rise
    elif area <= 0.40:
        size = 1.0
    else:
        size = 1.0 - 0.2 * (area - 0.40) / 0.60
    cut = CUT_OFF_FACTOR if f["cut_off"] else 1.0
    return {
        "sharp_abs": sharp_abs,
        "sharp_rel": sharp_rel,
        "sharpness": 0.75 * sharp_abs + 0.25 * sharp_rel,
        "exposure": exposure,
        "contrast": contrast,
        "colour": colour,
        "placement": placement,
        "size": size,
        "cut": cut,
    }


def _tags(f: dict[str, float], c: dict[str, float]) -> tuple[str, ...]:
    found = {
        "sharp": c["sharpness"] >= 0.7,
        "blurry": c["sharpness"] <= 0.3,
        "dark": f["luminance_mean"] < 0.2 or f["shadows_clipped"] > 0.3,
        "overexposed": f["luminance_mean"] > 0.8 or f["highlights_clipped"] > 0.1,
        "cut-off": bool(f["cut_off"]),
        "small-subject": bool(f["has_box"]) and f["area_fraction"] < 0.02,
        "close-up": f["area_fraction"] > 0.5,
        "night-ir": f["saturation"] < IR_SATURATION,
        "centred": bool(f["has_box"]) and f["centre_distance"] < 0.12,
        "group": f["n_animals"] >= 3,
    }
    return tuple(t for t in TAGS if found[t])


def _sharpness_phrase(f: dict[str, float], c: dict[str, float], tags: tuple[str, ...]) -> str:
    what = "the animal" if f["has_box"] else "the frame"
    if "blurry" in tags:
        return f"{what} is blurry"
    if f["has_box"] and c["sharp_rel"] < c["sharp_abs"]:
        return "the animal is no sharper than the background"
    return f"{what} is only moderately sharp"


def _percent(x: float) -> str:
    return f"{x:.0%}" if x >= 0.01 else f"{x:.1%}"


def _reasoning(f: dict[str, float], c: dict[str, float], tags: tuple[str, ...]) -> str:
    """Sentence 1 describes the subject; sentence 2 names the weakest factor."""
    sharp = "Sharp" if "sharp" in tags else "Blurry" if "blurry" in tags else "Fairly sharp"
    light = ("dark" if "dark" in tags else "overexposed" if "overexposed" in tags
             else "well-exposed" if c["exposure"] >= 0.7 else "unevenly exposed")
    if f["has_box"]:
        n = int(f["n_animals"])
        who = "animal" if n == 1 else f"largest of {n} animals"
        where = ("cut off at the frame edge" if f["cut_off"] else "centred" if "centred" in tags
                 else "on a thirds point" if f["thirds_distance"] < 0.1 else "off-centre")
        first = f"{sharp}, {light} {who} covering {_percent(f['area_fraction'])} of the frame, {where}."
    else:
        first = f"No animal box: whole-frame statistics only; {sharp.lower()}, {light} frame."

    # Weakest = largest loss in score points (weighted components, then subject factors).
    base = sum(WEIGHTS[k] * c[k] for k in WEIGHTS)
    losses = {k: 10.0 * WEIGHTS[k] * (1.0 - c[k]) for k in WEIGHTS}
    losses["size"] = 10.0 * base * (1.0 - c["size"]) * c["cut"]
    losses["cut"] = 10.0 * base * (1.0 - c["cut"])
    phrases = {
        "sharpness": _sharpness_phrase(f, c, tags),
        "exposure": "dark exposure" if "dark" in tags else "overexposed" if "overexposed" in tags
        else "exposure far from mid-grey",
        "contrast": "low contrast",
        "colour": "infrared night frame" if "night-ir" in tags else "muted colour",
        "placement": "the animal is far from the centre and the thirds",
        "size": ("no animal to judge" if not f["has_box"] else "the animal is a small speck"
                 if f["area_fraction"] < 0.01 else "the animal is small"
                 if f["area_fraction"] < 0.05 else "the animal fills the frame"),
        "cut": "the animal is cut off at the frame edge",
    }
    worst = max(losses, key=lambda k: (losses[k], k))
    second = f"Weak: {phrases[worst]}." if losses[worst] >= 0.5 else "No clear weakness."
    return f"{first} {second}"


def _score(c: dict[str, float]) -> float:
    base = sum(WEIGHTS[k] * c[k] for k in WEIGHTS)
    return round(10.0 * base * c["size"] * c["cut"], 1)


def baseline_verdict(rgb: np.ndarray, boxes: list[Box]) -> Verdict:
    """Score an HxWx3 uint8 upright image with its animal boxes (normalised x, y, w, h)."""
    f = baseline_features(rgb, boxes)
    return _verdict_from(f)


def _verdict_from(f: dict[str, float]) -> Verdict:
    c = _components(f)
    tags = _tags(f, c)
    score = _score(c)
    return Verdict(score=score, hero=score >= HERO_THRESHOLD, reasoning=_reasoning(f, c, tags), tags=tags)


def _decode(jpeg: bytes, max_side: int) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as im:
        im.draft("RGB", (max_side, max_side))  # only shrinks an oversized JPEG, never below max_side
        rgb = im.convert("RGB")
    if max(rgb.size) > max_side:
        scale = max_side / max(rgb.size)
        rgb = rgb.resize((max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale))),
                         Image.Resampling.LANCZOS)
    return np.asarray(rgb)


class BaselineBackend(Backend):
    """The offline baseline behind the Backend interface. Free, deterministic, ignores the prompt."""

    name = "baseline"
    run_mode = "offline"
    uses_prompt = False  # so a stale score of any prompt version (an imported one's too) can be recomputed
    uses_detections = True  # the box decides where sharpness, size and placement are measured

    @classmethod
    def handles(cls, model: str) -> bool:
        return model == "baseline"

    @classmethod
    def from_settings(cls, model, settings, base_urls, env) -> BaselineBackend:
        return cls(max_side=settings.score.max_side)

    def __init__(self, max_side: int = 768):
        self.max_side = max_side

    def score(self, request: ScoreRequest, prompt: str) -> Outcome:
        """Decode the prepared JPEG and score it; a bad image is an error Outcome, not a raise."""
        start = time.perf_counter()
        try:
            rgb = _decode(request.jpeg, self.max_side)
        except Exception as exc:  # Pillow raises many types for bad bytes
            return Outcome(verdict=None, error=f"cannot decode the prepared image: {exc}",
                           error_kind="prepare", latency_ms=(time.perf_counter() - start) * 1000.0)
        f = baseline_features(rgb, list(request.boxes))
        verdict = _verdict_from(f)
        raw = json.dumps({**asdict(verdict), "tags": list(verdict.tags),
                          "features": {k: round(v, 6) for k, v in f.items()}}, sort_keys=True)
        return Outcome(verdict=verdict, raw=raw, latency_ms=(time.perf_counter() - start) * 1000.0)
