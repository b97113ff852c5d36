"""converters.yolo (split, label lines, data.yaml, safe names) and hitl.publish.crops."""
from __future__ import annotations

import hashlib
import io
import math
import random
import re

import numpy as np
import pytest
import yaml  # PyYAML: in the dev requirements through frictionless and labelme
from PIL import Image

from converters.yolo import data_yaml, label_lines, parse_label_lines, safe_name, safe_names, split_by_sequence
from hitl.imageprep import load_upright_rgb
from hitl.publish.crops import crop_box, crop_pixels, encode_crop

from .conftest import SHARED

IMAGES = SHARED / "camera_traps" / "images"
FULL = 100_000  # max_side for load_upright_rgb: never downscale


def _items() -> list[tuple[str, str | None]]:
    """60 images: sequences of 1 to 6 frames, and 12 images without a sequence."""
    items: list[tuple[str, str | None]] = []
    for s in range(14):
        items += [(f"s{s}_f{f}", f"seq{s}") for f in range(1 + s % 6)]
    items += [(f"lone{i}", None) for i in range(60 - len(items))]
    return items


# --- split_by_sequence -------------------------------------------------------------------------

def test_split_keeps_every_sequence_on_one_side_and_holds_the_share():
    items = _items()
    assert len(items) == 60
    split = split_by_sequence(items, val_share=0.2, seed=0)
    assert set(split) == {image_id for image_id, _ in items}
    sides: dict[str, set[str]] = {}
    for image_id, seq_id in items:
        if seq_id is not None:
            sides.setdefault(seq_id, set()).add(split[image_id])
    assert all(len(s) == 1 for s in sides.values()), sides
    n_val = sum(side == "val" for side in split.values())
    # At least round(0.2 * 60) = 12; groups stop going to val once 12 are there, so the overshoot
    # is below the largest group (6 frames).
    assert 12 <= n_val <= 12 + 5
    assert set(split.values()) == {"train", "val"}


def test_split_is_deterministic_for_a_seed_and_ignores_input_order():
    items = _items()
    first = split_by_sequence(items, 0.25, seed=7)
    shuffled = items[:]
    random.Random(3).shuffle(shuffled)
    assert split_by_sequence(shuffled, 0.25, seed=7) == first
    assert split_by_sequence(list(reversed(items)), 0.25, seed=7) == first
    assert split_by_sequence(items + items[:5], 0.25, seed=7) == first  # a repeated item changes nothing
    others = [split_by_sequence(items, 0.25, seed=s) for s in range(1, 6)]
    assert any(other != first for other in others)  # the seed matters


def test_split_images_without_a_sequence_are_each_their_own_group():
    items = [(f"img{i:02d}", None) for i in range(10)]
    split = split_by_sequence(items, val_share=0.3, seed=1)
    # Ten groups of one: val stops at exactly round(0.3 * 10) = 3.
    assert sum(side == "val" for side in split.values()) == 3
    # One shared sequence instead: a single group, which stays in train.
    assert set(split_by_sequence([(i, "one") for i, _ in items], 0.3).values()) == {"train"}


def test_split_both_sides_get_a_group_and_zero_means_all_train():
    two = [("a", "s1"), ("b", "s1"), ("c", "s2")]
    for share in (0.01, 0.5, 0.99):
        assert set(split_by_sequence(two, share).values()) == {"train", "val"}, share
    assert set(split_by_sequence(_items(), 0.0).values()) == {"train"}
    assert split_by_sequence([], 0.2) == {}


@pytest.mark.parametrize("share", [1.0, 1.5, -0.1, math.nan])
def test_split_refuses_a_share_outside_0_1(share):
    with pytest.raises(ValueError, match="val_share"):
        split_by_sequence(_items(), share)


def test_split_refuses_an_image_in_two_sequences():
    with pytest.raises(ValueError, match="'a'"):
        split_by_sequence([("a", "s1"), ("a", "s2")])


# --- label lines -------------------------------------------------------------------------------

def test_label_lines_text():
    assert label_lines([(2, 0.25, 0.5, 0.5, 0.25)]) == "2 0.500000 0.625000 0.500000 0.250000\n"
    assert label_lines([(0, 0.0, 0.0, 1.0, 1.0), (1, 0.1, 0.2, 0.3, 0.4)]) == (
        "0 0.500000 0.500000 1.000000 1.000000\n1 0.250000 0.400000 0.300000 0.400000\n")
    assert label_lines([]) == ""  # a negative image: an empty label file
    # A box overhanging the right and top edges is clipped to the image first.
    assert label_lines([(0, 0.9, -0.01, 0.2, 0.5)]) == "0 0.950000 0.245000 0.100000 0.490000\n"


