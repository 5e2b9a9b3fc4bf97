import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from latentstore.encoding.preprocess import (
    ImageDecodeError,
    Preprocessing,
    center_crop_arr,
    load_image,
    pixels_to_unit,
    resize_center_crop,
)
from latentstore.errors import FormatError, SourceError
from tests.paths import IMAGES
from tests.paths import PHOTOS as PHOTO_DIR

ODD = sorted((IMAGES / "odd").iterdir())
BROKEN = sorted((IMAGES / "broken").iterdir())
PHOTOS = sorted(PHOTO_DIR.glob("*/*.JPEG"))


def rgb(path):
    return np.asarray(load_image(path)).astype(np.int16)


def mean_abs_diff(a, b):
    return np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).mean()


def encoded(img, fmt="PNG", **kwargs):
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def reference_center_crop_arr(pil_image, image_size):
    # guided-diffusion/image_datasets.py, verbatim but for returning the array.
    while min(*pil_image.size) >= 2 * image_size:
        pil_image = pil_image.resize(tuple(x // 2 for x in pil_image.size), resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    pil_image = pil_image.resize(
        tuple(round(x * scale) for x in pil_image.size), resample=Image.BICUBIC
    )
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


def test_fixture_sets_are_present():
    assert len(ODD) == 15 and len(BROKEN) == 4 and len(PHOTOS) == 16


@pytest.mark.parametrize("path", ODD, ids=lambda p: p.name)
def test_odd_files_load_as_rgb(path):
    with Image.open(path) as raw:
        raw_size = raw.size
    img = load_image(path)
    assert img.mode == "RGB"
    expected = raw_size[::-1] if path.name.startswith("exif_rotated") else raw_size
    assert img.size == expected
    arr = np.asarray(img)
    assert arr.shape == (expected[1], expected[0], 3) and arr.dtype == np.uint8
    assert arr.std() > 10  # a real picture, not a flat fill


@pytest.mark.parametrize(
    ("name", "bound"),
    [
        ("cat.tiff", 0.0),
        ("cmyk_cat.jpg", 2.0),
        ("exif_rotated_cat.jpg", 3.0),  # wrong rotation direction gives > 40
        ("progressive_cat.jpg", 3.0),
        ("cat.webp", 3.0),
        ("cat.gif", 20.0),  # 256-colour dithered palette
    ],
)
def test_cat_variants_match_the_bmp(name, bound):
    assert mean_abs_diff(rgb(IMAGES / "odd" / name), rgb(IMAGES / "odd" / "cat.bmp")) <= bound


def test_exif_orientation_is_applied_not_just_the_size():
    with Image.open(IMAGES / "odd" / "exif_rotated_cat.jpg") as raw:
        unrotated = np.asarray(raw.convert("RGB"))
    cat = rgb(IMAGES / "odd" / "cat.bmp")
    assert mean_abs_diff(rgb(IMAGES / "odd" / "exif_rotated_cat.jpg"), cat) < 3
    # Orientation 6: the stored pixels must be turned 90 degrees clockwise.
    assert mean_abs_diff(np.rot90(unrotated, k=-1), cat) < 3
    assert mean_abs_diff(np.rot90(unrotated, k=1), cat) > 20


def test_sixteen_bit_grey_is_scaled_not_clipped():
    with Image.open(IMAGES / "odd" / "gray16_camera.png") as raw:
        assert raw.mode.startswith("I;16")
        values = np.asarray(raw).astype(np.float64)
    out = rgb(IMAGES / "odd" / "gray16_camera.png")
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 0] == out[..., 2]).all()
    assert out.min() == 0 and out.max() == 255
    assert (out == 255).mean() < 0.01  # clipping would saturate nearly everything
    np.testing.assert_array_equal(out[..., 0], np.rint(values / 257))
    camera = np.asarray(Image.open(PHOTOS[[p.stem for p in PHOTOS].index("camera")]))
    assert mean_abs_diff(out[..., 0], camera) < 3


def test_opaque_rgba_keeps_colours_and_partial_alpha_goes_to_white():
    with Image.open(IMAGES / "odd" / "rgba_horse.png") as raw:
        rgba = np.asarray(raw)
    out = rgb(IMAGES / "odd" / "rgba_horse.png")
    opaque = rgba[..., 3] == 255
    np.testing.assert_array_equal(out[opaque], rgba[opaque][:, :3])
    assert (out[~opaque] == 255).all()


