"""Creating and filling a store, chunk by chunk, resumably.

A writer owns whole chunks: ``write(start, ...)`` takes blocks that begin on a
chunk boundary and span whole chunks (the store's last chunk may be short).
For every chunk the ``valid`` array is written last, so a chunk whose
``valid`` chunk file exists is complete, and a crash at any moment leaves at
worst chunks that read as "not written" and are redone on resume (zarr's
local store also writes each file atomically).
"""

import errno
import shutil
import warnings

import numpy as np

from latentstore import format as fmt
from latentstore._options import flag, integer
from latentstore.errors import FormatError, IncompatibleStoreError, StoreExistsError, StoreWriteError
from latentstore.format import QuantSpec, StoreMetadata
from latentstore.quantization.kernels import quantize
from latentstore.store.files import store_files
from latentstore.store.stats import ChannelMoments

#: Metadata fields that must agree when an existing incomplete store is resumed.
RESUME_FIELDS = (
    "num_samples", "latent_shape", "chunk_samples", "quant", "encoder", "source", "flip", "ids", "classes", "columns",
    "buckets",
)

COMPRESSORS = (None, "zstd", "blosc")


def _codecs(checksum: bool, compressor: str | None):
    from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

    if compressor not in COMPRESSORS:
        raise ValueError(f"compressor must be one of {COMPRESSORS}, got {compressor!r}")
    chain: list = []
    if compressor == "zstd":
        chain.append(ZstdCodec(level=3))
    elif compressor == "blosc":
        chain.append(BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle"))
    if checksum:
        chain.append(Crc32cCodec())
    return chain


def _create_column(group, spec: fmt.ColumnSpec, metadata: StoreMetadata, compressors: list, overwrite: bool):
    """The array of one column: text and bytes with Zarr's variable-length codecs, numbers like labels."""
    from zarr.codecs import VLenBytesCodec, VLenUTF8Codec
    from zarr.core.dtype import VariableLengthBytes, VariableLengthUTF8

    options: dict = {"dtype": spec.kind, "fill_value": 0}
    if spec.kind == fmt.TEXT:
        options = {"dtype": VariableLengthUTF8(), "serializer": VLenUTF8Codec(), "fill_value": ""}
    elif spec.kind == fmt.BYTES:
        options = {"dtype": VariableLengthBytes(), "serializer": VLenBytesCodec(), "fill_value": b""}
    with warnings.catch_warnings():
        # zarr-python flags variable_length_bytes as lacking a Zarr v3 spec (zarr-extensions); its
        # layout is numcodecs' VLenBytes, which docs/format.md describes and the reader parses.
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification")
        group.create_array(
            spec.array_name,
            shape=(metadata.num_samples,),
            chunks=(metadata.chunk_samples,),
            compressors=compressors,
            config={"write_empty_chunks": True},
            overwrite=overwrite,
            **options,
        )


def _checked_column(spec: fmt.ColumnSpec, values, n: int):
    """One block of a column's values, checked: n str, n bytes, or n numbers that fit the dtype exactly."""
    where = f"column {spec.name!r}"
    if spec.variable_length:
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__") or len(values) != n:
            raise ValueError(f"{where} needs {n} values (a list), got {type(values).__name__}")
        wanted = str if spec.kind == fmt.TEXT else (bytes, bytearray, memoryview)
        bad = next((i for i, v in enumerate(values) if not isinstance(v, wanted)), None)
        if bad is not None:
            hint = "'' for a sample without text" if spec.kind == fmt.TEXT else "b'' for a sample without bytes"
            raise TypeError(f"{where} holds {spec.kind}: value {bad} is {type(values[bad]).__name__} (use {hint})")
        return np.asarray([bytes(v) for v in values] if spec.kind == fmt.BYTES else list(values), dtype=object)
    array = np.asarray(values)
    if array.shape != (n,) or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{where} needs {n} numbers, got {array.dtype} {array.shape}")
    converted = array.astype(spec.kind)
    if not np.array_equal(converted.astype(array.dtype), array, equal_nan=array.dtype.kind == "f"):
        bad = int(np.flatnonzero(converted.astype(array.dtype) != array)[0])
        raise ValueError(f"{where} is {spec.kind}: value {bad} ({array[bad]!r}) does not fit it exactly")
    return converted


def pack_buckets(latents, table: fmt.BucketTable) -> tuple[np.ndarray, np.ndarray]:
    """Latents of several shapes, each (C, h, w) with (h, w) in ``table``, as the rows a bucketed
    store holds: ``(rows (n, C, max_tokens), bucket index per sample)``."""
    index = {shape: b for b, shape in enumerate(table.shapes)}
    latents = [np.asarray(x) for x in latents]
    channels = latents[0].shape[0] if latents else 1
    rows = np.zeros((len(latents), channels, table.max_tokens), dtype=latents[0].dtype if latents else np.float32)
    buckets = np.empty(len(latents), np.int64)
    for i, x in enumerate(latents):
        if x.ndim != 3 or x.shape[0] != channels or tuple(x.shape[1:]) not in index:
            raise ValueError(f"latent {i} has shape {x.shape}; expected ({channels}, h, w) with (h, w) one of {list(table.shapes)}")
        buckets[i] = index[tuple(x.shape[1:])]
        rows[i, :, : x.shape[1] * x.shape[2]] = x.reshape(channels, -1)
    return rows, buckets


def _read_metadata(group) -> StoreMetadata | None:
    attrs = group.attrs.asdict()
    if fmt.ATTRIBUTE_KEY not in attrs:
        return None
    return StoreMetadata.from_dict(attrs[fmt.ATTRIBUTE_KEY])


def create(
    path,
    num_samples: int,
    latent_shape,
    *,
    chunk_samples: int | None = None,
    granularity: str = "sample",
    quant: QuantSpec | None = None,
    classes=None,
    encoder: dict | None = None,
    source: dict | None = None,
    flip: bool = False,
    ids: bool = False,
    failures: bool = False,
    checksum: bool = True,
    compressor: str | None = None,
    columns=None,
    buckets: fmt.BucketTable | None = None,
    overwrite: bool = False,
) -> "StoreWriter":
    """Create a store at ``path`` (a directory or fsspec URL) and return its writer.

    An existing *incomplete* store made with the same settings is resumed:
    the writer's :meth:`~StoreWriter.pending_chunks` says what is left. A
    complete store, one made with other settings, or any other existing
    content is only replaced with ``overwrite=True``.

    ``chunk_samples`` defaults to the power of two giving ~32 MiB chunks;
    ``granularity`` is ``"sample"`` (one float16 scale per sample) or
    ``"channel"``; ``quant`` overrides it (the ``affine`` scheme of imported
    data). ``ids`` adds a string array naming each sample's source,
    ``failures`` one holding why a sample is invalid ("" when it is fine). ``checksum`` appends crc32c to every chunk; ``compressor``
    (``"zstd"`` or ``"blosc"``) saves little on int8 codes and takes the
    store off the memory-mapped fast path. ``columns`` adds per-sample columns:
    ``{"caption": "text", "width": "int32", "jpeg": "bytes"}`` or
    :class:`~latentstore.format.ColumnSpec` objects (kinds: ``format.COLUMN_KINDS``);
    each is the array ``columns/<name>`` and every write gives its values.
    ``buckets`` (a :class:`~latentstore.format.BucketTable`) makes a
    multi-aspect store: ``latent_shape`` is then ``(C,)`` (or ``(C,
    max_tokens)``), each sample's latent is one of the table's (h, w) shapes,
    stored padded in a (C, max_tokens) row, and every write gives ``buckets``.
    """
    import zarr

    num_samples = integer(num_samples, "num_samples", minimum=0)
    if isinstance(latent_shape, (str, bytes)) or not hasattr(latent_shape, "__iter__"):
        raise TypeError(f"latent_shape must be a tuple of positive integers, got {latent_shape!r}")
    latent_shape = tuple(integer(d, "latent_shape", minimum=1) for d in latent_shape)
    if buckets is not None:
        if not isinstance(buckets, fmt.BucketTable):
            raise TypeError(f"buckets must be a latentstore.format.BucketTable, got {type(buckets).__name__}")
        if len(latent_shape) == 1:
            latent_shape = (latent_shape[0], buckets.max_tokens)
    if chunk_samples is not None:
        chunk_samples = integer(chunk_samples, "chunk_samples", minimum=1)
    if classes is not None and (isinstance(classes, str) or not all(isinstance(c, str) for c in classes)):
        raise TypeError(f"classes must be a list of strings, got {classes!r:.80}")
    flip, ids, failures, checksum, overwrite = (
        flag(value, name) for value, name in
        ((flip, "flip"), (ids, "ids"), (failures, "failures"), (checksum, "checksum"), (overwrite, "overwrite"))
    )
    quant = quant or QuantSpec(granularity=granularity)
    if chunk_samples is None:
        chunk_samples = fmt.default_chunk_samples(latent_shape, num_samples)
    metadata = StoreMetadata(
        num_samples=num_samples,
        latent_shape=latent_shape,
        chunk_samples=chunk_samples,
        quant=quant,
        encoder=encoder,
        classes=tuple(classes) if classes is not None else None,
        source=source,
        flip=flip,
        ids=ids,
        columns=fmt.column_specs(columns),
        buckets=buckets,
        format_version=fmt.version_for(columns, buckets),
    )
    metadata = StoreMetadata.from_dict(metadata.to_dict())  # normalise through JSON
    codecs = _codecs(checksum, compressor)

    local = fmt.local_path(path)
    if local is not None and local.exists():
        if overwrite:
            shutil.rmtree(local) if local.is_dir() else local.unlink()
        elif local.is_dir() and (local / "zarr.json").exists():
            existing = StoreWriter._open_existing(str(local))
            if existing is not None:
                return existing._resume_as(metadata)
            raise StoreExistsError(f"{local} is a Zarr group but not a latent store; pass overwrite=True to replace it")
        elif not local.is_dir() or any(local.iterdir()):
            raise StoreExistsError(f"{local} already exists and is not an empty directory; pass overwrite=True to replace it")
    elif local is None and not overwrite:
        existing = StoreWriter._open_existing(path)
        if existing is not None:
            return existing._resume_as(metadata)

    store_path = str(local) if local is not None else path
    group = zarr.open_group(store_path, mode="w" if overwrite else "a", zarr_format=3)
    for name, (shape, dtype) in metadata.arrays().items():
        group.create_array(
            name,
            shape=shape,
            chunks=(metadata.chunk_samples, *shape[1:]),
            dtype=dtype,
            compressors=codecs,
            fill_value=0,
            config={"write_empty_chunks": True},
            overwrite=overwrite,
        )
    for name in [fmt.IDS] * ids + [fmt.FAILURES] * failures:
        group.create_array(
            name,
            shape=(metadata.num_samples,),
            chunks=(metadata.chunk_samples,),
            dtype=str,
            config={"write_empty_chunks": True},
            overwrite=overwrite,
        )
    for spec in metadata.columns:
        _create_column(group, spec, metadata, codecs, overwrite)
    group.attrs[fmt.ATTRIBUTE_KEY] = metadata.to_dict()
    return StoreWriter(group, metadata, store_path)


def _valid_flags(valid, n: int) -> np.ndarray:
    """``valid`` as n bools: booleans, or integers that are all 0 or 1 (2 is not "true")."""
    if valid is None:
        return np.ones(n, dtype=bool)
    flags = np.asarray(valid)
    if flags.shape != (n,):
        raise ValueError(f"valid must have shape ({n},), got {flags.shape}")
    if flags.dtype != bool and not (np.issubdtype(flags.dtype, np.integer) and np.isin(flags, (0, 1)).all()):
        raise ValueError(f"valid must hold booleans (or 0 and 1), got {flags.dtype} values such as {flags[:3].tolist()}")
    return flags.astype(bool)


def _checked_labels(labels, n: int, classes) -> np.ndarray:
    """``labels`` as int32, or -1 for every sample when None; out-of-range labels raise, never wrap."""
    if labels is None:
        return np.full(n, -1, np.int32)
    values = np.asarray(labels)
    if values.shape != (n,) or values.dtype == bool or not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"labels must be {n} integers, got {values.dtype} {values.shape}")
    bad = np.flatnonzero(fmt.labels_out_of_range(values, classes))
    if bad.size:
        raise ValueError(
            f"labels must lie in {fmt.describe_label_range(classes)}; got {values[bad[:5]].tolist()} "
            f"(sample {bad[0]} of this block first)"
        )
    return values.astype(np.int32)