def test_label_lines_round_trip_including_edges():
    rng = np.random.default_rng(5)
    boxes = [
        (0, 0.0, 0.0, 1.0, 1.0),  # the whole image
        (1, 0.0, 0.0, 0.1234565, 0.3333333),  # top-left corner, centre rounding pulls off the edge
        (2, 0.8765435, 0.6666667, 0.1234565, 0.3333333),  # bottom-right corner
        (3, 0.0, 0.5, 1.0, 0.5),
        (10, 0.552, 0.378, 0.082, 0.142),  # a MegaDetector box
    ]
    for _ in range(300):
        x, y = rng.uniform(0, 0.9, 2)
        w, h = rng.uniform(1e-4, 1 - x), rng.uniform(1e-4, 1 - y)
        boxes.append((int(rng.integers(0, 50)), float(x), float(y), float(w), float(h)))
    back = parse_label_lines(label_lines(boxes))
    assert len(back) == len(boxes)
    for want, got in zip(boxes, back):
        assert got[0] == want[0]
        assert got[1:] == pytest.approx(want[1:], abs=1e-6)
        x, y, w, h = got[1:]
        assert x >= 0 and y >= 0 and x + w <= 1 and y + h <= 1  # still inside after rounding
    assert back[0] == (0, 0.0, 0.0, 1.0, 1.0)
    assert parse_label_lines("") == []


@pytest.mark.parametrize("box", [(0, 1.2, 0.1, 0.1, 0.1), (0, 0.1, 0.1, 0.0, 0.1), (-1, 0.1, 0.1, 0.1, 0.1),
                                 (0, math.nan, 0.1, 0.1, 0.1), (True, 0.1, 0.1, 0.1, 0.1)])
def test_label_lines_refuses_a_bad_box(box):
    with pytest.raises(ValueError):
        label_lines([box])


@pytest.mark.parametrize("bad, reason", [
    ("1 0.5 0.5 0.1", "expected 5 fields"),
    ("x 0.5 0.5 0.1 0.1", "class 'x'"),
    ("1.5 0.5 0.5 0.1 0.1", "class '1.5'"),
    ("-1 0.5 0.5 0.1 0.1", "class '-1'"),
    ("1 0.5 1.5 0.1 0.1", r"\[0, 1\]"),
    ("1 0.5 nan 0.1 0.1", r"\[0, 1\]"),
    ("1 0.5 0.5 zero 0.1", "could not convert"),
    ("1 0.5 0.5 0 0.1", "above 0"),
])
def test_parse_label_lines_names_the_bad_line(bad, reason):
    text = f"0 0.5 0.5 0.2 0.2\n\n{bad}\n2 0.5 0.5 0.2 0.2\n"  # the blank line 2 is skipped, but counted
    with pytest.raises(ValueError, match=rf"^label line 3: .*{reason}"):
        parse_label_lines(text)


# --- data.yaml and safe names ------------------------------------------------------------------

def test_data_yaml_content():
    text = data_yaml(["elephant", "red fox"])
    assert text == ("# ultralytics dataset; the root is the folder holding this file\n"
                    "train: images/train\nval: images/val\nnc: 2\nnames:\n"
                    '  0: "elephant"\n  1: "red fox"\n')
    assert yaml.safe_load(text) == {"train": "images/train", "val": "images/val", "nc": 2,
                                    "names": {0: "elephant", 1: "red fox"}}
    assert "path" not in yaml.safe_load(text)  # ultralytics then uses the folder of data.yaml
    assert yaml.safe_load(data_yaml([])) == {"train": "images/train", "val": "images/val", "nc": 0, "names": {}}


def test_data_yaml_names_survive_yaml_whatever_they_hold():
    names = ["yes", "null", "1: x", "- item", "# not a comment", 'say "hi"', "back\\slash", "tab\tname",
             "new\nline", "chevreuil européen", "🦊 fox", "line\u2028sep", "nel\x85x", "del\x7f", "bom\ufeff", "",
             "  padded  ", "{a: b}", "&anchor", "*alias", "%percent", "'single'"]
    loaded = yaml.safe_load(data_yaml(names))
    assert loaded["names"] == dict(enumerate(names))
    assert loaded["nc"] == len(names)
    assert "chevreuil européen" in data_yaml(names)  # readable, not \u-escaped