def _transparent(mode):
    """A 4x2 image: left half fully transparent black, right half opaque black."""
    alpha = np.array([[0, 0, 255, 255]] * 2, np.uint8)
    black = np.zeros((2, 4), np.uint8)
    if mode == "RGBA":
        return Image.fromarray(np.dstack([black, black, black, alpha]), "RGBA")
    if mode == "LA":
        return Image.fromarray(np.dstack([black, alpha]), "LA")
    if mode == "PA":
        return Image.fromarray(np.dstack([black, black, black, alpha]), "RGBA").convert("PA")
    if mode == "P":  # palette index 1 is transparent
        img = Image.fromarray((alpha == 0).astype(np.uint8), "P")
        img.putpalette([0, 0, 0, 9, 9, 9])
        img.info["transparency"] = 1
        return img
    raise AssertionError(mode)


@pytest.mark.parametrize(
    ("mode", "via_png"),
    [("RGBA", False), ("LA", False), ("PA", False), ("P", False), ("RGBA", True), ("LA", True), ("P", True)],
)
def test_transparent_pixels_become_white(mode, via_png):
    img = _transparent(mode)
    out = np.asarray(load_image(encoded(img) if via_png else img))
    assert (out[:, :2] == 255).all()
    assert (out[:, 2:] == 0).all()


def test_half_transparent_black_becomes_mid_grey():
    img = Image.new("RGBA", (2, 2), (0, 0, 0, 128))
    out = np.asarray(load_image(img))
    assert np.abs(out.astype(int) - 127).max() <= 1


@pytest.mark.parametrize(
    ("mode", "values", "expected"),
    [
        ("I;16", [0, 257, 32896, 65535], [0, 1, 128, 255]),
        ("I", [0, 257, 32896, 65535], [0, 1, 128, 255]),
        ("I", [-100, 0, 100, 155], [0, 100, 200, 255]),  # outside 0..65535: stretched
        ("F", [0.0, 0.5, 0.25, 1.0], [0, 128, 64, 255]),
        ("F", [-1.0, 0.0, 1.0, 3.0], [0, 64, 128, 255]),
        ("L", [0, 1, 128, 255], [0, 1, 128, 255]),
    ],
)
def test_high_depth_grey_modes(mode, values, expected):
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32, "L": np.uint8}[mode]
    img = Image.fromarray(np.array([values], dtype))
    assert img.mode == mode
    out = np.asarray(load_image(img))
    np.testing.assert_array_equal(out, np.repeat(np.array([expected], np.uint8)[..., None], 3, -1))


def test_float_image_with_nan_is_a_decode_error():
    img = Image.fromarray(np.array([[0.0, np.nan]], np.float32), "F")
    with pytest.raises(ImageDecodeError, match="NaN"):
        load_image(img)


@pytest.mark.parametrize("mode", ["1", "L", "P", "CMYK", "YCbCr", "HSV", "RGB"])
def test_plain_modes_convert_like_pillow(mode):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 256, (5, 7, 3), dtype=np.uint8), "RGB")
    img = base.convert(mode)
    np.testing.assert_array_equal(np.asarray(load_image(img)), np.asarray(img.convert("RGB")))


def test_caller_image_is_not_modified():
    img = Image.fromarray(np.zeros((3, 5, 3), np.uint8), "RGB")
    img.getexif()[0x0112] = 6
    out = load_image(img)
    assert out.size == (3, 5) and img.size == (5, 3)
    jpeg = Image.open(PHOTOS[[p.stem for p in PHOTOS].index("retina")])  # 1411x1411, not loaded yet
    assert load_image(jpeg, draft=256).size == (1411, 1411) and jpeg.size == (1411, 1411)


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.name)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
def test_broken_files_raise_decode_error_with_reason(path, as_bytes):
    with pytest.raises(ImageDecodeError) as info:
        load_image(path.read_bytes() if as_bytes else path)
    err = info.value
    assert isinstance(err, SourceError) and isinstance(err, ValueError)
    assert err.reason and err.reason in str(err)
    assert err.source == (None if as_bytes else str(path))
    assert "0x" not in str(err)  # no BytesIO repr in the message


def test_truncated_file_fails_even_with_draft():
    with pytest.raises(ImageDecodeError, match="truncated"):
        Preprocessing(64)(IMAGES / "broken" / "truncated.jpg")


