"""Encode an image collection into a latent store, on one device or many.

>>> summary = latentstore.encode("imagenet/train", "imagenet-dcae.zarr")  # doctest: +SKIP
>>> print(summary)                                                       # doctest: +SKIP

The pipeline: DataLoader worker processes read and preprocess the images of
one batch each (a batch never spans two chunks); the batch is pinned, copied
to the device, encoded under ``torch.inference_mode`` (bf16 on CUDA by
default) and quantized there by :mod:`latentstore.quantization.torch_quant`, so only int8
codes and float16 scales come back; an assembler fills whole chunks and hands
each to :meth:`StoreWriter.write`, whose ``valid`` chunk lands last.

Nothing is lost: a chunk is finished exactly when its ``valid`` chunk file
exists, so rerunning the same command after a crash, a kill or Ctrl-C redoes
only unfinished chunks, and the finished store is byte-identical to an
uninterrupted run. Images that cannot be decoded and latents that are not
finite are marked invalid; their reasons go to the store's ``failures``
array (one string per sample, empty when fine: ranks write disjoint chunks of
it, like every other array) and, when the store is finalized, to the
``failures`` metadata entry.

Under ``torchrun`` (RANK / WORLD_SIZE / LOCAL_RANK set) every process encodes
on ``cuda:LOCAL_RANK`` (gloo on the CPU): rank 0 creates or resumes the store,
rank r takes pending chunks r, r + K, ..., and rank 0 finalizes after a
barrier.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pickle
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from latentstore import format as fmt
from latentstore._options import flag, integer
from latentstore.encoding.sources import printable
from latentstore.errors import LatentStoreError, SourceError
from latentstore.progress import Progress
from latentstore.quantization.threads import available_cores, local_world_size

__all__ = ["DEFAULT_BATCH_SIZE", "EncodeSummary", "Failure", "encode"]

DEFAULT_BATCH_SIZE = 64

#: The per-sample array of failure reasons ("" where the sample is fine).

#: Test hook: SIGKILL this process right after it has written this many chunks.
KILL_AFTER_CHUNKS_ENV = "LATENTSTORE_TEST_KILL_AFTER_CHUNKS"

NONFINITE_REASON = "the encoder returned NaN or infinity"
OVERFLOW_REASON = "the latent is too large for a float16 quantization scale"


@dataclass(frozen=True)
class Failure:
    """A sample that could not be encoded: its index, source id and why."""

    index: int
    id: str
    reason: str


@dataclass
class EncodeSummary:
    """What an :func:`encode` run did; ``str()`` gives the printed summary.

    ``encoded`` counts the samples of the chunks written by this run (all
    ranks); ``resumed_chunks`` the chunks that were already finished when it
    started. ``failures`` lists every invalid sample of the store.
    """

    path: str
    samples: int
    valid: int
    encoded: int
    chunks: int
    resumed_chunks: int
    seconds: float
    bytes_on_disk: int | None
    world_size: int
    encoder: dict
    failures: list[Failure] = field(default_factory=list)

    @property
    def images_per_second(self) -> float:
        return self.encoded / self.seconds if self.seconds > 0 else 0.0

    @property
    def random_model(self) -> bool:
        return bool(self.encoder.get("random_init"))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["images_per_second"] = self.images_per_second
        data["random_model"] = self.random_model
        return data

    def __str__(self) -> str:
        from latentstore.inspection.info import format_bytes

        on = f" on {self.world_size} processes" if self.world_size > 1 else ""
        lines = [
            f"store        {self.path}",
            f"samples      {self.valid:,} valid of {self.samples:,}, {len(self.failures):,} failed",
            f"this run     {self.encoded:,} images in {self.seconds:.1f} s{on} "
            f"({self.images_per_second:,.1f} images/s)"
            + (f"; {self.resumed_chunks} of {self.chunks} chunks were already done" if self.resumed_chunks else ""),
            f"on disk      {format_bytes(self.bytes_on_disk)}",
            f"encoder      {self.encoder.get('backend')} {self.encoder.get('model')} "
            f"({self.encoder.get('dtype')}, {self.encoder.get('resolution')} px)",
        ]
        for failure in self.failures[:20]:
            lines.append(f"  failed     #{failure.index} {failure.id}: {failure.reason}")
        if len(self.failures) > 20:
            lines.append(f"  ... and {len(self.failures) - 20} more (see the store's 'failures' metadata)")
        if self.random_model:
            banner = "!" * 78
            lines += [
                banner,
                "!! RANDOM WEIGHTS: this store was encoded with a randomly initialised test",
                "!! model. Its latents are meaningless; never train or evaluate on them.",
                banner,
            ]
        return "\n".join(lines)


# -- processes -----------------------------------------------------------------
@dataclass
class _World:
    """This process's place among the ``torchrun`` processes (1 process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    def barrier(self) -> None:
        if self.size > 1:
            import torch.distributed as dist

            dist.barrier()

    def from_rank0(self, value):
        """``value`` as rank 0 has it, on every rank."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def leave(self) -> None:
        if self.owns_group:
            import torch.distributed as dist

            dist.destroy_process_group()


def _join_world(device: str | None) -> tuple[_World, str | None]:
    """Join the torchrun process group if there is one; returns it and this rank's device."""
    import torch

    size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    import torch.distributed as dist

    already = dist.is_available() and dist.is_initialized()
    if size > 1 or already:
        if device in (None, "cuda") and torch.cuda.is_available():
            device = f"cuda:{local_rank}"
        on_cuda = device is not None and torch.device(device).type == "cuda"
        if not already:
            import datetime

            if on_cuda:
                torch.cuda.set_device(torch.device(device))
            # Ranks wait at the final barrier for the slowest one: be patient.
            dist.init_process_group("nccl" if on_cuda else "gloo", timeout=datetime.timedelta(hours=2))
        world = _World(dist.get_rank(), dist.get_world_size(), local_rank, owns_group=not already)
        return world, device
    return _World(), device


