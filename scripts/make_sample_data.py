#!/usr/bin/env python3
"""(Re)generate ``sample_data/``: a small synthetic camera-trap collection.

Every image is drawn procedurally by this script (no photos are fetched or
copied): a per-camera background scene (sky, tree line, trunks, ground, grass),
animals built from ellipses and tapered limbs, IR-night rendering, motion and
focus blur, exposure errors and a trail-camera info strip.  Because the script
knows where it drew every animal, it also writes matching metadata:

* ``sample_data/md_results.json``            MegaDetector batch output, format 1.6
* ``sample_data/speciesnet_predictions.json`` SpeciesNet 4.x predictions
* ``sample_data/cct.json``                   COCO Camera Traps ground truth
* ``sample_data/README.md``                  what each image shows

The output is fully deterministic (fixed seeds, fixed timestamps, no "now"):
running the script twice gives byte-identical files on the same platform
(same Pillow / libjpeg / numpy).  The script fails if the collection exceeds
5 MB.

Usage::

    python scripts/make_sample_data.py            # writes ./sample_data
    python scripts/make_sample_data.py --out DIR  # writes elsewhere
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import shutil
import sys
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SEED = 20240503
SS = 2  # supersampling factor for drawing animals
MAX_TOTAL_BYTES = 5_000_000
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "sample_data"
MAKE = "Wildwatch Optics"
NIGHT_GRAIN = 0.022  # std-dev of IR sensor noise (fraction of full scale)
DAY_GRAIN = 0.012
GRAIN_CELL = 4

# --------------------------------------------------------------------------
# Taxonomy (SpeciesNet-style strings; species UUIDs are made up but fixed)
# --------------------------------------------------------------------------
_NS = uuid.UUID("5b7e2a4c-1d3f-4e8a-9c6b-0f2e4d6a8c10")  # arbitrary, fixed


def _tax(name: str, ranks: str) -> str:
    return f"{uuid.uuid5(_NS, name)};{ranks};{name}"


SPECIES = ["red deer", "wild boar", "red fox", "european badger", "eurasian lynx"]
TAXA = {
    "red deer": _tax("red deer", "mammalia;cetartiodactyla;cervidae;cervus;elaphus"),
    "wild boar": _tax("wild boar", "mammalia;cetartiodactyla;suidae;sus;scrofa"),
    "red fox": _tax("red fox", "mammalia;carnivora;canidae;vulpes;vulpes"),
    "european badger": _tax("european badger", "mammalia;carnivora;mustelidae;meles;meles"),
    "eurasian lynx": _tax("eurasian lynx", "mammalia;carnivora;felidae;lynx;lynx"),
    # distractors / roll-up targets
    "roe deer": _tax("roe deer", "mammalia;cetartiodactyla;cervidae;capreolus;capreolus"),
    "deer family": _tax("deer family", "mammalia;cetartiodactyla;cervidae;;"),
    "domestic dog": _tax("domestic dog", "mammalia;carnivora;canidae;canis;familiaris"),
    "european wildcat": _tax("european wildcat", "mammalia;carnivora;felidae;felis;silvestris"),
    "european hare": _tax("european hare", "mammalia;lagomorpha;leporidae;lepus;europaeus"),
    "carnivorous mammal": "eeeb5d26-2a47-4d01-a3de-10b33ec0aee4;mammalia;carnivora;;;;carnivorous mammal",
    "mammal": "f2d233e3-80e3-433d-9687-e29ecc7a467a;mammalia;;;;;mammal",
    "animal": "1f689929-883d-4dae-958c-3d57ab5b6c16;;;;;;animal",
    "blank": "f1856211-cfb7-4a5b-9158-c0f72fd09ee6;;;;;;blank",
    "human": "990ae9dd-7a59-4344-afcb-1b7b21368000;mammalia;primates;hominidae;homo;sapiens;human",
    "vehicle": "e2895ed5-780b-48f6-8a11-9e27cb594511;;;;;;vehicle",
}
CONFUSIONS = {
    "red deer": ["roe deer", "deer family", "wild boar", "blank"],
    "wild boar": ["european badger", "red deer", "mammal", "blank"],
    "red fox": ["domestic dog", "european wildcat", "european badger", "blank"],
    "european badger": ["wild boar", "red fox", "european hare", "blank"],
    "eurasian lynx": ["european wildcat", "red fox", "red deer", "blank"],
    "human": ["blank", "vehicle", "animal", "red deer"],
    "blank": ["animal", "red deer", "wild boar", "human"],
}
MD_CLS_ID = {name: str(i + 1) for i, name in enumerate(SPECIES)}
CCT_CAT_ID = {"empty": 0, **{name: i + 1 for i, name in enumerate(SPECIES)}, "human": len(SPECIES) + 1}

# --------------------------------------------------------------------------
# Cameras
# --------------------------------------------------------------------------
CAMERAS = {
    "cam_a": dict(W=1920, H=1080, model="TrailEye TX-12", label="CAM A", kind="clearing",
                  hz=0.42, cam_h=0.9, gap=0.025, treeline=0.04),
    "cam_b": dict(W=1920, H=1080, model="TrailEye TX-12", label="CAM B", kind="meadow",
                  hz=0.45, cam_h=0.9, gap=0.012, treeline=0.24),
    "cam_c": dict(W=2048, H=1536, model="TrailEye TX-20 Pro", label="CAM C", kind="trail",
                  hz=0.40, cam_h=1.0, gap=0.03, treeline=0.0),
}
CAM_ORDER = list(CAMERAS)


# --------------------------------------------------------------------------
# Scene description
# --------------------------------------------------------------------------
@dataclass
class A:
    """One animal (or person) in a frame; positions are fractions of the frame."""

    species: str
    x: float            # horizontal position of the animal's centre on the ground
    fy: float           # vertical position of the ground contact point
    facing: int = 1     # +1 facing right, -1 facing left
    size: float = 1.0   # individual size factor (juveniles < 1)
    variant: str = ""   # "stag", "piglet", ...
    phase: float = 0.0  # gait phase
    stride: float = 1.0  # 0 = standing still
    mblur: int = 0      # motion blur length in px
    focus: float = 0.0  # focus blur radius in px
    ident: int = 0      # individual id (fixed markings)
    head_down: bool = False
    cls: list | None = None  # classifier override [(name, score), ...]
    det: float | None = None  # detector confidence override


@dataclass
class F:
    animals: list
    dt: int = 0               # seconds after the start of the event
    exposure: float = 1.0
    notes: list = field(default_factory=list)
    false_positive: bool = False
    truncated: bool = False


@dataclass
class Ev:
    cam: str
    start: str                # "YYYY-MM-DD HH:MM:SS"
    light: str                # dawn / day / noon / dusk / night
    temp: int                 # degrees C
    frames: list


def burst(make, n=3, dts=(0, 1, 2), **kw):
    return [F(make(i), dt=dts[i], **kw) for i in range(n)]


EVENTS = [
    # ---------------- cam_a: forest clearing ----------------
    Ev("cam_a", "2024-05-03 06:12:41", "dawn", 9, burst(lambda i: [
        A("red deer", 0.22 + 0.05 * i, 0.63, 1, 1.0, "hind", phase=0.3 * i, ident=1),
        A("red deer", 0.43 + 0.05 * i, 0.69, 1, 0.95, "hind", phase=0.3 * i + 0.5, ident=2),
        A("red deer", 0.66 + 0.04 * i, 0.60, 1, 0.7, "calf", phase=0.3 * i + 0.2, ident=3),
    ])),
    Ev("cam_a", "2024-05-03 11:47:05", "noon", 19, [F([], notes=["wind-triggered, nothing there"])]),
    Ev("cam_a", "2024-05-03 23:18:09", "night", 8, burst(lambda i: [
        A("wild boar", 0.34 + 0.03 * i, 0.70, 1, 1.0, phase=0.25 * i, ident=4, head_down=i != 1),
        A("wild boar", 0.58 + 0.02 * i, 0.64, -1, 0.75, phase=0.25 * i + 0.4, ident=5),
        A("wild boar", 0.75 + 0.03 * i, 0.66, 1, 0.7, phase=0.25 * i + 0.1, ident=6, head_down=True),
    ], dts=(0, 2, 3))),
    Ev("cam_a", "2024-05-04 02:41:53", "night", 6, [
        F([A("red fox", 0.45, 0.83, 1, ident=7, phase=0.0)], dt=0),
        F([A("red fox", 0.70, 0.84, 1, ident=7, phase=0.4)], dt=1),
        F([A("red fox", 0.97, 0.85, 1, ident=7, phase=0.8, mblur=60)], dt=2),
    ]),
    Ev("cam_a", "2024-05-04 14:05:27", "day", 17, [
        F([A("human", 0.57, 0.70, 1, ident=8, phase=0.2)], notes=["walking towards the camera"]),
    ]),
    Ev("cam_a", "2024-05-05 20:31:12", "dusk", 12, burst(lambda i: [
        A("red deer", 0.22 + 0.006 * i, 0.447, 1, 1.0, "stag", phase=0.3 * i, stride=0.6, ident=9,
          det=0.58 - 0.04 * i,
          cls=[("red deer", 0.46 - 0.03 * i), ("roe deer", 0.31 + 0.02 * i), ("wild boar", 0.08)]),
    ], dts=(0, 1, 3), exposure=0.8)),
    # ---------------- cam_b: meadow edge ----------------
    Ev("cam_b", "2024-05-03 22:03:37", "night", 7, burst(lambda i: [
        A("european badger", 0.62 - 0.08 * i, 0.78 + 0.01 * i, -1, ident=10, phase=0.35 * i),
    ])),
    Ev("cam_b", "2024-05-04 07:25:10", "day", 11, [
        F([A("red deer", 0.40, 0.66, -1, 1.0, "hind", ident=11, phase=0.1),
           A("red deer", 0.22, 0.72, -1, 0.95, "hind", ident=12, phase=0.6)], dt=0),
        F([A("red deer", 0.24, 0.67, -1, 1.0, "hind", ident=11, phase=0.45),
           A("red deer", 0.04, 0.73, -1, 0.95, "hind", ident=12, phase=0.95),
           A("wild boar", 0.95, 0.70, -1, 1.0, ident=13, phase=0.1)], dt=2,
          notes=["two species in one frame"]),
        F([A("wild boar", 0.80, 0.71, -1, 1.0, ident=13, phase=0.45)], dt=3),
    ]),
    Ev("cam_b", "2024-05-04 01:12:44", "night", 6, [
        F([], notes=["detector fires weakly (0.14) on a tree stump"], false_positive=True)]),
    Ev("cam_b", "2024-05-05 09:40:02", "day", 14, [
        F([A("red fox", 0.55, 0.96, -1, ident=14, stride=0.3, focus=9)], dt=0),
        F([A("red fox", 0.40, 0.98, -1, ident=14, stride=0.3, phase=0.3, focus=11, head_down=True)], dt=1),
        F([A("red fox", 0.10, 1.00, -1, ident=14, stride=0.3, phase=0.6, focus=11)], dt=2),
    ]),
    Ev("cam_b", "2024-05-05 03:22:18", "night", 5, [
        F([A("wild boar", 0.52, 0.95, 1, 1.0, ident=15, stride=0.5)], exposure=1.3,
          notes=["IR flash over-exposure (white-out)"]),
    ]),
    Ev("cam_b", "2024-05-06 05:58:31", "dawn", 8, burst(lambda i: [
        A("eurasian lynx", 0.70 + 0.06 * i, 0.64 + 0.02 * i, 1, ident=16, phase=0.3 * i,
          cls=[("eurasian lynx", 0.88 - 0.05 * i), ("european wildcat", 0.06)]),
    ], dts=(0, 1, 2))),
    # ---------------- cam_c: forest trail (4:3 camera) ----------------
    Ev("cam_c", "2024-05-03 17:40:22", "day", 16, burst(lambda i: [
        A("wild boar", 0.40 + 0.05 * i, 0.62, 1, 1.0, ident=17, phase=0.3 * i),
        A("wild boar", 0.20 + 0.06 * i, 0.66, 1, 0.42, "piglet", ident=18, phase=0.3 * i + 0.3,
          mblur=25 if i == 1 else 0),
        A("wild boar", 0.27 + 0.06 * i, 0.72, 1, 0.4, "piglet", ident=19, phase=0.3 * i + 0.6,
          mblur=25 if i == 1 else 0),
        A("wild boar", 0.60 + 0.05 * i, 0.70, 1, 0.45, "piglet", ident=20, phase=0.3 * i + 0.1),
        A("wild boar", 0.12 + 0.07 * i, 0.69, 1, 0.4, "piglet", ident=21, phase=0.3 * i + 0.8,
          mblur=30 if i == 1 else 0),
    ])),
    Ev("cam_c", "2024-05-04 12:31:50", "noon", 21, [
        F([], exposure=1.6, notes=["wind-triggered, sun glare, over-exposed"])]),
    Ev("cam_c", "2024-05-04 21:55:06", "night", 9, [
        F([A("red deer", 0.38, 0.45, 1, 1.0, "hind", ident=22, phase=0.1),
           A("red deer", 0.52, 0.44, 1, 0.95, "hind", ident=23, phase=0.6)], dt=0, exposure=0.7),
        F([A("red deer", 0.47, 0.45, 1, 1.0, "hind", ident=22, phase=0.5),
           A("red deer", 0.61, 0.44, 1, 0.95, "hind", ident=23, phase=0.95)], dt=1, exposure=0.7),
        F([], dt=3, exposure=0.7, notes=["animals have left; end of the sequence"]),
    ]),
    Ev("cam_c", "2024-05-05 00:48:33", "night", 7, [
        F([A("european badger", -0.01, 0.80, -1, 1.0, ident=24, phase=0.2)])]),
    Ev("cam_c", "2024-05-05 03:05:14", "night", 6, [
        F([A("red fox", 0.55, 0.68, -1, ident=25, phase=0.2)], truncated=True,
          notes=["file truncated (second half missing)"])]),
    Ev("cam_c", "2024-05-06 01:36:40", "night", 5, [
        F([A("eurasian lynx", 0.72, 0.58, -1, ident=26, phase=0.15, stride=0.5,
             cls=[("red fox", 0.41), ("eurasian lynx", 0.38), ("european wildcat", 0.09)])],
          notes=["classifier confuses it with red fox"])]),
    Ev("cam_c", "2024-05-06 08:14:09", "day", 13, [
        F([A("red deer", 0.90, 0.76, -1, 1.05, "stag", ident=27, stride=0.5)], dt=0),
        F([A("red deer", 0.50, 0.77, -1, 1.05, "stag", ident=27, stride=0.5, phase=0.4)], dt=1),
        F([A("red deer", 0.10, 0.78, -1, 1.05, "stag", ident=27, stride=0.5, phase=0.8, mblur=40)], dt=2),
    ]),
]


# --------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------
def lowfreq(rng, h, w, cell):
    """Smooth noise in roughly [-1, 1] (upsampled random grid)."""
    gh, gw = h // cell + 3, w // cell + 3
    g = rng.standard_normal((gh, gw)).astype(np.float32)
    im = Image.fromarray(g, "F").resize((gw * cell, gh * cell), Image.Resampling.BICUBIC)
    return np.asarray(im)[cell:cell + h, cell:cell + w] / 1.3


def box_blur_x(arr, length):
    """Horizontal box blur (motion blur) of an (h, w, c) float array."""
    if length <= 1:
        return arr
    pad = length // 2
    p = np.pad(arr, ((0, 0), (pad + 1, length - pad), (0, 0)))
    c = np.cumsum(p, axis=1, dtype=np.float64)
    out = (c[:, length:length + arr.shape[1]] - c[:, :arr.shape[1]]) / length
    return out.astype(np.float32)


def gaussian_premult(arr, radius):
    """Focus blur with PIL's GaussianBlur on premultiplied RGBA data."""
    im = Image.fromarray(np.clip(arr * 255 + 0.5, 0, 255).astype(np.uint8), "RGBA")
    im = im.filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(im).astype(np.float32) / 255


