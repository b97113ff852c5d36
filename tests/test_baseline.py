"""hitl.backends.baseline: ordering on drawn scenes, determinism, no boxes, the Backend wrapper."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image, ImageFilter

from hitl.imageprep import prepare_image
from hitl.score.backends.base import Backend, Outcome, ScoreRequest
from hitl.score.backends.baseline import (
    HERO_THRESHOLD,
    TAGS,
    WEIGHTS,
    BaselineBackend,
    baseline_features,
    baseline_verdict,
)

W, H = 768, 576


def scene(cx: float = 0.5, cy: float = 0.55, rw: float = 0.16, rh: float = 0.18, *,
          brightness: float = 1.0, grey: bool = False, blur: float = 0.0, seed: int = 0):
    """A striped, textured elliptical 'animal' on a grassy gradient; returns (rgb, [box]).

    (cx, cy) is the centre and (rw, rh) the half-size, as fractions of the frame; the box is
    the ellipse's bounding box clipped to the frame, as a detector would report it.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    g = yy / H
    bg = np.stack([90 + 40 * g, 120 + 30 * g, 70 + 20 * g], -1) + rng.normal(0, 6, (H, W, 1))
    inside = ((xx - cx * W) / (rw * W)) ** 2 + ((yy - cy * H) / (rh * H)) ** 2 <= 1.0
    fur = 110 + 60 * np.sign(np.sin(xx / 5.0 + yy / 9.0)) + rng.normal(0, 20, (H, W))
    animal = np.stack([fur, fur * 0.75, fur * 0.5], -1)
    pixels = np.where(inside[..., None], animal, bg) * brightness
    img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if blur:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    if grey:
        img = img.convert("L").convert("RGB")
    x0, y0 = max(cx - rw, 0.0), max(cy - rh, 0.0)
    x1, y1 = min(cx + rw, 1.0), min(cy + rh, 1.0)
    return np.asarray(img), [(x0, y0, x1 - x0, y1 - y0)]


SCENES = {
    "good": lambda: scene(),
    "blurred": lambda: scene(blur=3.0),
    "cut off": lambda: scene(cx=0.92),
    "speck": lambda: scene(rw=0.02, rh=0.025),
    "dark": lambda: scene(brightness=0.15),
}


@pytest.fixture(scope="module")
def verdicts():
    return {name: baseline_verdict(*make()) for name, make in SCENES.items()}


def test_ordering_good_blurred_cut_speck_dark(verdicts):
    scores = [verdicts[name].score for name in SCENES]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == len(scores), dict(
        zip(SCENES, scores))
    assert verdicts["good"].hero and verdicts["good"].score >= HERO_THRESHOLD
    assert not any(verdicts[name].hero for name in SCENES if name != "good")


def test_tags_and_reasoning_name_the_defect(verdicts):
    expected = {"good": {"sharp", "centred"}, "blurred": {"blurry"}, "cut off": {"cut-off"},
                "speck": {"small-subject"}, "dark": {"dark"}}
    for name, must in expected.items():
        v = verdicts[name]
        assert must <= set(v.tags), (name, v.tags)
        assert set(v.tags) <= set(TAGS)
    assert "blurry" not in verdicts["good"].tags and "cut-off" not in verdicts["good"].tags
    assert verdicts["good"].reasoning.startswith("Sharp, well-exposed animal covering 12% of the frame")
    assert "blurry" in verdicts["blurred"].reasoning
    assert "cut off" in verdicts["cut off"].reasoning
    assert "speck" in verdicts["speck"].reasoning
    assert "dark" in verdicts["dark"].reasoning
    for v in verdicts.values():
        assert 1 <= v.reasoning.count(". ") + 1 <= 2 and v.reasoning.endswith(".")


def test_greyscale_frame_is_tagged_night_ir_and_loses_a_little():
    colour = baseline_verdict(*scene())
    grey = baseline_verdict(*scene(grey=True))
    assert "night-ir" in grey.tags and "night-ir" not in colour.tags
    assert grey.score < colour.score
    assert "infrared" in grey.reasoning
    # Darkness alone is not infrared: the night-ir test is brightness-free.
    assert "night-ir" not in baseline_verdict(*scene(brightness=0.15)).tags


def test_group_and_close_up_tags():
    rgb, box = scene()
    three = box + [(0.05, 0.1, 0.1, 0.1), (0.7, 0.1, 0.1, 0.1)]
    assert "group" in baseline_verdict(rgb, three).tags
    assert "group" not in baseline_verdict(rgb, box).tags
    big_rgb, big_box = scene(cy=0.5, rw=0.42, rh=0.42)
    assert "close-up" in baseline_verdict(big_rgb, big_box).tags