# -- reading and preprocessing in worker processes ------------------------------
@dataclass
class _CropBatch:
    """The preprocessed images of samples [start, start + len(ok)).

    The crops of the samples where ``ok`` is true come in groups of one
    shape (one group of (R, R, 3) crops for a square store, one per bucket
    otherwise): ``pixels[g]`` holds group g's uint8 crops, ``rows[g]`` their
    places in the batch. ``reasons`` maps the failed samples' indices to why;
    ``fields`` holds the source's columns (and the stored crops) of every
    sample; ``buckets`` and ``boxes`` each sample's bucket and crop box
    (bucketed stores). DataLoader pins it through :meth:`pin_memory`.
    """

    start: int
    ok: np.ndarray
    pixels: list  # of torch.Tensor
    rows: list  # of np.ndarray
    reasons: dict[int, str]
    #: Column name -> one value per sample of the batch (a placeholder where the sample failed).
    fields: dict[str, list] = field(default_factory=dict)
    buckets: np.ndarray | None = None
    boxes: np.ndarray | None = None

    def pin_memory(self) -> _CropBatch:
        return dataclasses.replace(self, pixels=[p.pin_memory() for p in self.pixels])


def placeholder(kind: str):
    """The value a column holds for a sample that failed: "", b"", NaN or 0."""
    return {fmt.TEXT: "", fmt.BYTES: b""}.get(kind, np.nan if kind.startswith("float") else 0)


