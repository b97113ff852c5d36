"""EXIF capture times and the sequences built from them."""
from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from hitl.select.sequences import build_sequences, read_capture_time

from .helpers import examples

SHARED = Path(os.environ.get("HITL_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared")) / "camera_traps"
IMAGES = SHARED / "images"

T0 = datetime(2021, 6, 1, 4, 30, 0)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def write_jpeg(path: Path, original: str | None = None, digitized: str | None = None,
               ifd0: str | None = None) -> Path:
    """A small JPEG with the given EXIF date-time tags (None leaves a tag out)."""
    exif = Image.Exif()
    if original is not None or digitized is not None:
        sub = exif.get_ifd(0x8769)
        if original is not None:
            sub[0x9003] = original
        if digitized is not None:
            sub[0x9004] = digitized
    if ifd0 is not None:
        exif[0x0132] = ifd0
    Image.new("RGB", (32, 24), (90, 120, 60)).save(path, "JPEG", exif=exif)
    return path


# ----------------------------------------------------------------------------- read_capture_time


def test_reads_datetime_original(tmp_path: Path) -> None:
    path = write_jpeg(tmp_path / "a.jpg", original="2021:03:04 05:06:07",
                      digitized="2021:03:04 05:06:08", ifd0="2022:01:01 00:00:00")
    assert read_capture_time(path) == datetime(2021, 3, 4, 5, 6, 7)
    assert read_capture_time(str(path)) == datetime(2021, 3, 4, 5, 6, 7)


def test_falls_back_to_digitized_then_ifd0(tmp_path: Path) -> None:
    digitized = write_jpeg(tmp_path / "d.jpg", digitized="2020:12:31 23:59:58", ifd0="2022:01:01 00:00:00")
    assert read_capture_time(digitized) == datetime(2020, 12, 31, 23, 59, 58)
    ifd0 = write_jpeg(tmp_path / "i.jpg", ifd0="2019:07:08 09:10:11")
    assert read_capture_time(ifd0) == datetime(2019, 7, 8, 9, 10, 11)


@pytest.mark.parametrize("bad", ["0000:00:00 00:00:00", "    :  :     :  :  ", "", "garbage",
                                 "2021:13:01 00:00:00", "2021:02:30 10:00:00", "2021:01:01 25:00:00",
                                 "2021:01:01", "2021:01:01 10:00:00 and more"])
def test_malformed_time_falls_through(tmp_path: Path, bad: str) -> None:
    only_bad = write_jpeg(tmp_path / "bad.jpg", original=bad)
    assert read_capture_time(only_bad) is None
    with_fallback = write_jpeg(tmp_path / "fb.jpg", original=bad, ifd0="2018:05:06 07:08:09")
    assert read_capture_time(with_fallback) == datetime(2018, 5, 6, 7, 8, 9)


@pytest.mark.parametrize("text, expected", [
    ("2021:03:04 05:06:07\x00", datetime(2021, 3, 4, 5, 6, 7)),  # NUL terminated
    (" 2021:03:04 05:06:07 ", datetime(2021, 3, 4, 5, 6, 7)),
    ("2021-03-04 05:06:07", datetime(2021, 3, 4, 5, 6, 7)),
    ("2021-03-04T05:06:07", datetime(2021, 3, 4, 5, 6, 7)),
    ("2021:03:04 05:06:07.250", datetime(2021, 3, 4, 5, 6, 7)),  # fraction dropped
])
def test_time_variants(tmp_path: Path, text: str, expected: datetime) -> None:
    assert read_capture_time(write_jpeg(tmp_path / "v.jpg", original=text)) == expected


def test_no_exif(tmp_path: Path) -> None:
    path = tmp_path / "plain.jpg"
    Image.new("RGB", (16, 16)).save(path, "JPEG")
    assert read_capture_time(path) is None
    png = tmp_path / "plain.png"
    Image.new("RGB", (16, 16)).save(png, "PNG")
    assert read_capture_time(png) is None


def test_truncated_header(tmp_path: Path) -> None:
    whole = write_jpeg(tmp_path / "whole.jpg", original="2021:03:04 05:06:07")
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[:40])  # cut inside the EXIF segment
    assert read_capture_time(cut) is None


@pytest.mark.parametrize("content", [b"", b"not an image at all\n", b"\xff\xd8\xff", b"%PDF-1.4\n"])
def test_non_image_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "x.jpg"
    path.write_bytes(content)
    assert read_capture_time(path) is None


def test_missing_file_and_directory(tmp_path: Path) -> None:
    assert read_capture_time(tmp_path / "nope.jpg") is None
    assert read_capture_time(tmp_path) is None


def test_reads_header_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_jpeg(tmp_path / "a.jpg", original="2021:03:04 05:06:07")

    def no_decode(self):  # noqa: ANN001
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with Image.open(path) as image, pytest.raises(AssertionError):
        image.load()  # the trap is armed: decoding pixels would be noticed
    assert read_capture_time(path) == datetime(2021, 3, 4, 5, 6, 7)