def test_safe_name():
    assert safe_name("Red fox") == "red_fox"
    assert safe_name("  Red   Fox! ") == "red_fox"
    assert safe_name("Chevreuil européen") == "chevreuil_europeen"
    assert safe_name("../../etc/passwd") == "etc_passwd"
    assert safe_name("canis-lupus_2") == "canis-lupus_2"
    assert safe_name("CON") == "con_"  # reserved on Windows
    assert safe_name("") == "unlabelled"
    assert safe_name("🦊") == "unlabelled"
    assert safe_name("a" * 200) == "a" * 64


def test_safe_names_gives_colliding_labels_a_hash_suffix():
    labels = ["Red fox", "red_fox", "Elephant", "Red fox"]
    names = safe_names(labels)
    suffix = {label: hashlib.sha256(label.encode()).hexdigest()[:6] for label in labels}
    assert names == {"Elephant": "elephant", "Red fox": f"red_fox-{suffix['Red fox']}",
                     "red_fox": f"red_fox-{suffix['red_fox']}"}
    assert safe_names(list(reversed(labels))) == names  # order does not matter
    assert all(re.fullmatch(r"[a-z0-9_-]+", name) for name in names.values())
    empty = safe_names(["", "🦊", "unlabelled"])
    assert len(set(empty.values())) == 3 and all(n.startswith("unlabelled-") for n in empty.values())
    # A suffixed name that equals another label's plain name is resolved with a longer hash.
    tricky = safe_names(["Red fox", "red_fox", f"red_fox-{suffix['Red fox']}"])
    assert len(set(tricky.values())) == 3


# --- crops -------------------------------------------------------------------------------------

ELEPHANT_BOX = (0.552, 0.378, 0.082, 0.142)  # MegaDetector's first box in md_results.json
EDGE_BOX = (0.93, 0.42, 0.07, 0.14)  # its fourth, touching the right edge


def _upright(name: str) -> Image.Image:
    image, size = load_upright_rgb(IMAGES / name, max_side=FULL)
    assert image.size == size  # full resolution
    return image


def test_crop_of_the_exif_rotated_image_is_upright_and_matches_the_original():
    with Image.open(IMAGES / "african_elephants_with_exif_orientation.jpg") as stored:
        assert stored.size == (1536, 2048) and stored.getexif().get(0x0112) == 6  # stored sideways
    rotated = _upright("african_elephants_with_exif_orientation.jpg")
    original = _upright("african_elephants.jpg")
    assert rotated.size == (2048, 1536) == original.size  # the stored size with its axes swapped

    # By hand, on 2048x1536 with a 10% margin: left (0.552 - 0.0082) * 2048 = 1113.70 -> 1113,
    # right (0.634 + 0.0082) * 2048 = 1315.23 -> 1316, top 0.3638 * 1536 = 558.80 -> 558,
    # bottom 0.5342 * 1536 = 820.53 -> 821.
    pixels = crop_pixels(rotated.size, ELEPHANT_BOX, 0.1)
    assert pixels == (1113, 558, 1316, 821)
    crop = crop_box(rotated, ELEPHANT_BOX, margin=0.1, min_size=32)
    assert crop is not None and crop.size == (203, 263)
    same = crop_box(original, ELEPHANT_BOX, margin=0.1, min_size=32)
    assert same is not None and same.size == crop.size
    # The two files are the same scene, JPEG-encoded apart: measured mean absolute difference
    # 1.56 (1.73 over the whole frame), while the crop from the stored pixels turned the wrong way
    # is about 55 off. A tolerance of 4 passes JPEG noise and fails any orientation mistake.
    difference = np.abs(np.asarray(crop, float) - np.asarray(same, float)).mean()
    assert difference < 4.0, difference
    with Image.open(IMAGES / "african_elephants_with_exif_orientation.jpg") as stored:
        wrong_way = stored.convert("RGB").transpose(Image.Transpose.ROTATE_90)
    wrong = crop_box(wrong_way, ELEPHANT_BOX)
    assert np.abs(np.asarray(wrong, float) - np.asarray(same, float)).mean() > 30


