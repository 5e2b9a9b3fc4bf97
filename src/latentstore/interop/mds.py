"""``latentstore import-mds``: MosaicML MDS shards of raw uint8 latents (the Imagenet.int8 layout).

The MDS format (mosaicml-streaming, ``streaming/base/format/mds``), parsed
here directly, without the package:

- ``index.json``: ``{"version": 2, "shards": [...]}``; every shard entry has
  ``format`` ("mds"), ``column_names`` (sorted), ``column_encodings``,
  ``column_sizes`` (bytes of a fixed-size column, null for variable size),
  ``samples``, ``raw_data.basename`` (``shard.00000.mds``) and, when
  compressed, ``compression`` ("zstd", "zstd:7", "gz", ...) with
  ``zip_data.basename`` (``shard.00000.mds.zstd``);
- a shard file: ``num_samples`` (uint32), ``num_samples + 1`` absolute
  sample offsets (uint32), the writer's JSON config, then the samples; a
  sample is the uint32 sizes of its variable-size columns, in column order,
  then every column's bytes, in column order. All integers little-endian.

Imagenet.int8 has the columns ``vae_output`` (the raw bytes of a uint8
(4, 32, 32) SDXL-VAE latent, under a custom variable-size encoding it calls
"uint8"), ``label`` (the class index as a string) and ``label_as_text``. It
decodes with ``(x / 255 - 0.5) * 24``: the affine range [-12, 12].
"""

import bz2
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latentstore import format as fmt
from latentstore._filesystem import open_regular, read_regular
from latentstore.errors import SourceError, UnreadableFileError
from latentstore.interop._common import (
    ImportReport,
    affine_range,
    affine_spec,
    run_import,
)

INDEX_NAME = "index.json"
#: Imagenet.int8 decodes with (x / 255 - 0.5) * 24.
IMAGENET_INT8_RANGE = (-12.0, 12.0)
IMAGENET_INT8_SHAPE = (4, 32, 32)
FORMAT_NAME = "MosaicML MDS shards (Imagenet.int8 layout)"

#: Encodings whose bytes are the latent's raw uint8 values: plain bytes,
#: Imagenet.int8's custom "uint8" and a static-shape uint8 ndarray.
RAW_LATENT_ENCODINGS = ("bytes", "uint8")
STRING_ENCODINGS = ("str", "str_int")
#: Fixed-size integer encodings of a label column: name -> little-endian dtype.
INTEGER_ENCODINGS = {"int": "<i8", "int64": "<i8", "int32": "<i4", "int16": "<i2", "int8": "i1",
                     "uint64": "<u8", "uint32": "<u4", "uint16": "<u2", "uint8": "u1"}
#: A shard's sample count and offsets are uint32, so no shard holds more.
MAX_SHARD_BYTES = (1 << 32) - 1



# Each inflater returns at most ``expected + 1`` bytes, so that a shard
# inflating beyond its declared size is seen without inflating it whole.
def _inflate_gzip(data: bytes, expected: int) -> bytes:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data, expected + 1)


def _inflate_bz2(data: bytes, expected: int) -> bytes:
    return bz2.BZ2Decompressor().decompress(data, max_length=expected + 1)


def _inflate_zstd(data: bytes, expected: int) -> bytes:
    from numcodecs import Zstd

    # numcodecs refuses a frame larger than ``out`` before inflating it; a
    # smaller one leaves zeros behind, which the shard's offsets then expose.
    out = np.zeros(expected, dtype=np.uint8)
    try:
        decoded = Zstd().decode(data, out=out)
    except ValueError as exc:  # the frame says it is larger than the buffer: refused before inflating
        raise SourceError(f"the shard inflates beyond its declared size ({exc})") from None
    return bytes(np.frombuffer(decoded, dtype=np.uint8))


def _decompressor(compression: str | None):
    """``inflate(data, expected)`` for a shard's compression."""
    family = (compression or "").split(":")[0]
    if not family:
        return None
    inflaters = {"zstd": _inflate_zstd, "gz": _inflate_gzip, "bz2": _inflate_bz2}
    if family not in inflaters:
        raise SourceError(
            f"shards compressed with {compression!r} are not supported (zstd, gz and bz2 are); "
            "decompress them first, e.g. with mosaicml-streaming, keeping the index.json"
        )
    return inflaters[family]


def _count(entry: dict, key: str, where: str, *, maximum: int) -> int:
    """``entry[key]`` (a path like "raw_data.bytes"), which must be an integer in [0, maximum]."""
    value = entry
    for part in key.split("."):
        value = value[part]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= maximum:
        raise SourceError(f"{where}: {key} is {value!r}; expected an integer in [0, {maximum:,}]")
    return value