def test_load_truncated_images_flag_is_refused(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(SourceError, match="LOAD_TRUNCATED_IMAGES") as info:
        load_image(IMAGES / "broken" / "truncated.jpg")
    assert not isinstance(info.value, ImageDecodeError)  # must not be skipped per file


def test_decompression_bomb_is_a_decode_error(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageDecodeError, match="decompression bomb"):
        load_image(PHOTOS[0])


def test_unsupported_source_type():
    with pytest.raises(TypeError, match="path, bytes or a PIL image"):
        load_image(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize("path", PHOTOS[::3] + ODD[-4:], ids=lambda p: p.name)
@pytest.mark.parametrize("size", [64, 256])
def test_center_crop_arr_matches_reference(path, size):
    img = load_image(path)
    out = center_crop_arr(img, size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, reference_center_crop_arr(img, size))


def test_resize_center_crop_is_one_bicubic_resize():
    img = load_image(PHOTOS[0])
    w, h = img.size
    s = 100 / min(w, h)
    full = np.asarray(img.resize((round(w * s), round(h * s)), Image.BICUBIC))
    y, x = (full.shape[0] - 100) // 2, (full.shape[1] - 100) // 2
    np.testing.assert_array_equal(resize_center_crop(img, 100), full[y : y + 100, x : x + 100])


def _thirds(size, vertical):
    """Red, green and blue thirds along the long side."""
    w, h = size
    long = h if vertical else w
    bands = np.zeros((long, 3), np.uint8)
    for k in range(3):
        bands[k * long // 3 : (k + 1) * long // 3, k] = 255
    arr = np.broadcast_to(bands[:, None, :], (h, w, 3)) if vertical else np.broadcast_to(bands[None], (h, w, 3))
    return Image.fromarray(np.ascontiguousarray(arr))


@pytest.mark.parametrize("resize", ["adm", "bicubic"])
@pytest.mark.parametrize(("size", "vertical"), [((2000, 200), False), ((150, 900), True)])
def test_elongated_images_keep_the_centre(resize, size, vertical):
    out = Preprocessing(64, resize)(_thirds(size, vertical))
    assert out.shape == (64, 64, 3)
    assert (out[..., 1] == 255).all() and (out[..., [0, 2]] == 0).all()


@pytest.mark.parametrize("name", ["panorama_2000x200.jpg", "tall_150x900.jpg", "tiny_23x17.png"])
def test_odd_shapes_give_full_crops(name):
    out = Preprocessing(256)(IMAGES / "odd" / name)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, reference_center_crop_arr(load_image(IMAGES / "odd" / name), 256))


@pytest.mark.parametrize("resize", ["adm", "bicubic"])
@pytest.mark.parametrize("resolution", [128, 256])
def test_draft_mode_is_close_to_full_decode(resize, resolution):
    # Measured on these photos: at most 2.1 (adm) and 3.3 (bicubic) levels.
    draft, full = Preprocessing(resolution, resize, True), Preprocessing(resolution, resize, False)
    diffs = []
    for path in PHOTOS:
        a, b = draft(path), full(path)
        assert a.shape == b.shape == (resolution, resolution, 3)
        diffs.append(mean_abs_diff(a, b))
    assert max(diffs) < (2.5 if resize == "adm" else 3.5)
    assert max(diffs) > 0  # draft really changed the decode of some photos


@pytest.mark.parametrize("orientation", range(1, 9))
def test_draft_mode_with_exif_orientation(orientation):
    # 640x427: the draft decode at 1/2 has a half-covered last row, which
    # must land on the right edge after the rotation.
    china = Image.open(PHOTOS[[p.stem for p in PHOTOS].index("china")])
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encoded(china, "JPEG", quality=95, exif=exif)
    draft, full = Preprocessing(128, "adm", True)(data), Preprocessing(128, "adm", False)(data)
    assert mean_abs_diff(draft, full) < 2.5


def test_draft_keeps_short_side_at_least_target():
    big = Image.fromarray(np.full((1030, 2100, 3), 100, np.uint8))
    img = load_image(encoded(big, "JPEG"), draft=256)
    assert img.size == (525, 258)  # reduced by 4, not by 8 (which would give 129 < 256)


def test_preprocessing_round_trips_and_validates():
    p = Preprocessing(128, "bicubic", False)
    assert p.to_dict() == {"resolution": 128, "resize": "bicubic", "draft": False}
    assert Preprocessing.from_dict(p.to_dict()) == p
    assert Preprocessing.from_dict({}) == Preprocessing()
    with pytest.raises(FormatError, match="unknown preprocessing settings"):
        Preprocessing.from_dict({"resolution": 256, "flip": True})
    with pytest.raises(FormatError, match="resize"):
        Preprocessing.from_dict({"resize": "lanczos"})
    with pytest.raises(ValueError, match="positive int"):
        Preprocessing(0)
    with pytest.raises(ValueError, match="draft must be a bool"):
        Preprocessing(draft="yes")


def test_pixels_to_unit():
    x = np.array([0, 1, 127, 128, 255], np.uint8)
    out = pixels_to_unit(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, x.astype(np.float32) / np.float32(127.5) - np.float32(1))
    assert out[0] == -1 and out[-1] == 1
    with pytest.raises(TypeError, match="uint8"):
        pixels_to_unit(x.astype(np.int16))
