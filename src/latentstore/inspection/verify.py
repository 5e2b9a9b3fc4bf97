"""``latentstore verify``: check that a store is intact, and say exactly where it is not.

:func:`verify` checks everything a download or a long encode can get wrong:
the group metadata (present, parseable, a format version this library
reads), every array's ``zarr.json`` against what the metadata implies, every
chunk file (present, of the right size, crc32c checksum), and the values
that readers trust: scales finite and non-negative for valid samples, valid
flags 0 or 1, labels in ``[-1, len(classes))``, absmax codes in
``[-127, 127]``; in a bucketed store, bucket indices within the bucket table,
crop boxes finite or NaN (not recorded), and every latent row zero past its
bucket's h*w tokens. It returns a :class:`VerifyReport` listing each problem with
the array, chunk and samples it concerns.

A chunk of an *incomplete* store whose ``valid`` chunk file does not exist is
"not written yet" (the writer writes ``valid`` last), not damage; in a
complete store, or in a finished chunk, a missing file is an error.

Uncompressed chunk files of a local store are streamed straight from disk in
blocks, so memory stays flat whatever the store's size; compressed arrays and
remote stores are decoded chunk by chunk through zarr-python, which checks
their checksums itself.
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from latentstore import format as fmt
from latentstore.errors import FormatError, StoreNotFoundError, UnreadableFileError
from latentstore.format import ArrayLayout, StoreMetadata
from latentstore.progress import Progress
from latentstore.store.files import store_files

#: Sample numbers listed per problem; the count says how many there are in all.
MAX_LISTED_SAMPLES = 20
#: Arrays checked first: later checks need the valid flags (scales) and the buckets (latents).
_ORDER = (fmt.VALID, fmt.LABELS, fmt.SCALES, fmt.FLIP_SCALES, fmt.BUCKETS, fmt.CROP_BOXES, fmt.LATENTS, fmt.FLIP_LATENTS)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a store.

    ``array`` and ``chunk`` say where (None when the problem is not in one
    array or chunk); ``sample_range`` is the [start, stop) of samples the
    chunk holds; ``samples`` lists the first affected samples when they are
    known, and ``sample_count`` how many there are. ``severity`` is
    ``"error"`` (damage) or ``"warning"`` (e.g. an incomplete store).
    """

    message: str
    array: str | None = None
    chunk: int | None = None
    sample_range: tuple[int, int] | None = None
    samples: tuple[int, ...] = ()
    sample_count: int = 0
    severity: str = "error"

    def __str__(self) -> str:
        where = []
        if self.array is not None:
            where.append(f"{self.array!r}")
        if self.chunk is not None:
            where.append(f"chunk {self.chunk}")
        if self.samples:
            listed = ", ".join(map(str, self.samples))
            more = f", ... ({self.sample_count} in all)" if self.sample_count > len(self.samples) else ""
            where.append(f"sample{'s' if self.sample_count > 1 else ''} {listed}{more}")
        elif self.sample_range is not None:
            where.append(f"samples [{self.sample_range[0]}, {self.sample_range[1]})")
        return f"{' '.join(where)}: {self.message}" if where else self.message

    def to_dict(self) -> dict:
        data = asdict(self)
        data["samples"] = list(self.samples)
        data["sample_range"] = list(self.sample_range) if self.sample_range else None
        return data