def test_real_images() -> None:
    assert read_capture_time(IMAGES / "african_elephants.jpg") == datetime(2010, 8, 4, 8, 43, 15)
    # DateTimeOriginal only, inside the Exif IFD (no IFD0 DateTime, no DateTimeDigitized)
    assert read_capture_time(IMAGES / "ocelot.jpg") == datetime(2006, 2, 10, 17, 6, 43)
    # the greyscale copy lost its EXIF
    assert read_capture_time(IMAGES / "african_elephants_bw.jpg") is None
    # truncated at 600,000 bytes: the header, and so the time, is intact
    assert read_capture_time(IMAGES / "african_elephants_truncated_file.jpg") == datetime(2010, 8, 4, 8, 43, 15)


# ----------------------------------------------------------------------------- build_sequences


def test_gap_rule() -> None:
    result = build_sequences([("cam1/a.jpg", at(0)), ("cam1/b.jpg", at(59)), ("cam1/c.jpg", at(120))])
    assert result["cam1/a.jpg"][0] == result["cam1/b.jpg"][0]   # 59 s: same sequence
    assert result["cam1/c.jpg"][0] != result["cam1/b.jpg"][0]   # 61 s: new sequence
    assert result == {
        "cam1/a.jpg": ("exif:cam1/0000", 0, 2),
        "cam1/b.jpg": ("exif:cam1/0000", 1, 2),
        "cam1/c.jpg": ("exif:cam1/0001", 0, 1),
    }


def test_gap_exactly_at_limit_stays_and_custom_gap() -> None:
    items = [("c/a.jpg", at(0)), ("c/b.jpg", at(60))]
    assert build_sequences(items)["c/b.jpg"] == ("exif:c/0000", 1, 2)
    assert build_sequences(items, gap_seconds=59.5)["c/b.jpg"] == ("exif:c/0001", 0, 1)
    assert build_sequences(items, gap_seconds=0)["c/b.jpg"][0] == "exif:c/0001"


def test_gap_is_to_previous_image_not_sequence_start() -> None:
    items = [(f"cam/{i}.jpg", at(50 * i)) for i in range(5)]  # 200 s end to end, 50 s steps
    result = build_sequences(items)
    assert {v[0] for v in result.values()} == {"exif:cam/0000"}
    assert [result[f"cam/{i}.jpg"][1:] for i in range(5)] == [(i, 5) for i in range(5)]


def test_cameras_are_separate() -> None:
    items = [("site/cam1/a.jpg", at(0)), ("site/cam2/a.jpg", at(1)), ("site/cam1/b.jpg", at(2)),
             ("root.jpg", at(0)), ("root2.jpg", at(30))]
    result = build_sequences(items)
    assert result["site/cam1/a.jpg"] == ("exif:site/cam1/0000", 0, 2)
    assert result["site/cam1/b.jpg"] == ("exif:site/cam1/0000", 1, 2)
    assert result["site/cam2/a.jpg"] == ("exif:site/cam2/0000", 0, 1)
    # images at the collection root form their own camera
    assert result["root.jpg"] == ("exif:0000", 0, 2)
    assert result["root2.jpg"] == ("exif:0000", 1, 2)


def test_images_without_time_are_their_own_sequence() -> None:
    items = [("cam1/IMG_1.JPG", at(0)), ("cam1/IMG_9.JPG", None), ("cam1/IMG_2.JPG", at(5)),
             ("IMG_X.JPG", None)]
    result = build_sequences(items)
    assert len(result) == 4  # never dropped
    assert result["cam1/IMG_9.JPG"] == ("exif:cam1/IMG_9.JPG", 0, 1)
    assert result["IMG_X.JPG"] == ("exif:IMG_X.JPG", 0, 1)
    assert result["cam1/IMG_1.JPG"] == ("exif:cam1/0000", 0, 2)
    assert result["cam1/IMG_2.JPG"] == ("exif:cam1/0000", 1, 2)


def test_frame_numbers_follow_time_then_name() -> None:
    # a burst within one second: same time, so the name decides
    items = [("c/IMG_3.JPG", at(1)), ("c/IMG_2.JPG", at(1)), ("c/IMG_1.JPG", at(1)), ("c/IMG_0.JPG", at(0.5))]
    result = build_sequences(items)
    assert [result[f"c/IMG_{i}.JPG"][1] for i in range(4)] == [0, 1, 2, 3]
    assert {v[2] for v in result.values()} == {4}


def test_sequence_ids_are_padded_and_ordered() -> None:
    items = [(f"c/{i:05d}.jpg", at(100 * i)) for i in range(12)]
    result = build_sequences(items)
    ids = [result[f"c/{i:05d}.jpg"][0] for i in range(12)]
    assert ids[0] == "exif:c/0000" and ids[11] == "exif:c/0011"
    assert ids == sorted(ids) and len(set(ids)) == 12
    many = build_sequences([(f"d/{i}.jpg", at(100 * i)) for i in range(10001)])
    assert many["d/0.jpg"][0] == "exif:d/00000"
    assert many["d/10000.jpg"][0] == "exif:d/10000"


