"""The offline BASELINE image vector: classical descriptors, NOT a learned representation.

No weights, no network, deterministic: it lets the loop run on a laptop and gives the tests vectors
that depend on the pixels. It knows nothing of what a photo shows; it describes how it looks,
in blocks, each L2-normalised and weighted, so the cosine of two vectors is the weighted mean of
the blocks' cosines:

==================  ======  =========================================================================
block               weight  what it measures (on the upright image, longest side ``side`` pixels)
==================  ======  =========================================================================
luminance layout     0.38   mean luminance in an 8 x 6 grid, standardised (mean 0, sd 1 over the grid)
fine layout          0.26   the same in a 16 x 12 grid
edge orientation     0.12   gradient directions in a 4 x 3 grid (8 bins, magnitude-weighted), half scale
edge layout          0.09   mean gradient magnitude in a 4 x 3 grid at two scales, standardised
edge and blur        0.07   log gradient and Laplacian energy at three scales, against fixed levels
colour layout        0.01   mean chroma (Cb, Cr) in a 4 x 3 grid
colour temperature   0.01   (R - B) and (G - (R + B) / 2) over the frame, against brightness
hue histogram        0.02   12 hue bins, weighted by saturation
animal box           0.04   the largest animal box's share of the frame, in 4 soft bins (none: 0)
==================  ======  =========================================================================

Designed for the near-duplicate step: what re-encoding, a small brightness or contrast change, a
small crop or a colour-space change (greyscale, CMYK) leaves alone carries most of the weight (the
standardised luminance and edge layouts), so such copies stay close, while distinct photos differ
in their layout. The colour blocks weigh little because a greyscale copy has none: weighted more,
they made a photo's greyscale copy further from it than another photo (tests/test_embed_baseline.py
measures this on planted copies of real camera-trap photos).
"""
from __future__ import annotations

import numpy as np

BLOCKS: dict[str, float] = {
    "layout": 0.38, "fine_layout": 0.26, "edge_layout": 0.09, "edge_blur": 0.07, "orientation": 0.12,
    "colour_layout": 0.01, "temperature": 0.01, "hue": 0.02, "box": 0.04,
}
HUE_BINS = 12
# typical log energies of a camera-trap frame at 256 px (gradient, Laplacian at 1, 1/2, 1/4 scale):
# the block is measured against them, so its cosine says "sharper or softer than usual" alike
EDGE_LEVELS = np.array([2.2, 1.6, 2.4, 2.0, 2.5, 2.3])
BOX_BINS = np.log10([0.003, 0.03, 0.15, 0.6])  # share of the frame: speck, small, medium, close-up

_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)


def dimension() -> int:
    return 48 + 192 + 24 + 6 + 96 + 24 + 2 + HUE_BINS + len(BOX_BINS)


def _grid_means(a: np.ndarray, cols: int, rows: int) -> np.ndarray:
    """Mean of ``a`` (H x W or H x W x C) in a rows x cols grid of near-equal cells."""
    h, w = a.shape[:2]
    ys = np.linspace(0, h, rows + 1).round().astype(int)
    xs = np.linspace(0, w, cols + 1).round().astype(int)
    sums = np.add.reduceat(np.add.reduceat(a, ys[:-1], axis=0), xs[:-1], axis=1)
    counts = np.outer(np.diff(ys), np.diff(xs))
    return sums / (counts[..., None] if a.ndim == 3 else counts)


def _standardised(v: np.ndarray) -> np.ndarray:
    v = v.ravel().astype(np.float64)
    sd = v.std()
    return (v - v.mean()) / sd if sd > 1e-6 else np.zeros_like(v)


