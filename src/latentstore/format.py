"""The format of a latent store (versions 1 and 2): names, metadata schema, parsing, validation.

A store is a Zarr v3 group whose attribute ``latentstore`` holds
:class:`StoreMetadata`; its arrays are described in ``docs/format.md``. This
module is the one place that knows the schema: everything else builds and
reads metadata through :meth:`StoreMetadata.from_dict` /
:meth:`StoreMetadata.to_dict` and the array layout through
:class:`ArrayLayout`.
"""

import dataclasses
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from latentstore._version import __version__
from latentstore.errors import FormatError, FormatVersionError

#: The newest version this library reads and writes. Version 2 adds per-sample
#: columns and aspect-ratio buckets; a store is written with the lowest version
#: that describes it, so a store with neither is still version 1 and opens with
#: older readers.
FORMAT_VERSION = 2
ATTRIBUTE_KEY = "latentstore"

LATENTS = "latents"
SCALES = "scales"
LABELS = "labels"
VALID = "valid"
FLIP_LATENTS = "flip/latents"
FLIP_SCALES = "flip/scales"
IDS = "ids"
FAILURES = "failures"
COLUMNS = "columns"
BUCKETS = "buckets"
CROP_BOXES = "crop_boxes"

#: Column kinds: variable-length text (UTF-8) and bytes, or a numeric dtype.
TEXT, BYTES = "text", "bytes"
NUMERIC_KINDS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64")
COLUMN_KINDS = (TEXT, BYTES, *NUMERIC_KINDS)
#: Zarr v3 data type and array-to-bytes codec of the variable-length kinds.
VLEN_TYPES = {TEXT: ("string", "vlen-utf8"), BYTES: ("variable_length_bytes", "vlen-bytes")}
_COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")

#: Target size of one chunk of latents; a writer owns whole chunks.
CHUNK_TARGET_BYTES = 32 << 20
#: ImageNet-1k train, for projected sizes.
IMAGENET_TRAIN_SAMPLES = 1_281_167

SCHEMES = ("absmax", "affine")

#: Caps on what metadata may claim, so that a damaged or hostile store is
#: refused before anything is sized from it. Far above any real dataset:
#: LAION-5B in chunks of 16,384 samples is 0.3 M chunks.
MAX_METADATA_BYTES = 64 << 20
MAX_CHUNKS = 1 << 24
MAX_CLASSES = 1 << 20
#: Labels are int32; -1 means "no label".
LABEL_MIN, LABEL_MAX = -1, (1 << 31) - 1


def label_range(classes) -> tuple[int, int]:
    """The smallest and largest label a store with ``classes`` (or None) may hold."""
    return LABEL_MIN, (len(classes) - 1 if classes is not None else LABEL_MAX)


def labels_out_of_range(labels: np.ndarray, classes) -> np.ndarray:
    """Boolean mask of the labels outside :func:`label_range` (one rule for writers and verify)."""
    low, high = label_range(classes)
    return (labels < low) | (labels > high)


def describe_label_range(classes) -> str:
    """:func:`label_range` in words, for messages."""
    if classes is None:
        return f"[-1, {LABEL_MAX}]"
    return f"[-1, {len(classes)}) for the store's {len(classes)} classes"


def local_path(path) -> Path | None:
    """The local directory a store path names, or None for a remote (fsspec) URL."""
    text = str(path)
    if "://" in text and not text.startswith("file://"):
        return None
    return Path(text.removeprefix("file://"))


def _expect(condition: bool, what: str, expected: str, got: Any) -> None:
    if not condition:
        raise FormatError(f"{what}: expected {expected}, got {got!r}")


def _is_int(value: Any) -> bool:
    """An integer in JSON's sense: not a bool, not a float that happens to be whole."""
    return isinstance(value, int) and not isinstance(value, bool)


def _positive_int(value: Any, what: str) -> int:
    _expect(_is_int(value) and value > 0, what, "a positive integer", value)
    return value


def default_chunk_samples(latent_shape: tuple[int, ...], num_samples: int | None = None, itemsize: int = 1) -> int:
    """The power of two giving chunks of about 32 MiB (16384 for (32, 8, 8) int8).

    A store of fewer samples gets the smallest power of two that holds them
    all, so that its one padded chunk is not mostly padding.
    """
    sample_bytes = int(np.prod(latent_shape)) * itemsize
    chunk = 1 << max(0, int(math.floor(math.log2(CHUNK_TARGET_BYTES / sample_bytes))))
    if num_samples is not None and num_samples < chunk:
        chunk = 1 << max(0, int(math.ceil(math.log2(max(num_samples, 1)))))
    return chunk