def store_columns(source, stored_crops) -> list[fmt.ColumnSpec]:
    """The store's columns: the source's, then the stored crops."""
    specs = [fmt.ColumnSpec(name, kind) for name, kind in source.columns.items()]
    if stored_crops is not None:
        from latentstore.encoding.preprocess import IMAGE_COLUMN

        if IMAGE_COLUMN in source.columns:
            raise SourceError(f"the source already has a column {IMAGE_COLUMN!r}; drop it from the columns to store the crops")
        specs.append(fmt.ColumnSpec(IMAGE_COLUMN, fmt.BYTES, media_type=stored_crops.media_type,
                                    attributes={"stored_crops": str(stored_crops)}))
    return specs


class _CropBatches:
    """A map-style dataset: item k is the :class:`_CropBatch` of ``ranges[k]``."""

    def __init__(self, source, preprocessing, ranges: list[tuple[int, int]], columns=(), stored_crops=None,
                 bucketed: bool = False):
        self.source = source
        self.preprocessing = preprocessing
        self.ranges = ranges
        self.columns = list(columns)
        self.stored_crops = stored_crops
        self.bucketed = bucketed

    def __len__(self) -> int:
        return len(self.ranges)

    def __getitem__(self, k: int) -> _CropBatch:
        import torch

        from latentstore.errors import ImageDecodeError

        start, stop = self.ranges[k]
        crops: list[np.ndarray | None] = [None] * (stop - start)
        ok = np.zeros(stop - start, bool)
        buckets = np.zeros(stop - start, np.int64)
        boxes = np.full((stop - start, 4), np.nan, np.float32)
        reasons = {}
        fields: dict[str, list] = {spec.name: [placeholder(spec.kind)] * (stop - start) for spec in self.columns}
        for i in range(start, stop):
            try:
                values = self.source.read_fields(i) if self.source.columns else {}
                raw, _ = self.source.read(i)
                crop, buckets[i - start], box = self.preprocessing.prepare(raw)
                if box is not None:
                    boxes[i - start] = box
                crops[i - start] = crop
                if self.stored_crops is not None:
                    from latentstore.encoding.preprocess import IMAGE_COLUMN

                    values = {**values, IMAGE_COLUMN: self.stored_crops.encode(crop)}
            except ImageDecodeError as e:
                reasons[i] = e.reason
            except MemoryError:  # one image too big for this machine is one failed sample, not the run
                reasons[i] = "decoding it needs more memory than this process has"
            else:
                ok[i - start] = True
                for name, column in fields.items():
                    column[i - start] = values[name]
        good = np.flatnonzero(ok)
        groups = [good[buckets[good] == b] for b in np.unique(buckets[good]).tolist()] if len(good) else []
        pixels = [torch.from_numpy(np.stack([crops[r] for r in rows])) for rows in groups]
        return _CropBatch(start, ok, pixels, groups, reasons, fields,
                          buckets if self.bucketed else None, boxes if self.bucketed else None)


def _batch_ranges(metadata: fmt.StoreMetadata, chunks: list[int], batch_size: int) -> list[tuple[int, int]]:
    """Batches of at most ``batch_size`` samples, never spanning two chunks.

    A batch's samples depend only on its chunk, so a resumed run or another
    number of processes encodes exactly the same batches.
    """
    ranges = []
    for chunk in chunks:
        start, stop = metadata.chunk_range(chunk)
        ranges.extend((b, min(b + batch_size, stop)) for b in range(start, stop, batch_size))
    return ranges


# -- encoding on the device --------------------------------------------------------
def _encode_crops(backend, pixels, granularity: str, flip: bool, generator=None):
    """Codes of uint8 NHWC crops (and of their mirror images): a list of
    ``(q, scales, reasons)`` on the CPU, ``reasons`` None or a list with None
    for every good sample."""
    import torch

    from latentstore.quantization.torch_quant import quantize

    results = []
    with torch.inference_mode():
        x = pixels.to(backend.device, non_blocking=True).permute(0, 3, 1, 2).contiguous()
        # The mirror image is flipped in pixel space, as a training loader would.
        for view in (x, x.flip(-1)) if flip else (x,):
            z = backend.encode(view, generator=generator)
            finite = torch.isfinite(z).flatten(1).all(1)
            q, scales, bad = quantize(z, granularity)
            q, scales, bad, finite = q.cpu().numpy(), scales.cpu().numpy(), bad.cpu().numpy(), finite.cpu().numpy()
            reasons = None
            if bad.any():
                reasons = [None if not b else NONFINITE_REASON if not f else OVERFLOW_REASON for b, f in zip(bad, finite)]
            results.append((q, scales, reasons))
    return results