def test_untimed_name_never_clashes_with_running_index() -> None:
    result = build_sequences([("cam1/a.jpg", at(0)), ("cam1/0000", None), ("0000", None), ("b.jpg", at(0))])
    assert result["cam1/a.jpg"][0] == "exif:cam1/0000"
    assert result["b.jpg"][0] == "exif:0000"
    seq_ids = [v[0] for v in result.values()]
    assert len(set(seq_ids)) == 4
    assert result["cam1/0000"][0].startswith("exif:cam1/0000")


def test_duplicate_image_keeps_earliest_time() -> None:
    a = build_sequences([("c/x.jpg", at(500)), ("c/y.jpg", at(0)), ("c/x.jpg", at(10)), ("c/x.jpg", None)])
    b = build_sequences([("c/x.jpg", None), ("c/x.jpg", at(10)), ("c/y.jpg", at(0)), ("c/x.jpg", at(500))])
    assert a == b == {"c/y.jpg": ("exif:c/0000", 0, 2), "c/x.jpg": ("exif:c/0000", 1, 2)}


def test_empty_and_bad_gap() -> None:
    assert build_sequences([]) == {}
    with pytest.raises(ValueError):
        build_sequences([("a.jpg", at(0))], gap_seconds=-1)
    with pytest.raises(ValueError):
        build_sequences([("a.jpg", at(0))], gap_seconds=float("nan"))


def test_accepts_any_iterable() -> None:
    result = build_sequences(((f"c/{i}.jpg", at(i)) for i in range(3)), gap_seconds=10)
    assert {v for v in result.values()} == {("exif:c/0000", i, 3) for i in range(3)}


image_ids = st.tuples(st.sampled_from(["", "cam1", "cam2", "site/cam1"]),
                      st.text("abcXYZ019_.", min_size=1, max_size=6)).map(
    lambda t: f"{t[0]}/{t[1]}.jpg" if t[0] else f"{t[1]}.jpg")
times = st.one_of(st.none(), st.integers(0, 600).map(at))


@settings(max_examples=examples(200), deadline=None)
@given(st.dictionaries(image_ids, times, max_size=25), st.randoms(use_true_random=False),
       st.sampled_from([0, 30, 60, 600]))
def test_order_does_not_matter_and_invariants_hold(data: dict, rnd, gap: int) -> None:
    items = list(data.items())
    shuffled = items[:]
    rnd.shuffle(shuffled)
    result = build_sequences(items, gap)
    assert build_sequences(shuffled, gap) == result
    assert result.keys() == data.keys()

    members: dict[str, list[tuple[int, str]]] = {}
    for image_id, (seq_id, frame, count) in result.items():
        assert seq_id.startswith("exif:")
        members.setdefault(seq_id, []).append((frame, image_id))
    for seq_id, frames in members.items():
        frames.sort()
        # frames are 0..n-1 and every member agrees on n
        assert [f for f, _ in frames] == list(range(len(frames)))
        assert all(result[i][2] == len(frames) for _, i in frames)
        ordered = [i for _, i in frames]
        # one camera per sequence, time order, no gap above the limit
        assert len({os.path.dirname(i) for i in ordered}) == 1
        if len(ordered) > 1:
            stamps = [data[i] for i in ordered]
            assert None not in stamps
            assert all((b - a).total_seconds() <= gap for a, b in zip(stamps, stamps[1:]))
    for image_id, when in data.items():
        if when is None:
            assert result[image_id][1:] == (0, 1)


def test_end_to_end_from_files(tmp_path: Path) -> None:
    root = tmp_path / "collection"
    (root / "cam1").mkdir(parents=True)
    (root / "cam2").mkdir()
    write_jpeg(root / "cam1" / "IMG_0001.JPG", original="2021:06:01 04:30:00")
    write_jpeg(root / "cam1" / "IMG_0002.JPG", original="2021:06:01 04:30:59")
    write_jpeg(root / "cam1" / "IMG_0003.JPG", original="2021:06:01 04:32:00")
    write_jpeg(root / "cam2" / "IMG_0001.JPG", digitized="2021:06:01 04:30:01")
    (root / "cam2" / "IMG_0002.JPG").write_bytes(b"broken")
    ids = ["cam1/IMG_0001.JPG", "cam1/IMG_0002.JPG", "cam1/IMG_0003.JPG", "cam2/IMG_0001.JPG", "cam2/IMG_0002.JPG"]
    result = build_sequences((i, read_capture_time(root / i)) for i in ids)
    assert result == {
        "cam1/IMG_0001.JPG": ("exif:cam1/0000", 0, 2),
        "cam1/IMG_0002.JPG": ("exif:cam1/0000", 1, 2),
        "cam1/IMG_0003.JPG": ("exif:cam1/0001", 0, 1),
        "cam2/IMG_0001.JPG": ("exif:cam2/0000", 0, 1),
        "cam2/IMG_0002.JPG": ("exif:cam2/IMG_0002.JPG", 0, 1),
    }