def grain(rng, h, w):
    """Sensor noise, generated at reduced resolution so that JPEG stays small."""
    c = GRAIN_CELL
    n = rng.standard_normal((h // c + 1, w // c + 1)).astype(np.float32)
    n = Image.fromarray(n, "F").resize(((w // c + 1) * c, (h // c + 1) * c), Image.Resampling.BILINEAR)
    return np.asarray(n)[:h, :w]


def as_rgb(col):
    return tuple(int(v) for v in col)


def shade(col, f):
    return tuple(int(max(0, min(255, round(v * f)))) for v in col)


# --------------------------------------------------------------------------
# Drawing primitives in metres (y up, ground at 0, facing +x)
# --------------------------------------------------------------------------
class Pen:
    def __init__(self, draw, ox, oy, ppm, facing):
        self.d, self.ox, self.oy, self.ppm, self.f = draw, ox, oy, ppm, facing

    def px(self, x, y):
        return (self.ox + self.f * x * self.ppm, self.oy - y * self.ppm)

    def P(self, pts):
        return [((self.ox + self.f * x * self.ppm) * SS, (self.oy - y * self.ppm) * SS) for x, y in pts]

    def poly(self, pts, col):
        self.d.polygon(self.P(pts), fill=as_rgb(col))

    def ellipse(self, cx, cy, rx, ry, col, ang=0.0, n=40):
        a = math.radians(ang)
        pts = []
        for k in range(n):
            t = 2 * math.pi * k / n
            ex, ey = rx * math.cos(t), ry * math.sin(t)
            pts.append((cx + ex * math.cos(a) - ey * math.sin(a), cy + ex * math.sin(a) + ey * math.cos(a)))
        self.poly(pts, col)

    def circle(self, cx, cy, r, col):
        self.ellipse(cx, cy, r, r, col, n=24)

    def limb(self, pts, w0, w1, col):
        n = len(pts)
        ws = [w0 + (w1 - w0) * i / (n - 1) for i in range(n)]
        for i in range(n - 1):
            (x0, y0), (x1, y1) = pts[i], pts[i + 1]
            dx, dy = x1 - x0, y1 - y0
            L = math.hypot(dx, dy) or 1e-6
            nx, ny = -dy / L, dx / L
            a, b = ws[i] / 2, ws[i + 1] / 2
            self.poly([(x0 + nx * a, y0 + ny * a), (x1 + nx * b, y1 + ny * b),
                       (x1 - nx * b, y1 - ny * b), (x0 - nx * a, y0 - ny * a)], col)
        for (x, y), w in zip(pts, ws):
            self.circle(x, y, w / 2, col)


def leg(pen, hip, foot_x, bend, phase, stride, lift, w0, w1, col, low_col=None, paw=None):
    ph = 2 * math.pi * phase
    fx = foot_x + stride * math.sin(ph)
    fy = lift * max(0.0, math.cos(ph)) if stride > 0 else 0.0
    hx, hy = hip
    mx, my = (hx + fx) / 2, (hy + fy) / 2
    dx, dy = fx - hx, fy - hy
    L = math.hypot(dx, dy)
    nx, ny = -dy / L, dx / L
    b = bend * (1 + 2.5 * (fy / lift if lift else 0))
    knee = (mx + nx * b, my + ny * b)
    pen.limb([hip, knee, (fx, fy)], w0, w1, col)
    if low_col is not None:
        kx, ky = knee
        pen.limb([((kx + fx) / 2 * 0.4 + kx * 0.6, (ky + fy) / 2 * 0.4 + ky * 0.6), (fx, fy)],
                 w1 * 1.15, w1, low_col)
    if paw is not None:
        pen.ellipse(fx + 0.3 * paw[0], fy + paw[0] * 0.35, paw[0], paw[0] * 0.6, paw[1])


def legs(pen, spec, near, phase, stride, lift, w0, w1, col, low_col=None, paw=None):
    for hip, foot_x, bend, off, is_near in spec:
        if is_near != near:
            continue
        c = col if near else shade(col, 0.72)
        lc = None if low_col is None else (low_col if near else shade(low_col, 0.8))
        leg(pen, hip, foot_x, bend, phase + off, stride, lift, w0, w1, c, lc, paw)


# --------------------------------------------------------------------------
# Species silhouettes; each returns the eye position in metres
# --------------------------------------------------------------------------
def draw_red_deer(pen, a):
    stag = a.variant == "stag"
    calf = a.variant == "calf"
    body = (128, 76, 42) if not calf else (150, 96, 58)
    dark = (88, 56, 34)
    rump = (200, 176, 134)
    st, lift = 0.16 * a.stride, 0.12 * a.stride
    spec = [((0.50, 0.86), 0.50, -0.02, 0.0, True), ((0.40, 0.86), 0.40, -0.02, 0.5, False),
            ((-0.52, 0.92), -0.56, -0.07, 0.25, True), ((-0.62, 0.92), -0.66, -0.07, 0.75, False)]
    legs(pen, spec, False, a.phase, st, lift, 0.10, 0.045, body, paw=(0.035, (40, 32, 28)))
    pen.ellipse(-0.76, 1.07, 0.06, 0.11, body)                  # tail
    pen.ellipse(0.0, 0.98, 0.72, 0.30, body, ang=3)              # barrel
    pen.ellipse(0.44, 0.99, 0.32, 0.33, body)                    # chest/shoulder
    pen.ellipse(-0.45, 1.00, 0.33, 0.32, body)                   # haunch
    pen.ellipse(-0.73, 1.02, 0.06, 0.15, rump)                   # rump patch
    if a.head_down:
        neck = [(0.38, 1.22), (0.95, 0.85), (0.98, 0.62), (0.70, 0.86)]
        hc, hang = (1.05, 0.58), -70
    else:
        neck = [(0.36, 1.22), (0.86, 1.72), (1.02, 1.52), (0.72, 0.88)]
        hc, hang = (1.03, 1.62), -28
    pen.poly(neck, dark if stag else body)
    if stag:
        pen.ellipse(0.62, 1.20, 0.28, 0.22, dark, ang=50)        # mane
    hx, hy = hc
    ca, sa = math.cos(math.radians(hang)), math.sin(math.radians(hang))
    pen.ellipse(hx, hy, 0.21, 0.105, body, ang=hang)             # head
    pen.ellipse(hx + 0.17 * ca, hy + 0.17 * sa, 0.075, 0.07, shade(body, 0.9), ang=hang)  # muzzle
    pen.circle(hx + 0.22 * ca, hy + 0.22 * sa, 0.032, (35, 28, 25))                        # nose
    ex, ey = hx - 0.11 * ca - 0.06 * sa, hy - 0.11 * sa + 0.06 * ca
    for k, c in ((0, shade(body, 0.8)), (1, body)):
        pen.ellipse(ex - 0.07 - 0.03 * k, ey + 0.10 + 0.01 * k, 0.12, 0.045, c, ang=45 + 20 * k)  # ears
    if stag:
        bx, by = ex - 0.02, ey + 0.1
        beam = [(bx, by), (bx - 0.08, by + 0.3), (bx - 0.2, by + 0.6), (bx - 0.32, by + 0.78)]
        antler = (176, 156, 120)
        for off, col in ((0.07, shade(antler, 0.8)), (0.0, antler)):  # far antler, then near one
            bm = [(x + off, y - off * 0.3) for x, y in beam]
            pen.limb(bm, 0.05, 0.025, col)
            for i, (tx, ty) in enumerate(bm[1:]):
                pen.limb([(tx, ty), (tx + 0.22 - 0.04 * i, ty + 0.10 + 0.04 * i)], 0.03, 0.015, col)
    legs(pen, spec, True, a.phase, st, lift, 0.10, 0.045, body, paw=(0.035, (40, 32, 28)))
    return (hx + 0.03 * ca - 0.02 * sa, hy + 0.03 * sa + 0.03 * ca)


def draw_wild_boar(pen, a):
    piglet = a.variant == "piglet"
    body = (70, 59, 50) if not piglet else (128, 90, 58)
    dark = (42, 36, 31) if not piglet else (96, 66, 42)
    st, lift = 0.12 * a.stride, 0.08 * a.stride
    spec = [((0.34, 0.40), 0.36, -0.02, 0.0, True), ((0.24, 0.40), 0.27, -0.02, 0.5, False),
            ((-0.44, 0.45), -0.46, -0.05, 0.25, True), ((-0.54, 0.45), -0.56, -0.05, 0.75, False)]
    legs(pen, spec, False, a.phase, st, lift, 0.10, 0.055, body, paw=(0.03, (30, 26, 22)))
    pen.limb([(-0.62, 0.66), (-0.70, 0.44)], 0.03, 0.02, dark)          # tail
    pen.ellipse(-0.72, 0.42, 0.025, 0.05, dark)
    pen.ellipse(-0.10, 0.56, 0.56, 0.28, body, ang=6)                   # body
    pen.ellipse(0.22, 0.62, 0.38, 0.31, body, ang=-5)                   # shoulder hump
    ridge = [(-0.50, 0.74), (-0.2, 0.83), (0.1, 0.90), (0.32, 0.93), (0.50, 0.86)]
    bristles = []
    for (x0, y0), (x1, y1) in zip(ridge, ridge[1:]):
        for k in range(4):
            t = k / 4
            bristles.append((x0 + (x1 - x0) * t, y0 + (y1 - y0) * t + (0.035 if k % 2 else 0.0)))
    bristles.append(ridge[-1])
    pen.poly(bristles + [(x, y - 0.07) for x, y in reversed(ridge)], dark)  # bristly mane
    if piglet:
        stripe = (190, 158, 110)
        for k, yy in enumerate((0.48, 0.58, 0.68)):
            pen.limb([(-0.50, yy - 0.02), (0.0, yy + 0.03), (0.40, yy + 0.02)], 0.035, 0.03, stripe)
    if a.head_down:
        head = [(0.40, 0.86), (0.58, 0.84), (0.92, 0.22), (0.90, 0.06), (0.78, 0.06), (0.45, 0.34)]
        snout, eye, ear = (0.86, 0.07), (0.66, 0.52), [(0.50, 0.80), (0.46, 0.98), (0.60, 0.84)]
    else:
        head = [(0.42, 0.86), (0.60, 0.84), (1.00, 0.44), (1.04, 0.28), (0.92, 0.22), (0.48, 0.32)]
        snout, eye, ear = (1.03, 0.34), (0.70, 0.62), [(0.52, 0.82), (0.50, 1.00), (0.63, 0.85)]
    pen.poly(head, body)
    pen.ellipse(snout[0], snout[1], 0.03, 0.07, (105, 92, 86), ang=-25 if a.head_down else 0)
    pen.poly(ear, dark)
    legs(pen, spec, True, a.phase, st, lift, 0.10, 0.055, body, paw=(0.03, (30, 26, 22)))
    return eye


def draw_red_fox(pen, a):
    body = (196, 98, 38)
    white = (236, 226, 210)
    black = (34, 28, 25)
    st, lift = 0.09 * a.stride, 0.06 * a.stride
    spec = [((0.22, 0.28), 0.23, -0.01, 0.0, True), ((0.16, 0.28), 0.17, -0.01, 0.5, False),
            ((-0.20, 0.30), -0.22, -0.03, 0.25, True), ((-0.26, 0.30), -0.28, -0.03, 0.75, False)]
    legs(pen, spec, False, a.phase, st, lift, 0.055, 0.028, body, low_col=black)
    pen.ellipse(-0.50, 0.27, 0.25, 0.078, body, ang=16)                # brush
    pen.ellipse(-0.71, 0.21, 0.065, 0.05, white, ang=16)               # white tip
    pen.ellipse(0.0, 0.33, 0.30, 0.11, body, ang=2)
    pen.ellipse(0.22, 0.33, 0.11, 0.11, body)
    pen.ellipse(0.28, 0.30, 0.06, 0.08, white)                         # chest
    if a.head_down:
        pen.poly([(0.18, 0.42), (0.40, 0.36), (0.44, 0.22), (0.28, 0.26)], body)
        hx, hy, ang = 0.46, 0.24, -40
    else:
        pen.poly([(0.18, 0.42), (0.38, 0.54), (0.46, 0.44), (0.30, 0.28)], body)
        hx, hy, ang = 0.44, 0.50, -8
    ca, sa = math.cos(math.radians(ang)), math.sin(math.radians(ang))
    pen.ellipse(hx, hy, 0.09, 0.07, body, ang=ang)
    pen.poly([(hx + 0.02 * ca - 0.05 * sa, hy + 0.02 * sa + 0.05 * ca),
              (hx + 0.19 * ca, hy + 0.19 * sa),
              (hx + 0.02 * ca + 0.05 * sa, hy + 0.02 * sa - 0.05 * ca)], body)  # snout
    pen.ellipse(hx + 0.07 * ca + 0.03 * sa, hy + 0.07 * sa - 0.03 * ca, 0.07, 0.022, white, ang=ang)
    pen.circle(hx + 0.185 * ca, hy + 0.185 * sa, 0.013, black)
    for k, c in ((0, shade(body, 0.75)), (1, body)):
        bx = hx - 0.05 + 0.045 * k
        pen.poly([(bx - 0.035 * ca + 0.05 * sa, hy + 0.04 * ca),
                  (bx - 0.01 - 0.13 * sa, hy + 0.15 * ca),
                  (bx + 0.035, hy + 0.045 * ca)], c)
        pen.poly([(bx - 0.01 - 0.08 * sa, hy + 0.10 * ca), (bx - 0.01 - 0.13 * sa, hy + 0.15 * ca),
                  (bx + 0.012, hy + 0.10 * ca)], black)  # dark ear tips
    legs(pen, spec, True, a.phase, st, lift, 0.055, 0.028, body, low_col=black)
    return (hx + 0.05 * ca - 0.02 * sa, hy + 0.05 * sa + 0.025 * ca)


def draw_european_badger(pen, a):
    grey = (128, 125, 120)
    light = (152, 149, 143)
    black = (30, 28, 28)
    white = (228, 228, 222)
    st, lift = 0.07 * a.stride, 0.04 * a.stride
    spec = [((0.22, 0.13), 0.24, -0.01, 0.0, True), ((0.16, 0.13), 0.18, -0.01, 0.5, False),
            ((-0.24, 0.14), -0.25, -0.02, 0.25, True), ((-0.30, 0.14), -0.31, -0.02, 0.75, False)]
    legs(pen, spec, False, a.phase, st, lift, 0.08, 0.06, black, paw=(0.035, black))
    pen.ellipse(-0.39, 0.22, 0.07, 0.03, light, ang=10)                # tail
    pen.ellipse(-0.04, 0.21, 0.37, 0.15, grey)
    pen.ellipse(0.22, 0.17, 0.14, 0.09, grey, ang=-15)                 # neck
    pen.ellipse(-0.10, 0.27, 0.24, 0.085, light, ang=-3)               # silvery back
    pen.ellipse(0.0, 0.16, 0.33, 0.07, grey)
    pen.ellipse(0.02, 0.10, 0.28, 0.045, shade(grey, 0.45))            # dark belly
    hx, hy, ang = (0.38, 0.13, -22) if a.head_down else (0.38, 0.17, -10)
    ca, sa = math.cos(math.radians(ang)), math.sin(math.radians(ang))
    pen.ellipse(hx, hy, 0.16, 0.075, white, ang=ang)
    pen.ellipse(hx + 0.005, hy + 0.002, 0.155, 0.03, black, ang=ang)   # eye stripe
    pen.circle(hx + 0.155 * ca, hy + 0.155 * sa, 0.02, black)         # nose
    pen.ellipse(hx - 0.10 * ca - 0.05 * sa, hy - 0.10 * sa + 0.055 * ca, 0.03, 0.025, white)  # ear
    legs(pen, spec, True, a.phase, st, lift, 0.08, 0.06, black, paw=(0.035, black))
    return (hx + 0.04 * ca, hy + 0.04 * sa + 0.004)


def draw_eurasian_lynx(pen, a):
    body = (176, 138, 90)
    spot = (100, 74, 48)
    light = (222, 204, 170)
    black = (32, 28, 25)
    st, lift = 0.13 * a.stride, 0.08 * a.stride
    spec = [((0.30, 0.40), 0.31, -0.02, 0.0, True), ((0.24, 0.40), 0.25, -0.02, 0.5, False),
            ((-0.32, 0.43), -0.34, -0.06, 0.25, True), ((-0.38, 0.43), -0.40, -0.06, 0.75, False)]
    legs(pen, spec, False, a.phase, st, lift, 0.09, 0.06, body, paw=(0.045, body))
    pen.limb([(-0.38, 0.56), (-0.49, 0.52), (-0.55, 0.45)], 0.06, 0.05, body)   # short tail
    pen.ellipse(-0.555, 0.44, 0.03, 0.035, black)
    pen.ellipse(0.0, 0.47, 0.40, 0.15, body, ang=2)
    pen.ellipse(-0.28, 0.47, 0.16, 0.17, body)
    pen.ellipse(0.27, 0.46, 0.16, 0.16, body)
    pen.ellipse(0.05, 0.35, 0.28, 0.05, light)
    srng = np.random.default_rng([SEED, 77, a.ident])
    for _ in range(34):
        sx, sy = srng.uniform(-0.40, 0.36), srng.uniform(0.36, 0.60)
        if (sx / 0.42) ** 2 + ((sy - 0.47) / 0.16) ** 2 < 0.9:
            pen.ellipse(sx, sy, srng.uniform(0.012, 0.024), srng.uniform(0.01, 0.018), spot)
    pen.poly([(0.22, 0.58), (0.46, 0.74), (0.54, 0.58), (0.38, 0.36)], body)    # neck
    hx, hy = 0.53, 0.67
    pen.circle(hx, hy, 0.1, body)
    pen.ellipse(hx - 0.03, hy - 0.07, 0.07, 0.06, light)                       # ruff/beard
    pen.poly([(hx - 0.09, hy - 0.06), (hx - 0.05, hy - 0.16), (hx + 0.0, hy - 0.08)], light)
    pen.ellipse(hx + 0.08, hy - 0.03, 0.055, 0.045, light)                     # muzzle
    pen.circle(hx + 0.125, hy - 0.015, 0.013, black)
    for k, c in ((0, shade(body, 0.75)), (1, body)):
        bx = hx - 0.07 + 0.05 * k
        pen.poly([(bx - 0.03, hy + 0.07), (bx + 0.0, hy + 0.18), (bx + 0.035, hy + 0.075)], c)
        pen.limb([(bx + 0.0, hy + 0.17), (bx + 0.005, hy + 0.24)], 0.012, 0.006, black)  # ear tufts
    legs(pen, spec, True, a.phase, st, lift, 0.09, 0.06, body, paw=(0.045, body))
    return (hx + 0.045, hy + 0.02)


def draw_human(pen, a):
    jacket = (150, 52, 40)
    jeans = (58, 68, 92)
    skin = (214, 172, 142)
    boot = (45, 38, 32)
    sw = 0.06 * math.sin(2 * math.pi * a.phase)
    pen.limb([(-0.10, 0.92), (-0.11 - sw * 0.3, 0.48), (-0.12 - sw * 0.5, 0.06)], 0.15, 0.11, jeans)
    pen.limb([(0.10, 0.92), (0.11 + sw * 0.3, 0.50), (0.12 + sw * 0.5, 0.09)], 0.15, 0.11, shade(jeans, 0.85))
    pen.ellipse(-0.12 - sw * 0.5, 0.04, 0.075, 0.045, boot)
    pen.ellipse(0.12 + sw * 0.5, 0.07, 0.075, 0.045, boot)
    pen.poly([(-0.22, 1.46), (0.22, 1.46), (0.20, 0.86), (-0.20, 0.86)], jacket)
    pen.ellipse(0.0, 1.44, 0.25, 0.07, jacket)
    pen.limb([(-0.24, 1.42), (-0.30, 1.12), (-0.31 + sw, 0.84)], 0.11, 0.085, shade(jacket, 0.9))
    pen.limb([(0.24, 1.42), (0.30, 1.12), (0.31 - sw, 0.84)], 0.11, 0.085, shade(jacket, 0.9))
    pen.circle(-0.31 + sw, 0.80, 0.05, skin)
    pen.circle(0.31 - sw, 0.80, 0.05, skin)
    pen.poly([(-0.05, 1.46), (0.05, 1.46), (0.05, 1.56), (-0.05, 1.56)], skin)
    pen.ellipse(0.0, 1.64, 0.10, 0.125, skin)
    pen.ellipse(0.0, 1.71, 0.108, 0.065, (50, 60, 45))                  # cap
    pen.ellipse(0.0, 1.665, 0.13, 0.02, (50, 60, 45))                   # brim
    return None


DRAWERS = {
    "red deer": draw_red_deer, "wild boar": draw_wild_boar, "red fox": draw_red_fox,
    "european badger": draw_european_badger, "eurasian lynx": draw_eurasian_lynx,
    "human": draw_human,
}


# --------------------------------------------------------------------------
# Background scenes
# --------------------------------------------------------------------------
DAY_PAL = dict(
    sky_top=(146, 178, 206), sky_bot=(212, 224, 230), forest=(46, 62, 38), forest_far=(70, 86, 64),
    ground_far=(122, 128, 82), ground_near=(78, 96, 44), trail=(112, 100, 74),
    grass=[(66, 98, 38), (92, 122, 48), (118, 132, 60), (146, 142, 86)],
    trunk=(92, 80, 68), trunk_dark=(52, 45, 40), leaf=(58, 84, 40),
)
IR_PAL = dict(
    sky_top=(10,) * 3, sky_bot=(18,) * 3, forest=(58,) * 3, forest_far=(40,) * 3,
    ground_far=(128,) * 3, ground_near=(150,) * 3, trail=(132,) * 3,
    grass=[(168,) * 3, (190,) * 3, (206,) * 3, (178,) * 3],
    trunk=(118,) * 3, trunk_dark=(80,) * 3, leaf=(172,) * 3,
)


class Scene:
    def __init__(self, cam):
        cfg = CAMERAS[cam]
        self.cam, self.cfg = cam, cfg
        W, H = self.W, self.H = cfg["W"], cfg["H"]
        rng = np.random.default_rng([SEED, CAM_ORDER.index(cam), 0])
        self.hz = int(cfg["hz"] * H)
        self.strip = int(round(H * 0.045))
        self.fbase = self.hz + int(cfg["gap"] * H)
        x = np.arange(W)
        prof = cfg["treeline"] * H + 0.03 * H * np.sin(x / W * 7 + rng.uniform(0, 6))
        prof += 0.015 * H * np.sin(x / W * 23 + rng.uniform(0, 6))
        for _ in range(14):  # individual crowns
            cx, r = rng.uniform(0, W), rng.uniform(0.03, 0.09) * W
            prof -= 0.05 * H * np.clip(1 - ((x - cx) / r) ** 2, 0, None) ** 0.5
        self.tree_top = prof
        self.far_trunks = [(rng.uniform(0, W), rng.uniform(2, 7)) for _ in range(40)]
        self.trunks = []  # (x, base_y, width) -> drawn in the background
        self.near = []    # near trunks, depth-sorted with the animals
        n_mid = {"clearing": 5, "meadow": 2, "trail": 7}[cfg["kind"]]
        for _ in range(n_mid):
            by = self.fbase + rng.uniform(0.005, 0.06) * H
            self.trunks.append((rng.uniform(0.02, 0.98) * W, by, (by - self.hz) * rng.uniform(0.25, 0.4)))
        if cfg["kind"] in ("clearing", "trail"):
            for xf in ([0.07, 0.93] if cfg["kind"] == "trail" else [0.04]):
                by = rng.uniform(0.78, 0.95) * H
                self.near.append((xf * W + rng.uniform(-0.02, 0.02) * W, by, (by - self.hz) * 0.35))
        self.trail = cfg["kind"] == "trail"
        # grass blades: far ones tiny, near ones long; y distributed towards the camera
        n = {"clearing": 2400, "meadow": 3000, "trail": 1600}[cfg["kind"]]
        gy = self.fbase + (H - self.fbase) * rng.uniform(0, 1, n) ** 0.7
        self.grass = np.stack([rng.uniform(0, W, n), gy, rng.uniform(-0.35, 0.35, n),
                               rng.integers(0, 4, n), rng.uniform(0.6, 1.4, n)], axis=1)
        self.tufts = [(rng.uniform(0, W), rng.uniform(0.93, 1.0) * H, rng.uniform(0.7, 1.3)) for _ in range(10)]
        self.stump = None
        if cfg["kind"] == "meadow":
            sy = int(0.60 * H)
            sw = (sy - self.hz) * 0.45
            self.stump = (0.74 * W, sy, sw)  # x centre, base y, width
        self.noise_a = lowfreq(rng, H, W, 96)
        self.noise_b = lowfreq(rng, H, W, 24)
        self._cache = {}

    def ppm(self, foot_y):
        return max(foot_y - self.hz, 2.0) / self.cfg["cam_h"]

    def stump_box(self):
        x, by, w = self.stump
        return (x - w / 2, by - 0.8 * w, w, 0.8 * w + 0.02 * self.H)

    # ---- rendering ----
    def _draw_trunk(self, d, x, base_y, width, pal, near=False):
        top = -10 if near else max(-10, self.tree_top[min(max(int(x), 0), self.W - 1)] + 0.05 * self.H)
        lean = width * 0.08
        pts = [(x - width / 2, base_y + width * 0.06), (x + width / 2, base_y + width * 0.06),
               (x + width * 0.38 + lean, top), (x - width * 0.38 + lean, top)]
        d.polygon(pts, fill=pal["trunk"])
        d.polygon([pts[0], (x - width * 0.15, base_y), (x - width * 0.12 + lean, top), pts[3]],
                  fill=pal["trunk_dark"])
        for k in range(3):  # bark furrows
            fx = x + (k - 1) * width * 0.22
            d.line([(fx, base_y - width * 0.2), (fx + lean, top)], fill=pal["trunk_dark"],
                   width=max(1, int(width * 0.03)))

    def background(self, night):
        if night in self._cache:
            return self._cache[night]
        pal = IR_PAL if night else DAY_PAL
        W, H, hz, fb = self.W, self.H, self.hz, self.fbase
        y = np.arange(H, dtype=np.float32)[:, None, None]
        t = np.clip(y / max(hz, 1), 0, 1)
        img = (np.array(pal["sky_top"], np.float32) * (1 - t) + np.array(pal["sky_bot"], np.float32) * t)
        img = np.broadcast_to(img, (H, W, 3)).copy()
        # forest band
        yy = np.arange(H)[:, None]
        forest = (yy >= self.tree_top[None, :]) & (yy < fb + 2)
        depth = np.clip((yy - self.tree_top[None, :]) / np.maximum(fb - self.tree_top[None, :], 1), 0, 1)
        fcol = (np.array(pal["forest"], np.float32)[None, None] * (1 - 0.35 * depth[..., None])
                + np.array(pal["forest_far"], np.float32)[None, None] * 0.35 * depth[..., None])
        fcol = fcol * (1 + 0.22 * self.noise_a[..., None] + 0.12 * self.noise_b[..., None])
        img = np.where(forest[..., None], fcol, img)
        # ground
        g = (yy >= fb)
        tg = np.clip((yy - fb) / max(H - fb, 1), 0, 1) ** 0.7
        gcol = (np.array(pal["ground_far"], np.float32)[None, None] * (1 - tg[..., None])
                + np.array(pal["ground_near"], np.float32)[None, None] * tg[..., None])
        gcol = gcol * (1 + 0.15 * self.noise_a[..., None] + 0.08 * self.noise_b[..., None])
        img = np.where(g[..., None], np.broadcast_to(gcol, (H, W, 3)), img)
        im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
        d = ImageDraw.Draw(im)
        if self.trail:  # a winding dirt path towards the vanishing point
            left, right = [], []
            for k in range(41):
                t = k / 40
                yv = fb + (H - fb) * t ** 1.6
                cx = W * (0.47 + 0.09 * math.sin(3.2 * t) * (1 - t))
                hw = W * (0.012 + 0.26 * t ** 1.4)
                left.append((cx - hw, yv))
                right.append((cx + hw, yv))
            d.polygon(left + right[::-1], fill=pal["trail"])
        for fx, fw in self.far_trunks:  # distant stems, visible below the crowns only
            top = self.tree_top[min(int(fx), W - 1)] + 0.06 * H
            d.line([(fx, top), (fx, fb + 1)], fill=shade(pal["trunk_dark"], 0.9), width=int(fw))
        for tx, by, tw in sorted(self.trunks, key=lambda s: s[1]):
            self._draw_trunk(d, tx, by, tw, pal)
        for gx, gy, ang, ci, ln in self.grass:
            L = (gy - hz) * 0.05 * ln
            w = max(1, int((gy - hz) / (H - hz) * 3.2))
            col = pal["grass"][int(ci)]
            d.line([(gx, gy), (gx + math.sin(ang) * L, gy - math.cos(ang) * L)], fill=col, width=w)
        if self.stump:
            x, by, w = self.stump
            d.ellipse([x - w / 2, by - 0.1 * w, x + w / 2, by + 0.1 * w], fill=pal["trunk_dark"])
            d.rectangle([x - w * 0.45, by - 0.75 * w, x + w * 0.45, by], fill=pal["trunk"])
            d.ellipse([x - w * 0.45, by - 0.85 * w, x + w * 0.45, by - 0.65 * w], fill=shade(pal["trunk"], 1.25))
            d.rectangle([x - w * 0.45, by - 0.75 * w, x - w * 0.2, by], fill=pal["trunk_dark"])
        arr = np.asarray(im).astype(np.float32) / 255
        if night:
            arr = arr * self.flash_map()[..., None]
        self._cache[night] = arr
        return arr

    def foreground(self, night):
        """Near trunks and grass tufts: [(base_y, premultiplied RGBA array)]."""
        key = ("fg", night)
        if key in self._cache:
            return self._cache[key]
        pal = IR_PAL if night else DAY_PAL
        out = []
        for tx, by, tw in self.near:
            im = Image.new("RGBA", (self.W, self.H), (0, 0, 0, 0))
            self._draw_trunk(ImageDraw.Draw(im), tx, by, tw, {k: (v + (255,) if isinstance(v, tuple) else v)
                                                                 for k, v in pal.items()}, near=True)
            out.append((by, self._premult(im, night)))
        im = Image.new("RGBA", (self.W, self.H), (0, 0, 0, 0))
        d = ImageDraw.Draw(im)
        rng = np.random.default_rng([SEED, CAM_ORDER.index(self.cam), 1])
        for tx, ty, s in self.tufts:
            for _ in range(26):
                ang = rng.uniform(-0.6, 0.6)
                L = 0.09 * self.H * s * rng.uniform(0.5, 1.0)
                col = pal["grass"][int(rng.integers(0, 4))] + (255,)
                x0 = tx + rng.uniform(-0.03, 0.03) * self.W
                d.line([(x0, ty), (x0 + math.sin(ang) * L, ty - math.cos(ang) * L)], fill=col,
                       width=max(2, int(self.H * 0.004)))
        out.append((10 * self.H, self._premult(im, night)))
        self._cache[key] = out
        return out

    def _premult(self, im, night):
        arr = np.asarray(im).astype(np.float32) / 255
        rgb = arr[..., :3] * arr[..., 3:4]
        if night:
            rgb = rgb * self.flash_map()[..., None]
        return np.concatenate([rgb, arr[..., 3:4]], axis=2)

    def flash_map(self):
        if "flash" not in self._cache:
            W, H, hz = self.W, self.H, self.hz
            y = np.arange(H, dtype=np.float32)[:, None]
            x = np.arange(W, dtype=np.float32)[None, :]
            t = np.clip((y - hz) / (H - hz), 0, 1)
            row = 0.22 + 0.95 * t ** 0.9
            row = np.where(y < hz, 0.22 * np.clip(1 - (hz - y) / hz, 0.3, 1), row)
            vig = 1 - 0.55 * ((x - W / 2) / (W / 2)) ** 2
            self._cache["flash"] = (row * vig).astype(np.float32)
        return self._cache["flash"]

    def animal_flash(self, x_px, foot_y):
        t = min(max((foot_y - self.hz) / (self.H - self.hz), 0.0), 1.0)
        xv = min(max(x_px, 0), self.W)
        return (0.38 + 0.9 * t ** 0.8) * (1 - 0.5 * ((xv - self.W / 2) / (self.W / 2)) ** 2)


# --------------------------------------------------------------------------
# Frame rendering
# --------------------------------------------------------------------------
LIGHT = {  # (gain, tint)
    "dawn": (0.78, (1.04, 0.95, 0.86)),
    "day": (1.0, (1.0, 1.0, 1.0)),
    "noon": (1.08, (1.02, 1.02, 0.98)),
    "dusk": (0.62, (1.02, 0.92, 0.86)),
}


def render_animal(scene, a, night):
    W, H = scene.W, scene.H
    ox, oy = a.x * W, a.fy * H
    ppm = scene.ppm(oy) * a.size
    layer = Image.new("RGBA", (W * SS, H * SS), (0, 0, 0, 0))
    pen = Pen(ImageDraw.Draw(layer), ox, oy, ppm, a.facing)
    eye = DRAWERS[a.species](pen, a)
    layer = layer.resize((W, H), Image.Resampling.BOX)
    bb = layer.getbbox()
    if bb is None:
        return None
    arr = np.asarray(layer).astype(np.float32) / 255
    m = int(max(a.mblur, a.focus * 3)) + 4
    x0, y0 = max(bb[0] - m, 0), max(bb[1] - m, 0)
    x1, y1 = min(bb[2] + m, W), min(bb[3] + m, H)
    sl = arr[y0:y1, x0:x1].copy()
    alpha = sl[..., 3:4]
    # fur texture + top-lit shading
    rng = np.random.default_rng([SEED, 55, a.ident])
    h, w = sl.shape[:2]
    tex = lowfreq(rng, h, w, max(4, int(ppm * 0.1)))
    ys = (np.arange(h, dtype=np.float32)[:, None] + y0 - bb[1]) / max(bb[3] - bb[1], 1)
    shading = (1.1 - 0.3 * np.clip(ys, 0, 1)) * (1 + 0.045 * tex)
    rgb = np.clip(sl[..., :3] * shading[..., None], 0, 1)
    if night:
        lum = rgb @ np.array([0.3, 0.59, 0.11], np.float32)
        g = (0.42 + 0.8 * lum) * scene.animal_flash(ox, oy)
        rgb = np.repeat(g[..., None], 3, axis=2)
    pre = np.concatenate([rgb * alpha, alpha], axis=2)
    if a.mblur:
        pre = box_blur_x(pre, a.mblur)
    if a.focus:
        pre = gaussian_premult(pre, a.focus)
    eye_px = None
    if eye is not None:
        eye_px = pen.px(*eye)
    return dict(pre=pre, x0=x0, y0=y0, foot_y=oy, eye=eye_px, ppm=ppm)


def ir_eyeshine(img, eye, ppm):
    H, W = img.shape[:2]
    ex, ey = eye
    r = max(1.5, ppm * 0.018)
    R = int(r * 4) + 2
    xa, xb = int(max(ex - R, 0)), int(min(ex + R + 1, W))
    ya, yb = int(max(ey - R, 0)), int(min(ey + R + 1, H))
    if xa >= xb or ya >= yb:
        return
    yy, xx = np.mgrid[ya:yb, xa:xb]
    d2 = ((xx - ex) ** 2 + (yy - ey) ** 2) / (r * r)
    glow = np.exp(-d2 * 0.7)[..., None]
    img[ya:yb, xa:xb] = img[ya:yb, xa:xb] * (1 - glow) + glow * 1.0


FONT_CACHE = {}


def font(size):
    if size not in FONT_CACHE:
        FONT_CACHE[size] = ImageFont.load_default(size=size)  # bundled with Pillow
    return FONT_CACHE[size]


def info_strip(im, scene, when, temp, night):
    W, H, sh = scene.W, scene.H, scene.strip
    d = ImageDraw.Draw(im)
    d.rectangle([0, H - sh, W, H], fill=(14, 14, 14))
    f = font(int(sh * 0.58))
    ty = H - sh + int(sh * 0.2)
    d.text((int(sh * 0.4), ty), "TRAILEYE", font=f, fill=(238, 160, 40))
    tf = round(temp * 9 / 5 + 32)
    d.text((int(W * 0.16), ty), f"{temp}\u00b0C {tf}\u00b0F", font=f, fill=(235, 235, 235))
    # moon-phase icon (fixed), sitting right of the temperature
    mx, my, mr = int(W * 0.33), H - sh // 2, int(sh * 0.28)
    d.ellipse([mx - mr, my - mr, mx + mr, my + mr], fill=(235, 235, 235))
    d.ellipse([mx - mr + mr * 0.7, my - mr, mx + mr + mr * 0.7, my + mr], fill=(14, 14, 14))
    d.text((int(W * 0.42), ty), scene.cfg["label"], font=f, fill=(235, 235, 235))
    stamp = when.strftime("%Y-%m-%d  %H:%M:%S")
    tw = d.textlength(stamp, font=f)
    d.text((W - tw - int(sh * 0.4), ty), stamp, font=f, fill=(235, 235, 235))


def render_frame(scene, ev, fr, frame_rng, when):
    night = ev.light == "night"
    W, H = scene.W, scene.H
    img = scene.background(night).copy()
    drawn = []
    for a in fr.animals:
        r = render_animal(scene, a, night)
        if r is not None:
            r["spec"] = a
            drawn.append(r)
    sprites = [(r["foot_y"], "animal", r) for r in drawn]
    sprites += [(by, "fg", pre) for by, pre in scene.foreground(night)]
    sprites.sort(key=lambda s: (s[0], s[1]))
    for _, kind, obj in sprites:
        if kind == "fg":
            pre = obj
            img = img * (1 - pre[..., 3:4]) + pre[..., :3]
        else:
            pre, x0, y0 = obj["pre"], obj["x0"], obj["y0"]
            h, w = pre.shape[:2]
            reg = img[y0:y0 + h, x0:x0 + w]
            img[y0:y0 + h, x0:x0 + w] = reg * (1 - pre[..., 3:4]) + pre[..., :3]
    if night:
        for r in drawn:
            if r["eye"] is not None and not r["spec"].focus and r["spec"].species != "human":
                ir_eyeshine(img, r["eye"], r["ppm"])
        img = img * fr.exposure
        if fr.exposure > 1.2:  # white-out: the flash blows out near objects
            img = 1 - (1 - np.clip(img, 0, 1)) ** 1.3
        img = np.asarray(Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8))
                         .filter(ImageFilter.GaussianBlur(0.7))).astype(np.float32) / 255
        darkness = 1 - img.mean(axis=2, keepdims=True)  # dark areas are noisier
        img = img + grain(frame_rng, H, W)[..., None] * NIGHT_GRAIN * (0.7 + 0.5 * darkness)
        img = np.repeat(img.mean(axis=2, keepdims=True), 3, axis=2)  # pure greyscale
    else:
        gain, tint = LIGHT[ev.light]
        img = img * gain * fr.exposure * np.array(tint, np.float32)
        if fr.exposure > 1.2:
            img = 1 - (1 - np.clip(img, 0, 1)) ** 1.5
        if ev.light in ("dawn", "dusk"):
            img = img + grain(frame_rng, H, W)[..., None] * DAY_GRAIN
    out = Image.fromarray(np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8), "RGB")
    info_strip(out, scene, when, ev.temp, night)
    # ground-truth boxes (visible part above the info strip, alpha > 0.3)
    objs = []
    for r in drawn:
        pre = r["pre"]
        a = pre[..., 3]
        h, w = a.shape
        limit = H - scene.strip - r["y0"]
        a = a[:max(0, min(h, limit))]
        ys, xs = np.nonzero(a > 0.3)
        if len(xs) == 0:
            continue
        bx0, bx1 = xs.min() + r["x0"], xs.max() + 1 + r["x0"]
        by0, by1 = ys.min() + r["y0"], ys.max() + 1 + r["y0"]
        cut = []
        if bx0 <= 1:
            cut.append("left")
        if bx1 >= W - 1:
            cut.append("right")
        if by1 >= H - scene.strip - 1:
            cut.append("bottom")
        if by0 <= 1:
            cut.append("top")
        objs.append(dict(spec=r["spec"], box=(bx0, by0, bx1 - bx0, by1 - by0), cut=cut))
    return out, objs


# --------------------------------------------------------------------------
# EXIF + JPEG
# --------------------------------------------------------------------------
def jpeg_bytes(im, cfg, when, quality):
    ex = Image.Exif()
    stamp = when.strftime("%Y:%m:%d %H:%M:%S")
    ex[0x010F] = MAKE
    ex[0x0110] = cfg["model"]
    ex[0x0112] = 1
    ex[0x0131] = "TrailEye FW 2.3.1"
    ex[0x0132] = stamp
    sub = ex.get_ifd(0x8769)
    sub[0x9003] = stamp  # DateTimeOriginal
    sub[0x9004] = stamp  # DateTimeDigitized
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, optimize=True, exif=ex.tobytes(), subsampling="4:2:0")
    return buf.getvalue()


# --------------------------------------------------------------------------
# Fake model outputs
# --------------------------------------------------------------------------
def r4(v):
    return round(float(v), 4)


def r3(v):
    return round(float(v), 3)


def noisy_box(box, W, H, rng):
    x, y, w, h = box
    j = rng.normal(0, 0.012, 4)
    x0 = x + j[0] * w
    y0 = y + j[1] * h
    x1 = x + w + j[2] * w
    y1 = y + h + j[3] * h
    x0, x1 = max(0.0, x0 / W), min(1.0, x1 / W)
    y0, y1 = max(0.0, y0 / H), min(1.0, y1 / H)
    return [r4(x0), r4(y0), r4(x1 - x0), r4(y1 - y0)]


def difficulty(o, W, H, night, exposure):
    x, y, w, h = o["box"]
    area = w * h / (W * H)
    a = o["spec"]
    d = 0.0
    if area < 0.004:
        d += 0.45
    elif area < 0.015:
        d += 0.2
    if o["cut"]:
        d += 0.12 + 0.2 * (area < 0.02)
    if a.mblur:
        d += 0.15
    if a.focus:
        d += 0.22
    if night:
        d += 0.07
    if exposure >= 1.3 or exposure < 0.75:
        d += 0.2
    return d


def build_outputs(records):
    md_images, sn_preds, cct_images, cct_anns = [], [], [], []
    rng = np.random.default_rng([SEED, 999])
    for rec in records:
        W, H = rec["W"], rec["H"]
        objs, night, fr = rec["objs"], rec["night"], rec["frame"]
        dets = []  # (conf, category, bbox, classifications, species)
        for o in objs:
            sp = o["spec"].species
            d = difficulty(o, W, H, night, fr.exposure)
            conf = o["spec"].det or float(np.clip(0.965 - 0.42 * d + rng.normal(0, 0.015), 0.21, 0.99))
            bbox = noisy_box(o["box"], W, H, rng)
            if sp == "human":
                dets.append((r3(conf), "2", bbox, None, sp))
                continue
            if o["spec"].cls:
                cls = [(MD_CLS_ID[n] if n in MD_CLS_ID else n, r3(s)) for n, s in o["spec"].cls]
            else:
                top = float(np.clip(0.95 - 0.62 * d + rng.normal(0, 0.025), 0.3, 0.99))
                second = [s for s in SPECIES if s != sp][int(rng.integers(0, 4))]
                cls = [(MD_CLS_ID[sp], r3(top))]
                if top < 0.8:
                    cls.append((MD_CLS_ID[second], r3((1 - top) * 0.6)))
            dets.append((r3(conf), "1", bbox, cls, sp))
        if fr.false_positive:
            sx, sy, sw, sh = rec["stump_box"]
            dets.append((0.14, "1", noisy_box((sx, sy, sw, sh), W, H, rng), [("3", 0.21)], None))
        dets.sort(key=lambda t: -t[0])
        md_dets = []
        for conf, cat, bbox, cls, _ in dets:
            dd = {"category": cat, "conf": conf, "bbox": bbox}
            if cls:
                dd["classifications"] = [[c, s] for c, s in cls if c in MD_CLS_ID.values()]
            md_dets.append(dd)
        if fr.truncated:
            md_images.append({"file": rec["file"], "detections": None, "failure": "Failure image access"})
            sn_preds.append({"filepath": rec["file"], "failures": ["DETECTOR", "CLASSIFIER"],
                             "model_version": "4.0.1a"})
        else:
            md_images.append({"file": rec["file"], "detections": md_dets})
            sn_preds.append(speciesnet_entry(rec, dets, rng))
        # CCT ground truth
        counts = {}
        for o in objs:
            counts[o["spec"].species] = counts.get(o["spec"].species, 0) + 1
        cct_images.append({
            "id": rec["file"], "file_name": rec["file"], "width": W, "height": H,
            "location": rec["cam"], "datetime": rec["when"].strftime("%Y-%m-%d %H:%M:%S"),
            "seq_id": rec["seq_id"], "frame_num": rec["frame_num"], "seq_num_frames": rec["seq_n"],
        })
        if not counts:
            counts = {"empty": 0}
        for sp, n in counts.items():
            ann = {"id": f"ann_{len(cct_anns) + 1:04d}", "image_id": rec["file"],
                   "category_id": CCT_CAT_ID[sp]}
            if n:
                ann["count"] = n
            cct_anns.append(ann)
    return md_images, sn_preds, cct_images, cct_anns


def speciesnet_entry(rec, dets, rng):
    label = {"1": "animal", "2": "human", "3": "vehicle"}
    sn_dets = [{"category": c, "label": label[c], "conf": conf, "bbox": bbox}
               for conf, c, bbox, _, _ in dets]
    real = [t for t in dets if t[4] is not None]
    humans = [t for t in real if t[1] == "2" and t[0] > 0.5]
    animals = [t for t in real if t[1] == "1"]
    extra = {}
    if humans:
        top_name, top = "human", 0.93 + rng.uniform(-0.02, 0.02)
        source = "detector"
    elif not animals:
        top_name, top = "blank", 0.86 + rng.uniform(-0.05, 0.05)
        source = "classifier"
    else:
        counts = {}
        for t in animals:
            counts[t[4]] = counts.get(t[4], 0) + 1
        dominant = max(counts, key=lambda s: (counts[s], max(t[0] for t in animals if t[4] == s)))
        best = max((t for t in animals if t[4] == dominant), key=lambda t: t[0])
        cls = best[3]
        inv = {v: k for k, v in MD_CLS_ID.items()}
        top_name = inv[cls[0][0]] if cls[0][0] in inv else cls[0][0]
        top = cls[0][1]
        source = "classifier"
        if len(cls) > 1 and cls[0][1] < 0.5:
            extra = {"second": (inv.get(cls[1][0], cls[1][0]), cls[1][1])}
        others = [s for s in counts if s != dominant]
        if others:  # the whole-image classifier is less sure when two species are present
            extra["co"] = others[0]
            top = round(top * 0.74, 3)
    names = [top_name]
    scores = [top]
    if "second" in extra:
        names.append(extra["second"][0])
        scores.append(extra["second"][1])
    if "co" in extra and extra["co"] not in names:
        names.append(extra["co"])
        scores.append((1 - sum(scores)) * 0.6)
    for n in CONFUSIONS.get(top_name, CONFUSIONS["blank"]):
        if len(names) >= 5:
            break
        if n not in names:
            names.append(n)
            scores.append((1 - sum(scores)) * 0.5)
    scores = [r4(max(s, 0.0001)) for s in scores]
    pred, pscore = TAXA[top_name], r4(top)
    if source == "classifier" and top_name not in ("blank", "human") and top < 0.5:
        # SpeciesNet rolls low-confidence species predictions up the taxonomy
        if "second" in extra and extra["second"][0] in ("red deer", "roe deer", "deer family"):
            pred, source = TAXA["deer family"], "classifier+rollup_to_family"
        else:
            pred, source = TAXA["carnivorous mammal"], "classifier+rollup_to_order"
        pscore = r4(min(0.99, scores[0] + scores[1]))
    return {
        "filepath": rec["file"],
        "classifications": {"classes": [TAXA[n] for n in names], "scores": scores},
        "detections": sn_dets,
        "prediction": pred,
        "prediction_score": pscore,
        "prediction_source": source,
        "model_version": "4.0.1a",
    }


# --------------------------------------------------------------------------
# README
# --------------------------------------------------------------------------
def describe(rec):
    objs, fr = rec["objs"], rec["frame"]
    W, H = rec["W"], rec["H"]
    counts = {}
    for o in objs:
        counts[o["spec"].species] = counts.get(o["spec"].species, 0) + 1
    if fr.truncated:
        species = ", ".join(counts) + " (unreadable)"
    else:
        species = ", ".join(counts) if counts else "blank"
    count = " + ".join(str(n) for n in counts.values()) if counts else "0"
    notes = []
    sizes = [o["box"][2] * o["box"][3] / (W * H) for o in objs]
    if sizes and max(sizes) < 0.004:
        notes.append("tiny, far away")
    elif sizes and max(sizes) > 0.2:
        notes.append("close-up")
    for side in ("left", "right", "bottom", "top"):
        if any(side in o["cut"] for o in objs):
            notes.append(f"cut off at {side} edge")
    if any(o["spec"].mblur for o in objs):
        notes.append("motion blur")
    if any(o["spec"].focus for o in objs):
        notes.append("out of focus")
    if any(o["spec"].variant == "piglet" for o in objs):
        notes.append("sow with striped piglets")
    if any(o["spec"].variant == "stag" for o in objs):
        notes.append("stag with antlers")
    if rec["light"] != "night" and fr.exposure < 0.9:
        notes.append("under-exposed")
    if rec["light"] == "night" and fr.exposure < 0.9:
        notes.append("under-exposed (beyond flash range)")
    if rec["light"] in ("dawn", "dusk"):
        notes.append(rec["light"])
    if "human" in counts:
        notes.append("person")
    if "eurasian lynx" in counts:
        notes.append("rare species")
    if rec["light"] == "night" and counts and not fr.truncated:
        notes.append("IR eye-shine")
    notes += fr.notes
    return species, count, notes


def write_readme(out, records, total_bytes):
    rows = []
    for rec in records:
        species, count, notes = describe(rec)
        dn = "night (IR)" if rec["light"] == "night" else "day"
        rows.append(f"| `{rec['file']}` | {rec['when'].strftime('%Y-%m-%d %H:%M:%S')} | {rec['seq_id']} "
                    f"({rec['frame_num'] + 1}/{rec['seq_n']}) | {species} | {count} | {dn} | "
                    f"{'; '.join(notes)} |")
    by_cat = {}
    for rec in records:
        sp = {o["spec"].species for o in rec["objs"]} or {"blank"}
        for s in sp:
            by_cat.setdefault(s, []).append(rec["file"])
    cat_lines = []
    for s in SPECIES + ["human", "blank"]:
        files = by_cat.get(s, [])
        nseq = len({r["seq_id"] for r in records if r["file"] in files})
        cat_lines.append(f"| {s} | {len(files)} | {nseq} |")
    def find(pred):
        return next(r["file"] for r in records if pred(r))

    f_trunc = find(lambda r: r["frame"].truncated)
    f_person = find(lambda r: any(o["spec"].species == "human" for o in r["objs"]))
    f_two = find(lambda r: len({o["spec"].species for o in r["objs"]}) > 1)
    f_fp = find(lambda r: r["frame"].false_positive)
    uu = "\n".join(f"| {s} | `{TAXA[s]}` |" for s in SPECIES)
    text = f"""# sample_data: a synthetic camera-trap collection

This folder is a small, **fully synthetic** camera-trap collection for
developing and testing `hero-hitl`.  Every image was drawn by
[`scripts/make_sample_data.py`](../scripts/make_sample_data.py) from simple
shapes (ellipses, polygons, tapered limbs, procedural noise); no photographs
were fetched or copied.  Because it is machine-generated from a fixed seed,
the collection is dedicated to the public domain (**CC0 1.0**).

* {len(records)} JPEGs from 3 cameras (`images/cam_a`, `images/cam_b` at
  1920x1080, `images/cam_c` at 2048x1536), bursts of 3 frames 1-2 s apart,
  single frames, day frames and greyscale IR-night frames with a trail-camera
  info strip (brand, temperature, moon phase, camera name, date and time).
* EXIF on every image: `Make` = `{MAKE}`, `Model` (TrailEye TX-12 / TX-20 Pro),
  IFD0 `DateTime` (0x0132) and Exif `DateTimeOriginal` (0x9003) = capture time.
* One file (`{f_trunc}`) is deliberately **truncated** (the second
  half of the JPEG is missing), as happens with a full SD card or a camera that
  lost power.
* Total size: {total_bytes / 1e6:.2f} MB.

## Regenerating

```bash
.venv/bin/python scripts/make_sample_data.py        # rewrites sample_data/
```

The script is deterministic (fixed seed, fixed timestamps): two runs give
byte-identical files on the same platform (same Pillow/libjpeg/numpy).  It
prints the SHA-256 of every file and the total size, and fails if the
collection exceeds 5 MB.

## Metadata files

| file | format | notes |
|---|---|---|
| `md_results.json` | MegaDetector batch output, format 1.6 (md_v5a.0.0) | `file` paths are relative to `images/`; bbox = `[x_min, y_min, width, height]`, normalised; classifications use `classification_categories` 1-5; the truncated file has `"detections": null, "failure": "Failure image access"`; the blank `{f_fp}` has a 0.14 false positive on a tree stump |
| `speciesnet_predictions.json` | SpeciesNet 4.x ensemble output (`model_version` 4.0.1a) | one entry per image; detections carry `label` animal/human; low-confidence species predictions roll up (`deer family`, `carnivorous mammal`); the truncated file has `"failures": ["DETECTOR", "CLASSIFIER"]` |
| `cct.json` | COCO Camera Traps | ground truth: one annotation per species per image (with `count`), `category_id` 0 = empty; `seq_id`, `frame_num` (0-based), `seq_num_frames`, `location` = camera |

The model outputs are *simulated* from the ground truth that the script knows
(where it drew each animal), with deterministic noise on boxes and
confidences, lower confidences for tiny, blurred, cut-off and badly exposed
animals, and a few realistic mistakes.

"Cut off" in the notes is what a curator sees: an animal that runs into a frame
edge, or into the camera's data strip along the bottom (4.5% of the height),
which hides whatever is behind it. The detector's boxes end where the strip
begins, as MegaDetector's do on real trail-camera frames.

`decisions.csv` (not written by the script) holds three made-up curators'
decisions on the animal frames but those of two cam_c sequences (left for
`hitl next` to find), 88 in all, for `hitl ratings --import` and `hitl learn`: stars from the notes below (close-ups, rare species and groups
up; tiny, cut-off, blurred and badly exposed animals down), hero at 8 or more.
`deployments.csv` (not written by the script either) is a Camtrap DP
deployments table for the three cameras, with invented coordinates, for
`hitl export --format camtrap-dp --deployments`.

Species UUIDs (made up, fixed):

| species | SpeciesNet label |
|---|---|
{uu}

## Images

| file | capture time | sequence | species | count | day/night | notes |
|---|---|---|---|---|---|---|
""" + "\n".join(rows) + """

## What a good selector should find

| category | images | sequences |
|---|---|---|
""" + "\n".join(cat_lines) + f"""

* All five species, including the **rare eurasian lynx** (one 3-frame dawn
  sequence on cam_b plus one night frame on cam_c, where the classifier says
  "red fox" and SpeciesNet rolls up to "carnivorous mammal").
* The **person** (`{f_person}`), which should be flagged/excluded for
  privacy.
* The **two-species frame** (`{f_two}`: red deer + wild boar).
* The **blanks** (wind triggers and the end of a sequence), including one with
  a weak false-positive detection.
* Hard cases worth human review: the tiny far-away stag, the out-of-focus fox,
  the IR white-out boar, the under-exposed night deer, animals cut off at the
  frame edges, motion-blurred frames.
* The **truncated file** `{f_trunc}`, which must be reported, not crash
  the tool.
"""
    (out / "README.md").write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def dump_json(path, obj):
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: sample_data/)")
    ap.add_argument("--quality", type=int, default=60, help="JPEG quality (night frames use 5 less)")
    args = ap.parse_args(argv)
    out = args.out
    if (out / "images").exists():
        shutil.rmtree(out / "images")
    for name in ("md_results.json", "speciesnet_predictions.json", "cct.json", "README.md"):
        if (out / name).exists():
            (out / name).unlink()
    out.mkdir(parents=True, exist_ok=True)

    scenes = {cam: Scene(cam) for cam in CAMERAS}
    counters = {cam: 0 for cam in CAMERAS}
    seqs = {cam: 0 for cam in CAMERAS}
    records = []
    events = sorted(EVENTS, key=lambda e: (CAM_ORDER.index(e.cam), e.start))
    for ev in events:
        scene = scenes[ev.cam]
        seqs[ev.cam] += 1
        seq_id = f"{ev.cam}_seq{seqs[ev.cam]:04d}"
        t0 = datetime.strptime(ev.start, "%Y-%m-%d %H:%M:%S")
        for k, fr in enumerate(ev.frames):
            counters[ev.cam] += 1
            idx = counters[ev.cam]
            when = t0 + timedelta(seconds=fr.dt)
            frng = np.random.default_rng([SEED, CAM_ORDER.index(ev.cam), 100 + idx])
            im, objs = render_frame(scene, ev, fr, frng, when)
            rel = f"{ev.cam}/IMG_{idx:04d}.JPG"
            data = jpeg_bytes(im, scene.cfg, when, args.quality if ev.light != "night" else args.quality - 5)
            if fr.truncated:
                data = data[: len(data) // 2]
            path = out / "images" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            records.append(dict(file=rel, cam=ev.cam, W=scene.W, H=scene.H, when=when, light=ev.light,
                                night=ev.light == "night", frame=fr, objs=objs, seq_id=seq_id,
                                frame_num=k, seq_n=len(ev.frames),
                                stump_box=scene.stump_box() if scene.stump else None))
    records.sort(key=lambda r: r["file"])

    md_images, sn_preds, cct_images, cct_anns = build_outputs(records)
    cls_cats = {MD_CLS_ID[s]: s for s in SPECIES}
    md = {
        "info": {
            "format_version": "1.6",
            "detector": "md_v5a.0.0.pt",
            "detection_completion_time": "2024-06-01 10:15:00",
            "classifier": "speciesnet-v4.0.1a (simulated)",
            "classification_completion_time": "2024-06-01 10:21:00",
            "detector_metadata": {
                "megadetector_version": "v5a.0.0",
                "typical_detection_threshold": 0.2,
                "conservative_detection_threshold": 0.05,
            },
            "classifier_metadata": {"typical_classification_threshold": 0.5},
            "summary_report": "synthetic results generated by scripts/make_sample_data.py",
        },
        "detection_categories": {"1": "animal", "2": "person", "3": "vehicle"},
        "classification_categories": cls_cats,
        "classification_category_descriptions": {MD_CLS_ID[s]: TAXA[s] for s in SPECIES},
        "images": md_images,
    }
    dump_json(out / "md_results.json", md)
    dump_json(out / "speciesnet_predictions.json", {"predictions": sn_preds})
    cct = {
        "info": {
            "version": "1.0",
            "description": "hero-hitl synthetic sample collection (drawn by scripts/make_sample_data.py)",
            "year": 2024,
            "contributor": "hero-hitl",
            "date_created": "2024-06-01",
            "license": "CC0-1.0",
        },
        "images": cct_images,
        "categories": [{"id": i, "name": n} for n, i in sorted(CCT_CAT_ID.items(), key=lambda t: t[1])],
        "annotations": cct_anns,
    }
    dump_json(out / "cct.json", cct)

    files = sorted(p for p in out.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    write_readme(out, records, total)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    for p in files:
        print(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out).as_posix()}")
    print(f"{len(records)} images, {len(files)} files, total {total} bytes ({total / 1e6:.2f} MB)")
    if total > MAX_TOTAL_BYTES:
        print(f"ERROR: sample_data is larger than {MAX_TOTAL_BYTES} bytes", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
