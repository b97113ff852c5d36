"""hitl.imageprep: orientation, modes, sizing, draft decoding, errors, and the real shared images."""
from __future__ import annotations

import builtins
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageOps, JpegImagePlugin

from hitl import imageprep
from hitl.imageprep import ImagePrepError, encode_jpeg, load_upright_rgb, prepare_image

SHARED_IMAGES = (
    Path(os.environ["HITL_SHARED_DIR"]) / "camera_traps" / "images"
    if os.environ.get("HITL_SHARED_DIR")
    else Path(__file__).resolve().parents[2] / "shared" / "camera_traps" / "images"
)


def shared(name: str) -> Path:
    """A real camera-trap image; a missing one is a broken checkout, so fail (never skip)."""
    path = SHARED_IMAGES / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: put shared/ beside the repo or set HITL_SHARED_DIR")
    return path


def as_array(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float32)


def upright_pattern(w: int = 400, h: int = 300) -> np.ndarray:
    """Asymmetric in every direction: four distinct quadrants plus an off-centre white bar."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = (220, 40, 40)
    a[: h // 2, w // 2 :] = (40, 200, 40)
    a[h // 2 :, : w // 2] = (40, 40, 220)
    a[h // 2 :, w // 2 :] = (230, 210, 40)
    a[h // 8 : h // 8 + 20, w // 8 : w // 8 + 120] = 255
    return a


def noise_image(w: int, h: int, seed: int = 0) -> Image.Image:
    """Gradients plus noise: compresses like a photo, cheap to build."""
    rng = np.random.default_rng(seed)
    x = (np.arange(w) * 255 // max(w - 1, 1)).astype(np.uint8)
    y = (np.arange(h) * 255 // max(h - 1, 1)).astype(np.uint8)
    a = np.empty((h, w, 3), np.uint8)
    a[..., 0] = x[None, :]
    a[..., 1] = y[:, None]
    a[..., 2] = x[None, :] // 2 + y[:, None] // 2
    a |= rng.integers(0, 32, (h, w, 1), dtype=np.uint8)
    return Image.fromarray(a)


# Stored pixels for each EXIF orientation, built from the EXIF definition of what the viewer
# must do to show the image upright (numpy rot90 with k=1 is counter-clockwise).
STORED = {
    1: lambda u: u,
    2: lambda u: u[:, ::-1],                      # viewer mirrors horizontally
    3: lambda u: np.rot90(u, 2),                  # viewer rotates 180
    4: lambda u: u[::-1],                         # viewer mirrors vertically
    5: lambda u: u.swapaxes(0, 1),                # viewer transposes (main diagonal)
    6: lambda u: np.rot90(u, 1),                  # viewer rotates 90 clockwise
    7: lambda u: np.rot90(u, 2).swapaxes(0, 1),   # viewer transposes on the anti-diagonal
    8: lambda u: np.rot90(u, -1),                 # viewer rotates 90 counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(STORED))
def test_every_exif_orientation_comes_out_upright(tmp_path, orientation):
    upright = upright_pattern()
    stored = np.ascontiguousarray(STORED[orientation](upright))
    exif = Image.Exif()
    exif[imageprep.EXIF_ORIENTATION] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif)

    prepared = prepare_image(path, max_side=200)
    assert (prepared.width, prepared.height) == (200, 150)
    assert (prepared.source_width, prepared.source_height) == (400, 300)
    got = as_array(prepared.jpeg)
    expected = np.asarray(Image.fromarray(upright).resize((200, 150), Image.Resampling.LANCZOS), np.float32)
    assert np.abs(got - expected).mean() < 6.0, f"orientation {orientation} is not upright"
    # Independent oracle: Pillow's own exif_transpose agrees.
    with Image.open(path) as im:
        pil = np.asarray(ImageOps.exif_transpose(im).convert("RGB").resize((200, 150)), np.float32)
    assert np.abs(got - pil).mean() < 6.0
    # The output carries no orientation tag to be applied a second time.
    with Image.open(io.BytesIO(prepared.jpeg)) as out:
        assert out.getexif().get(imageprep.EXIF_ORIENTATION, 1) == 1


def test_cmyk_jpeg_becomes_rgb_with_right_colours(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("RGB", (64, 48), (200, 30, 30)).convert("CMYK").save(path, quality=95)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    rgb, size = load_upright_rgb(path)
    assert rgb.mode == "RGB" and size == (64, 48)
    r, g, b = np.asarray(rgb, np.float32).reshape(-1, 3).mean(0)
    assert r > 150 and g < 80 and b < 80, "CMYK colours came out inverted or wrong"


def test_cmyk_tiff_becomes_rgb(tmp_path):
    path = tmp_path / "cmyk.tif"
    Image.new("CMYK", (40, 30), (0, 0, 255, 0)).save(path)  # pure yellow ink
    rgb, _ = load_upright_rgb(path)
    assert rgb.mode == "RGB"
    assert rgb.getpixel((5, 5)) == (255, 255, 0)


@pytest.mark.parametrize(
    "mode, make, expected",
    [
        ("L", lambda: Image.new("L", (50, 40), 77), (77, 77, 77)),
        ("1", lambda: Image.new("1", (50, 40), 1), (255, 255, 255)),
        ("P", lambda: Image.new("RGB", (50, 40), (10, 200, 30)).quantize(8), (10, 200, 30)),
        ("RGBA", lambda: Image.new("RGBA", (50, 40), (250, 20, 20, 255)), (250, 20, 20)),
        ("LA", lambda: Image.new("LA", (50, 40), (180, 255)), (180, 180, 180)),
        ("I;16", lambda: Image.new("I;16", (50, 40), 0xFFFF), (255, 255, 255)),
        ("LAB", lambda: Image.new("RGB", (50, 40), (200, 30, 30)).convert("LAB"), (200, 30, 30)),
    ],
)
def test_modes_become_rgb(tmp_path, mode, make, expected):
    im = make()
    assert im.mode == mode
    path = tmp_path / ("x.tif" if mode == "LAB" else "x.png")
    im.save(path)
    rgb, size = load_upright_rgb(path)
    assert rgb.mode == "RGB" and size == (50, 40)
    assert np.allclose(rgb.getpixel((10, 10)), expected, atol=3)


def test_half_scale_16_bit_is_mid_grey_not_clipped_white(tmp_path):
    path = tmp_path / "i16.png"
    Image.new("I;16", (20, 20), 0x8000).save(path)
    rgb, _ = load_upright_rgb(path)
    assert rgb.getpixel((3, 3)) == (128, 128, 128)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_over_grey_not_black(tmp_path, mode):
    rgba = Image.new("RGBA", (60, 40), (0, 0, 0, 0))
    rgba.paste((255, 255, 255, 255), (0, 0, 30, 40))  # left half opaque white
    if mode == "LA":
        im = rgba.convert("LA")
    elif mode == "P":
        im = Image.new("P", (60, 40), 0)
        im.putpalette([0, 0, 0, 255, 255, 255])
        im.paste(1, (0, 0, 30, 40))
        im.info["transparency"] = 0
    else:
        im = rgba
    path = tmp_path / f"{mode}.png"
    im.save(path)
    with Image.open(path) as check:
        assert check.mode == mode
    rgb, _ = load_upright_rgb(path)
    assert rgb.getpixel((5, 20)) == (255, 255, 255)
    assert rgb.getpixel((50, 20)) == imageprep.BACKGROUND


def test_palette_without_transparency_keeps_its_colours(tmp_path):
    path = tmp_path / "p.gif"
    Image.new("RGB", (30, 30), (0, 0, 0)).quantize(4).save(path)
    rgb, _ = load_upright_rgb(path)
    assert rgb.mode == "RGB" and rgb.getpixel((1, 1)) == (0, 0, 0)


def test_never_upscales(tmp_path):
    path = tmp_path / "small.jpg"
    noise_image(300, 200).save(path)
    prepared = prepare_image(path, max_side=768)
    assert (prepared.width, prepared.height) == (300, 200)
    assert (prepared.source_width, prepared.source_height) == (300, 200)


@pytest.mark.parametrize("size, expected", [((2048, 1536), (768, 576)), ((1000, 3000), (256, 768)),
                                            ((1999, 1001), (768, 385)), ((900, 900), (768, 768))])
def test_longest_side_is_max_side_and_aspect_kept(tmp_path, size, expected):
    path = tmp_path / "big.png"
    noise_image(*size).save(path, compress_level=1)
    prepared = prepare_image(path)
    assert (prepared.width, prepared.height) == expected
    assert max(prepared.width, prepared.height) == 768
    assert abs(prepared.width * size[1] / size[0] - prepared.height) <= 1.0


@pytest.mark.parametrize("size, decoded", [((2048, 1536), (1024, 768)), ((4096, 3072), (1024, 768)),
                                           ((1536, 2048), (768, 1024))])
def test_jpeg_draft_decodes_scaled_down_but_not_below_target(tmp_path, monkeypatch, size, decoded):
    path = tmp_path / "big.jpg"
    noise_image(*size).save(path, quality=90)
    seen: list[tuple[int, int]] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, requested):
        result = real_draft(self, mode, requested)
        seen.append(self.size)  # the size libjpeg will decode at
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    rgb, source = load_upright_rgb(path, max_side=768)
    assert seen == [decoded]
    assert source == size
    assert max(rgb.size) == 768
    assert min(decoded) >= min(rgb.size) and max(decoded) >= 768


def test_truncated_jpeg_raises_naming_the_file(tmp_path):
    whole = io.BytesIO()
    noise_image(800, 600).save(whole, "JPEG", quality=90)
    path = tmp_path / "cut.jpg"
    path.write_bytes(whole.getvalue()[: len(whole.getvalue()) * 6 // 10])
    with pytest.raises(ImagePrepError) as info:
        prepare_image(path)
    assert info.value.reason == "truncated or corrupt"
    assert str(path) in str(info.value) and "truncated or corrupt" in str(info.value)
    assert not ImageFile.LOAD_TRUNCATED_IMAGES, "must never be switched on globally"


def test_missing_file(tmp_path):
    path = tmp_path / "nope.jpg"
    with pytest.raises(ImagePrepError) as info:
        prepare_image(path)
    assert info.value.reason == "file missing" and str(path) in str(info.value)


@pytest.mark.parametrize("content", [b"this is not a picture\n", b""])
def test_not_an_image(tmp_path, content):
    path = tmp_path / "notes.jpg"
    path.write_bytes(content)
    with pytest.raises(ImagePrepError) as info:
        prepare_image(path)
    assert info.value.reason == "not an image" and str(path) in str(info.value)


def test_directory_is_unreadable(tmp_path):
    with pytest.raises(ImagePrepError) as info:
        prepare_image(tmp_path)
    assert info.value.reason == "not a regular file"


def test_a_fifo_named_jpg_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "trap.jpg"
    os.mkfifo(fifo)  # open() on it would block until a writer came: the run would hang
    with pytest.raises(ImagePrepError) as info:
        prepare_image(fifo)
    assert info.value.reason == "not a regular file"
    assert imageprep.read_upright_size(fifo) == ("unreadable image (not a regular file)", None)


def test_too_many_pixels_are_refused_from_the_header(tmp_path):
    path = tmp_path / "huge.png"
    Image.new("L", (9000, 6000)).save(path)  # 54 MP, tiny on disk
    with pytest.raises(ImagePrepError) as info:
        prepare_image(path)
    assert info.value.reason == "too many pixels" and "9000x6000" in str(info.value)
    small = prepare_image(path, max_pixels=60_000_000)
    assert small.source_width == 9000


def test_decompression_bomb_has_a_clear_reason(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (200, 200)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 40,000 px > 2 x limit
    with pytest.raises(ImagePrepError) as info:
        prepare_image(path)
    assert info.value.reason == "decompression bomb"


def test_unsupported_mode(tmp_path, monkeypatch):
    path = tmp_path / "lab.tif"
    Image.new("LAB", (20, 20)).save(path)
    monkeypatch.setattr(imageprep, "_DIRECT_RGB", imageprep._DIRECT_RGB - {"LAB"})
    with pytest.raises(ImagePrepError) as info:
        prepare_image(path)
    assert info.value.reason == "unsupported mode" and "LAB" in str(info.value)


def test_jpeg_encoding_quality_size_and_hash(tmp_path):
    path = tmp_path / "photo.jpg"
    noise_image(2048, 1536).save(path, quality=95)
    prepared = prepare_image(path)
    assert prepared.sha256 == hashlib.sha256(prepared.jpeg).hexdigest()
    assert 20_000 < len(prepared.jpeg) < 600_000
    with Image.open(io.BytesIO(prepared.jpeg)) as out:
        assert out.format == "JPEG" and out.mode == "RGB" and out.size == (768, 576)
        assert not out.info.get("progressive") and not out.info.get("progression")
        assert JpegImagePlugin.get_sampling(out) == 2  # 4:2:0
        # libjpeg's quality scaling: luminance DC step 16 * (200 - 2q) / 100 -> 5 at q=85.
        assert out.quantization[0][0] == 5
    low = prepare_image(path, quality=50)
    assert len(low.jpeg) < len(prepared.jpeg)
    # Same input, same bytes: the hash is a stable cache key.
    assert prepare_image(path).sha256 == prepared.sha256


def test_encode_jpeg_accepts_non_rgb():
    data = encode_jpeg(Image.new("L", (10, 10), 9))
    with Image.open(io.BytesIO(data)) as out:
        assert out.mode == "RGB"


def test_no_file_left_open(tmp_path, monkeypatch):
    good, bad = tmp_path / "a.jpg", tmp_path / "b.jpg"
    noise_image(1200, 900).save(good)
    bad.write_bytes(good.read_bytes()[:5000])
    opened = []
    real_open = builtins.open

    def tracking_open(*args, **kwargs):
        f = real_open(*args, **kwargs)
        opened.append(f)
        return f

    monkeypatch.setattr(builtins, "open", tracking_open)
    prepare_image(good)
    with pytest.raises(ImagePrepError):
        prepare_image(bad)
    with pytest.raises(ImagePrepError):
        prepare_image(tmp_path)
    monkeypatch.undo()
    assert len(opened) >= 2, "the spy did not see Pillow open the files"
    assert all(f.closed for f in opened)


# --- the real shared camera-trap images ---------------------------------------------------


def test_real_exif_rotated_elephants_match_the_upright_original():
    rotated = prepare_image(shared("african_elephants_with_exif_orientation.jpg"))
    assert (rotated.source_width, rotated.source_height) == (2048, 1536)
    assert (rotated.width, rotated.height) == (768, 576)
    reference = prepare_image(shared("african_elephants.jpg"))
    assert np.abs(as_array(rotated.jpeg) - as_array(reference.jpeg)).mean() < 6.0


def test_real_cmyk_elephants_are_not_inverted():
    cmyk = as_array(prepare_image(shared("african_elephants_cmyk.jpg")).jpeg)
    reference = as_array(prepare_image(shared("african_elephants.jpg")).jpeg)
    assert np.abs(cmyk - reference).mean() < 8.0
    # An inverted decode would flip the brightness: the means must agree closely.
    assert abs(cmyk.mean() - reference.mean()) < 5.0


def test_real_greyscale_elephants_become_grey_rgb():
    rgb, _ = load_upright_rgb(shared("african_elephants_bw.jpg"))
    r, g, b = (np.asarray(c) for c in rgb.split())
    assert rgb.mode == "RGB" and (r == g).all() and (g == b).all()
    prepared = prepare_image(shared("african_elephants_bw.jpg"))
    a = as_array(prepared.jpeg)
    assert (prepared.width, prepared.height) == (768, 576)
    # JPEG chroma of a grey image is exactly neutral, so the channels decode equal.
    assert np.abs(a[..., 0] - a[..., 1]).max() <= 1 and np.abs(a[..., 1] - a[..., 2]).max() <= 1


def test_real_truncated_elephants_fail_cleanly():
    path = shared("african_elephants_truncated_file.jpg")
    with pytest.raises(ImagePrepError) as info:
        prepare_image(path)
    assert info.value.reason == "truncated or corrupt" and path.name in str(info.value)


def test_a_jpeg_reaches_the_decoder_in_one_piece(tmp_path, monkeypatch):
    # each call into libjpeg gives the interpreter back and takes it again: fed Pillow's default 64 KB
    # at a time, a preparing thread queued behind the sender threads dozens of times per file
    rng = np.random.default_rng(0)
    path = tmp_path / "grain.jpg"
    Image.fromarray(rng.integers(0, 255, (1536, 2048, 3), dtype=np.uint8)).save(path, quality=95)
    calls = []
    real = Image._getdecoder

    class Counting:
        def __init__(self, decoder):
            self._decoder = decoder

        def __getattr__(self, name):
            return getattr(self._decoder, name)

        def decode(self, data):
            calls.append(len(data))
            return self._decoder.decode(data)

    monkeypatch.setattr(Image, "_getdecoder", lambda *args: Counting(real(*args)))
    prepared = prepare_image(path)
    assert path.stat().st_size > 10 * 65536 and (prepared.width, prepared.height) == (768, 576)
    assert len(calls) == 1
