"""Opening and reading a store.

For a local store whose latents are uncompressed, reads never touch
zarr-python: chunk files are memory-mapped once (``_mapped.MappedChunks``)
and one compiled loop gathers the requested rows, dequantizes, optionally
normalises and writes the output, without the GIL. Other stores (compressed,
or behind an fsspec URL) are read through zarr-python and give identical
values. The small per-sample arrays (scales, labels, valid) are loaded into
memory when the store is opened.
"""

import numbers
import os
import stat
import warnings
from pathlib import Path

import numpy as np

from latentstore import format as fmt
from latentstore._options import choice, flag
from latentstore.errors import CorruptChunkError, FormatError, InvalidSampleError, StoreNotFoundError
from latentstore.format import ArrayLayout, StoreMetadata
from latentstore.quantization._native import kernels as _kernels
from latentstore.quantization.kernels import (
    Normalization,
    gather_dequantize,
    output_buffer,
)
from latentstore.quantization.threads import threads_for
from latentstore.store.columns import MappedTextColumn, ZarrColumn
from latentstore.store.files import LocalFiles
from latentstore.store.mapped import MappedChunks, ZarrRows, load_local_array, read_rows
from latentstore.store.sampling import batch_slices, bucket_batches, epoch_order

NORMALIZE_MODES = (False, True, "stats", "scaling_factor")


def _missing_chunk(name: str, chunk: int) -> CorruptChunkError:
    return CorruptChunkError(
        name, chunk, "the chunk file is missing from a complete store; run 'latentstore verify' on it "
        "to list the damage, then restore the store or re-encode those chunks"
    )


def _check_chunk_files(root: Path, layouts: dict[str, ArrayLayout], complete: bool) -> None:
    """Before zarr-python reads a local store: every chunk file is a regular file (zarr would
    block on a FIFO, read /dev/zero forever) and, in a complete store, there (zarr would read a
    missing one as zeros). The mapped path checks the same while it opens each file."""
    for name, layout in layouts.items():
        if layout.separator != "/":
            continue  # another key encoding: zarr-python finds its chunks
        for k in range(layout.num_chunks):
            path = root / name / layout.chunk_key(k)
            try:
                mode = os.stat(path).st_mode
            except FileNotFoundError:
                if complete:
                    raise _missing_chunk(name, k) from None
                continue
            except OSError as exc:
                raise CorruptChunkError(name, k, f"{path} cannot be read ({exc.strerror or exc})") from None
            if not stat.S_ISREG(mode):
                raise CorruptChunkError(name, k, f"{path} is not a regular file; the store is damaged")


def _array_not_store_message(root: Path) -> str:
    """What to say when a path names one array of a store (``STORE/latents``, ``STORE/flip/latents``)."""
    for parent in list(root.parents)[:2]:
        try:
            document = LocalFiles(parent).read_json("zarr.json")
        except FormatError:
            document = None
        if document and fmt.ATTRIBUTE_KEY in (document.get("attributes") or {}):
            return (f"{root} is the {root.relative_to(parent).as_posix()!r} array of the latent store at {parent}; "
                    f"pass the store, {parent}")
    return f"{root} is a Zarr array, not a latent store (a Zarr group); pass the store's directory"


def open(path, *, mode: str = "r", cache: bool = True, cache_dir=None, progress: bool = False,  # noqa: A001 - mirrors zarr.open
         prefetch: bool | None = None) -> "LatentStore":
    """Open the store at ``path`` (a directory or an fsspec URL) for reading.

    A store behind a URL (``s3://``, ``gs://``, ``hf://``, ``http(s)://``, any
    fsspec URL) is fetched once into a local cache (``cache_dir``, else
    ``$LATENTSTORE_CACHE_DIR``, else ``~/.cache/latentstore``), every chunk
    verified against its crc32c, and then read through the same memory-mapped
    path as a local store; a changed remote store is fetched anew (see
    ``store.transfer._Snapshot.key``). ``prefetch=True`` fetches every chunk
    at open (the default for stores below ``PREFETCH_BELOW_BYTES``, 4 GiB);
    ``prefetch=False`` fetches the metadata and the small per-sample arrays at
    open and each chunk of latents or text on first touch, in parallel, while
    a background thread fetches the rest (the default for larger stores).
    ``cache=False`` reads through zarr-python instead, fetching every touched
    chunk whole on every read.
    """
    if mode != "r":
        raise ValueError("stores open read-only; write with latentstore.create()")
    text = str(path)
    if fmt.local_path(text) is None and flag(cache, "cache"):
        from latentstore.store.transfer import cached_copy

        target, fetcher = cached_copy(text, cache_dir=cache_dir, progress=progress, prefetch=prefetch)
        store = LatentStore(target, fetcher=fetcher)
        store.url = text
        store._reopen = {"cache_dir": None if cache_dir is None else str(cache_dir), "prefetch": prefetch}
        return store
    return LatentStore(path)