def _half(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    a = a[:h, :w]
    return (a[0::2, 0::2] + a[1::2, 0::2] + a[0::2, 1::2] + a[1::2, 1::2]) / 4.0


def _gradient(y: np.ndarray) -> np.ndarray:
    gx = np.zeros_like(y)
    gy = np.zeros_like(y)
    gx[:, 1:-1] = y[:, 2:] - y[:, :-2]
    gy[1:-1, :] = y[2:, :] - y[:-2, :]
    return np.hypot(gx, gy)


def _orientation_layout(y: np.ndarray, cols: int = 4, rows: int = 3, bins: int = 8) -> np.ndarray:
    """Gradient orientations (modulo 180 degrees) in a grid, weighted by magnitude: the direction of the
    edges (trunks, horizon, an animal's back), whatever their brightness or colour."""
    gx = np.zeros_like(y)
    gy = np.zeros_like(y)
    gx[:, 1:-1] = y[:, 2:] - y[:, :-2]
    gy[1:-1, :] = y[2:, :] - y[:-2, :]
    magnitude = np.hypot(gx, gy)
    angle = np.arctan2(gy, gx) % np.pi
    which = np.minimum((angle / np.pi * bins).astype(int), bins - 1)
    planes = np.zeros(y.shape + (bins,), np.float32)
    np.put_along_axis(planes, which[..., None], magnitude[..., None], axis=2)
    cells = _grid_means(planes, cols, rows)
    return np.sqrt(cells / np.maximum(cells.sum(axis=2, keepdims=True), 1e-6)).ravel()


def _laplacian_energy(y: np.ndarray) -> float:
    if min(y.shape) < 3:
        return 0.0
    lap = 4.0 * y[1:-1, 1:-1] - y[:-2, 1:-1] - y[2:, 1:-1] - y[1:-1, :-2] - y[1:-1, 2:]
    return float(np.abs(lap).mean())


def _hue_histogram(rgb: np.ndarray) -> np.ndarray:
    r, g, b = (rgb[..., k] for k in range(3))
    top, low = np.maximum(np.maximum(r, g), b), np.minimum(np.minimum(r, g), b)
    chroma = top - low
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(top == r, ((g - b) / safe) % 6.0, np.where(top == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0))
    saturation = chroma / np.maximum(top, 1.0)
    weight = np.where(chroma > 8.0, saturation, 0.0)  # near-grey pixels have no meaningful hue
    bins = np.minimum((hue / 6.0 * HUE_BINS).astype(int), HUE_BINS - 1)
    return np.bincount(bins.ravel(), weights=weight.ravel(), minlength=HUE_BINS) / hue.size


def _box_bins(share: float | None) -> np.ndarray:
    if not share or share <= 0:
        return np.zeros(len(BOX_BINS))
    return np.exp(-((np.log10(share) - BOX_BINS) ** 2) / 0.5)


def baseline_descriptor(rgb: np.ndarray, largest_box_share: float | None = None) -> np.ndarray:
    return _combine(descriptor_blocks(rgb, largest_box_share))


def descriptor_blocks(rgb: np.ndarray, largest_box_share: float | None = None) -> dict[str, np.ndarray]:
    """The baseline vector (float32, unit length) of an H x W x 3 uint8 upright image and the share of
    the frame its largest animal box covers (None: no box)."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 4:
        raise ValueError(f"expected an HxWx3 uint8 image of at least 4x4, got {rgb.dtype} {rgb.shape}")
    ycc = rgb.astype(np.float32) @ _YCC.T
    y = ycc[..., 0]
    grads = [y, _half(y), _half(_half(y))]
    energies = [np.log1p(float(_gradient(g).mean())) for g in grads] + [np.log1p(_laplacian_energy(g)) for g in grads]
    energies = [energies[0], energies[3], energies[1], energies[4], energies[2], energies[5]]
    rgbf = rgb.astype(np.float32)
    means = rgbf.reshape(-1, 3).mean(axis=0)
    brightness = max(float(means.sum()), 1.0)
    blocks = {
        "layout": _standardised(_grid_means(y, 8, 6)),
        "fine_layout": _standardised(_grid_means(y, 16, 12)),
        "edge_layout": np.concatenate([_standardised(_grid_means(_gradient(g), 4, 3)) for g in grads[:2]]),
        "edge_blur": np.array(energies) - EDGE_LEVELS,
        "orientation": _orientation_layout(grads[1]),
        "colour_layout": _grid_means(ycc[..., 1:], 4, 3).ravel() / 128.0,
        "temperature": np.array([(means[0] - means[2]) / brightness,
                                 (means[1] - (means[0] + means[2]) / 2.0) / brightness]) * 3.0,
        "hue": _hue_histogram(rgbf),
        "box": _box_bins(largest_box_share),
    }
    return blocks


def _combine(blocks: dict[str, np.ndarray]) -> np.ndarray:
    parts = []
    for name, weight in BLOCKS.items():
        block = np.asarray(blocks[name], np.float64)
        norm = np.linalg.norm(block)
        parts.append(block * (np.sqrt(weight) / norm) if norm > 1e-9 else np.zeros_like(block))
    vector = np.concatenate(parts)
    norm = np.linalg.norm(vector)
    return (vector / norm if norm > 0 else vector).astype(np.float32)
