"""Decode images and bring them to the square RGB crops an autoencoder encodes.

:func:`load_image` turns a path, the bytes of a file or a PIL image into an RGB
PIL image, whatever its mode, orientation or transparency; files that cannot
be decoded raise :class:`ImageDecodeError`, which an encode run reports and
skips. :class:`Preprocessing` is the whole recipe (decode, resize, centre
crop) as a small frozen value that is recorded in a store's metadata.
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import asdict, dataclass, fields
from typing import Literal

import numpy as np
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from latentstore._filesystem import read_regular
from latentstore.encoding.sources import MAX_IMAGE_FILE_BYTES
from latentstore.errors import FormatError, ImageDecodeError, SourceError, UnreadableFileError
from latentstore.format import BucketTable

__all__ = [
    "BucketedPreprocessing",
    "ImageDecodeError",
    "ImageInput",
    "Preprocessing",
    "center_crop_arr",
    "load_image",
    "pixels_to_unit",
    "resize_center_crop",
]

ImageInput = str | os.PathLike | bytes | bytearray | memoryview | Image.Image

#: Decoded pixels an image may have (Pillow refuses above 2 x 89 M on its own).
MAX_DECODED_PIXELS = 1 << 28
#: How many times the crop's area a resize may produce: aspect ratios up to 64:1.
MAX_RESIZE_AREA = 64

# Transparent pixels are composited on white: black would turn the "empty"
# background of a cut-out into the darkest colour of the image.
_BACKGROUND = (255, 255, 255, 255)

# What Pillow's decoders raise for a damaged or unsupported file. Anything in
# this list means "this file cannot be used", never a bug in the caller.
_DECODE_ERRORS = (
    OSError,  # includes UnidentifiedImageError and "image file is truncated"
    ValueError,
    SyntaxError,
    EOFError,
    IndexError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
)

_RESIZE_MODES = ("adm", "bicubic")

# (left, upper, right, lower) in pixels, as Image.resize takes it.
_Box = tuple[float, float, float, float]

# EXIF orientation tag value -> the transpose that undoes it (as exif_transpose).
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def load_image(source: ImageInput, *, draft: int | None = None) -> Image.Image:
    """Decode ``source`` into an RGB image.

    ``source`` is a file path, the bytes of an image file or a PIL image. The
    result has EXIF orientation applied; transparent pixels (RGBA, LA, PA,
    palette or ``transparency`` key) are composited on white; 16-bit grey is
    scaled to 8 bits (``round(v / 257)``); 32-bit integer grey is taken as
    16-bit when it fits 0..65535 and stretched from its min..max otherwise;
    float grey is scaled by 255 when it lies in [0, 1] and stretched from its
    min..max otherwise; CMYK, bilevel and every other Pillow mode go through
    ``Image.convert('RGB')``.

    With ``draft=S`` a JPEG is decoded at 1/2, 1/4 or 1/8 scale by libjpeg
    (much faster for large photos), the largest reduction that keeps both
    sides at least ``S`` pixels, so a later resize to a short side of ``S``
    never upsamples. The last row and column of such an image may stand for
    less than a full reduced pixel; :class:`Preprocessing` accounts for that.
    Other formats ignore ``draft``.

    Raises :class:`ImageDecodeError` (with ``reason``) when the data cannot be
    decoded, including truncated files, and :class:`~latentstore.errors.SourceError`
    when ``PIL.ImageFile.LOAD_TRUNCATED_IMAGES`` is set, because truncated
    files would then decode as partly grey images.
    """
    return _load(source, draft)[0]


def _load(source: ImageInput, draft: int | None) -> tuple[Image.Image, _Box | None]:
    """:func:`load_image`, also returning the region of the image that holds
    the whole picture when JPEG draft mode reduced it (``None`` otherwise)."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        raise SourceError(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is True (set by your code or a library), "
            "so truncated files would decode as partly grey images; set it to False "
            "before encoding"
        )
    if draft is not None and (not isinstance(draft, int) or draft < 1):
        raise ValueError(f"draft must be a positive int or None, got {draft!r}")

    if isinstance(source, Image.Image):
        name, fp = None, None
    elif isinstance(source, (bytes, bytearray, memoryview)):
        name, fp = None, io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        try:
            # Regular files only, within the cap: a FIFO would block Pillow's open forever.
            fp = io.BytesIO(read_regular(name, MAX_IMAGE_FILE_BYTES))
        except UnreadableFileError as e:
            raise ImageDecodeError(e.reason, name) from None
    else:
        raise TypeError(
            f"expected a path, bytes or a PIL image, got {type(source).__name__}"
        )

    try:
        if fp is None:
            return _decode(source, draft, owned=False)
        with Image.open(fp) as img:
            return _decode(img, draft, owned=True)
    except ImageDecodeError as e:  # our own checks: keep the reason, add the name
        raise ImageDecodeError(e.reason, name) from None
    except _DECODE_ERRORS as e:
        raise ImageDecodeError(_reason(e), name) from e