def _zarr_array(group, name: str, path: str):
    """``group[name]``, which must be an array (a damaged store may hold a group or nothing there)."""
    import zarr

    try:
        with warnings.catch_warnings():  # see writer._create_column
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification")
            array = group[name]
    except KeyError:
        raise FormatError(f"array {name!r} is missing from {path}; the store is damaged") from None
    except Exception as exc:  # zarr and its codecs raise many kinds for damaged array metadata
        raise FormatError(f"array {name!r} of {path} cannot be opened ({type(exc).__name__}: {exc})") from exc
    if not isinstance(array, zarr.Array):
        raise FormatError(f"{path}/{name} is a Zarr group, not an array; the store is damaged")
    return array


class LatentStore:
    """A read-only latent store: ``len(store)``, ``store.read(indices)``, ``store[i]``.

    Reads are thread-safe and work in forked children; pickling a store
    pickles its path, and the copy reopens (maps) the files itself.
    """

    def __init__(self, path, *, fetcher=None):
        self._path = str(path).removeprefix("file://")
        self.url: str | None = None  # the remote store this is the cached copy of (set by open)
        self._reopen: dict = {}
        self._fetcher = fetcher  # a transfer.ChunkFetcher while the cached copy is filled on first touch
        if fmt.local_path(self._path) is None:
            self._open_zarr()
        else:
            self._open_local()
        m = self.metadata
        self._padded_rows = m.num_chunks * m.chunk_samples
        self._lut = m.quant.lookup_table()
        self._normalizations: dict[str, Normalization] = {}
        self._valid_flags = self.valid.view(np.uint8)
        self.labels.flags.writeable = False
        self.valid.flags.writeable = False
        if self._bucket_of is not None:
            self._bucket_of.flags.writeable = False
            table = m.buckets
            bad = np.flatnonzero(self._bucket_of[self.valid] >= len(table.shapes)) if table is not None else []
            if len(bad):
                sample = int(np.flatnonzero(self.valid)[bad[0]])
                raise CorruptChunkError(fmt.BUCKETS, sample // m.chunk_samples,
                                        f"sample {sample} names bucket {int(self._bucket_of[sample])} of a table of "
                                        f"{len(table.shapes)}; run 'latentstore verify' on the store")

    # -- opening -----------------------------------------------------------
    def _metadata_from(self, attributes: dict) -> StoreMetadata:
        if fmt.ATTRIBUTE_KEY not in attributes:
            raise FormatError(
                f"{self._path} is a Zarr group but not a latent store (no {fmt.ATTRIBUTE_KEY!r} attribute); "
                "create stores with latentstore.create() or 'latentstore encode'"
            )
        return StoreMetadata.from_dict(attributes[fmt.ATTRIBUTE_KEY])

    def _open_local(self) -> None:
        root = Path(self._path)
        group = LocalFiles(root).read_json("zarr.json")
        if group is None:
            raise StoreNotFoundError(
                f"no latent store at {root} ({'no zarr.json in it' if root.is_dir() else 'no such directory'}); "
                "check the path, or create one with 'latentstore encode'"
            )
        if group.get("node_type") == "array":
            raise FormatError(_array_not_store_message(root))
        self.metadata = self._metadata_from(group.get("attributes", {}))
        layouts = {}
        expected: dict[str, tuple[tuple[int, ...], np.dtype, str | None]] = {
            name: (shape, dtype, None) for name, (shape, dtype) in self.metadata.arrays().items()
        }
        for spec in self.metadata.columns:
            kind = spec.kind if spec.variable_length else None
            expected[spec.array_name] = ((self.metadata.num_samples,), spec.dtype, kind)
        for name, (shape, dtype, kind) in expected.items():
            document = LocalFiles(root).read_json(f"{name}/zarr.json")
            if document is None:
                raise FormatError(f"array {name!r} is missing from {root}; the store is damaged")
            layout = ArrayLayout.from_zarr_json(document, name)
            layout.check(name, shape, dtype, self.metadata.chunk_samples, kind)
            layouts[name] = layout
        self._layouts = layouts
        m = self.metadata
        if not all(layout.mappable for layout in layouts.values()):
            _check_chunk_files(root, layouts, m.complete)
            self._open_zarr()
            return
        # A snapshot, even while a writer lands chunks: the writer writes a
        # chunk's valid flags last, so reading them first means every chunk
        # flagged valid here already has its other files. A chunk any array
        # lacks is still flagged invalid below (damage, or a torn write).
        valid_flags, valid_present = load_local_array(root / fmt.VALID, fmt.VALID, layouts[fmt.VALID])
        present_by_array = {fmt.VALID: valid_present}
        latent_names = [fmt.LATENTS] + ([fmt.FLIP_LATENTS] if m.flip else [])
        self._scale_bits = None
        if m.quant.has_scales:
            self._scale_bits, scales_present = self._load_scales(root, layouts, latent_names)
            present_by_array.update(scales_present)
        labels, present_by_array[fmt.LABELS] = load_local_array(root / fmt.LABELS, fmt.LABELS, layouts[fmt.LABELS])
        self._bucket_of = self._crop_boxes = None
        if m.buckets is not None:
            buckets, present_by_array[fmt.BUCKETS] = load_local_array(root / fmt.BUCKETS, fmt.BUCKETS, layouts[fmt.BUCKETS])
            boxes, present_by_array[fmt.CROP_BOXES] = load_local_array(
                root / fmt.CROP_BOXES, fmt.CROP_BOXES, layouts[fmt.CROP_BOXES])
            self._bucket_of, self._crop_boxes = buckets[: m.num_samples], boxes[: m.num_samples]
        self._rows: MappedChunks | ZarrRows | None = MappedChunks([(root / name, name, layouts[name]) for name in latent_names])
        present_by_array.update(self._rows.present)
        if self._fetcher is not None:  # chunks still to come count as there
            for i in self._rows.missing:
                if self._fetcher.has_source(self._rows.chunk_key(i)):
                    present_by_array[latent_names[i // self._rows.num_chunks]][i % self._rows.num_chunks] = True
        self._columns: dict = {}
        for spec in m.columns:
            name = spec.array_name
            if spec.variable_length:
                column = self._columns[spec.name] = MappedTextColumn(root / name, spec, layouts[name])
                present_by_array[name] = column.present.copy()
                if self._fetcher is not None:
                    for chunk in np.flatnonzero(~column.present).tolist():
                        present_by_array[name][chunk] = self._fetcher.has_source(column.chunk_key(chunk))
            else:
                values, present_by_array[name] = load_local_array(root / name, name, layouts[name])
                self._columns[spec.name] = values[: m.num_samples]
        present = np.logical_and.reduce(list(present_by_array.values()))
        if m.complete and not present.all():
            name = next(name for name, mask in present_by_array.items() if not mask.all())
            raise _missing_chunk(name, int(np.argmin(present_by_array[name])))
        n = m.num_samples
        self.labels = labels[:n]
        self.valid = np.zeros(n, dtype=bool)
        for k in np.flatnonzero(present):
            start, stop = m.chunk_range(int(k))
            self.valid[start:stop] = valid_flags[start:stop] != 0
        self.fast = True

    def _load_scales(self, root: Path, layouts: dict, latent_names: list[str]):
        """Every scales array in the kernels' row space (padded, stacked) as uint16 bits, and
        which chunks each of them had (name -> mask)."""
        names = [name.replace("latents", "scales") for name in latent_names]
        layout = layouts[names[0]]
        rows = layout.num_chunks * layout.chunk_shape[0]
        stacked = np.zeros((len(names) * rows, *layout.shape[1:]), dtype=np.float16)
        present = {}
        for a, name in enumerate(names):
            _, present[name] = load_local_array(root / name, name, layouts[name], out=stacked[a * rows : (a + 1) * rows])
        return stacked.reshape(len(stacked), -1).view(np.uint16), present

    def _open_zarr(self) -> None:
        import zarr

        try:
            group = zarr.open_group(self._path, mode="r", zarr_format=3)
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as exc:
            raise StoreNotFoundError(f"no latent store at {self._path}: {exc}") from exc
        except Exception as exc:  # zarr and its codecs raise many kinds for damaged metadata
            raise FormatError(f"{self._path} cannot be opened as a Zarr v3 group ({type(exc).__name__}: {exc})") from exc
        self.metadata = self._metadata_from(group.attrs.asdict())
        m = self.metadata
        arrays = {}
        for name, (shape, dtype) in m.arrays().items():
            array = arrays[name] = _zarr_array(group, name, self._path)
            if array.shape != shape or array.dtype != dtype or array.chunks[0] != m.chunk_samples:
                raise FormatError(
                    f"array {name!r}: expected {dtype} {shape} in chunks of {m.chunk_samples}, "
                    f"got {array.dtype} {array.shape} in chunks of {array.chunks[0]}"
                )
        padded = m.num_chunks * m.chunk_samples
        latent_names = [fmt.LATENTS] + ([fmt.FLIP_LATENTS] if m.flip else [])
        self._rows = ZarrRows([arrays[name] for name in latent_names], padded)

        def load(name):
            data = read_rows(arrays[name], np.arange(m.num_samples))
            pad = [(0, padded - len(data))] + [(0, 0)] * (data.ndim - 1)
            return np.pad(data, pad)

        # Valid flags first, for the snapshot rule of _open_local.
        self.valid = read_rows(arrays[fmt.VALID], np.arange(m.num_samples)) != 0
        self._scale_bits = self._stack_scales(load, latent_names)
        self.labels = np.ascontiguousarray(read_rows(arrays[fmt.LABELS], np.arange(m.num_samples)))
        self._bucket_of = self._crop_boxes = None
        if m.buckets is not None:
            self._bucket_of = np.ascontiguousarray(read_rows(arrays[fmt.BUCKETS], np.arange(m.num_samples)))
            self._crop_boxes = np.ascontiguousarray(read_rows(arrays[fmt.CROP_BOXES], np.arange(m.num_samples)))
        self._columns = {}
        for spec in m.columns:
            array = _zarr_array(group, spec.array_name, self._path)
            if spec.variable_length:
                self._columns[spec.name] = ZarrColumn(array, spec)
            else:
                if array.dtype != spec.dtype:
                    raise FormatError(f"array {spec.array_name!r}: expected {spec.dtype}, got {array.dtype}")
                self._columns[spec.name] = np.ascontiguousarray(read_rows(array, np.arange(m.num_samples)))
        self.fast = False

    def _stack_scales(self, load, latent_names: list[str]) -> np.ndarray | None:
        """Every scales array, padded and stacked in the kernels' row space, as uint16 bits."""
        if not self.metadata.quant.has_scales:
            return None
        scales = [load(name.replace("latents", "scales")) for name in latent_names]
        stacked = np.concatenate(scales).astype(np.float16, copy=False)
        return np.ascontiguousarray(stacked.reshape(len(stacked), -1)).view(np.uint16)

    def __getstate__(self):
        if self._fetcher is not None and self.url is not None:  # still filling: the copy reopens it by URL
            return {"path": self._path, "url": self.url, "reopen": self._reopen}
        return {"path": self._path}

    def __setstate__(self, state):
        if "url" in state:
            reopened = open(state["url"], **state["reopen"])
            self.__dict__.update(reopened.__dict__)
            return
        self.__init__(state["path"])

    def _fetch_latent_chunks(self, rows: np.ndarray) -> None:
        """Before a read of a store filled on first touch: fetch and map the chunks ``rows`` need."""
        source = self._rows
        if not isinstance(source, MappedChunks) or not source.missing:
            return
        need = [i for i in np.unique(rows // source.chunk_rows).tolist() if i in source.missing]
        if need:
            self._fetcher.ensure([source.chunk_key(i) for i in need])
            source.remap(need)

    def _fetch_column_chunks(self, column: MappedTextColumn, rows: np.ndarray) -> None:
        if self._fetcher is None or column.present.all():
            return
        need = [k for k in np.unique(rows // column.chunk_rows).tolist() if not column.present[k]]
        if need:
            self._fetcher.ensure([column.chunk_key(k) for k in need])
            for k in need:
                column.remap(k)

    def close(self) -> None:
        """Drop the mappings (reads already running keep theirs until they finish), and stop
        fetching a remote store's chunks in the background."""
        if self._fetcher is not None:
            self._fetcher.stop()
        self._rows = None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` has dropped the mappings (reads then raise)."""
        return self._rows is None

    def __enter__(self) -> "LatentStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- description -------------------------------------------------------
    @property
    def path(self) -> str:
        return self._path

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.metadata.num_samples, *self.metadata.latent_shape)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return self.metadata.latent_shape

    @property
    def bucket_table(self) -> fmt.BucketTable | None:
        """The (h, w) latent shapes of a multi-aspect store, or None for a store of one shape."""
        return self.metadata.buckets

    @property
    def bucket_indices(self) -> np.ndarray | None:
        """Each sample's index in :attr:`bucket_table` (N,), or None for a store of one shape."""
        return self._bucket_of

    @property
    def buckets(self) -> list[dict]:
        """The buckets with their valid samples: ``[{"bucket": b, "shape": (C, h, w), "count": n}]``
        (one entry, the store's latent shape, for a store of one shape)."""
        table = self.metadata.buckets
        if self._bucket_of is None or table is None:
            return [{"bucket": 0, "shape": self.latent_shape, "count": int(self.valid.sum())}]
        counts = np.bincount(self._bucket_of[self.valid], minlength=len(table.shapes))
        return [{"bucket": b, "shape": (self.metadata.channels, *table.shapes[b]), "count": int(counts[b])}
                for b in range(len(table.shapes))]

    def crop_boxes(self, indices) -> np.ndarray:
        """(n, 4) float32 (left, top, right, bottom) of each sample's crop as fractions of its source
        image's width and height (NaN where not recorded); bucketed stores only."""
        if self._crop_boxes is None:
            raise ValueError(f"{self._path} is not a bucketed store; it records no crop boxes")
        rows, scalar = self._rows_for(indices, allow_invalid=True)
        boxes = self._crop_boxes[rows]
        return boxes[0] if scalar else boxes

    def batch_shape(self, indices) -> tuple[int, ...]:
        """The latent shape each sample of a read of ``indices`` has: the store's, or the one
        bucket the samples share. Samples of several buckets raise the ValueError :meth:`read`
        raises for them (what a DataLoader worker checks before it sends a batch on)."""
        rows, _ = self._rows_for(indices, allow_invalid=True)
        return self._sample_shape(rows)

    def _sample_shape(self, rows: np.ndarray) -> tuple[int, ...]:
        table = self.metadata.buckets
        if self._bucket_of is None or table is None:
            return self.metadata.latent_shape
        if not len(rows):
            return (self.metadata.channels, 0, 0)
        buckets = self._bucket_of[rows]
        first = int(buckets[0])
        if (buckets != first).any():
            other = int(np.flatnonzero(buckets != first)[0])
            raise ValueError(
                f"samples of several buckets of {self._path} mix in one batch, and a batch's latents are one "
                f"array: sample {int(rows[0])} is {table.shapes[first]}, sample {int(rows[other])} is "
                f"{table.shapes[int(buckets[other])]}; read one bucket at a time (store.bucket_indices says each "
                "sample's): LatentLoader gives batches of one bucket, and for a DataLoader pass "
                "batch_sampler=latentstore.torch.BucketBatchSampler(dataset, batch_size)"
            )
        return (self.metadata.channels, *table.shapes[first])

    @property
    def classes(self) -> tuple[str, ...] | None:
        return self.metadata.classes

    @property
    def has_flip(self) -> bool:
        return self.metadata.flip

    @property
    def scales(self) -> np.ndarray | None:
        """Every sample's float16 scales, (N,) or (N, C); None for the affine scheme."""
        if self._scale_bits is None:
            return None
        s = self._scale_bits[: self.metadata.num_samples].view(np.float16)
        return s[:, 0] if self.metadata.quant.granularity == "sample" else s

    def __len__(self) -> int:
        return self.metadata.num_samples

    def __repr__(self) -> str:
        m = self.metadata
        state = "complete" if m.complete else "INCOMPLETE"
        return (
            f"<LatentStore {self._path}: {int(self.valid.sum())}/{m.num_samples} valid samples of "
            f"{m.latent_shape} {m.quant.code_dtype}, {m.quant.scheme}, {state}, "
            f"{'mapped' if self.fast else 'zarr'} reads>"
        )

    # -- indexing ----------------------------------------------------------
    def _rows_for(self, indices, allow_invalid: bool) -> tuple[np.ndarray, bool]:
        """Resolve indices to row numbers in [0, N), checking range and validity."""
        n = self.metadata.num_samples
        allow_invalid = flag(allow_invalid, "allow_invalid")
        scalar = isinstance(indices, numbers.Integral)
        if isinstance(indices, slice):
            indices = np.arange(*indices.indices(n), dtype=np.int64)
        elif not (
            isinstance(indices, np.ndarray)
            and indices.dtype == np.int64
            and indices.ndim == 1
            and indices.flags.c_contiguous
        ):
            indices = np.asarray(indices)
            if indices.dtype == bool:
                if indices.shape != (n,):
                    raise IndexError(f"a boolean mask must have shape ({n},), got {indices.shape}")
                indices = np.flatnonzero(indices)
            elif indices.size and not np.issubdtype(indices.dtype, np.integer):
                raise TypeError(f"indices must be integers, a slice or a boolean mask, got {indices.dtype}")
            if indices.ndim > 1:
                raise IndexError(f"indices must be one-dimensional, got shape {indices.shape}")
            if indices.dtype == np.uint64 and indices.size and indices.max() > np.iinfo(np.int64).max:
                raise IndexError(f"index {indices.max()} is out of range for a store of {n} samples")
            indices = np.ascontiguousarray(indices.reshape(-1), dtype=np.int64)
        rows = np.empty(len(indices), dtype=np.int64)
        problem = _kernels.resolve_rows(indices, n, None if allow_invalid else self._valid_flags, rows)
        if problem >= 0:
            bad = int(indices[problem // 2])
            if problem % 2 == 0:
                raise IndexError(f"index {bad} is out of range for a store of {n} samples")
            raise InvalidSampleError(
                f"sample {bad % n} is marked invalid (missing, failed or non-finite); "
                "pass allow_invalid=True to read it anyway (it reads as zeros), or skip it using store.valid"
            )
        return rows, scalar

    def _flip_rows(self, rows: np.ndarray, flip) -> np.ndarray:
        if flip is None:
            return rows
        mask = np.asarray(flip)
        if mask.dtype != bool:
            raise TypeError(f"flip must be None, a bool or an array of bools (one per sample), got {flip!r:.60}")
        if mask.ndim == 0 and not mask:
            return rows
        if not self.metadata.flip:
            raise ValueError(
                "this store has no flip/ latents; encode with --flip to get them "
                "(flipping a latent is not the latent of the flipped image)"
            )
        return rows + np.broadcast_to(mask, rows.shape) * self._padded_rows

    def normalization(self, normalize) -> Normalization | None:
        """The :class:`Normalization` a ``normalize=`` argument of :meth:`read` stands for.

        False gives None; True or "stats" the store's per-channel (x - mean) / std;
        "scaling_factor" the encoder's x * scaling_factor; a Normalization itself.
        """
        if normalize is False:  # the common case, on every read
            return None
        if isinstance(normalize, Normalization):
            return normalize
        try:
            normalize = choice(normalize, "normalize", NORMALIZE_MODES)
        except ValueError as exc:
            raise ValueError(f"{exc} (or a Normalization)") from None
        if normalize is False:
            return None
        # Built once per mode: read() asks for it on every batch.
        mode = "stats" if normalize is True else normalize
        if mode not in self._normalizations:
            self._normalizations[mode] = self._build_normalization(mode)
        return self._normalizations[mode]

    def _build_normalization(self, mode: str) -> Normalization:
        channels = self.metadata.channels
        if mode == "scaling_factor":
            factor = (self.metadata.encoder or {}).get("scaling_factor")
            if factor is None:
                raise ValueError("this store records no encoder scaling_factor; pass a Normalization instead")
            return Normalization.scaling(factor, channels)
        stats = self.metadata.stats
        if stats is None:
            raise ValueError("this store has no per-channel stats yet (it is not finalized); pass a Normalization instead")
        return Normalization(1.0, stats["mean"], stats["std"])

    # -- reading -----------------------------------------------------------
    def read(
        self,
        indices,
        *,
        dtype=np.float32,
        normalize=False,
        out=None,
        allow_invalid: bool = False,
        flip=None,
        num_threads: int | None = None,
        columns=None,
    ):
        """Dequantized latents and labels of the given samples, in the order asked.

        ``indices``: an int, a sequence or array of ints (negative and
        repeated indices allowed), a slice or a boolean mask. Returns
        ``(latents, labels)``: float32 (or float16) latents of shape
        (n, C, H, W), or (C, H, W) and an int for a single index.
        ``normalize``: False; ``True``/``"stats"`` for (x̂ - mean_c) / std_c
        with the store's per-channel stats; ``"scaling_factor"`` for
        x̂ * scaling_factor; or a :class:`Normalization`. ``flip``: a bool or
        one bool per sample, reading the flipped image's latent where true.
        ``out``: a preallocated C-contiguous array to fill. ``columns``: names
        of per-sample columns to read too; then the result is ``(latents,
        labels, {name: values})`` (see :meth:`column` for the values).
        """
        rows, scalar = self._rows_for(indices, allow_invalid)
        wanted = self._wanted_columns(columns)
        if scalar and out is not None:
            raise ValueError("out= needs an array of indices (a scalar index returns one sample); pass [i] instead")
        normalization = self.normalization(normalize)
        out = output_buffer((len(rows), *self._sample_shape(rows)), dtype, out)
        source = self._rows
        if source is None:
            raise ValueError("this store is closed")
        kernel_space = self._flip_rows(rows, flip)
        if self._fetcher is not None:
            self._fetch_latent_chunks(kernel_space)
        addresses, chunk_rows, kernel_rows, scale_bits, keepalive = source.locate(kernel_space, self._scale_bits)
        gather_dequantize(
            addresses,
            chunk_rows,
            kernel_rows,
            scale_bits,
            self._lut,
            out,
            normalization=normalization,
            num_threads=num_threads,
            source_pixels=self.metadata.latent_shape[-1] if self._bucket_of is not None else 0,
        )
        del keepalive
        labels = self.labels[rows]
        result = (out[0], int(labels[0])) if scalar else (out, labels)
        return result if wanted is None else (*result, self._columns_at(wanted, rows, scalar))

    def __getitem__(self, indices):
        return self.read(indices)[0]

    def codes(self, indices, *, allow_invalid: bool = False, flip=None, num_threads: int | None = None):
        """The stored codes and scales of the given samples: ``(q, scales)``.

        ``q`` has the store's code dtype (int8); ``scales`` float16 (n,) or
        (n, C), or None for the affine scheme.
        """
        rows, scalar = self._rows_for(indices, allow_invalid)
        source = self._rows
        if source is None:
            raise ValueError("this store is closed")
        flipped = self._flip_rows(rows, flip)
        if self._fetcher is not None:
            self._fetch_latent_chunks(flipped)
        addresses, chunk_rows, kernel_rows, _, keepalive = source.locate(flipped, None)
        shape = self._sample_shape(rows)
        q = np.empty((len(rows), *self.metadata.latent_shape), dtype=self.metadata.code_dtype)
        if len(rows):
            _kernels.gather_rows(
                addresses, chunk_rows, kernel_rows, q.reshape(len(rows), -1).view(np.uint8), threads_for(q.nbytes, num_threads)
            )
        del keepalive
        if self._bucket_of is not None:  # the bucket's own tokens of each padded row
            q = np.ascontiguousarray(q[:, :, : int(np.prod(shape[1:]))]).reshape(len(rows), *shape)
        scales = None
        if self._scale_bits is not None:
            scales = self._scale_bits[flipped].view(np.float16)
            if self.metadata.quant.granularity == "sample":
                scales = scales[:, 0]
        if scalar:
            return q[0], None if scales is None else scales[0]
        return q, scales

    # -- columns -----------------------------------------------------------
    @property
    def columns(self) -> dict[str, str]:
        """The store's per-sample columns: name -> kind ("text", "bytes", or a numeric dtype)."""
        return {spec.name: spec.kind for spec in self.metadata.columns}

    def _wanted_columns(self, columns) -> list[str] | None:
        if columns is None:
            return None
        names = [columns] if isinstance(columns, str) else list(columns)
        for name in names:
            if not isinstance(name, str) or name not in self._columns:
                there = ", ".join(self._columns) or "none"
                raise KeyError(f"{self._path} has no column {name!r} (columns: {there})")
        return names

    def _columns_at(self, names: list[str], rows: np.ndarray, scalar: bool) -> dict:
        values = {}
        for name in names:
            source = self._columns[name]
            if isinstance(source, np.ndarray):
                found = source[rows]
            else:
                if self._rows is None:
                    raise ValueError("this store is closed")
                if isinstance(source, MappedTextColumn):
                    self._fetch_column_chunks(source, rows)
                found = source.values(rows)
            values[name] = found[0] if scalar else found
        return values

    def read_columns(self, indices, names, *, allow_invalid: bool = False) -> dict:
        """``{name: values}`` of the columns ``names`` for the given samples, in the order asked
        (the indices resolved once for all of them); values as :meth:`column` gives them."""
        wanted = self._wanted_columns(names) or []
        rows, scalar = self._rows_for(indices, allow_invalid)
        return self._columns_at(wanted, rows, scalar)

    def column(self, name: str, indices, *, allow_invalid: bool = False):
        """The values of column ``name`` for the given samples, in the order asked.

        Text columns give a list of str, bytes columns a list of bytes,
        numeric ones an array of the column's dtype; a single index gives one
        value. ``indices`` and ``allow_invalid`` as for :meth:`read`.
        """
        return self.read_columns(indices, [name], allow_invalid=allow_invalid)[name]

    def ids(self, indices) -> list[str] | str:
        """The source path or id of each given sample (stores written with ids, e.g. by encode).

        Off the hot path: read through zarr-python (the strings are variable-length).
        """
        import zarr

        if not self.metadata.ids:
            raise ValueError(f"{self._path} records no sample ids (it was written without ids=True)")
        rows, scalar = self._rows_for(indices, allow_invalid=True)
        array = _zarr_array(zarr.open_group(self._path, mode="r", zarr_format=3), fmt.IDS, self._path)
        unique, inverse = np.unique(rows, return_inverse=True)
        values = np.asarray(array.get_orthogonal_selection((unique,))) if len(unique) else np.empty(0, object)
        names = [str(values[i]) for i in inverse.reshape(-1)]
        return names[0] if scalar else names

    def epoch_indices(self, *, shuffle=True, seed=0, epoch=0, rank=0, world_size=1) -> np.ndarray:
        """This rank's sample order for one epoch (valid samples only); see ``sampling.epoch_order``."""
        return epoch_order(
            np.flatnonzero(self.valid), shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size
        )

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        dtype=np.float32,
        normalize=False,
    ):
        """Yield ``(latents, labels)`` batches over one epoch of valid samples.

        The order depends on (seed, epoch) alone; with ``world_size > 1``
        each rank gets a disjoint, equal share of every epoch. A bucketed
        store gives batches of one bucket each (``sampling.bucket_batches``).
        """
        if self._bucket_of is not None:
            valid = np.flatnonzero(self.valid)
            for rows in bucket_batches(valid, self._bucket_of[valid], batch_size, shuffle=shuffle, seed=seed, epoch=epoch,
                                       rank=rank, world_size=world_size, drop_last=drop_last):
                yield self.read(rows, dtype=dtype, normalize=normalize)
            return
        order = self.epoch_indices(shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
        for part in batch_slices(len(order), batch_size, drop_last):
            yield self.read(order[part], dtype=dtype, normalize=normalize)