class _ChunkAssembler:
    """Rows of :meth:`StoreWriter.append` blocks, cut into whole chunks.

    A column is an array (latents, labels, ...), a ``(q, scales)`` pair
    (codes) or a list of strings (ids, failures); every column of a block has
    the same number of rows, and every block the same columns. Blocks are
    held as they come and joined once per chunk, so many small blocks cost
    one copy of their rows, not one per block.
    """

    def __init__(self, chunk_rows: int):
        self.chunk_rows = chunk_rows
        self.next_start = 0  # the sample the held rows begin at
        self.pieces: list[dict] = []
        self.held_rows = 0
        self.finished: set[int] | None = None

    @classmethod
    def _rows(cls, value) -> int:
        if isinstance(value, dict):  # the per-sample columns
            return cls._rows(next(iter(value.values())))
        return len(value[0]) if isinstance(value, tuple) else len(value)

    def block_rows(self, block: dict) -> int:
        return self._rows(next(iter(block.values())))

    @classmethod
    def _join(cls, values: list):
        if isinstance(values[0], dict):
            return {name: cls._join([value[name] for value in values]) for name in values[0]}
        if isinstance(values[0], tuple):
            return tuple(np.concatenate([np.asarray(v[i]) for v in values]) for i in range(len(values[0])))
        if isinstance(values[0], list):
            return [item for value in values for item in value]
        return np.concatenate([np.asarray(v) for v in values])

    @classmethod
    def _cut(cls, value, start: int, stop: int | None):
        if isinstance(value, dict):
            return {name: cls._cut(part, start, stop) for name, part in value.items()}
        if isinstance(value, tuple):
            return tuple(part[start:stop] for part in value)
        return value[start:stop]

    def _joined(self) -> dict:
        return {name: self._join([piece[name] for piece in self.pieces]) for name in self.pieces[0]}

    def add(self, columns: dict) -> list[tuple[int, dict]]:
        """Take a block; return the whole chunks it completes as (start, columns)."""
        block = {name: (list(value) if name in (fmt.IDS, fmt.FAILURES) else value)
                 for name, value in columns.items() if value is not None}
        given = block.get("columns")
        if isinstance(given, dict) and not given:  # no columns, said as an empty mapping
            del block["columns"]
        elif isinstance(given, dict):
            block["columns"] = {name: list(v) if isinstance(v, (list, tuple)) else np.asarray(v) for name, v in given.items()}
        if not block:
            raise ValueError("pass latents or codes to append")
        sizes = {name: self._rows(value) for name, value in block.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"every column of an appended block needs the same number of samples, got {sizes}")
        if self.pieces and set(block) != set(self.pieces[0]):
            raise ValueError(f"appended blocks must carry the same columns: {sorted(self.pieces[0])} before, "
                             f"{sorted(block)} now")
        self.pieces.append(block)
        self.held_rows += self.block_rows(block)
        if self.held_rows < self.chunk_rows:
            return []
        held = self._joined()
        chunks, start = [], 0
        while self.held_rows - start >= self.chunk_rows:
            chunks.append((self.next_start, {k: self._cut(v, start, start + self.chunk_rows) for k, v in held.items()}))
            start += self.chunk_rows
            self.next_start += self.chunk_rows
        self.held_rows -= start
        self.pieces = [{k: self._cut(v, start, None) for k, v in held.items()}] if self.held_rows else []
        return chunks

    def take_rest(self) -> tuple[int, dict] | None:
        """The held rows (a last, shorter chunk), or None."""
        if not self.pieces:
            return None
        rest = (self.next_start, self._joined())
        self.pieces, self.held_rows = [], 0
        return rest