def _reason(e: BaseException) -> str:
    if isinstance(e, UnidentifiedImageError):
        # Pillow's own text repeats the file name (or a BytesIO repr).
        return "not an image format Pillow can identify (empty, mislabelled or unsupported)"
    return str(e) or type(e).__name__


def _decode(
    img: Image.Image, draft: int | None, *, owned: bool
) -> tuple[Image.Image, _Box | None]:
    box = None
    # Draft mode resizes the image object itself, so never a caller's image.
    if draft is not None and owned and img.format == "JPEG":
        reduced = img.draft("RGB", (draft, draft))
        if reduced is not None and reduced[1][2:] != img.size:
            box = reduced[1]
    width, height = img.size
    if width * height > MAX_DECODED_PIXELS:
        raise ImageDecodeError(
            f"{width}x{height} pixels is more than the {MAX_DECODED_PIXELS:,} an image may have here; "
            "downscale it first"
        )
    # Decoding happens here, so truncated or corrupt data fails inside the
    # caller's try block rather than later in a resize.
    img.load()
    method = _ORIENTATIONS.get(img.getexif().get(ExifTags.Base.Orientation, 1))
    if owned:
        ImageOps.exif_transpose(img, in_place=True)
    else:
        img = ImageOps.exif_transpose(img)
    if box is not None and method is not None:
        box = _transpose_box(box, method, img.size)
    return _to_rgb(img), box


def _transpose_box(box: _Box, method: Image.Transpose, new_size: tuple[int, int]) -> _Box:
    """Where ``box`` lands when its image is transposed with ``method``."""
    x0, y0, x1, y1 = box
    T = Image.Transpose
    if method in (T.TRANSPOSE, T.ROTATE_90, T.ROTATE_270, T.TRANSVERSE):
        x0, y0, x1, y1 = y0, x0, y1, x1
    w, h = new_size
    if method in (T.FLIP_LEFT_RIGHT, T.ROTATE_180, T.ROTATE_270, T.TRANSVERSE):
        x0, x1 = w - x1, w - x0
    if method in (T.FLIP_TOP_BOTTOM, T.ROTATE_180, T.ROTATE_90, T.TRANSVERSE):
        y0, y1 = h - y1, h - y0
    return (x0, y0, x1, y1)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        return Image.fromarray(_high_depth_grey_to_uint8(img), "L").convert("RGB")
    if img.has_transparency_data:
        background = Image.new("RGBA", img.size, _BACKGROUND)
        return Image.alpha_composite(background, img.convert("RGBA")).convert("RGB")
    return img.convert("RGB")


