"""The baseline vector is built for the near-duplicate step: planted copies of a photo (re-encoded at
a lower JPEG quality, 5% brighter, a 95% crop, greyscale and CMYK copies) are much closer to each
other than distinct camera-trap photos are, at one threshold.

Distinct photos: the real camera-trap photos of shared/ (the elephants' own copies there are one
photo) and one frame of each camera's day and night view of the sample. Two frames of one camera's
fixed view are near-duplicates to any global descriptor (the sample's empty frames are identical
pixels): telling bursts apart is not what these vectors are for.
"""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageEnhance

from hitl.embed.backends.baseline import baseline_vector
from hitl.embed.descriptors import baseline_descriptor, dimension
from hitl.imageprep import load_upright_rgb

SAMPLE = ["cam_a/IMG_0001.JPG", "cam_a/IMG_0006.JPG", "cam_b/IMG_0001.JPG", "cam_b/IMG_0008.JPG",
          "cam_c/IMG_0001.JPG", "cam_c/IMG_0012.JPG"]
REAL_COPIES = ("_bw", "_cmyk", "_truncated", "_exif")


def planted(image: Image.Image) -> list[Image.Image]:
    def reencoded(im: Image.Image, quality: int, mode: str = "RGB") -> Image.Image:
        buffer = io.BytesIO()
        im.convert(mode).save(buffer, "JPEG", quality=quality)
        return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")

    w, h = image.size
    return [image, reencoded(image, 40), ImageEnhance.Brightness(image).enhance(1.05),
            image.crop((round(w * 0.025), round(h * 0.025), round(w * 0.975), round(h * 0.975))),
            image.convert("L").convert("RGB"), reencoded(image, 90, "CMYK")]


def vector(image: Image.Image) -> np.ndarray:
    """The descriptor of ``image`` at 256 px, shrunk in place (each copy is used once: no copy of it)."""
    image.thumbnail((256, 256), Image.Resampling.BILINEAR)
    return baseline_descriptor(np.asarray(image))


def test_planted_near_duplicates_are_closer_than_distinct_photos(camera_traps, sample_data):
    sources = [p for p in sorted((camera_traps / "images").glob("*.jpg")) if not any(c in p.stem for c in REAL_COPIES)]
    sources += [sample_data / "images" / name for name in SAMPLE]
    group, vectors = [], []
    for k, path in enumerate(sources):
        rgb, _ = load_upright_rgb(path, 1024)
        for copy in planted(rgb):
            group.append(k)
            vectors.append(vector(copy))
    matrix = np.array(vectors)
    assert matrix.shape[1] == dimension() and np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    similarity = matrix @ matrix.T
    first, second = np.triu_indices(len(group), k=1)  # every pair once, as itertools.combinations orders them
    same = np.array(group)[first] == np.array(group)[second]
    values = similarity[first, second]
    best = max(_precision_recall(values, same, t) for t in np.unique(values.round(4)))
    assert min(best[:2]) >= 0.95, best


def _precision_recall(values: np.ndarray, same: np.ndarray, threshold: float) -> tuple[float, float, float]:
    found = values >= threshold
    true = (found & same).sum()
    precision, recall = true / max(1, found.sum()), true / same.sum()
    return min(precision, recall), max(precision, recall), threshold


def test_the_real_copies_of_a_photo_are_near_duplicates_of_it(camera_traps):
    images = camera_traps / "images"
    original = baseline_vector(images / "african_elephants.jpg", [], 256, 10**8)
    others = [baseline_vector(images / f, [], 256, 10**8) for f in ("american_black_bear.jpg", "ocelot.jpg")]
    for copy in ("african_elephants_bw.jpg", "african_elephants_cmyk.jpg", "african_elephants_with_exif_orientation.jpg"):
        near = float(original @ baseline_vector(images / copy, [], 256, 10**8))
        assert near > 0.9 and all(near > float(original @ o) + 0.1 for o in others), copy


def test_the_baseline_is_deterministic_and_uses_the_largest_box(camera_traps):
    path = camera_traps / "images" / "ocelot.jpg"
    plain = baseline_vector(path, [], 256, 10**8)
    assert np.array_equal(plain, baseline_vector(path, [], 256, 10**8))
    boxed = baseline_vector(path, [(0.1, 0.4, 0.3, 0.3), (0.5, 0.5, 0.05, 0.05)], 256, 10**8)
    assert not np.array_equal(plain, boxed) and float(plain @ boxed) > 0.95