@dataclass
class VerifyReport:
    """What :func:`verify` found: ``ok`` is true when no problem is an error."""

    path: str
    problems: list[Problem] = field(default_factory=list)
    samples: int | None = None
    valid: int | None = None
    complete: bool | None = None
    arrays: list[str] = field(default_factory=list)
    chunks_checked: int = 0
    chunks_pending: list[int] = field(default_factory=list)
    checksummed_chunks: int = 0
    bytes_read: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, message: str, **where) -> None:
        self.problems.append(Problem(message, **where))

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k != "problems"}
        data["ok"] = self.ok
        data["problems"] = [p.to_dict() for p in self.problems]
        return data

    def __str__(self) -> str:
        lines = []
        if self.samples is not None:
            state = "complete" if self.complete else "INCOMPLETE"
            lines.append(
                f"{self.path}: {self.valid:,} valid of {self.samples:,} samples, {state}; "
                f"{len(self.arrays)} arrays, {self.chunks_checked:,} chunk files checked "
                f"({self.checksummed_chunks:,} with crc32c), {self.bytes_read / 1e6:,.1f} MB read"
            )
        for problem in self.problems:
            lines.append(f"  {problem.severity.upper()}: {problem}")
        if self.ok:
            lines.append("OK" + (f" ({len(self.warnings)} warnings)" if self.warnings else ""))
        else:
            lines.append(f"DAMAGED: {len(self.errors)} problems")
        return "\n".join(lines)


# -- the checks -----------------------------------------------------------------------
def _listed(samples: np.ndarray) -> dict:
    return {"samples": tuple(int(i) for i in samples[:MAX_LISTED_SAMPLES]), "sample_count": int(len(samples))}