@dataclass(frozen=True)
class ShardInfo:
    """One shard as ``index.json`` describes it."""

    number: int
    path: Path
    compressed: bool
    compression: str | None
    samples: int
    raw_bytes: int
    column_names: tuple[str, ...]
    column_encodings: tuple[str, ...]
    column_sizes: tuple[int | None, ...]

    @classmethod
    def from_index(cls, directory: Path, number: int, entry) -> "ShardInfo":
        where = f"{directory / INDEX_NAME} shard {number}"
        if not isinstance(entry, dict) or entry.get("format") != "mds" or entry.get("version", 2) != 2:
            kind = f"format {entry.get('format')!r} version {entry.get('version')!r}" if isinstance(entry, dict) else type(entry).__name__
            raise SourceError(f"{where} is {kind}; only MDS version 2 shards are supported")
        try:
            names = tuple(entry["column_names"])
            encodings = tuple(entry["column_encodings"])
            sizes = tuple(entry["column_sizes"])
            raw = Path(entry["raw_data"]["basename"])
            zipped = entry.get("zip_data")
            path, compressed = directory / raw, False
            if zipped and not path.is_file():
                # mosaicml-streaming keeps the compressed file and may or may not
                # have unpacked it; a raw file next to it is read directly.
                path, compressed = directory / zipped["basename"], True
            samples = _count(entry, "samples", where, maximum=(1 << 32) - 1)
            raw_bytes = _count(entry, "raw_data.bytes", where, maximum=MAX_SHARD_BYTES)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise SourceError(f"{where} is not a valid MDS shard entry: {exc!r}") from None
        if not (len(names) == len(encodings) == len(sizes)):
            raise SourceError(f"{where}: column_names, column_encodings and column_sizes differ in length")
        if not all(isinstance(n, str) for n in names + encodings):
            raise SourceError(f"{where}: column names and encodings must be strings")
        if not all(z is None or (isinstance(z, int) and not isinstance(z, bool) and 0 < z <= MAX_SHARD_BYTES) for z in sizes):
            raise SourceError(f"{where}: column_sizes are {list(sizes)}; expected positive integers or null")
        return cls(number, path, compressed, entry.get("compression"), samples, raw_bytes, names, encodings, sizes)


def read_index(directory) -> list[ShardInfo]:
    """The shards listed in ``directory/index.json``, in order."""
    directory = Path(directory)
    index_path = directory / INDEX_NAME
    try:
        index = json.loads(read_regular(index_path, fmt.MAX_METADATA_BYTES))
    except FileNotFoundError:
        raise SourceError(f"no {INDEX_NAME} in {directory}; pass the directory that holds the MDS index and shards") from None
    except (OSError, ValueError, RecursionError) as exc:
        raise SourceError(f"cannot read {index_path}: {exc}") from exc
    if not isinstance(index, dict) or not isinstance(index.get("shards"), list):
        raise SourceError(f"{index_path} has no 'shards' list; it is not an MDS index")
    return [ShardInfo.from_index(directory, k, entry) for k, entry in enumerate(index["shards"])]