def _grid(width: int, height: int) -> Image.Image:
    """Red channel = x mod 256, green = y mod 256: a crop's pixels tell where they came from."""
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    return Image.fromarray(np.dstack([xs % 256, ys % 256, np.zeros_like(xs)]).astype(np.uint8), "RGB")


def test_crop_pixels_floor_ceil_and_float_noise():
    # (0.1 + 0.2) * 1000 is 300.00000000000006: snapped, not ceiled to 301.
    assert crop_pixels((1000, 1000), (0.1, 0.1, 0.2, 0.2), 0.0) == (100, 100, 300, 300)
    # 100.5 -> 100 (floor), 300.5 -> 301 (ceil), 150.05 -> 151.
    assert crop_pixels((1000, 500), (0.1005, 0.2, 0.2, 0.1001), 0.0) == (100, 100, 301, 151)
    assert crop_pixels((1000, 500), (0.2, 0.2, 0.5, 0.4), 0.1) == (150, 80, 750, 320)  # grows 50 x 20 px a side
    image = _grid(1000, 500)
    crop = crop_box(image, (0.2, 0.2, 0.5, 0.4), margin=0.1)
    assert crop is not None and crop.size == (600, 240)
    assert crop.getpixel((0, 0)) == (150, 80, 0)
    assert crop.getpixel((599, 239)) == (749 % 256, 319 % 256, 0)  # the last pixel is (749, 319)


def test_crop_margin_is_clipped_at_the_image_edge():
    assert crop_pixels((1000, 500), (0.0, 0.0, 0.5, 0.5), 0.2) == (0, 0, 600, 300)
    assert crop_pixels((1000, 500), (0.9, 0.9, 0.1, 0.1), 0.5) == (850, 425, 1000, 500)
    assert crop_pixels((1000, 500), (-0.1, 0.5, 1.3, 0.6), 0.1) == (0, 220, 1000, 500)  # overhangs both ways
    # The real edge box: right edge at 0.93 + 0.07 = 1.0, its margin cut at 2048.
    upright = _upright("african_elephants_with_exif_orientation.jpg")
    assert crop_pixels(upright.size, EDGE_BOX, 0.1) == (1890, 623, 2048, 882)
    crop = crop_box(upright, EDGE_BOX, margin=0.1)
    assert crop is not None and crop.size == (158, 259)


def test_crop_smaller_than_min_size_is_none():
    image = _grid(1000, 500)
    assert crop_box(image, (0.5, 0.5, 0.031, 0.2), min_size=32) is None  # 31 px wide
    assert crop_box(image, (0.5, 0.5, 0.2, 0.062), min_size=32) is None  # 31 px high
    crop = crop_box(image, (0.5, 0.5, 0.032, 0.064), margin=0.0, min_size=32)  # exactly 32 x 32
    assert crop is not None and crop.size == (32, 32)
    # The margin does not count: 31 px plus 10% a side is 37 px, still refused.
    assert crop_box(image, (0.5, 0.5, 0.031, 0.2), margin=0.1, min_size=32) is None
    # Only the part inside the image counts: 0.99 + 0.1 leaves 10 px; with the margin the crop
    # is 980..1000 (10 px a side, cut at the edge) by 240..360.
    assert crop_box(image, (0.99, 0.5, 0.1, 0.2), min_size=10).size == (20, 120)
    assert crop_box(image, (0.99, 0.5, 0.1, 0.2), min_size=32) is None
    assert crop_box(image, (1.2, 0.5, 0.1, 0.2), min_size=0) is None  # wholly outside
    with pytest.raises(ValueError, match="margin"):
        crop_box(image, (0.5, 0.5, 0.2, 0.2), margin=-0.1)


def test_encode_crop_gives_identical_bytes_for_identical_input():
    first = encode_crop(crop_box(_upright("african_elephants_with_exif_orientation.jpg"), ELEPHANT_BOX))
    again = encode_crop(crop_box(_upright("african_elephants_with_exif_orientation.jpg"), ELEPHANT_BOX))
    assert first == again  # a fresh decode and crop: a rerun writes nothing new
    assert first[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(first)) as decoded:
        assert decoded.format == "JPEG" and decoded.size == (203, 263)
        assert decoded.getexif().get(0x0112) is None  # no orientation tag: the pixels are upright
    other = encode_crop(crop_box(_upright("african_elephants_with_exif_orientation.jpg"), EDGE_BOX))
    assert other != first