def _high_depth_grey_to_uint8(img: Image.Image) -> np.ndarray:
    values = np.asarray(img)
    if img.mode.startswith("I;16"):
        return np.rint(values / 257.0).astype(np.uint8)
    if img.mode == "F" and not np.isfinite(values).all():
        raise ValueError("floating-point image contains NaN or infinity")
    lo, hi = values.min(), values.max()
    if img.mode == "I" and lo >= 0 and hi <= 65535:
        return np.rint(values / 257.0).astype(np.uint8)
    if img.mode == "F" and lo >= 0 and hi <= 1:
        return np.rint(values * 255.0).astype(np.uint8)
    span = float(hi) - float(lo)
    if span == 0:
        return np.zeros(values.shape, np.uint8)
    return np.rint((values - float(lo)) * (255.0 / span)).astype(np.uint8)


def _check_size(image_size: int) -> None:
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")


def _check_resize(size: tuple[int, int], image_size: int, original: tuple[int, int]) -> None:
    """Refuse a resize whose result would dwarf the crop taken from it (an extreme aspect ratio)."""
    if size[0] * size[1] > MAX_RESIZE_AREA * image_size * image_size:
        raise ImageDecodeError(
            f"its aspect ratio ({original[0]}x{original[1]}) is too extreme: a short side of {image_size} "
            f"would need a {size[0]}x{size[1]} resize; crop it to at most {MAX_RESIZE_AREA}:1 first"
        )


def _center_crop(arr: np.ndarray, image_size: int) -> np.ndarray:
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