@dataclass(frozen=True)
class QuantSpec:
    """How latents are stored.

    ``absmax``: int8 codes, a float16 scale per sample (``granularity="sample"``)
    or per sample and channel (``"channel"``); x̂ = float32(q) * float32(s).
    ``affine``: codes of ``code_dtype`` (uint8 for imported data) with two
    global constants; x̂ = float32(q * scale + offset), evaluated in float64.
    """

    scheme: str = "absmax"
    bits: int = 8
    granularity: str | None = "sample"
    code_dtype: str = "int8"
    scale: float | None = None
    offset: float | None = None

    def __post_init__(self):
        _expect(self.scheme in SCHEMES, "quant.scheme", "'absmax' or 'affine'", self.scheme)
        _expect(_is_int(self.bits) and self.bits == 8, "quant.bits", "8", self.bits)
        if self.scheme == "absmax":
            _expect(self.granularity in ("sample", "channel"), "quant.granularity", "'sample' or 'channel'", self.granularity)
            _expect(self.code_dtype == "int8", "quant.code_dtype", "'int8' for absmax", self.code_dtype)
        else:
            _expect(self.code_dtype in ("uint8", "int8"), "quant.code_dtype", "'uint8' or 'int8'", self.code_dtype)
            for name in ("scale", "offset"):
                value = getattr(self, name)
                _expect(
                    isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                    f"quant.{name}",
                    "a finite number for the affine scheme",
                    value,
                )

    @classmethod
    def affine(cls, scale: float, offset: float, code_dtype: str = "uint8") -> "QuantSpec":
        return cls(scheme="affine", granularity=None, code_dtype=code_dtype, scale=float(scale), offset=float(offset))

    @property
    def has_scales(self) -> bool:
        return self.scheme == "absmax"

    def lookup_table(self) -> np.ndarray | None:
        """For ``affine``: the float32 value of each of the 256 codes, else None."""
        if self.scheme != "affine" or self.scale is None or self.offset is None:
            return None
        codes = np.arange(256, dtype=np.float64)
        if self.code_dtype == "int8":
            codes = np.arange(256, dtype=np.uint8).view(np.int8).astype(np.float64)
        return (codes * self.scale + self.offset).astype(np.float32)

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any) -> "QuantSpec":
        _expect(isinstance(data, dict), "quant", "an object", data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        _expect(not unknown, "quant", f"only the keys {sorted(known)}", sorted(unknown))
        data = dict(data)
        if data.get("scheme") == "affine":
            data.setdefault("granularity", None)
        return cls(**data)


@dataclass(frozen=True)
class ColumnSpec:
    """One per-sample column: the array ``columns/<name>``, of ``kind`` (see COLUMN_KINDS).

    ``media_type`` says what a bytes column holds (``"image/jpeg"`` for the
    stored crops of ``encode --store-images``); ``attributes`` anything else
    a writer wants to record (where the values came from).
    """

    name: str
    kind: str
    media_type: str | None = None
    attributes: dict = field(default_factory=dict)

    def __post_init__(self):
        _expect(isinstance(self.name, str) and _COLUMN_NAME.fullmatch(self.name) is not None, "column name",
                "letters, digits, '_', '.' or '-' (up to 128, not starting with a digit, '.' or '-')", self.name)
        _expect(self.kind in COLUMN_KINDS, f"column {self.name!r} kind", f"one of {', '.join(COLUMN_KINDS)}", self.kind)
        _expect(self.media_type is None or (self.kind == BYTES and isinstance(self.media_type, str)),
                f"column {self.name!r} media_type", "a string, on bytes columns only", self.media_type)
        _expect(isinstance(self.attributes, dict), f"column {self.name!r} attributes", "an object", self.attributes)

    @property
    def array_name(self) -> str:
        return f"{COLUMNS}/{self.name}"

    @property
    def variable_length(self) -> bool:
        return self.kind in VLEN_TYPES

    @property
    def dtype(self) -> np.dtype:
        """The numpy dtype of the values (object for text and bytes)."""
        return np.dtype(object) if self.variable_length else np.dtype(self.kind)

    def to_dict(self) -> dict:
        data: dict = {"name": self.name, "kind": self.kind}
        if self.media_type is not None:
            data["media_type"] = self.media_type
        if self.attributes:
            data["attributes"] = self.attributes
        return data

    @classmethod
    def from_dict(cls, data: Any) -> "ColumnSpec":
        _expect(isinstance(data, dict), "columns entry", "an object", data)
        unknown = set(data) - {"name", "kind", "media_type", "attributes"}
        _expect(not unknown, "columns entry", "only name, kind, media_type and attributes", sorted(unknown))
        _expect("name" in data and "kind" in data, "columns entry", "a name and a kind", sorted(data))
        return cls(**data)


def column_specs(columns) -> tuple[ColumnSpec, ...]:
    """``columns`` (None, {name: kind}, or ColumnSpecs / their dicts) as a tuple of ColumnSpec."""
    if columns is None:
        return ()
    if isinstance(columns, dict):
        columns = [ColumnSpec(name, kind) for name, kind in columns.items()]
    specs = tuple(c if isinstance(c, ColumnSpec) else ColumnSpec.from_dict(c) for c in columns)
    names = [c.name for c in specs]
    _expect(len(set(names)) == len(names), "columns", "distinct names", names)
    return specs


def version_for(columns, buckets=None) -> int:
    """The lowest format version that describes a store with these columns and buckets."""
    return 2 if columns or buckets is not None else 1


#: Bucket tables: buckets whose area is at least this share of the base area, aspect ratios up to 4:1.
DEFAULT_MIN_AREA = 0.9
DEFAULT_MAX_ASPECT = 4.0
MAX_BUCKETS = 1 << 12


@dataclass(frozen=True)
class BucketTable:
    """The latent shapes (h, w) of a multi-aspect store, in latent units (pixels / compression).

    Sample i's latent is ``shapes[bucket_i]``; it is stored in a row of
    ``(C, max_tokens)`` codes, channel c's h*w tokens (row-major) at
    ``[c, :h*w]`` and zeros after them. ``base`` and ``compression`` record
    how the table was made (:meth:`from_base`), None for a table given by hand.
    """

    shapes: tuple[tuple[int, int], ...]
    base: int | None = None
    compression: int | None = None

    def __post_init__(self):
        _expect(isinstance(self.shapes, (list, tuple)) and 0 < len(self.shapes) <= MAX_BUCKETS, "buckets.shapes",
                f"1 to {MAX_BUCKETS} [h, w] pairs", self.shapes if not isinstance(self.shapes, (list, tuple)) else len(self.shapes))
        shapes = []
        for shape in self.shapes:
            _expect(isinstance(shape, (list, tuple)) and len(shape) == 2 and all(_is_int(d) and 0 < d <= 4096 for d in shape),
                    "buckets.shapes entry", "[h, w] with 1 <= h, w <= 4096", shape)
            shapes.append((int(shape[0]), int(shape[1])))
        _expect(len(set(shapes)) == len(shapes), "buckets.shapes", "distinct shapes", shapes)
        object.__setattr__(self, "shapes", tuple(shapes))
        for name in ("base", "compression"):
            value = getattr(self, name)
            _expect(value is None or (_is_int(value) and value > 0), f"buckets.{name}", "a positive integer or null", value)

    @classmethod
    def from_base(cls, base: int, compression: int, *, min_area: float = DEFAULT_MIN_AREA,
                  max_aspect: float = DEFAULT_MAX_ASPECT) -> "BucketTable":
        """Every (h, w) whose area is at most the base area (``(base / compression)²`` tokens)
        and at least ``min_area`` of it, with aspect ratios from 1:``max_aspect`` to ``max_aspect``:1:
        for each height the widest such width, then for each width the tallest (so no two buckets
        share a side, and the table is its own transpose). SANA's and kohya's tables follow the
        same rule in pixels."""
        _expect(_is_int(base) and _is_int(compression) and base > 0 and compression > 0 and base % compression == 0,
                "bucket base", f"a positive multiple of the compression ({compression})", base)
        _expect(isinstance(min_area, (int, float)) and 0 < min_area <= 1, "bucket min_area", "a number in (0, 1]", min_area)
        _expect(isinstance(max_aspect, (int, float)) and max_aspect >= 1, "bucket max_aspect", "a number >= 1", max_aspect)
        side = base // compression
        area = side * side
        tallest: dict[int, int] = {}
        for h in range(1, area + 1):
            w = area // h
            if w >= 1 and h * w >= min_area * area and max(h / w, w / h) <= max_aspect:
                tallest[w] = max(h, tallest.get(w, 0))
        shapes = sorted((h, w) for w, h in tallest.items())
        return cls(tuple(shapes), base=base, compression=compression)

    @property
    def max_tokens(self) -> int:
        return max(h * w for h, w in self.shapes)

    def nearest(self, width: int, height: int) -> int:
        """The bucket whose aspect ratio is nearest ``width / height`` (in log ratio; ties go to the
        larger area, then the first in the table): SANA's rule."""
        target = math.log(width / height)
        return min(range(len(self.shapes)),
                   key=lambda b: (abs(math.log(self.shapes[b][1] / self.shapes[b][0]) - target), -self.area(b), b))

    def area(self, bucket: int) -> int:
        h, w = self.shapes[bucket]
        return h * w

    def to_dict(self) -> dict:
        return {"shapes": [list(s) for s in self.shapes], "base": self.base, "compression": self.compression}

    @classmethod
    def from_dict(cls, data: Any) -> "BucketTable":
        _expect(isinstance(data, dict) and "shapes" in data, "buckets", "an object with 'shapes'", data)
        unknown = set(data) - {"shapes", "base", "compression"}
        _expect(not unknown, "buckets", "only shapes, base and compression", sorted(unknown))
        return cls(data["shapes"], data.get("base"), data.get("compression"))


@dataclass(frozen=True)
class StoreMetadata:
    """The group attribute ``latentstore`` of a store."""

    num_samples: int
    latent_shape: tuple[int, ...]
    chunk_samples: int
    quant: QuantSpec = field(default_factory=QuantSpec)
    encoder: dict | None = None
    classes: tuple[str, ...] | None = None
    stats: dict | None = None
    complete: bool = False
    source: dict | None = None
    flip: bool = False
    ids: bool = False
    columns: tuple[ColumnSpec, ...] = ()
    buckets: BucketTable | None = None
    library_version: str = __version__
    format_version: int = 1
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        _expect(_is_int(self.num_samples) and self.num_samples >= 0, "num_samples", "a non-negative integer", self.num_samples)
        _expect(
            isinstance(self.latent_shape, (list, tuple)) and len(self.latent_shape) >= 1
            and all(_is_int(d) and d > 0 for d in self.latent_shape),
            "latent_shape",
            "a non-empty list of positive integers",
            self.latent_shape,
        )
        shape = tuple(self.latent_shape)
        object.__setattr__(self, "latent_shape", shape)
        _positive_int(self.chunk_samples, "chunk_samples")
        _expect(self.num_chunks <= MAX_CHUNKS, "num_samples / chunk_samples", f"at most {MAX_CHUNKS:,} chunks",
                f"{self.num_chunks:,} chunks")
        _expect(isinstance(self.quant, QuantSpec), "quant", "a QuantSpec", self.quant)
        if self.quant.granularity == "channel":
            _expect(len(shape) >= 2, "latent_shape", "(C, ...) for per-channel scales", shape)
        if self.classes is not None:
            _expect(
                isinstance(self.classes, (list, tuple)) and all(isinstance(c, str) for c in self.classes),
                "classes", "a list of strings", type(self.classes).__name__,
            )
            _expect(len(self.classes) <= MAX_CLASSES, "classes", f"at most {MAX_CLASSES:,} names", len(self.classes))
            object.__setattr__(self, "classes", tuple(self.classes))
        for name in ("complete", "flip", "ids"):
            _expect(isinstance(getattr(self, name), bool), name, "true or false", getattr(self, name))
        for name in ("encoder", "source"):
            _expect(getattr(self, name) is None or isinstance(getattr(self, name), dict), name, "an object or null",
                    type(getattr(self, name)).__name__)
        if self.stats is not None:
            _expect(isinstance(self.stats, dict), "stats", "an object", type(self.stats).__name__)
            channels = shape[0]
            for key in ("mean", "std"):
                values = self.stats.get(key)
                _expect(
                    isinstance(values, list) and len(values) == channels
                    and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values),
                    f"stats.{key}",
                    f"a list of {channels} numbers",
                    values,
                )
        object.__setattr__(self, "columns", column_specs(self.columns))
        if self.columns or self.buckets is not None:
            _expect(self.format_version >= 2, "format_version", "2 or more for a store with columns or buckets",
                    self.format_version)
        if self.buckets is not None:
            _expect(isinstance(self.buckets, BucketTable), "buckets", "a BucketTable", self.buckets)
            _expect(len(shape) == 2 and shape[1] == self.buckets.max_tokens, "latent_shape",
                    f"(C, {self.buckets.max_tokens}) for a bucketed store: C channels of the largest bucket's tokens", shape)

    # -- derived ---------------------------------------------------------
    @property
    def num_chunks(self) -> int:
        return -(-self.num_samples // self.chunk_samples)

    @property
    def channels(self) -> int:
        return self.latent_shape[0]

    @property
    def code_dtype(self) -> np.dtype:
        return np.dtype(self.quant.code_dtype)

    @property
    def sample_nbytes(self) -> int:
        return int(np.prod(self.latent_shape))

    @property
    def scale_shape(self) -> tuple[int, ...]:
        return () if self.quant.granularity == "sample" else (self.channels,)

    def chunk_range(self, chunk: int) -> tuple[int, int]:
        """Samples [start, stop) held by ``chunk``."""
        start = chunk * self.chunk_samples
        return start, min(start + self.chunk_samples, self.num_samples)

    def arrays(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """Every per-sample array of the store: name -> (shape, dtype)."""
        n = self.num_samples
        latents = ((n, *self.latent_shape), self.code_dtype)
        scales = ((n, *self.scale_shape), np.dtype(np.float16))
        result = {LATENTS: latents}
        if self.quant.has_scales:
            result[SCALES] = scales
        result[LABELS] = ((n,), np.dtype(np.int32))
        result[VALID] = ((n,), np.dtype(np.uint8))
        if self.flip:
            result[FLIP_LATENTS] = latents
            if self.quant.has_scales:
                result[FLIP_SCALES] = scales
        if self.buckets is not None:
            result[BUCKETS] = ((n,), np.dtype(np.uint16))
            result[CROP_BOXES] = ((n, 4), np.dtype(np.float32))
        return result

    def column(self, name: str) -> ColumnSpec:
        """The column called ``name``; KeyError naming the columns there are."""
        for spec in self.columns:
            if spec.name == name:
                return spec
        there = ", ".join(c.name for c in self.columns) or "none"
        raise KeyError(f"this store has no column {name!r} (columns: {there})")

    def replace(self, **changes) -> "StoreMetadata":
        return dataclasses.replace(self, **changes)

    # -- (de)serialisation -----------------------------------------------
    def to_dict(self) -> dict:
        data = {
            "format_version": self.format_version,
            "num_samples": self.num_samples,
            "latent_shape": list(self.latent_shape),
            "chunk_samples": self.chunk_samples,
            "quant": self.quant.to_dict(),
            "encoder": self.encoder,
            "classes": list(self.classes) if self.classes is not None else None,
            "stats": self.stats,
            "complete": self.complete,
            "source": self.source,
            "flip": self.flip,
            "ids": self.ids,
            "library_version": self.library_version,
        }
        if self.columns:
            data["columns"] = [c.to_dict() for c in self.columns]
        if self.buckets is not None:
            data["buckets"] = self.buckets.to_dict()
        data.update(self.extra)
        # Round-trip through JSON now so that a non-serialisable value fails
        # where it was put in, not when the attributes are written.
        return json.loads(json.dumps(data, allow_nan=False))

    @classmethod
    def from_dict(cls, data: Any) -> "StoreMetadata":
        _expect(isinstance(data, dict), f"group attribute {ATTRIBUTE_KEY!r}", "an object", type(data).__name__)
        version = data.get("format_version")
        _expect(_is_int(version), "format_version", "an integer", version)
        if version > FORMAT_VERSION:
            raise FormatVersionError(
                f"this store has format version {version}, but latentstore {__version__} reads "
                f"versions up to {FORMAT_VERSION}; upgrade latentstore (pip install -U latentstore)"
            )
        _expect(version >= 1, "format_version", f"1 to {FORMAT_VERSION}", version)
        for key in ("num_samples", "latent_shape", "chunk_samples", "quant"):
            _expect(key in data, "metadata", f"a {key!r} entry", sorted(data))
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in data.items() if k in names}
        extra = {k: v for k, v in data.items() if k not in names}
        known["quant"] = QuantSpec.from_dict(known["quant"])
        if "columns" in known:
            _expect(isinstance(known["columns"], list), "columns", "a list", type(known["columns"]).__name__)
            known["columns"] = column_specs(known["columns"])
        if known.get("buckets") is not None:
            known["buckets"] = BucketTable.from_dict(known["buckets"])
        return cls(**known, extra=extra)


@dataclass(frozen=True)
class ArrayLayout:
    """What the fast reader needs from one array's ``zarr.json``."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunk_shape: tuple[int, ...]
    codecs: tuple[str, ...]
    separator: str
    big_endian: bool
    #: "text" or "bytes" for the variable-length data types, else None.
    variable_length: str | None = None

    @classmethod
    def from_zarr_json(cls, data: dict, name: str) -> "ArrayLayout":
        try:
            _expect(data.get("zarr_format") == 3, f"{name}/zarr.json zarr_format", "3", data.get("zarr_format"))
            _expect(data.get("node_type") == "array", f"{name}/zarr.json node_type", "'array'", data.get("node_type"))
            grid = data["chunk_grid"]
            _expect(grid.get("name") == "regular", f"{name} chunk_grid", "'regular'", grid.get("name"))
            encoding = data["chunk_key_encoding"]
            separator = encoding.get("configuration", {}).get("separator", "/")
            if encoding.get("name") != "default":
                separator = ""  # the v2 key encoding: not mapped, read through zarr
            codecs = tuple(c["name"] for c in data["codecs"])
            big_endian = any(
                c["name"] == "bytes" and c.get("configuration", {}).get("endian") == "big"
                for c in data["codecs"]
            )
            shape = data["shape"]
            chunk_shape = grid["configuration"]["chunk_shape"]
            for what, dims in (("shape", shape), ("chunk_shape", chunk_shape)):
                _expect(isinstance(dims, list) and all(_is_int(d) and d >= 0 for d in dims),
                        f"{name}/zarr.json {what}", "a list of non-negative integers", dims)
            data_type = data["data_type"]
            _expect(isinstance(data_type, str), f"{name}/zarr.json data_type", "a type name", data_type)
            _expect(bool(codecs), f"{name}/zarr.json codecs", "at least one codec", [])
            variable_length = next((kind for kind, (type_name, _) in VLEN_TYPES.items() if type_name == data_type), None)
            return cls(
                shape=tuple(shape),
                dtype=np.dtype(object) if variable_length else np.dtype(data_type),
                chunk_shape=tuple(chunk_shape),
                codecs=codecs,
                separator=separator,
                big_endian=big_endian,
                variable_length=variable_length,
            )
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            if isinstance(exc, FormatError):
                raise
            raise FormatError(f"{name}/zarr.json is not valid Zarr v3 array metadata: {exc!r}") from exc

    @property
    def mappable(self) -> bool:
        """Whether chunk files hold the plain C-order bytes (optionally + crc32c)."""
        if self.variable_length:
            serializer = VLEN_TYPES[self.variable_length][1]
            return self.separator == "/" and self.codecs in ((serializer,), (serializer, "crc32c"))
        little = not self.big_endian or self.dtype.itemsize == 1
        return self.separator == "/" and little and self.codecs in (("bytes",), ("bytes", "crc32c"))

    @property
    def has_checksum(self) -> bool:
        return self.codecs[-1:] == ("crc32c",)

    @property
    def chunk_nbytes(self) -> int:
        return int(np.prod(self.chunk_shape)) * self.dtype.itemsize

    @property
    def chunk_file_nbytes(self) -> int:
        """Size of an uncompressed chunk file: data, plus 4 bytes of crc32c."""
        return self.chunk_nbytes + (4 if self.has_checksum else 0)

    @property
    def num_chunks(self) -> int:
        return -(-self.shape[0] // self.chunk_shape[0]) if self.shape[0] else 0

    def chunk_key(self, chunk: int) -> str:
        """Key of chunk ``chunk`` along axis 0, relative to the array."""
        return "c/" + "/".join([str(chunk)] + ["0"] * (len(self.shape) - 1))

    def check(self, name: str, shape: tuple[int, ...], dtype: np.dtype, chunk_samples: int,
              variable_length: str | None = None) -> None:
        """Raise FormatError unless this array matches what the metadata implies."""
        _expect(self.shape == tuple(shape), f"array {name!r} shape", str(tuple(shape)), self.shape)
        _expect(self.dtype == dtype, f"array {name!r} dtype", str(dtype), str(self.dtype))
        _expect(self.variable_length == variable_length, f"array {name!r} data type",
                VLEN_TYPES[variable_length][0] if variable_length else str(dtype), self.variable_length)
        expected_chunks = (chunk_samples, *shape[1:])
        _expect(self.chunk_shape == expected_chunks, f"array {name!r} chunk shape", str(expected_chunks), self.chunk_shape)