class _PaddingCheck:
    """Which rows of a bucketed latents chunk hold nonzero codes past their sample's h*w tokens.

    Takes the chunk's bytes in blocks of any size (whole rows are checked as they complete,
    so memory stays one block and one row); ``areas`` is each sample's h*w (-1: unknown, not
    checked). Rows past the samples (the last chunk's unused rows) are not checked.
    """

    def __init__(self, areas: np.ndarray, channels: int, tokens: int, itemsize: int):
        self.areas = areas
        self.shape = (channels, tokens * itemsize)
        self.row_nbytes = channels * tokens * itemsize
        self.itemsize = itemsize
        self.carry = b""
        self.row = 0
        self.bad: list[np.ndarray] = []

    def add(self, block) -> None:
        """The next bytes of the chunk (bytes, or any buffer)."""
        data = self.carry + bytes(block) if self.carry else block
        whole = min(len(data) // self.row_nbytes, max(len(self.areas) - self.row, 0))
        self.carry = bytes(data[whole * self.row_nbytes :]) if self.row + whole < len(self.areas) else b""
        if not whole:
            return
        rows = np.frombuffer(data, np.uint8, count=whole * self.row_nbytes).reshape(whole, *self.shape)
        areas = self.areas[self.row : self.row + whole]
        first = np.where(areas < 0, self.shape[1], areas * self.itemsize)  # the first padding byte
        past = np.arange(self.shape[1])[None, :] >= first[:, None]
        stale = ((rows != 0) & past[:, None, :]).any(axis=(1, 2))
        self.bad.append(np.flatnonzero(stale) + self.row)
        self.row += whole

    def bad_rows(self) -> np.ndarray:
        return np.concatenate(self.bad) if self.bad else np.empty(0, np.int64)


class _Verifier:
    def __init__(self, files, report: VerifyReport, progress: bool):
        self.files = files
        self.report = report
        self.progress = progress

    def run(self) -> None:
        metadata = self.read_metadata()
        if metadata is None:
            return
        m = self.metadata = metadata
        report = self.report
        report.samples, report.complete = m.num_samples, m.complete
        if not m.complete:
            report.add(
                "the store is not finalized (complete is false): it is still being written, or the "
                "encode was interrupted; rerun the same encode command to finish it",
                severity="warning",
            )
        layouts = self.read_layouts()
        report.arrays = list(layouts)
        # Scales are checked where a sample is valid, or where its flag could not
        # be read: chunk -> flags, kept only for chunks whose flags were read.
        self.valid_flags: dict[int, np.ndarray] = {}
        # A bucketed store's latent rows are checked against the chunk's bucket indices:
        # chunk -> each sample's h*w (-1 where the index is out of the table), for chunks read.
        self.bucket_areas: dict[int, np.ndarray] = {}
        report.valid = 0
        self.finished = self.finished_chunks(layouts.get(fmt.VALID))
        report.chunks_pending = [k for k in range(m.num_chunks) if not self.finished[k]]
        if report.chunks_pending and not m.complete:
            pending = report.chunks_pending
            shown = ", ".join(map(str, pending[:10])) + (" ..." if len(pending) > 10 else "")
            report.add(
                f"{len(pending)} of {m.num_chunks} chunks are not written yet ({shown}); their samples "
                "read as invalid",
                severity="warning",
            )
        with self.progress_bar(layouts) as bar:
            for name in sorted(layouts, key=lambda n: _ORDER.index(n) if n in _ORDER else len(_ORDER)):
                for chunk in range(m.num_chunks):
                    self.check_chunk(name, layouts[name], chunk)
                    bar.update(1)
        if m.ids:
            self.check_ids()

    # -- metadata ------------------------------------------------------------
    def read_metadata(self) -> StoreMetadata | None:
        report = self.report
        try:
            group = self.files.read_json("zarr.json")
        except FormatError as exc:
            report.add(str(exc), array="(group)")
            return None
        if group is None:
            raise StoreNotFoundError(f"no latent store at {report.path} (no zarr.json); check the path")
        attributes = group.get("attributes")
        if group.get("zarr_format") != 3 or group.get("node_type") != "group":
            report.add("zarr.json is not Zarr v3 group metadata", array="(group)")
            return None
        if not isinstance(attributes, dict) or fmt.ATTRIBUTE_KEY not in attributes:
            report.add(
                f"the group has no {fmt.ATTRIBUTE_KEY!r} attribute: it is not a latent store, or its "
                "metadata was lost",
                array="(group)",
            )
            return None
        try:
            return StoreMetadata.from_dict(attributes[fmt.ATTRIBUTE_KEY])
        except (FormatError, TypeError) as exc:
            report.add(f"metadata: {exc}", array="(group)")
            return None

    def read_layouts(self) -> dict[str, ArrayLayout]:
        """Each array's layout, checked against the metadata; broken arrays are reported and left out."""
        layouts = {}
        m = self.metadata
        expected = {name: (shape, dtype, None) for name, (shape, dtype) in m.arrays().items()}
        for spec in m.columns:
            expected[spec.array_name] = ((m.num_samples,), spec.dtype, spec.kind if spec.variable_length else None)
        for name, (shape, dtype, kind) in expected.items():
            try:
                document = self.files.read_json(f"{name}/zarr.json")
                if document is None:
                    self.report.add("the array is missing (no zarr.json)", array=name)
                    continue
                layout = ArrayLayout.from_zarr_json(document, name)
                layout.check(name, shape, dtype, m.chunk_samples, kind)
            except FormatError as exc:
                self.report.add(str(exc), array=name)
                continue
            layouts[name] = layout
        return layouts

    def finished_chunks(self, valid_layout: ArrayLayout | None) -> np.ndarray:
        """Which chunks are finished: their ``valid`` chunk file exists."""
        m = self.metadata
        if valid_layout is None:
            return np.ones(m.num_chunks, dtype=bool)
        return np.array([self.files.exists(self.chunk_key(fmt.VALID, valid_layout, k)) for k in range(m.num_chunks)], dtype=bool)

    def chunk_key(self, name: str, layout: ArrayLayout, chunk: int) -> str:
        if layout.separator == "/":
            return f"{name}/{layout.chunk_key(chunk)}"
        array = self.files.zarr_array(name)
        return f"{name}/{array.metadata.encode_chunk_key((chunk,) + (0,) * (len(layout.shape) - 1))}"

    # -- chunks -----------------------------------------------------------------
    def check_chunk(self, name: str, layout: ArrayLayout, chunk: int) -> None:
        m = self.metadata
        start, stop = m.chunk_range(chunk)
        where = {"array": name, "chunk": chunk, "sample_range": (start, stop)}
        key = self.chunk_key(name, layout, chunk)
        if not self.files.lexists(key):
            if m.complete or self.finished[chunk]:
                self.report.add(
                    f"chunk file {key} is missing; restore the store from its source (or re-encode)", **where
                )
            return
        self.report.chunks_checked += 1
        try:
            if self.files.local and layout.mappable and layout.variable_length:
                values = self.read_variable_length(key, layout, where)
            elif self.files.local and layout.mappable:
                values = self.read_raw(key, name, layout, chunk, where)
            else:
                if self.files.local:
                    self.files.size(key)  # a regular file, or zarr would block on a FIFO
                values = self.read_through_zarr(name, start, stop, where)
        except OSError as exc:  # a directory, FIFO, device, symlink loop or unreadable file there
            reason = exc.reason if isinstance(exc, UnreadableFileError) else (exc.strerror or str(exc))
            self.report.add(f"chunk file {key} cannot be read: {reason}; restore it from the source", **where)
            return
        if values is not None:
            self.check_values(name, values[: stop - start], start, where)

    def read_raw(self, key: str, name: str, layout: ArrayLayout, chunk: int, where: dict) -> np.ndarray | None:
        """The chunk's values from its file, after the size and checksum checks; None if damaged."""
        size = self.files.size(key)
        if size is None:
            self.report.add(f"chunk file {key} is missing (a link to nothing); restore it from the source", **where)
            return None
        if size != layout.chunk_file_nbytes:
            self.report.add(
                f"chunk file {key} is {size} bytes, expected {layout.chunk_file_nbytes} "
                f"({'truncated' if size < layout.chunk_file_nbytes else 'too long'}); restore it from the source",
                **where,
            )
            return None
        import google_crc32c

        crc = 0
        blocks = []
        small = name not in (fmt.LATENTS, fmt.FLIP_LATENTS)
        trailer = b""
        row_nbytes = layout.chunk_nbytes // layout.chunk_shape[0]
        offset = 0
        bad_rows = []
        padding = None if small else self.padding_check(chunk, layout.chunk_shape, layout.dtype)
        for block in self.files.stream(key, layout.chunk_nbytes):
            if offset >= layout.chunk_nbytes:
                trailer = block
                break
            self.report.bytes_read += len(block)
            if layout.has_checksum:
                crc = google_crc32c.extend(crc, block)
            if small:
                blocks.append(block)
            else:
                if self.metadata.quant.scheme == "absmax":
                    # Stream the latents: only their out-of-range codes are kept.
                    codes = np.frombuffer(block, dtype=np.int8)
                    hits = np.flatnonzero(codes == -128)
                    bad_rows.append(np.unique((offset + hits) // row_nbytes))
                if padding is not None:
                    padding.add(block)
            offset += len(block)
        if layout.has_checksum:
            self.report.checksummed_chunks += 1
            stored = int.from_bytes(trailer, "little")
            if stored != crc:
                self.report.add(
                    f"crc32c checksum mismatch (stored {stored:#010x}, computed {crc:#010x}): the chunk file "
                    "is corrupt; restore it from the source",
                    **where,
                )
                return None
        if small:
            data = b"".join(blocks)
            return np.frombuffer(data, dtype=layout.dtype.newbyteorder("<")).reshape(layout.chunk_shape)
        start = where["sample_range"][0]
        rows = np.concatenate(bad_rows) if bad_rows else np.empty(0, np.int64)
        self.report_bad_codes(rows[rows < where["sample_range"][1] - start] + start, where)
        if padding is not None:
            self.report_stale_padding(padding.bad_rows() + start, where)
        return None

    def read_variable_length(self, key: str, layout: ArrayLayout, where: dict) -> None:
        """A text or bytes chunk: checksum, then the item layout, then (text) strict UTF-8."""
        import google_crc32c

        from latentstore.quantization._native import kernels
        from latentstore.store.columns import describe_span_problem

        data = b"".join(self.files.stream(key, 64 << 20))
        self.report.bytes_read += len(data)
        if layout.has_checksum:
            self.report.checksummed_chunks += 1
            data, trailer = data[:-4], data[-4:]
            stored, computed = int.from_bytes(trailer, "little"), google_crc32c.value(data)
            if len(trailer) < 4 or stored != computed:
                self.report.add(f"crc32c checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): the "
                                "chunk file is corrupt; restore it from the source", **where)
                return None
        rows = layout.chunk_shape[0]
        starts, lengths = np.empty(rows, np.int64), np.empty(rows, np.int64)
        buffer = np.frombuffer(data, np.uint8)
        problem = kernels.vlen_spans(buffer, rows, starts, lengths)
        if problem >= 0:
            self.report.add(f"{describe_span_problem(problem, rows)}; restore it from the source", **where)
            return None
        if layout.variable_length == fmt.TEXT:
            for i, (begin, length) in enumerate(zip(starts.tolist(), lengths.tolist())):
                try:
                    data[begin : begin + length].decode("utf-8")
                except UnicodeDecodeError as exc:
                    self.report.add(f"the text is not UTF-8 ({exc.reason}); restore it from the source", **where,
                                    **_listed(np.array([where["sample_range"][0] + i])))
                    break
        return None

    def read_through_zarr(self, name: str, start: int, stop: int, where: dict) -> np.ndarray | None:
        try:
            values = np.asarray(self.files.zarr_array(name)[start:stop])
        except Exception as exc:  # codecs raise anything from ValueError to zstd's own errors
            self.report.add(f"the chunk cannot be decoded ({type(exc).__name__}: {exc}); restore it from the source", **where)
            return None
        self.report.bytes_read += values.nbytes
        if name in (fmt.LATENTS, fmt.FLIP_LATENTS):
            if self.metadata.quant.scheme == "absmax":
                rows = np.flatnonzero((values.reshape(len(values), -1) == -128).any(axis=1))
                self.report_bad_codes(rows + start, where)
            padding = self.padding_check(start // self.metadata.chunk_samples, values.shape, values.dtype)
            if padding is not None:
                padding.add(np.ascontiguousarray(values).reshape(-1).view(np.uint8))
                self.report_stale_padding(padding.bad_rows() + start, where)
            return None
        return values

    def padding_check(self, chunk: int, shape: tuple[int, ...], dtype: np.dtype) -> "_PaddingCheck | None":
        """A check of the latent rows (``shape`` (n, C, max_tokens) of ``dtype``) of ``chunk``
        against its samples' buckets; None for a store of one shape, or when the chunk's bucket
        indices could not be read."""
        areas = self.bucket_areas.get(chunk)
        if self.metadata.buckets is None or areas is None or len(shape) != 3:
            return None
        return _PaddingCheck(areas, int(shape[1]), int(shape[2]), np.dtype(dtype).itemsize)

    def report_stale_padding(self, samples: np.ndarray, where: dict) -> None:
        if len(samples):
            self.report.add(
                "nonzero codes past the bucket's h*w tokens: a bucketed row is zero after its sample's own "
                "tokens, so these rows were written for another shape (or are corrupt); restore them from "
                "the source or re-encode",
                **where,
                **_listed(samples),
            )

    def report_bad_codes(self, samples: np.ndarray, where: dict) -> None:
        if len(samples):
            self.report.add(
                "int8 code -128 found: absmax codes lie in [-127, 127], so these bytes are corrupt",
                **where,
                **_listed(samples),
            )

    def check_values(self, name: str, values: np.ndarray, start: int, where: dict) -> None:
        m = self.metadata
        if name == fmt.VALID:
            bad = np.flatnonzero(values > 1)
            if len(bad):
                self.report.add(f"valid flags must be 0 or 1, found {sorted(set(values[bad].tolist()))[:5]}", **where, **_listed(bad + start))
            self.valid_flags[start // m.chunk_samples] = values == 1
            self.report.valid += int(np.count_nonzero(values == 1))
        elif name == fmt.LABELS:
            bad = np.flatnonzero(fmt.labels_out_of_range(values, m.classes))
            if len(bad):
                self.report.add(f"labels out of range {fmt.describe_label_range(m.classes)}: {values[bad][:5].tolist()}",
                                **where, **_listed(bad + start))
        elif name == fmt.BUCKETS and m.buckets is not None:
            count = len(m.buckets.shapes)
            bad = np.flatnonzero(values >= count)  # uint16: never below 0
            if len(bad):
                self.report.add(f"bucket indices must lie in [0, {count}) (the store's bucket table), found "
                                f"{sorted(set(values[bad].tolist()))[:5]}", **where, **_listed(bad + start))
            areas = np.array([h * w for h, w in m.buckets.shapes] + [-1], dtype=np.int64)
            self.bucket_areas[start // m.chunk_samples] = areas[np.minimum(values.astype(np.int64), count)]
        elif name == fmt.CROP_BOXES:
            bad = np.flatnonzero(np.isinf(values.reshape(len(values), -1)).any(axis=1))
            if len(bad):
                self.report.add(f"crop boxes must be finite (or NaN where not recorded), found "
                                f"{values[bad[0]].tolist()}", **where, **_listed(bad + start))
        elif name in (fmt.SCALES, fmt.FLIP_SCALES):
            per_sample = values.reshape(len(values), -1)
            wrong = ~(np.isfinite(per_sample) & (per_sample >= 0)).all(axis=1)
            checked = self.valid_flags.get(start // m.chunk_samples, np.ones(len(values), dtype=bool))
            bad = np.flatnonzero(wrong & checked)
            if len(bad):
                self.report.add(
                    f"scales of valid samples must be finite and non-negative, found {per_sample[bad].ravel()[:5].tolist()}",
                    **where,
                    **_listed(bad + start),
                )

    def check_ids(self) -> None:
        """The ``ids`` array (source names of the samples), decoded through zarr."""
        m = self.metadata
        try:
            array = self.files.zarr_array(fmt.IDS)
        except Exception as exc:
            self.report.add(f"the metadata says the store has ids, but the array cannot be opened: {exc}", array=fmt.IDS)
            return
        if array.shape != (m.num_samples,):
            self.report.add(f"shape {array.shape}, expected ({m.num_samples},)", array=fmt.IDS)
            return
        for chunk in range(m.num_chunks):
            start, stop = m.chunk_range(chunk)
            where = {"array": fmt.IDS, "chunk": chunk, "sample_range": (start, stop)}
            key = f"{fmt.IDS}/{array.metadata.encode_chunk_key((chunk,))}"
            if not self.files.lexists(key):
                if m.complete or self.finished[chunk]:
                    self.report.add(f"chunk file {key} is missing; restore the store from its source", **where)
                continue
            self.report.chunks_checked += 1
            try:
                if self.files.local:
                    self.files.size(key)  # a regular file, or zarr would block on a FIFO
            except OSError as exc:
                self.report.add(f"chunk file {key} cannot be read: {getattr(exc, 'reason', exc)}", **where)
                continue
            self.read_through_zarr(fmt.IDS, start, stop, where)

    def progress_bar(self, layouts: dict) -> Progress:
        total = len(layouts) * self.metadata.num_chunks
        return Progress(total, "verifying", unit="chunk", enabled=self.progress, leave=False)


def verify(path, *, progress: bool = False) -> VerifyReport:
    """Check the store at ``path`` (a directory or an fsspec URL) and report every problem found.

    Never raises for damage, only for a path that holds no store at all
    (:class:`~latentstore.errors.StoreNotFoundError`). ``progress`` shows a
    tqdm bar when tqdm is installed.
    """
    path = str(path).removeprefix("file://")
    report = VerifyReport(path=path)
    files = store_files(path)
    if files.local and not files.root.is_dir():
        raise StoreNotFoundError(f"no latent store at {files.root} (no such directory); check the path")
    try:
        _Verifier(files, report, progress).run()
    except StoreNotFoundError:
        raise
    except Exception as exc:
        # verify promises a report, whatever the damage: anything the checks
        # above did not foresee is one more problem, named as it came.
        report.add(f"verify stopped early: {type(exc).__name__}: {exc}", array="(store)")
    return report