class _Chunk:
    """One chunk's codes, filled batch by batch, then written whole."""

    def __init__(self, metadata: fmt.StoreMetadata, chunk: int):
        self.chunk = chunk
        self.start, self.stop = metadata.chunk_range(chunk)
        n = self.stop - self.start
        views = 2 if metadata.flip else 1
        self.codes = [
            (np.zeros((n, *metadata.latent_shape), np.int8), np.zeros((n, *metadata.scale_shape), np.float16))
            for _ in range(views)
        ]
        self.valid = np.zeros(n, bool)
        self.reasons = np.full(n, "", dtype=object)
        self.columns = {spec.name: [placeholder(spec.kind)] * n for spec in metadata.columns}
        self.buckets = np.zeros(n, np.int64) if metadata.buckets is not None else None
        self.boxes = np.full((n, 4), np.nan, np.float32) if metadata.buckets is not None else None
        self.filled = 0

    @property
    def full(self) -> bool:
        return self.filled == self.stop - self.start

    def add_codes(self, batch: _CropBatch, group: int, encoded) -> None:
        """Store the codes of one group of the batch's decoded images (``_encode_crops`` output);
        a bucket's (k, C, h, w) codes go to the first h*w tokens of each channel of their rows."""
        rows = batch.start - self.start + batch.rows[group]
        self.valid[rows] = True
        for (q, scales), (batch_q, batch_scales, reasons) in zip(self.codes, encoded):
            tokens = int(np.prod(batch_q.shape[2:]))
            q.reshape(len(q), q.shape[1], -1)[rows, :, :tokens] = batch_q.reshape(len(batch_q), batch_q.shape[1], -1)
            scales[rows] = batch_scales
            for row, reason in zip(rows, reasons or ()):
                if reason is not None:
                    self.valid[row] = False
                    self.reasons[row] = self.reasons[row] or reason

    def add_failures(self, batch: _CropBatch) -> None:
        """Record the batch's undecodable images; the batch is then done."""
        for index, reason in batch.reasons.items():
            self.reasons[index - self.start] = reason
        offset = batch.start - self.start
        for name, values in batch.fields.items():
            self.columns[name][offset : offset + len(values)] = values
        if self.buckets is not None:
            self.buckets[offset : offset + len(batch.ok)] = batch.buckets
            self.boxes[offset : offset + len(batch.ok)] = batch.boxes
        self.filled += len(batch.ok)

    def write(self, writer, source) -> None:
        writer.write(
            self.start,
            codes=self.codes[0],
            labels=np.asarray(source.labels[self.start : self.stop]),
            valid=self.valid,
            flip_codes=self.codes[1] if len(self.codes) > 1 else None,
            ids=[printable(name) for name in source.ids[self.start : self.stop]],
            failures=self.reasons,
            columns=self.columns or None,
            buckets=self.buckets,
            crop_boxes=self.boxes,
        )


def _read_failures(writer, source) -> list[Failure]:
    return [Failure(index, printable(source.ids[index]), reason) for index, reason in sorted(writer.failure_reasons().items())]