def center_crop_arr(
    pil_image: Image.Image, image_size: int, *, box: _Box | None = None
) -> np.ndarray:
    """Resize and centre-crop as ADM (guided-diffusion) and DiT do.

    Halve the image with a BOX filter while its short side is at least
    ``2 * image_size``, resize with BICUBIC so the short side is
    ``image_size`` (the long side rounded), then take the centred
    ``image_size`` square. Returns a ``uint8`` array of shape
    ``(image_size, image_size, channels)`` (a view into the resized image).

    ``box`` is the region of ``pil_image`` that holds the picture when it is
    smaller than the image (a JPEG draft decode); sizes are computed from it
    as if the picture had been reduced by BOX halving.
    """
    _check_size(image_size)
    size = pil_image.size if box is None else (int(box[2] - box[0]), int(box[3] - box[1]))
    while min(*size) >= 2 * image_size:
        size = tuple(x // 2 for x in size)
        pil_image = pil_image.resize(size, resample=Image.Resampling.BOX, box=box)
        box = None
    scale = image_size / min(*size)
    size = tuple(round(x * scale) for x in size)
    _check_resize(size, image_size, pil_image.size)
    pil_image = pil_image.resize(size, resample=Image.Resampling.BICUBIC, box=box)
    return _center_crop(np.asarray(pil_image), image_size)


def resize_center_crop(
    pil_image: Image.Image, image_size: int, *, box: _Box | None = None
) -> np.ndarray:
    """One BICUBIC resize to a short side of ``image_size``, then a centred square crop.

    Returns a ``uint8`` array of shape ``(image_size, image_size, channels)``.
    ``box`` is as for :func:`center_crop_arr`.
    """
    _check_size(image_size)
    size = pil_image.size if box is None else (box[2] - box[0], box[3] - box[1])
    scale = image_size / min(*size)
    size = tuple(round(x * scale) for x in size)
    _check_resize(size, image_size, pil_image.size)
    pil_image = pil_image.resize(size, resample=Image.Resampling.BICUBIC, box=box)
    return _center_crop(np.asarray(pil_image), image_size)


@dataclass(frozen=True)
class Preprocessing:
    """How images become the square crops that are encoded.

    ``resolution`` is the side of the crop, ``resize`` is ``'adm'``
    (:func:`center_crop_arr`, the ADM/DiT recipe) or ``'bicubic'``
    (:func:`resize_center_crop`), and ``draft`` lets libjpeg decode large
    JPEGs at a reduced scale first (see :func:`load_image`).

    Calling it on a path, bytes or PIL image returns a C-contiguous ``uint8``
    array of shape ``(resolution, resolution, 3)`` or raises
    :class:`ImageDecodeError`. ``to_dict()`` is what a store records.
    """

    resolution: int = 256
    resize: Literal["adm", "bicubic"] = "adm"
    draft: bool = True

    def __post_init__(self) -> None:
        _check_size(self.resolution)
        if self.resize not in _RESIZE_MODES:
            raise ValueError(f"resize must be one of {_RESIZE_MODES}, got {self.resize!r}")
        if not isinstance(self.draft, bool):
            raise ValueError(f"draft must be a bool, got {self.draft!r}")

    def __call__(self, source: ImageInput) -> np.ndarray:
        image, box = _load(source, self.resolution if self.draft else None)
        crop = center_crop_arr if self.resize == "adm" else resize_center_crop
        return np.ascontiguousarray(crop(image, self.resolution, box=box))

    def prepare(self, source: ImageInput) -> tuple[np.ndarray, int, None]:
        """``(crop, bucket, crop_box)`` as :meth:`BucketedPreprocessing.prepare` gives them: one bucket, no box."""
        return self(source), 0, None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """Rebuild from :meth:`to_dict` output; unknown or invalid entries raise FormatError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise FormatError(
                f"unknown preprocessing settings {unknown}; the store was written by a "
                "newer latentstore, upgrade it to read this store"
            )
        try:
            return cls(**d)
        except ValueError as e:
            raise FormatError(f"invalid preprocessing settings {d}: {e}") from e


@dataclass(frozen=True)
class BucketedPreprocessing:
    """How images become crops of many aspect ratios (SANA's multi-scale rule).

    Each image goes to the bucket of ``table`` whose aspect ratio is nearest
    its own (``BucketTable.nearest``), is resized with BICUBIC to the smallest
    size that covers the bucket's ``h * compression`` by ``w * compression``
    pixels, and is centre-cropped to it: one resize of exactly the cropped
    region, so nothing is computed that is then thrown away. ``draft`` lets
    libjpeg decode large JPEGs at reduced scale first (to at least the largest
    bucket's long side).

    :meth:`prepare` (and calling it) returns ``(pixels (H, W, 3) uint8, bucket,
    crop_box)``, the box as fractions (left, top, right, bottom) of the image's
    width and height after EXIF orientation, so it holds whatever the draft
    scale was; ``Preprocessing.prepare`` answers the same for square crops.
    """

    table: BucketTable
    compression: int
    draft: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.table, BucketTable):
            raise TypeError(f"table must be a latentstore.format.BucketTable, got {type(self.table).__name__}")
        if not isinstance(self.compression, int) or self.compression < 1:
            raise ValueError(f"compression must be a positive int, got {self.compression!r}")
        if not isinstance(self.draft, bool):
            raise ValueError(f"draft must be a bool, got {self.draft!r}")

    def pixel_size(self, bucket: int) -> tuple[int, int]:
        """(height, width) in pixels of ``bucket``."""
        h, w = self.table.shapes[bucket]
        return h * self.compression, w * self.compression

    def __call__(self, source: ImageInput) -> tuple[np.ndarray, int, tuple[float, float, float, float]]:
        longest = max(max(self.pixel_size(b)) for b in range(len(self.table.shapes)))
        image, box = _load(source, longest if self.draft else None)
        left, top, right, bottom = box if box is not None else (0.0, 0.0, float(image.width), float(image.height))
        width, height = right - left, bottom - top
        bucket = self.table.nearest(width, height)
        crop_h, crop_w = self.pixel_size(bucket)
        scale = max(crop_w / width, crop_h / height)  # cover the bucket
        resized_w, resized_h = max(crop_w, round(width * scale)), max(crop_h, round(height * scale))
        _check_resize((resized_w, resized_h), min(crop_h, crop_w), (round(width), round(height)))
        x0, y0 = (resized_w - crop_w) // 2, (resized_h - crop_h) // 2
        sx, sy = width / resized_w, height / resized_h
        region = (left + x0 * sx, top + y0 * sy, left + (x0 + crop_w) * sx, top + (y0 + crop_h) * sy)
        pixels = np.asarray(image.resize((crop_w, crop_h), resample=Image.Resampling.BICUBIC, box=region))
        fractions = (x0 / resized_w, y0 / resized_h, (x0 + crop_w) / resized_w, (y0 + crop_h) / resized_h)
        return np.ascontiguousarray(pixels), bucket, fractions

    def prepare(self, source: ImageInput) -> tuple[np.ndarray, int, tuple[float, float, float, float]]:
        return self(source)

    def to_dict(self) -> dict:
        return {"buckets": self.table.to_dict(), "compression": self.compression, "draft": self.draft}


def preprocessing_from_dict(d: dict) -> Preprocessing | BucketedPreprocessing:
    """The preprocessing a store records (``encoder.preprocessing``): square or bucketed."""
    if isinstance(d, dict) and "buckets" in d:
        unknown = sorted(set(d) - {"buckets", "compression", "draft"})
        if unknown:
            raise FormatError(f"unknown preprocessing settings {unknown}; upgrade latentstore to read this store")
        try:
            return BucketedPreprocessing(BucketTable.from_dict(d["buckets"]), d.get("compression"), d.get("draft", True))
        except (TypeError, ValueError) as e:
            raise FormatError(f"invalid preprocessing settings {d}: {e}") from e
    return Preprocessing.from_dict(d)


def pixels_to_unit(x: np.ndarray) -> np.ndarray:
    """Map ``uint8`` pixels to float32 in [-1, 1] as ``x / 127.5 - 1``.

    The numpy reference for what an encoder backend does on its device.
    """
    x = np.asarray(x)
    if x.dtype != np.uint8:
        raise TypeError(f"expected uint8 pixels, got {x.dtype}")
    return x.astype(np.float32) / np.float32(127.5) - np.float32(1.0)


#: ``encode --store-images`` formats: name -> (Pillow format, media type, default quality).
CROP_FORMATS = {"jpeg": ("JPEG", "image/jpeg", 95), "png": ("PNG", "image/png", None), "webp": ("WEBP", "image/webp", 95)}
#: The column that holds the stored crops.
IMAGE_COLUMN = "image"


@dataclass(frozen=True)
class StoredCrops:
    """How the preprocessed crops are kept beside their latents: ``"jpeg:95"``, ``"png"``, ``"webp:90"``.

    The crop is exactly what the autoencoder encoded (after resize and
    centre crop), so a training recipe that needs pixels beside the latent
    (REPA) or ``decode --compare`` gets them without the source images.
    """

    format: str = "jpeg"
    quality: int | None = 95

    @classmethod
    def parse(cls, spec: str) -> StoredCrops:
        name, _, quality = str(spec).partition(":")
        name = name.lower()
        if name not in CROP_FORMATS:
            raise SourceError(f"--store-images takes {', '.join(CROP_FORMATS)} (with ':QUALITY' for jpeg/webp), got {spec!r}")
        default = CROP_FORMATS[name][2]
        if not quality:
            return cls(name, default)
        if default is None or not quality.isdigit() or not 1 <= int(quality) <= 100:
            raise SourceError(f"the quality in {spec!r} must be an integer 1-100, and only jpeg and webp take one")
        return cls(name, int(quality))

    @property
    def media_type(self) -> str:
        return CROP_FORMATS[self.format][1]

    def __str__(self) -> str:
        return self.format if self.quality is None else f"{self.format}:{self.quality}"

    def encode(self, pixels: np.ndarray) -> bytes:
        """The file bytes of one (H, W, 3) uint8 crop."""
        buffer = io.BytesIO()
        options = {} if self.quality is None else {"quality": self.quality}
        Image.fromarray(pixels).save(buffer, CROP_FORMATS[self.format][0], **options)
        return buffer.getvalue()