class StoreWriter:
    """Writes whole chunks of a store; see :func:`create`."""

    def __init__(self, group, metadata: StoreMetadata, path):
        self._group = group
        self._path = str(path)
        self._metadata = metadata
        names = list(metadata.arrays()) + [fmt.IDS] * metadata.ids + [fmt.FAILURES] * (fmt.FAILURES in group)
        names += [spec.array_name for spec in metadata.columns]
        # zarr keeps write_empty_chunks out of the array metadata, so every
        # handle must ask for it: a chunk file is the "chunk written" marker,
        # all-zero chunks (a chunk of failures: valid all 0) included.
        self._arrays = {name: group[name].with_config({"write_empty_chunks": True}) for name in names}
        self._appended = _ChunkAssembler(metadata.chunk_samples)

    @classmethod
    def _open_existing(cls, path) -> "StoreWriter | None":
        import zarr

        try:
            group = zarr.open_group(path, mode="r+", zarr_format=3)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError, zarr.errors.NodeTypeValidationError):
            return None
        metadata = _read_metadata(group)
        return None if metadata is None else cls(group, metadata, path)

    def _resume_as(self, wanted: StoreMetadata) -> "StoreWriter":
        if self._metadata.complete:
            raise StoreExistsError(
                f"{self.path} is a complete store; pass overwrite=True to replace it, "
                "or latentstore.open() to read it"
            )
        have, want = self._metadata.to_dict(), wanted.to_dict()
        diffs = [f"{k}: store has {have.get(k)!r}, asked for {want.get(k)!r}" for k in RESUME_FIELDS if have.get(k) != want.get(k)]
        if diffs:
            raise IncompatibleStoreError(
                f"{self.path} holds an unfinished store made with other settings ("
                + "; ".join(diffs)
                + "); pass overwrite=True to start again, or use another output path"
            )
        return self

    # -- properties --------------------------------------------------------
    @property
    def metadata(self) -> StoreMetadata:
        return self._metadata

    @property
    def path(self) -> str:
        """The local directory or URL the store was created or opened at."""
        return self._path

    def __len__(self) -> int:
        return self._metadata.num_samples

    def __repr__(self) -> str:
        m = self._metadata
        return f"<StoreWriter {self.path} {m.num_samples} x {m.latent_shape}, {len(self.pending_chunks())} of {m.num_chunks} chunks to write>"

    # -- progress ----------------------------------------------------------
    def completed_chunks(self) -> list[int]:
        """Chunks whose ``valid`` chunk has been written, i.e. finished."""
        files = store_files(self.path)
        return [k for k in range(self._metadata.num_chunks) if files.exists(f"{fmt.VALID}/c/{k}")]

    def pending_chunks(self) -> list[int]:
        """Chunks still to be written, in order."""
        done = set(self.completed_chunks())
        return [k for k in range(self._metadata.num_chunks) if k not in done]

    # -- writing -----------------------------------------------------------
    def _check_block(self, start: int, n: int) -> int:
        m = self._metadata
        stop = start + n
        if start % m.chunk_samples or not (0 <= start < m.num_samples or n == 0):
            raise ValueError(
                f"blocks must start on a chunk boundary (a multiple of {m.chunk_samples}) "
                f"inside the store of {m.num_samples} samples, got start={start}"
            )
        if stop > m.num_samples or (stop % m.chunk_samples and stop != m.num_samples):
            raise ValueError(
                f"a block of {n} samples at {start} does not end on a chunk boundary "
                f"(multiples of {m.chunk_samples}) or at the end of the store ({m.num_samples})"
            )
        return stop

    def _codes(self, name: str, latents, codes, valid, n):
        """(q, scales) for one array from float latents or a (q, scales) pair."""
        m = self._metadata
        if (latents is None) == (codes is None):
            raise ValueError(f"pass exactly one of {name} latents (floats) or codes ((q, scales))")
        shape = (n, *m.latent_shape)
        if latents is not None:
            if not m.quant.has_scales:
                raise ValueError("this store uses the affine scheme: write its codes, not float latents")
            latents = np.asarray(latents)
            if latents.shape != shape:
                raise ValueError(f"{name} latents must have shape {shape}, got {latents.shape}")
            if not valid.all():
                # Invalid samples (failed or non-finite) are stored as zeros.
                latents = np.where(valid.reshape((n,) + (1,) * len(m.latent_shape)).astype(bool), latents, 0)
            return quantize(latents, m.quant.granularity or "sample")  # zero padding stays zero codes
        if m.quant.has_scales:
            if not (isinstance(codes, tuple) and len(codes) == 2):
                raise TypeError(f"{name} codes must be a (q, scales) pair")
            q, scales = np.asarray(codes[0]), np.asarray(codes[1])
        else:
            q, scales = np.asarray(codes[0] if isinstance(codes, tuple) else codes), None
        if q.shape != shape or q.dtype != m.code_dtype:
            raise ValueError(f"{name} codes must be {m.code_dtype} of shape {shape}, got {q.dtype} {q.shape}")
        if scales is not None:
            scale_shape = (n, *m.scale_shape)
            if scales.shape != scale_shape or scales.dtype != np.float16:
                raise ValueError(f"{name} scales must be float16 of shape {scale_shape}, got {scales.dtype} {scales.shape}")
            if not np.isfinite(scales).all():
                raise ValueError(f"{name} scales must be finite")
        return q, scales

    def write(
        self,
        start: int,
        latents=None,
        *,
        codes=None,
        labels=None,
        valid=None,
        flip_latents=None,
        flip_codes=None,
        ids=None,
        failures=None,
        columns=None,
        buckets=None,
        crop_boxes=None,
    ) -> None:
        """Write samples [start, start + n) — whole chunks.

        ``latents`` are float latents (quantized here) or ``codes`` a
        ``(q, scales)`` pair already in the store's format. ``labels``
        defaults to -1; ``valid`` (bool per sample) defaults to all valid:
        invalid samples are stored as zeros and skipped by readers. Stores
        made with ``flip=True`` need ``flip_latents`` or ``flip_codes``; with
        ``ids=True``, ``ids`` (one string per sample). With ``failures=True``,
        ``failures`` gives the reason of each invalid sample ("" for valid ones;
        all "" when omitted). A store with columns needs ``columns``: every
        column's n values by name (str for text, bytes, numbers that fit the
        column's dtype exactly); give invalid samples "" / b"" / 0. A bucketed
        store needs ``buckets`` (each sample's index in the table) and takes
        ``crop_boxes`` ((n, 4) left, top, right, bottom as fractions of the
        source image's width and height; NaN when omitted); its latents or codes are (n, C, max_tokens) rows, zero
        past each sample's h*w tokens (:func:`pack_buckets` makes them).
        """
        m = self._metadata
        first = latents if latents is not None else (codes[0] if isinstance(codes, tuple) else codes)
        if first is None:
            raise ValueError("pass latents or codes to write")
        n = len(first)
        stop = self._check_block(start, n)
        valid = _valid_flags(valid, n)
        labels = _checked_labels(labels, n, m.classes)

        blocks = {fmt.LATENTS: self._codes("", latents, codes, valid, n)}
        if m.flip:
            blocks[fmt.FLIP_LATENTS] = self._codes("flip", flip_latents, flip_codes, valid, n)
        elif flip_latents is not None or flip_codes is not None:
            raise ValueError("this store was created without flip=True; it has no flip/ arrays")
        if m.ids != (ids is not None):
            raise ValueError("pass ids exactly when the store was created with ids=True")
        if failures is not None and fmt.FAILURES not in self._arrays:
            raise ValueError("this store was created without failures=True; it has no failures array")
        column_values = self._checked_columns(columns, n)
        column_values.update(self._checked_buckets(buckets, crop_boxes, n))

        region = slice(start, stop)
        try:
            self._write_arrays(region, blocks, labels, valid, ids, failures, column_values, n)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise StoreWriteError(self.path, start // m.chunk_samples, exc.strerror or str(exc)) from exc
            raise

    def _checked_buckets(self, buckets, crop_boxes, n: int) -> dict:
        table = self._metadata.buckets
        if table is None:
            if buckets is not None or crop_boxes is not None:
                raise ValueError("this store was created without buckets; it has no bucket or crop box arrays")
            return {}
        if buckets is None:
            raise ValueError("a bucketed store needs buckets= (each sample's index in the bucket table) with every write")
        indices = np.asarray(buckets)
        if indices.shape != (n,) or not np.issubdtype(indices.dtype, np.integer):
            raise ValueError(f"buckets must be {n} integers, got {indices.dtype} {indices.shape}")
        if n and (indices.min() < 0 or indices.max() >= len(table.shapes)):
            raise ValueError(f"buckets must lie in [0, {len(table.shapes)}), the store's bucket table; got {indices.min()}..{indices.max()}")
        boxes = np.full((n, 4), np.nan, np.float32) if crop_boxes is None else np.asarray(crop_boxes, dtype=np.float32)
        if boxes.shape != (n, 4):
            raise ValueError(f"crop_boxes must have shape ({n}, 4), got {boxes.shape}")
        if np.isinf(boxes).any():
            raise ValueError("crop_boxes must be finite (NaN where a box is not known)")
        return {fmt.BUCKETS: indices.astype(np.uint16), fmt.CROP_BOXES: boxes}

    def _checked_columns(self, columns, n: int) -> dict:
        specs = self._metadata.columns
        given = {} if columns is None else dict(columns)
        if set(given) != {spec.name for spec in specs}:
            have = ", ".join(spec.name for spec in specs) or "none"
            raise ValueError(f"pass columns= with exactly this store's columns ({have}), got {sorted(given) or 'none'}")
        return {spec.array_name: _checked_column(spec, given[spec.name], n) for spec in specs}

    def _write_arrays(self, region: slice, blocks: dict, labels, valid, ids, failures, column_values, n: int) -> None:
        """The chunk's files, its valid flags last: a chunk counts as done once they land."""
        for name, (q, scales) in blocks.items():
            self._arrays[name][region] = q
            if scales is not None:
                self._arrays[name.replace("latents", "scales")][region] = scales
        self._arrays[fmt.LABELS][region] = labels
        strings = {fmt.IDS: ids}
        if fmt.FAILURES in self._arrays:
            strings[fmt.FAILURES] = np.full(n, "", dtype=object) if failures is None else failures
        for name, values in strings.items():
            if values is not None:
                values = np.asarray(values, dtype=object)
                if values.shape != (n,):
                    raise ValueError(f"{name} must hold {n} strings, got shape {values.shape}")
                self._arrays[name][region] = values.astype(str)
        for name, values in column_values.items():
            self._arrays[name][region] = values
        self._arrays[fmt.VALID][region] = valid.astype(np.uint8)

    def append(self, latents=None, **columns) -> None:
        """Write the next samples, in blocks of any size, in order from sample 0.

        Takes what :meth:`write` takes (``latents`` or ``codes``, ``labels``,
        ``valid``, ``flip_latents``, ``ids``...), for any number of samples:
        rows are held until they fill a chunk (memory: at most one chunk plus
        the block passed), and each full chunk goes to :meth:`write`, so the
        store on disk still only ever gains whole chunks. A chunk that is
        already finished (a resumed run feeding its data again) is skipped,
        not rewritten. :meth:`finalize` writes the last, shorter chunk.
        """
        columns = {"latents": latents, **columns}
        for start, block in self._appended.add(columns):
            self._write_appended(start, block)

    def _write_appended(self, start: int, block: dict) -> None:
        if self._appended.finished is None:  # what a resumed run has already: looked up once
            self._appended.finished = set(self.completed_chunks())
        chunk = start // self._metadata.chunk_samples
        if chunk not in self._appended.finished:
            self.write(start, **block)
            self._appended.finished.add(chunk)

    def failure_reasons(self) -> dict[int, str]:
        """sample index -> reason, for every sample the ``failures`` array flags."""
        if fmt.FAILURES not in self._arrays:
            return {}
        reasons = self._arrays[fmt.FAILURES][:]
        return {int(i): str(reasons[i]) for i in np.flatnonzero(reasons != "")}

    def update_metadata(self, **extra) -> None:
        """Merge extra JSON entries (e.g. a failures report) into the metadata."""
        reserved = {f for f in StoreMetadata.__dataclass_fields__} - {"extra"}
        clash = reserved & set(extra)
        if clash:
            raise ValueError(f"{sorted(clash)} are format fields, not extra metadata")
        self._metadata = self._metadata.replace(extra={**self._metadata.extra, **extra})
        self._group.attrs[fmt.ATTRIBUTE_KEY] = self._metadata.to_dict()

    # -- finishing ---------------------------------------------------------
    def finalize(self) -> StoreMetadata:
        """Compute per-channel stats and mark the store complete.

        Raises FormatError listing the unwritten chunks if any remain.
        """
        left = self._appended.take_rest()
        if left is not None:
            start, block = left
            if start + self._appended.block_rows(block) != self._metadata.num_samples:
                raise ValueError(
                    f"{start + self._appended.block_rows(block)} of {self._metadata.num_samples} samples were "
                    "appended; append the rest before finalizing"
                )
            self._write_appended(start, block)
        pending = self.pending_chunks()
        if pending:
            shown = ", ".join(map(str, pending[:10])) + (" ..." if len(pending) > 10 else "")
            raise FormatError(
                f"{len(pending)} of {self._metadata.num_chunks} chunks are not written yet ({shown}); "
                "write them (or rerun the same encode command to resume) before finalizing"
            )
        m = self._metadata
        moments = ChannelMoments(m.channels)
        scales_name = fmt.SCALES if m.quant.has_scales else None
        lut = m.quant.lookup_table()
        for chunk in range(m.num_chunks):
            start, stop = m.chunk_range(chunk)
            valid = self._arrays[fmt.VALID][start:stop].astype(bool)
            q = self._arrays[fmt.LATENTS][start:stop]
            scales = self._arrays[scales_name][start:stop] if scales_name else None
            if m.buckets is None:
                moments.add_codes(q[valid], None if scales is None else scales[valid], lut)
                continue
            buckets = self._arrays[fmt.BUCKETS][start:stop]
            for bucket in np.unique(buckets[valid]).tolist():  # each sample's own tokens, not the padding
                rows = valid & (buckets == bucket)
                moments.add_codes(q[rows][:, :, : m.buckets.area(bucket)], None if scales is None else scales[rows], lut)
        self._metadata = m.replace(stats=moments.to_dict(), complete=True)
        self._group.attrs[fmt.ATTRIBUTE_KEY] = self._metadata.to_dict()
        return self._metadata

    def close(self) -> StoreMetadata:
        """Finalize (see :meth:`finalize`)."""
        return self.finalize()

    def __enter__(self) -> "StoreWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # After an error the store stays incomplete and resumable.
        if exc_type is None:
            self.finalize()