def _encode_chunks(writer, source, preprocessing, backend, chunks, *, batch_size, workers, granularity, sample_seed,
                   progress, stored_crops=None) -> None:
    import torch
    from torch.utils.data import DataLoader

    m = writer.metadata
    ranges = _batch_ranges(m, chunks, batch_size)
    loader = DataLoader(
        _CropBatches(source, preprocessing, ranges, m.columns, stored_crops, bucketed=m.buckets is not None),
        batch_size=None,
        num_workers=workers,
        pin_memory=backend.device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )
    kill_after = int(os.environ.get(KILL_AFTER_CHUNKS_ENV, "0"))
    written, current = 0, None
    batches = iter(loader)
    try:
        for batch in batches:
            if current is None:
                current = _Chunk(m, batch.start // m.chunk_samples)
            generator = None
            if backend.sample and batch.pixels:
                # Seeded by the batch's first index, so draws do not depend on
                # which run or rank encodes the batch.
                generator = torch.Generator(backend.device).manual_seed(sample_seed * 1_000_003 + batch.start)
            for group, pixels in enumerate(batch.pixels):
                current.add_codes(batch, group, _encode_crops(backend, pixels, granularity, m.flip, generator))
            current.add_failures(batch)
            progress.update(len(batch.ok))
            if current.full:
                current.write(writer, source)
                current = None
                written += 1
                if written == kill_after:
                    os.kill(os.getpid(), signal.SIGKILL)
    finally:
        shutdown = getattr(batches, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()


def bucket_table(spec, compression: int) -> fmt.BucketTable:
    """``encode --buckets``: "base=256", a JSON file of [height, width] pixel sizes, or a BucketTable."""
    if isinstance(spec, fmt.BucketTable):
        return spec
    text = os.fspath(spec)
    if text.startswith("base="):
        base = text.removeprefix("base=")
        if not base.isdigit() or int(base) % compression or int(base) < compression:
            raise SourceError(f"--buckets base=N needs N a positive multiple of the model's compression ({compression}), got {text!r}")
        return fmt.BucketTable.from_base(int(base), compression)
    from latentstore._filesystem import read_regular

    try:
        sizes = json.loads(read_regular(text, 1 << 20))
    except (OSError, ValueError) as exc:
        raise SourceError(f"--buckets takes base=N or a JSON file of [height, width] pixel sizes; {text!r}: {exc}") from exc
    if isinstance(sizes, dict):
        sizes = sizes.get("sizes")
    if not isinstance(sizes, list) or not sizes or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(d, int) and d > 0 and d % compression == 0 for d in p)
        for p in sizes
    ):
        raise SourceError(
            f"{text}: expected a JSON list of [height, width] pixel sizes, each a multiple of the model's "
            f"compression ({compression}), e.g. [[256, 256], [192, 320]]"
        )
    try:
        return fmt.BucketTable(tuple((h // compression, w // compression) for h, w in sizes), compression=compression)
    except LatentStoreError as exc:
        raise SourceError(f"{text}: {exc}") from exc


def _class_list_from(store_path) -> list[str]:
    from latentstore.store.reader import LatentStore

    classes = LatentStore(store_path).metadata.classes
    if classes is None:
        raise SourceError(f"the store {store_path} records no class names; pass a store made from an ImageFolder tree")
    return list(classes)


def _default_workers() -> int:
    """Decoding processes per rank: the cores this process may use, shared by the ranks on this node."""
    ranks, _ = local_world_size()
    return max(1, available_cores() // ranks)


def _portable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling (every latentstore error does), else its message."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:  # noqa: BLE001 - any failure to travel means: send the text
        return LatentStoreError(f"{type(exc).__name__}: {exc}")


def encode(
    source,
    out,
    *,
    model: str | None = None,
    revision: str | None = None,
    resolution: int = 256,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int | None = None,
    device: str | None = None,
    dtype: str | None = None,
    flip: bool = False,
    chunk_samples: int | None = None,
    labels: str | None = None,
    class_list_from: str | None = None,
    limit: int | None = None,
    resize: str = "adm",
    draft: bool = True,
    sample: bool = False,
    seed: int = 0,
    granularity: str = "sample",
    caption_key: str | None = None,
    json_fields: str | None = None,
    columns: str | None = None,
    store_images: str | None = None,
    buckets=None,
    overwrite: bool = False,
    progress: bool = True,
) -> EncodeSummary:
    """Encode the images of ``source`` into the store at ``out``; returns an :class:`EncodeSummary`.

    ``source`` is a path (an ImageFolder tree, a folder or glob with a
    ``labels`` CSV, a Hugging Face ``save_to_disk`` folder or parquet files,
    or a plain folder; see :func:`latentstore.encoding.sources.open_source`) or a
    :class:`~latentstore.encoding.sources.Source`. ``class_list_from`` numbers class
    names as in an existing store (ImageNet val against the train store);
    ``limit`` keeps the first N images. ``caption_key``, ``json_fields`` and
    ``columns`` pick the per-sample columns a captioned source carries into
    the store (WebDataset shards, a folder with ``metadata.jsonl``, a Hugging
    Face dataset; see ``open_source``); ``store_images`` (``"jpeg:95"``,
    ``"png"``) keeps each preprocessed crop in the bytes column ``image``.
    ``buckets`` makes a multi-aspect store: ``"base=256"`` (the buckets of
    about 256² pixels' area from 1:4 to 4:1, ``BucketTable.from_base``), a JSON
    file of ``[height, width]`` pixel sizes, or a
    :class:`~latentstore.format.BucketTable`; each image goes to the bucket
    nearest its aspect ratio, resized to cover it and centre-cropped
    (:class:`~latentstore.encoding.preprocess.BucketedPreprocessing`), and
    ``resolution`` and ``resize`` do not apply.

    ``model`` is a Hugging Face id (default SANA's DC-AE
    ``mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers``) or a local
    ``save_pretrained`` directory, pinned to ``revision``; ``device``
    defaults to CUDA (``cuda:LOCAL_RANK`` under torchrun), ``dtype`` to bf16
    on CUDA and fp32 on the CPU; ``sample`` draws AutoencoderKL latents from
    the posterior (seeded by ``seed`` and the batch) instead of its mean.
    Images are resized to ``resolution`` with ``resize`` ('adm' or
    'bicubic'), large JPEGs decoded at reduced size when ``draft``.
    ``flip`` also stores the latents of the mirrored images. ``workers``
    DataLoader processes (default: the CPU cores of this process's share;
    0 reads in this process) decode batches of ``batch_size``.

    ``out`` may be an fsspec URL (``s3://bucket/store.zarr``): the store is
    then built in a local staging folder (:func:`staging_path`, under the
    cache directory, where a rerun resumes), pushed once finished (every chunk
    verified, the group metadata last) and the staged copy removed. Ranks
    write their chunks to the staging folder, so on several nodes it must be
    on a filesystem they share (set ``$LATENTSTORE_CACHE_DIR``).

    An unfinished store at ``out`` made with the same settings is resumed;
    a complete one, or one made with other settings, is refused unless
    ``overwrite``. Ctrl-C stops after the current batch; the finished chunks
    are kept and the same call resumes.
    """
    flip, draft, sample, overwrite, progress = (
        flag(value, name) for value, name in
        ((flip, "flip"), (draft, "draft"), (sample, "sample"), (overwrite, "overwrite"), (progress, "progress"))
    )
    resolution = integer(resolution, "resolution", minimum=1)
    batch_size = integer(batch_size, "batch_size", minimum=1)
    seed = integer(seed, "seed", minimum=0)
    if workers is not None:
        workers = integer(workers, "workers", minimum=0)
    world, device = _join_world(device)
    url = None if fmt.local_path(os.fspath(out)) is not None else os.fspath(out)
    try:
        if url is not None and not overwrite:  # every rank learns it, or the others would wait for rank 0
            problem = world.from_rank0(_complete_remote(url) if world.rank == 0 else None)
            if problem:
                from latentstore.errors import StoreExistsError

                raise StoreExistsError(problem)
        summary = _encode(world, source, out if url is None else staging_path(url), model=model, revision=revision,
                          resolution=resolution, batch_size=batch_size, workers=workers, device=device, dtype=dtype,
                          flip=flip, chunk_samples=chunk_samples, labels=labels, class_list_from=class_list_from,
                          limit=limit, resize=resize, draft=draft, sample=sample, seed=seed,
                          granularity=granularity, overwrite=overwrite, progress=progress,
                          source_options={"caption_key": caption_key, "json_fields": json_fields, "columns": columns},
                          store_images=store_images, buckets=buckets)
        if url is not None:
            summary = world.from_rank0(_push_staged(summary, url, progress, overwrite) if world.rank == 0 else None)
        return summary
    finally:
        world.leave()


def staging_path(url: str) -> str:
    """Where an encode to ``url`` builds the store before pushing it: under the cache directory
    (``$LATENTSTORE_CACHE_DIR``), one folder per URL, so a rerun resumes there."""
    import hashlib

    from latentstore.store.transfer import cache_root

    name = hashlib.sha256(url.encode()).hexdigest()[:16]
    return str(cache_root() / "staging" / f"{name}.zarr")


def _complete_remote(url: str) -> str | None:
    """Why an encode to ``url`` must not start (it holds a complete store), or None."""
    from latentstore.store.files import store_files

    group = store_files(url).read_json("zarr.json")
    if group and (group.get("attributes", {}).get(fmt.ATTRIBUTE_KEY) or {}).get("complete"):
        return f"{url} already holds a complete store; pass overwrite=True (--overwrite) to encode it anew"
    return None


def _push_staged(summary: EncodeSummary, url: str, progress: bool, overwrite: bool) -> EncodeSummary:
    """Push the finished staged store to ``url`` (verified, metadata last), then drop the staged copy.

    A push keeps the files already there at their size (a resumed push), so
    what is at ``url`` must be this store's unfinished push: anything else is
    removed first with ``overwrite``, and refused without it."""
    import shutil

    from latentstore.errors import IncompatibleStoreError
    from latentstore.store.files import store_files
    from latentstore.store.transfer import filesystem, transfer
    from latentstore.store.writer import RESUME_FIELDS

    there = store_files(url).read_json("zarr.json")
    if there is not None:
        if overwrite:
            fs, root = filesystem(url)
            fs.rm(root, recursive=True)
        else:
            theirs = (there.get("attributes") or {}).get(fmt.ATTRIBUTE_KEY) or {}
            ours = store_files(summary.path).read_json("zarr.json")["attributes"][fmt.ATTRIBUTE_KEY]
            differ = [k for k in RESUME_FIELDS if theirs.get(k) != ours.get(k)]
            if differ:
                raise IncompatibleStoreError(
                    f"{url} holds another store (its {', '.join(differ)} differ from this encode's); "
                    f"pass overwrite=True (--overwrite) to replace it. The finished store stays in {summary.path}"
                )
    transfer(summary.path, url, progress=progress)
    shutil.rmtree(summary.path)
    return dataclasses.replace(summary, path=url)


def _encode(world: _World, source, out, *, model, revision, resolution, batch_size, workers, device, dtype, flip,
            chunk_samples, labels, class_list_from, limit, resize, draft, sample, seed, granularity, overwrite,
            progress, source_options, store_images, buckets) -> EncodeSummary:
    from latentstore.encoding.backends import DEFAULT_MODEL, load_backend
    from latentstore.encoding.preprocess import BucketedPreprocessing, Preprocessing, StoredCrops
    from latentstore.encoding.sources import Source, open_source
    from latentstore.inspection.info import bytes_on_disk
    from latentstore.store import writer as writer_module

    started = time.perf_counter()
    source_options = {k: v for k, v in source_options.items() if v is not None}
    if isinstance(source, Source):
        if labels is not None or class_list_from is not None or limit is not None or source_options:
            raise ValueError(
                f"{', '.join(['labels, class_list_from, limit', *source_options])} apply to a source path; "
                "open the Source with them instead"
            )
    else:
        class_list = _class_list_from(class_list_from) if class_list_from is not None else None
        source = open_source(os.fspath(source), labels=labels, class_list=class_list, limit=limit, **source_options)
    stored_crops = None if store_images is None else StoredCrops.parse(store_images)
    backend = load_backend(model or DEFAULT_MODEL, revision=revision, device=device, dtype=dtype, sample=sample, seed=seed)
    table = None if buckets is None else bucket_table(buckets, backend.spatial_compression)
    if table is None:
        preprocessing = Preprocessing(resolution=resolution, resize=resize, draft=draft)
        latent_shape = backend.latent_shape(resolution)
    else:
        preprocessing = BucketedPreprocessing(table, backend.spatial_compression, draft=draft)
        resolution = table.base or int(math.sqrt(table.max_tokens)) * backend.spatial_compression
        latent_shape = (backend.latent_channels,)
    settings = dict(
        chunk_samples=chunk_samples,
        granularity=granularity,
        classes=source.classes,
        encoder={**backend.metadata(), "resolution": resolution, "preprocessing": preprocessing.to_dict()},
        source=source.describe(),
        flip=flip,
        ids=True,
        failures=True,
        columns=store_columns(source, stored_crops),
        buckets=table,
    )
    out = os.fspath(out)

    # Rank 0 creates (or resumes) the store, then tells the others what is left.
    status = None
    if world.rank == 0:
        try:
            writer = writer_module.create(out, len(source), latent_shape, overwrite=overwrite, **settings)
            status = ("ok", writer.pending_chunks())
        except Exception as e:  # the other ranks must not wait for a store that never comes
            world.from_rank0(("error", _portable(e)))
            raise
    status = world.from_rank0(status)
    if status[0] == "error":
        error = status[1]
        error.add_note("raised on rank 0, which creates the store")
        raise error
    pending = status[1]
    if world.rank != 0:
        writer = writer_module.create(out, len(source), latent_shape, **settings)

    m = writer.metadata
    mine = pending[world.rank :: world.size]
    total = sum(m.chunk_range(c)[1] - m.chunk_range(c)[0] for c in mine)
    where = f"rank {world.rank}/{world.size} " if world.size > 1 else ""
    bar = Progress(total, f"{where}encoding", unit="img", enabled=progress and world.rank == 0, log_every=30)
    try:
        _encode_chunks(
            writer, source, preprocessing, backend, mine,
            batch_size=batch_size,
            workers=_default_workers() if workers is None else workers,
            granularity=m.quant.granularity,
            sample_seed=seed,
            progress=bar,
            stored_crops=stored_crops,
        )
    except KeyboardInterrupt:
        bar.close()
        if world.rank == 0:
            left = len(writer.pending_chunks())
            print(
                f"\ninterrupted: {m.num_chunks - left} of {m.num_chunks} chunks of {out} are finished and kept; "
                "run the same command again to resume",
                file=sys.stderr,
            )
        raise
    bar.close()

    world.barrier()
    summary = None
    if world.rank == 0:
        failures = _read_failures(writer, source)
        writer.update_metadata(failures=[dataclasses.asdict(f) for f in failures])
        writer.finalize()
        summary = EncodeSummary(
            path=out,
            samples=m.num_samples,
            valid=m.num_samples - len(failures),
            encoded=sum(m.chunk_range(c)[1] - m.chunk_range(c)[0] for c in pending),
            chunks=m.num_chunks,
            resumed_chunks=m.num_chunks - len(pending),
            seconds=time.perf_counter() - started,
            bytes_on_disk=bytes_on_disk(out),
            world_size=world.size,
            encoder=m.encoder,
            failures=failures,
        )
    return world.from_rank0(summary)