def test_placement_prefers_centre_or_thirds_over_a_corner():
    f_centre = baseline_features(*scene())
    f_thirds = baseline_features(*scene(cx=2 / 3, cy=2 / 3, rw=0.1, rh=0.12))
    f_corner = baseline_features(*scene(cx=0.12, cy=0.15, rw=0.1, rh=0.12))
    assert f_centre["centre_distance"] < 0.06
    assert f_thirds["thirds_distance"] < 0.02
    v_corner = baseline_verdict(*scene(cx=0.12, cy=0.15, rw=0.1, rh=0.12))
    v_thirds = baseline_verdict(*scene(cx=2 / 3, cy=2 / 3, rw=0.1, rh=0.12))
    assert f_corner["cut_off"] == 0.0 and v_corner.score < v_thirds.score


def test_features_are_plain_floats_and_scale_free():
    rgb, box = scene()
    f = baseline_features(rgb, box)
    assert all(isinstance(v, float) for v in f.values())
    assert f["n_animals"] == 1.0 and 0.10 < f["area_fraction"] < 0.14
    # Relative sharpness: the textured animal is sharper than the grass.
    assert f["sharpness_rel"] > 1.0
    # Half-size image: relative sharpness stays > 1 and the area fraction is unchanged.
    half = np.asarray(Image.fromarray(rgb).resize((W // 2, H // 2), Image.Resampling.LANCZOS))
    f_half = baseline_features(half, box)
    assert f_half["sharpness_rel"] > 1.0
    assert abs(f_half["area_fraction"] - f["area_fraction"]) < 1e-9


def test_deterministic():
    rgb, box = scene(seed=3)
    first = baseline_verdict(rgb, box)
    for _ in range(3):
        assert baseline_verdict(rgb.copy(), list(box)) == first
    assert baseline_features(rgb, box) == baseline_features(rgb, box)


def test_no_boxes_scores_whole_frame_and_says_so():
    rgb, _ = scene()
    v = baseline_verdict(rgb, [])
    assert 0.0 <= v.score < HERO_THRESHOLD and not v.hero
    assert v.reasoning.startswith("No animal box")
    assert "cut-off" not in v.tags and "centred" not in v.tags
    # Boxes entirely outside the frame or degenerate count as no box.
    outside = [(1.5, 0.2, 0.1, 0.1), (0.2, 0.2, 0.0, 0.3)]
    assert baseline_verdict(rgb, outside).reasoning.startswith("No animal box")


def test_rejects_wrong_arrays():
    with pytest.raises(ValueError):
        baseline_features(np.zeros((10, 10), np.uint8), [])
    with pytest.raises(ValueError):
        baseline_features(np.zeros((10, 10, 3), np.float32), [])


def test_weights_sum_to_one():
    assert abs(sum(WEIGHTS.values()) - 1.0) < 1e-9


def test_backend_scores_a_prepared_jpeg(tmp_path):
    rgb, box = scene()
    path = tmp_path / "frame.png"
    Image.fromarray(rgb).resize((2048, 1536), Image.Resampling.BICUBIC).save(path, compress_level=1)
    prepared = prepare_image(path)
    backend: Backend = BaselineBackend()  # type-checks against the Protocol
    assert backend.name == "baseline" and backend.paid is False
    request = ScoreRequest(image_id="img1", key="k1", jpeg=prepared.jpeg, width=prepared.width,
                           height=prepared.height, boxes=box, path=str(path))
    out = backend.score(request, prompt="ignored")
    assert isinstance(out, Outcome) and out.error is None and out.verdict is not None
    assert 0.0 <= out.verdict.score <= 10.0 and out.verdict.hero
    assert out.tokens_in is None and out.tokens_out is None
    assert out.latency_ms is not None and out.latency_ms > 0
    raw = json.loads(out.raw)
    assert raw["score"] == out.verdict.score and raw["hero"] == out.verdict.hero
    assert raw["reasoning"] == out.verdict.reasoning and tuple(raw["tags"]) == out.verdict.tags
    assert raw["features"]["area_fraction"] == pytest.approx(0.12, abs=0.02)
    # The prompt is ignored.
    assert backend.score(request, prompt="something else").verdict == out.verdict


def test_backend_downscales_an_oversized_jpeg():
    rgb, box = scene()
    big = io.BytesIO()
    Image.fromarray(rgb).resize((1536, 1152)).save(big, "JPEG", quality=90)
    out = BaselineBackend(max_side=768).score(
        ScoreRequest(image_id="i", key="k", jpeg=big.getvalue(), width=1536, height=1152, boxes=box), "")
    assert out.verdict is not None and json.loads(out.raw)["features"]["sharpness_frame"] > 0


def test_backend_reports_undecodable_bytes_as_an_error_outcome():
    request = ScoreRequest(image_id="i", key="k", jpeg=b"not a jpeg", width=1, height=1)
    out = BaselineBackend().score(request, "")
    assert out.verdict is None and out.error_kind == "prepare" and out.error