class MDSShard:
    """One shard file, parsed: where every sample's columns lie in its bytes.

    Uncompressed shards are memory-mapped; compressed ones are decompressed
    into memory (shards are 64 MiB by default).
    """

    def __init__(self, info: ShardInfo):
        self.info = info
        self.data = self._load()
        self.spans = self._parse()

    def _load(self) -> np.ndarray:
        info = self.info
        try:
            if info.compressed:
                inflate = _decompressor(info.compression)
                raw = inflate(read_regular(info.path, MAX_SHARD_BYTES), info.raw_bytes)
                if len(raw) != info.raw_bytes:
                    raise self._corrupt(f"it inflates to {'more than ' if len(raw) > info.raw_bytes else ''}"
                                        f"{min(len(raw), info.raw_bytes):,} bytes, {INDEX_NAME} says {info.raw_bytes:,}")
                return np.frombuffer(raw, dtype=np.uint8)
            with os.fdopen(open_regular(info.path), "rb") as f:
                if os.fstat(f.fileno()).st_size == 0:
                    return np.zeros(0, dtype=np.uint8)
                return np.memmap(f, dtype=np.uint8, mode="r")
        except FileNotFoundError:
            raise SourceError(f"shard file {info.path} listed in {INDEX_NAME} is missing") from None
        except SourceError:
            raise
        except UnreadableFileError as exc:
            raise SourceError(f"shard file {exc}") from None
        except Exception as exc:  # noqa: BLE001 - any decompressor or I/O failure
            raise SourceError(f"cannot read shard file {info.path}: {exc}") from exc

    def _corrupt(self, what: str) -> SourceError:
        return SourceError(f"shard file {self.info.path} is damaged or not an MDS shard: {what}")

    def _uint32(self, positions: np.ndarray) -> np.ndarray:
        """The little-endian uint32 at each byte position, as int64."""
        return self.data[positions[:, None] + np.arange(4)].copy().view("<u4")[:, 0].astype(np.int64)

    def _parse(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        data, info = self.data, self.info
        if len(data) < 4:
            raise self._corrupt(f"{len(data)} bytes, too short for a header")
        n = int(data[:4].view("<u4")[0])
        if n != info.samples:
            raise self._corrupt(f"it holds {n} samples, {INDEX_NAME} says {info.samples}")
        if len(data) < 4 * (n + 2):
            raise self._corrupt(f"{len(data)} bytes, too short for {n} sample offsets")
        offsets = data[4 : 4 * (n + 2)].view("<u4").astype(np.int64)
        if offsets[0] < 4 * (n + 2) or offsets[-1] != len(data) or (np.diff(offsets) < 0).any():
            raise self._corrupt(f"sample offsets run from {offsets[0]} to {offsets[-1]} in a file of {len(data)} bytes")
        begins, ends = offsets[:-1], offsets[1:]
        variable = [name for name, size in zip(info.column_names, info.column_sizes) if not size]
        cursor = begins + 4 * len(variable)
        if (cursor > ends).any():
            raise self._corrupt(f"sample {int(np.argmax(cursor > ends))} is shorter than its column sizes")
        header = {name: self._uint32(begins + 4 * j) for j, name in enumerate(variable)}
        spans = {}
        for name, size in zip(info.column_names, info.column_sizes):
            sizes = header[name] if not size else np.full(n, int(size), dtype=np.int64)
            spans[name] = (cursor, sizes)
            cursor = cursor + sizes
        if (cursor != ends).any():
            bad = int(np.argmax(cursor != ends))
            raise self._corrupt(f"the columns of sample {bad} take {cursor[bad] - begins[bad]} bytes, its offsets {ends[bad] - begins[bad]}")
        return spans

    def fixed(self, name: str, nbytes: int, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Column ``name`` of samples [lo, hi) as (n, nbytes) uint8; every value must be ``nbytes`` long."""
        starts, sizes = self.spans[name]
        starts, sizes = starts[lo:hi], sizes[lo:hi]
        if (sizes != nbytes).any():
            bad = lo + int(np.argmax(sizes != nbytes))
            raise SourceError(
                f"sample {bad} of {self.info.path} has {int(self.spans[name][1][bad])} bytes of {name!r}, "
                f"expected {nbytes}; check the latent shape (--shape)"
            )
        if not len(starts):
            return np.zeros((0, nbytes), dtype=np.uint8)
        return np.asarray(np.lib.stride_tricks.sliding_window_view(self.data, nbytes)[starts])

    def strings(self, name: str) -> list[str]:
        """Column ``name`` of every sample, decoded as UTF-8."""
        starts, sizes = self.spans[name]
        raw = self.data
        try:
            return [bytes(raw[s : s + z]).decode("utf-8") for s, z in zip(starts.tolist(), sizes.tolist())]
        except UnicodeDecodeError as exc:
            raise SourceError(f"column {name!r} of {self.info.path} is not UTF-8 text: {exc}") from None


class MDSDataset:
    """The samples of every shard of an MDS directory, as one sequence."""

    def __init__(self, directory, latent_shape, latent_column: str, label_column: str | None, class_column: str | None):
        self.directory = Path(directory)
        self.shards = read_index(self.directory)
        if not self.shards:
            raise SourceError(f"{self.directory / INDEX_NAME} lists no shards")
        self.latent_shape = tuple(int(d) for d in latent_shape)
        self.latent_column, self.label_column, self.class_column = latent_column, label_column, class_column
        for info in self.shards:
            self._check_columns(info)
        counts = np.array([info.samples for info in self.shards], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(counts)])
        self._cached: MDSShard | None = None
        self.labels, self.classes = None, None

    def __len__(self) -> int:
        return int(self.starts[-1])

    def _check_columns(self, info: ShardInfo) -> None:
        columns = dict(zip(info.column_names, info.column_encodings))
        for role, name in (("latent", self.latent_column), ("label", self.label_column), ("class", self.class_column)):
            if name and name not in columns:
                raise SourceError(
                    f"shard {info.number} has no {role} column {name!r}; its columns are {sorted(columns)} "
                    f"(choose one with --{role}-column" + ("" if role == "latent" else ", or pass '' to import without") + ")"
                )
        encoding = columns[self.latent_column]
        if not (encoding in RAW_LATENT_ENCODINGS or encoding.startswith("ndarray:uint8:")):
            raise SourceError(
                f"column {self.latent_column!r} has encoding {encoding!r}; raw uint8 latents are stored as "
                f"{' or '.join(map(repr, RAW_LATENT_ENCODINGS))} or 'ndarray:uint8:SHAPE'"
            )
        for name, allowed in ((self.label_column, (*STRING_ENCODINGS, *INTEGER_ENCODINGS)), (self.class_column, ("str",))):
            if name and columns[name] not in allowed:
                raise SourceError(f"column {name!r} has encoding {columns[name]!r}; expected one of {list(allowed)}")

    def shard(self, k: int) -> MDSShard:
        if self._cached is None or self._cached.info.number != k:
            self._cached = None  # drop the previous shard's buffer first
            self._cached = MDSShard(self.shards[k])
        return self._cached

    def _shard_labels(self, shard: MDSShard) -> np.ndarray:
        encoding = dict(zip(shard.info.column_names, shard.info.column_encodings))[self.label_column]
        if encoding in INTEGER_ENCODINGS:
            dtype = np.dtype(INTEGER_ENCODINGS[encoding])
            return shard.fixed(self.label_column, dtype.itemsize).copy().view(dtype)[:, 0].astype(np.int64)
        texts = shard.strings(self.label_column)
        try:
            return np.array([int(t) for t in texts], dtype=np.int64)
        except ValueError as exc:
            raise SourceError(f"column {self.label_column!r} of {shard.info.path} holds a non-integer label: {exc}") from None

    def scan_labels(self) -> None:
        """Read every label and class name (a first, light pass over the shards)."""
        if not self.label_column:
            return
        labels = np.empty(len(self), dtype=np.int64)
        names: dict[int, str] = {}
        for k, info in enumerate(self.shards):
            shard = self.shard(k)
            part = self._shard_labels(shard)
            labels[self.starts[k] : self.starts[k + 1]] = part
            if self.class_column:
                for label, name in zip(part.tolist(), shard.strings(self.class_column)):
                    if names.setdefault(label, name) != name:
                        raise SourceError(f"label {label} is called both {names[label]!r} and {name!r} in {info.path}")
        if labels.size and labels.min() < -1:
            raise SourceError(f"labels must be class indices >= 0 (or -1 for unknown), found {labels.min()}")
        if self.class_column and labels.size and labels.max() >= fmt.MAX_CLASSES:
            raise SourceError(
                f"label {labels.max()} with a class column would need {labels.max() + 1:,} class names "
                f"(at most {fmt.MAX_CLASSES:,}); import without names (--class-column '') if the labels are right"
            )
        self.labels = labels
        if self.class_column and labels.size:
            # Indices that no sample uses get an empty name.
            self.classes = [names.get(i, "") for i in range(int(labels.max()) + 1)]

    def read(self, start: int, stop: int):
        """(uint8 codes (n, *latent_shape), labels or None, None) of samples [start, stop)."""
        nbytes = int(np.prod(self.latent_shape))
        codes = np.empty((stop - start, nbytes), dtype=np.uint8)
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        position = start
        for k in range(first, len(self.shards)):
            if position >= stop:
                break
            lo = position - int(self.starts[k])
            hi = min(stop, int(self.starts[k + 1])) - int(self.starts[k])
            codes[position - start : position - start + hi - lo] = self.shard(k).fixed(self.latent_column, nbytes, lo, hi)
            position += hi - lo
        labels = None if self.labels is None else self.labels[start:stop]
        return codes.reshape(-1, *self.latent_shape), labels, None


def import_mds(
    directory,
    out,
    *,
    value_range=IMAGENET_INT8_RANGE,
    latent_shape=IMAGENET_INT8_SHAPE,
    latent_column: str = "vae_output",
    label_column: str | None = "label",
    class_column: str | None = "label_as_text",
    requantize: bool = False,
    granularity: str = "sample",
    chunk_samples: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> ImportReport:
    """Import the MDS shards in ``directory`` into a new store at ``out``.

    ``value_range`` (low, high) is the affine map of the codes (code 0 ->
    low, 255 -> high); the default is Imagenet.int8's. ``latent_shape`` is
    the shape of one latent, whose raw uint8 bytes the ``latent_column``
    holds. Labels come from ``label_column`` (integers, or their decimal
    text) and class names from ``class_column``; pass None for either to do
    without. ``requantize`` and ``granularity``: as for
    :func:`latentstore.interop.pt.import_pt`.
    """

    source_quant = affine_spec(*value_range)
    dataset = MDSDataset(directory, latent_shape, latent_column, label_column or None, class_column or None)
    dataset.scan_labels()
    source = {
        "format": FORMAT_NAME,
        "path": str(Path(directory).resolve()),
        "shards": len(dataset.shards),
        "columns": {"latent": latent_column, "label": label_column or None, "class": class_column or None},
        "affine_range": affine_range(source_quant),
    }

    return run_import(
        out, dataset, source_quant=source_quant, requantize=requantize, progress=progress, description="import-mds",
        chunk_samples=chunk_samples, granularity=granularity, classes=dataset.classes, source=source, overwrite=overwrite,
    )
