"""Feeding PyTorch training loops from a store.

Two ways in:

- :class:`LatentLoader`, the fast one: an iterator of ``(latents, labels)``
  batches gathered by the store's compiled reader straight into reused
  buffers on a background thread, sharded across ``torch.distributed`` ranks,
  resumable mid-epoch from :meth:`~LatentLoader.state_dict`; with a CUDA
  device it ships the int8 codes and float16 scales (a quarter of the float32
  bytes) and dequantizes on the GPU.
- :class:`LatentDataset`, a map-style dataset for code built around
  ``torch.utils.data.DataLoader``; ``__getitems__`` reads a whole batch with
  one gather, and DataLoader workers (fork, spawn or forkserver) reopen the
  store's memory maps instead of receiving pickled data. On a bucketed
  (multi-aspect) store, :class:`BucketBatchSampler` gives it batches of one
  bucket, as :class:`LatentLoader` reads them.

Both see the valid samples only (``store.valid``), and both draw horizontal
flips from the store's stored ``flip/`` latents, never by flipping a latent.
This is the only module of the read path that imports torch.
"""

import collections.abc
import functools
import queue
import sys
import threading
import uuid
import weakref
from dataclasses import dataclass

import numpy as np
import torch

from latentstore._options import choice, flag, integer, probability
from latentstore.quantization import torch_quant
from latentstore.store.reader import LatentStore
from latentstore.store.sampling import batch_slices, bucket_batch_count, bucket_batches

_DTYPES = {torch.float32: np.float32, torch.float16: np.float16}


def _open(store) -> LatentStore:
    return store if isinstance(store, LatentStore) else LatentStore(store)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed 64-bit hash of each element (Steele et al.'s SplitMix64 finaliser)."""
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


#: Separate streams of draws per (seed, epoch, sample): flips, caption choices.
_FLIP_STREAM, _CAPTION_STREAM = 0, 0x6361707469306E  # ("captio" + "n"), any constant not 0


def _uniforms(indices, seed: int, epoch: int, stream: int) -> np.ndarray:
    """One uniform draw in [0, 1) per sample, a pure function of (seed, epoch, stream, sample)."""
    indices = np.asarray(indices, dtype=np.int64).astype(np.uint64)
    with np.errstate(over="ignore"):
        key = _splitmix64(_splitmix64(np.array([seed], dtype=np.int64).astype(np.uint64)) ^ np.uint64(epoch))
        if stream:
            key = _splitmix64(key ^ np.uint64(stream))
        bits = _splitmix64(indices ^ key)
    return (bits >> np.uint64(11)).astype(np.float64) * 2.0**-53


def flip_mask(indices, flip_prob: float, seed: int, epoch: int) -> np.ndarray:
    """Which of the given samples to read flipped: one Bernoulli(flip_prob) per (seed, epoch, sample).

    A pure function of its arguments, so every worker, rank and resumed run
    draws the same flips whatever the batching.
    """
    return _uniforms(indices, seed, epoch, _FLIP_STREAM) < flip_prob


@dataclass(frozen=True)
class ColumnReader:
    """Which columns a batch carries: ``columns`` as they are, plus, with
    ``caption_choice``, an entry ``"caption"`` holding for each sample one of
    several text columns, drawn from (seed, epoch, sample) with the given
    weights (uniform for a list), so workers, ranks and resumed runs agree."""

    columns: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    cumulative: tuple[float, ...] = ()

    @classmethod
    def of(cls, store: LatentStore, columns, caption_choice) -> "ColumnReader | None":
        if columns is None and caption_choice is None:
            return None
        names = () if columns is None else ((columns,) if isinstance(columns, str) else tuple(columns))
        store.read(np.empty(0, np.int64), columns=names)  # unknown names fail here, not in a worker
        choices, cumulative = (), ()
        if caption_choice is not None:
            weights = dict(caption_choice) if isinstance(caption_choice, dict) else dict.fromkeys(caption_choice, 1.0)
            not_text = [n for n in weights if store.columns.get(n) != "text"]
            if not weights or not_text:
                raise ValueError(f"caption_choice takes text columns of the store ({store.columns}), got {not_text or 'none'}")
            if "caption" in names:
                raise ValueError("caption_choice fills the batch's 'caption' entry; do not list 'caption' in columns too")
            values = np.array([_weight(w, n) for n, w in weights.items()])
            if values.sum() <= 0:
                raise ValueError(f"caption_choice weights must not all be 0, got {weights}")
            choices, cumulative = tuple(weights), tuple(np.cumsum(values / values.sum()).tolist())
        return cls(names, choices, cumulative)

    def read(self, store: LatentStore, samples: np.ndarray, seed: int, epoch: int) -> dict:
        """{name: values} for ``samples``: lists for text and bytes, tensors for numbers."""
        result = {name: _column_tensor(name, values) if isinstance(values, np.ndarray) else values
                  for name, values in store.read_columns(samples, self.columns).items()}
        if self.choices:
            draws = np.searchsorted(np.asarray(self.cumulative[:-1]), _uniforms(samples, seed, epoch, _CAPTION_STREAM),
                                    side="right")
            captions: list = [None] * len(samples)
            for choice, name in enumerate(self.choices):  # each caption built once, from the column drawn for it
                places = np.flatnonzero(draws == choice)
                for place, text in zip(places.tolist(), store.column(name, samples[places]), strict=True):
                    captions[place] = text
            result["caption"] = captions
        return result


def _column_tensor(name: str, values: np.ndarray) -> torch.Tensor:
    """A numeric column's values as a tensor of their dtype; unsigned 16-64-bit ones (which torch
    barely computes with, and torch 2.2 cannot hold) as int64, exactly."""
    if values.dtype.kind == "u" and values.dtype.itemsize > 1:
        if values.dtype == np.uint64 and values.size and values.max() > np.iinfo(np.int64).max:
            raise ValueError(f"column {name!r} holds uint64 values above 2**63 - 1, which no torch integer holds")
        values = values.astype(np.int64)
    return torch.from_numpy(values)


def _weight(weight, name: str) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < float("inf"):
        raise ValueError(f"caption_choice weight of {name!r} must be a non-negative number, got {weight!r}")
    return float(weight)


def _check_flip(store: LatentStore, flip_prob: float) -> float:
    flip_prob = probability(flip_prob, "flip_prob")
    if flip_prob > 0 and not store.has_flip:
        raise ValueError(
            f"flip_prob={flip_prob} needs stored flip/ latents, and {store.path} has none; "
            "re-encode with --flip (flipping a DC-AE latent is not the latent of the flipped image)"
        )
    return flip_prob


def load_stats(path) -> dict:
    """``{"mean", "std"}`` as numpy arrays from a ``torch.save``d stats file (LightningDiT's
    ``latents_stats.pt``), for ``Normalization.from_stats``. Loaded with ``weights_only=True``."""
    from latentstore.quantization.kernels import channel_values

    try:
        stats = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as exc:
        raise ValueError(f"cannot read stats from {path}: {exc}") from exc
    if not isinstance(stats, dict) or "mean" not in stats or "std" not in stats:
        raise ValueError(f"{path} holds {type(stats).__name__}, not a dict with 'mean' and 'std'")
    return {"mean": channel_values(stats["mean"]), "std": channel_values(stats["std"])}


class SampleBatch(list):
    """What :meth:`LatentDataset.__getitems__` returns when it reads in place: a list of
    ``(latent, label)`` pairs (``(latent, label, {column: value})`` with columns) that
    also carries the whole batch as ``latents`` and ``labels`` tensors (and ``columns``).

    The default collate stacks the pairs (one copy); :func:`collate` hands
    the batch tensors on as they are.
    """

    def __init__(self, latents: torch.Tensor, labels: torch.Tensor, columns: dict | None = None):
        if columns is None:
            super().__init__(zip(latents.unbind(0), labels.tolist()))
        else:
            per_sample = [dict(zip(columns, values)) for values in zip(*columns.values())] or [{}] * len(labels)
            super().__init__(zip(latents.unbind(0), labels.tolist(), per_sample))
        self.latents = latents
        self.labels = labels
        self.columns = columns


class RowBatch(collections.abc.MutableMapping):
    """A batch on its way out of a DataLoader worker: the sample numbers only.

    Sending a batch of tensors from a worker costs more than reading it:
    torch moves every tensor of every batch through a fresh shared-memory
    segment (measured on 2 cores: about 3.5 ms for a float32 batch of 256
    (32, 8, 8), 1.2-1.9 ms for its int8 codes, while the mapped gather takes
    about 0.2 ms). So a worker sends the rows, a few kilobytes, and the batch is
    read from the memory-mapped store where it is unpickled: in the process
    (or pin-memory thread) that iterates the DataLoader. Unpickling a
    ``RowBatch`` gives the tensors, never the ``RowBatch``.

    It is an empty mapping so that the default collate passes it through as
    it is (see :func:`_default_collate_passes_row_batches`).
    """

    __slots__ = ("path", "rows", "flip", "normalize", "as_list", "columns", "origin")

    def __init__(self, path: str, rows: np.ndarray, flip, normalize, as_list: bool, columns=None, origin=None):
        self.path, self.rows, self.flip, self.normalize, self.as_list = path, rows, flip, normalize, as_list
        self.columns = columns  # None, or (ColumnReader, seed, epoch)
        # (dataset token, epoch the worker drew with): where the reading process holds that dataset,
        # its epoch wins, so persistent workers (which keep the epoch they started with) still
        # give each epoch its own flips and caption draws.
        self.origin = origin

    def __getitem__(self, key):
        raise KeyError(key)

    def __setitem__(self, key, value):
        raise TypeError("a RowBatch holds no items; it becomes (latents, labels) when unpickled")

    def __delitem__(self, key):
        raise KeyError(key)

    def __iter__(self):
        return iter(())

    def __len__(self) -> int:
        return 0

    def __copy__(self) -> "RowBatch":
        return self

    def __reduce__(self):
        return _read_row_batch, (self.path, self.rows, self.flip, self.normalize, self.as_list, self.columns, self.origin)

# The stores opened in this process, by path: a RowBatch unpickled here reads from them.
_open_stores: dict[str, LatentStore] = {}
# The datasets made in this process, by token: a RowBatch of theirs takes their current epoch.
_datasets: "weakref.WeakValueDictionary[str, LatentDataset]" = weakref.WeakValueDictionary()


def _store_at(path: str) -> LatentStore:
    store = _open_stores.get(path)
    if store is None or store.closed:
        store = _open_stores[path] = LatentStore(path)
    return store


def _read_row_batch(path, rows, flip, normalize, as_list, columns=None, origin=None):
    # One thread: the DataLoader's workers and the training step share the
    # cores with this read, and an OpenMP team that spins between batches
    # would starve them (measured on 2 cores: 2 workers fed 0.20-0.24 M
    # samples/s with a 2-thread read here, 0.36 M with one thread).
    dataset = None if origin is None else _datasets.get(origin[0])
    if dataset is not None and dataset.epoch != origin[1]:  # a persistent worker's stale epoch
        flip = flip_mask(rows, dataset.flip_prob, dataset.seed, dataset.epoch) if dataset.flip_prob else None
        if columns is not None:
            columns = (columns[0], columns[1], dataset.epoch)
    store = _store_at(path)
    latents, labels = store.read(rows, normalize=normalize, flip=flip, num_threads=1)
    batch: tuple = (torch.from_numpy(latents), torch.from_numpy(labels.astype(np.int64)))
    if columns is not None:
        reader, seed, epoch = columns
        batch = (*batch, reader.read(store, rows, seed, epoch))
    return list(batch) if as_list else batch


def collate(batch):
    """A DataLoader ``collate_fn`` that passes a :class:`SampleBatch` (or a worker's
    :class:`RowBatch`) on without copying."""
    if isinstance(batch, SampleBatch):
        if batch.columns is not None:
            return batch.latents, batch.labels, batch.columns
        return batch.latents, batch.labels
    if isinstance(batch, list) and len(batch) == 1 and isinstance(batch[0], RowBatch):
        return batch[0]
    return torch.utils.data.default_collate(batch)


@functools.cache
def _default_collate_passes_row_batches() -> bool:
    """Whether this torch's default collate returns a lone empty mapping as it is."""
    probe = RowBatch("", np.empty(0, np.int64), None, False, True)
    try:
        return torch.utils.data.default_collate([probe]) is probe
    except Exception:  # noqa: BLE001 - any failure means: do not rely on it
        return False


def _worker_collate_fn():
    """The collate_fn of the DataLoader worker that is calling ``__getitems__``, if known.

    DataLoader's map-style fetcher calls ``dataset.__getitems__`` and then its
    ``collate_fn``. Only that direct caller counts: a wrapper or subclass in
    between (a Subset, an override calling ``super()``) may do anything with
    the batch, so it gives None, and the batch is read in place.
    """
    if torch.utils.data.get_worker_info() is None:
        return None
    from torch.utils.data._utils.fetch import _MapDatasetFetcher

    caller = sys._getframe(2).f_locals.get("self")
    return caller.collate_fn if isinstance(caller, _MapDatasetFetcher) else None


class LatentDataset(torch.utils.data.Dataset):
    """Map-style dataset over a store's valid samples: ``ds[i] -> (latent tensor (C, H, W), label)``.

    Position ``i`` is the store's ``i``-th valid sample (``ds.indices[i]``;
    the identity when every sample is valid). ``flip_prob`` reads the stored
    flipped latent with that probability, drawn from (seed, epoch, sample):
    call :meth:`set_epoch` each epoch for fresh flips. ``normalize`` is
    passed to :meth:`LatentStore.read`.

    Works with a plain ``DataLoader(ds, batch_size=..., num_workers=...)``,
    any sampler (``DistributedSampler`` included), ``pin_memory`` and
    ``persistent_workers``; no ``worker_init_fn`` is needed. Pickles as the
    store's path and settings, so workers reopen the store and never receive
    data.

    ``read_in`` says where a batch fetched by a DataLoader worker is read:
    ``"consumer"`` (the default) sends only its rows from the worker and
    reads it where the DataLoader is iterated (see :class:`RowBatch`: torch's
    per-batch transfer of tensors costs far more than the read), when the
    DataLoader's collate is the default one or :func:`collate`; with any
    other ``collate_fn`` or ``read_in="worker"`` the worker reads the batch
    and sends tensors. Pass ``collate_fn=latentstore.torch.collate`` to skip
    the default collate's copy when there are no workers.

    ``columns`` (names of the store's per-sample columns) and ``caption_choice``
    (text columns, or {name: weight}, to draw one per sample and epoch into
    ``"caption"``; see :class:`ColumnReader`) add a third element: ``ds[i] ->
    (latent, label, {name: value})``, and batches ``(latents, labels,
    {name: values})`` with text as lists of str and numbers as tensors.
    """

    def __init__(
        self, store_or_path, flip_prob: float = 0.0, normalize=False, seed: int = 0, *, read_in: str = "consumer",
        columns=None, caption_choice=None,
    ):
        read_in = choice(read_in, "read_in", ("consumer", "worker"))
        self.store = _open(store_or_path)
        self.columns = ColumnReader.of(self.store, columns, caption_choice)
        self.flip_prob = _check_flip(self.store, flip_prob)
        self.normalize = normalize
        self.seed = integer(seed, "seed", minimum=0)
        self.read_in = read_in
        self.epoch = 0
        self.store.normalization(normalize)  # fail now, not in a worker
        self.indices = np.flatnonzero(self.store.valid)
        _open_stores[self.store.path] = self.store
        self._token = uuid.uuid4().hex
        _datasets[self._token] = self

    def __getstate__(self):
        # A remote store still being filled travels as itself (it reopens by URL); any other as its path.
        filling = getattr(self.store, "_fetcher", None) is not None and self.store.url is not None
        return {
            "path": self.store if filling else self.store.path,
            "flip_prob": self.flip_prob,
            "normalize": self.normalize,
            "seed": self.seed,
            "epoch": self.epoch,
            "read_in": self.read_in,
            "columns": self.columns,
            "token": self._token,
        }

    def __setstate__(self, state):
        self.__init__(state["path"], state["flip_prob"], state["normalize"], state["seed"], read_in=state["read_in"])
        self.columns = state["columns"]  # already checked against the store
        self.epoch = state["epoch"]
        self._token = state["token"]  # the original's: its batches are read back where it lives

    def set_epoch(self, epoch: int) -> None:
        """Draw this epoch's flips (with DataLoader workers, call it before iterating)."""
        self.epoch = integer(epoch, "epoch", minimum=0)

    def __len__(self) -> int:
        return len(self.indices)

    def _samples(self, positions):
        samples = self.indices[positions]
        flip = flip_mask(samples, self.flip_prob, self.seed, self.epoch) if self.flip_prob else None
        return samples, flip

    def _read(self, positions):
        samples, flip = self._samples(positions)
        latents, labels = self.store.read(samples, normalize=self.normalize, flip=flip)
        columns = None if self.columns is None else self.columns.read(self.store, samples, self.seed, self.epoch)
        return torch.from_numpy(latents), labels, columns

    def __getitem__(self, i):
        latents, labels, columns = self._read(np.array([i], dtype=np.int64))
        if columns is None:
            return latents[0], int(labels[0])
        return latents[0], int(labels[0]), {name: values[0] for name, values in columns.items()}

    def __getitems__(self, positions):
        positions = np.asarray(positions, dtype=np.int64)
        if self.read_in == "consumer":
            collate_fn = _worker_collate_fn()
            default = collate_fn is torch.utils.data.default_collate
            if (default and _default_collate_passes_row_batches()) or collate_fn is collate:
                samples, flip = self._samples(positions)
                self.store.batch_shape(samples)  # read where it lands: a mixed batch must fail here, in the worker
                columns = None if self.columns is None else (self.columns, self.seed, self.epoch)
                return [RowBatch(self.store.path, samples, flip, self.normalize, as_list=default, columns=columns,
                                 origin=(self._token, self.epoch))]
        latents, labels, columns = self._read(positions)
        return SampleBatch(latents, torch.from_numpy(labels.astype(np.int64)), columns)


def _bucket_layout(store: LatentStore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What ``sampling.bucket_batches`` and ``bucket_batch_count`` take: the valid samples, the
    bucket of each (all 0 for a store of one shape) and the valid samples of each bucket."""
    candidates = np.flatnonzero(store.valid)
    of = store.bucket_indices
    buckets = np.zeros(len(candidates), np.int64) if of is None else of[candidates]
    return candidates, buckets, np.array([b["count"] for b in store.buckets], dtype=np.int64)


def _check_resumable(saved: dict, mine: dict, fixed: tuple[str, ...], what: str) -> None:
    """Refuse a saved state whose batch layout settings (``fixed``) differ from the {what}'s own (``mine``)."""
    diffs = [f"{k}: saved {saved.get(k)!r}, {what} has {mine[k]!r}" for k in fixed if saved.get(k) != mine[k]]
    if diffs:
        raise ValueError(f"cannot resume: the saved {what} state was made with other settings ({'; '.join(diffs)}); "
                         f"build the {what} with the saved settings")


def _distributed_rank(rank, world_size) -> tuple[int, int]:
    if (rank is None) != (world_size is None):
        raise ValueError(f"pass both rank and world_size or neither, got rank={rank}, world_size={world_size}")
    if rank is not None:
        return int(rank), int(world_size)
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches of one bucket each, for ``DataLoader(dataset, batch_sampler=BucketBatchSampler(dataset, batch_size))``.

    ``store_or_dataset``: a :class:`LatentDataset` (its positions are
    yielded), or a store or path (positions of ``LatentDataset(store)``: the
    i-th valid sample is position i). Each epoch is ``sampling.bucket_batches``,
    the same batches a :class:`LatentLoader` with these settings reads: every
    valid sample once, batches of one bucket, the partial last batch of each
    bucket kept or dropped with ``drop_last``, the batch order drawn from
    (seed, epoch); under ``torch.distributed`` (or with explicit ``rank`` and
    ``world_size``) each rank gets its round-robin share, every rank the same
    number of batches (without ``drop_last`` the epoch's first few batches
    repeat to make up the count, as with ``DistributedSampler``). A store of
    one shape works too (one bucket).

    ``len(sampler)`` is the batches of a whole epoch on this rank. Call
    :meth:`set_epoch` each epoch (and the dataset's ``set_epoch`` for fresh
    flips and captions); the epoch does not advance by itself, as with
    ``DistributedSampler``. To resume mid-epoch: save :meth:`state_dict`
    (passing ``batches_done``, the batches the loop has consumed, when the
    DataLoader has workers: they draw batches ahead), and in the new run call
    :meth:`load_state_dict` before iterating; the next iteration yields exactly
    the remaining batches of that epoch, later ones whole epochs.
    """

    def __init__(self, store_or_dataset, batch_size: int, *, shuffle: bool = True, seed: int = 0,
                 drop_last: bool = False, rank: int | None = None, world_size: int | None = None):
        super().__init__()
        store = store_or_dataset.store if isinstance(store_or_dataset, LatentDataset) else _open(store_or_dataset)
        self.store = store
        self.batch_size = integer(batch_size, "batch_size", minimum=1)
        self.shuffle = flag(shuffle, "shuffle")
        self.seed = integer(seed, "seed", minimum=0)
        self.drop_last = flag(drop_last, "drop_last")
        self.rank, self.world_size = _distributed_rank(rank, world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={self.rank}, world_size={self.world_size}")
        self._candidates, self._buckets, self._counts = _bucket_layout(store)
        self.epoch = 0
        self._position = 0  # batches of the epoch handed out (by the running iteration)
        self._resume_at: int | None = None  # where the next iteration starts, after load_state_dict

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` at the next iteration. After :meth:`load_state_dict`,
        ``set_epoch`` of the restored epoch keeps the resume; another epoch raises, unless the
        restored epoch was done (its state saved after its last batch)."""
        epoch = integer(epoch, "epoch", minimum=0)
        if self._resume_at is not None and epoch != self.epoch and self._resume_at >= len(self):
            self._resume_at = None
        if self._resume_at is not None and epoch != self.epoch:
            raise ValueError(
                f"the sampler was restored to epoch {self.epoch}, batch {self._resume_at}, and set_epoch({epoch}) "
                f"would drop that resume; call set_epoch({self.epoch}) (or nothing) before iterating, or "
                "load_state_dict the state of the epoch you want"
            )
        self.epoch = epoch

    def batches(self) -> list[np.ndarray]:
        """This rank's batches of the current epoch, as sample indices of the store."""
        return bucket_batches(self._candidates, self._buckets, self.batch_size, shuffle=self.shuffle, seed=self.seed,
                              epoch=self.epoch, rank=self.rank, world_size=self.world_size, drop_last=self.drop_last)

    def __len__(self) -> int:
        return bucket_batch_count(self._counts, self.batch_size, world_size=self.world_size, drop_last=self.drop_last)

    def __iter__(self):
        start = self._resume_at or 0
        self._resume_at = None
        batches = self.batches()
        self._position = start
        for batch in batches[start:]:
            self._position += 1
            yield np.searchsorted(self._candidates, batch).tolist()

    def state_dict(self, batches_done: int | None = None) -> dict:
        """Where the epoch stands. ``batches_done``: the batches of this epoch the training loop has
        consumed; by default the ones this sampler has handed out, which is the same only without
        DataLoader workers (with workers the DataLoader draws ``num_workers * prefetch_factor`` ahead)."""
        done = self._position if self._resume_at is None else self._resume_at
        if batches_done is not None:
            done = integer(batches_done, "batches_done", minimum=0)
            if done > len(self):
                raise ValueError(f"batches_done={done} is more than the {len(self)} batches of an epoch on this rank")
        return {
            "epoch": self.epoch,
            "batches_done": done,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "rank": self.rank,
            "world_size": self.world_size,
            "num_samples": len(self.store),
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`: the next iteration yields the rest of its epoch."""
        _check_resumable(state, self.state_dict(), ("shuffle", "batch_size", "drop_last", "rank", "world_size",
                                                    "num_samples"), "sampler")
        self.seed = integer(state["seed"], "seed", minimum=0)
        self.epoch = integer(state["epoch"], "epoch", minimum=0)
        self._resume_at = integer(state["batches_done"], "batches_done", minimum=0)
        self._position = self._resume_at


@dataclass
class _Buffer:
    """Host memory the reader fills: pinned tensors copied to the GPU, or (on the CPU)
    numpy arrays whose batches are handed out as tensors over them."""

    latents: torch.Tensor | np.ndarray | None  # (B, C, H, W) float, for host dequantization
    codes: torch.Tensor | np.ndarray | None  # (B, C, H, W) int8/uint8, for device dequantization
    scales: torch.Tensor | np.ndarray | None  # (B,) or (B, C) float16
    labels: torch.Tensor | np.ndarray  # (B,) int64
    copied: object = None  # CUDA event: the last host-to-device copy out of this slot is done
    idle_refcounts: tuple = ()  # CPU: the arrays' reference counts when no batch uses them

    def arrays(self) -> tuple:
        return tuple(a for a in (self.latents, self.codes, self.scales, self.labels) if a is not None)

    def in_use(self) -> bool:
        """Whether a batch handed out of this buffer is still alive (held, or any view of it).

        A batch's tensors are ``torch.from_numpy`` of slices of these arrays; while
        any tensor sharing that memory lives, its storage keeps the slice, and the
        slice keeps the array: the array's reference count says so.
        """
        return any(now > idle for now, idle in zip(_refcounts(self.arrays()), self.idle_refcounts))


def _refcounts(arrays) -> tuple:
    return tuple(sys.getrefcount(a) for a in arrays)


def _first(array, n: int, shape: tuple[int, ...] | None):
    """The first ``n`` samples of a buffer (a numpy array or a tensor), as (n, *shape): a view of its
    first ``n * prod(shape)`` elements, so one buffer of the largest bucket holds a batch of any."""
    if shape is None or tuple(array.shape[1:]) == tuple(shape):
        return array[:n]
    return array.reshape(-1)[: n * int(np.prod(shape))].reshape((n, *shape))


@dataclass
class _Ready:
    buffer: _Buffer
    tensors: tuple  # what the consumer gets, before any device-side dequantization
    copied: object = None
    columns: dict | None = None


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


_DONE = object()


_DATALOADER_INSTEAD = {
    "num_workers": "LatentLoader reads with threads in this process: num_threads= sets how many (default: the "
                   "process's thread budget); for worker processes use DataLoader(LatentDataset(store), ...)",
    "sampler": "the order is a seeded permutation per epoch (seed=, shuffle=, set_epoch); for a custom order "
               "use DataLoader(LatentDataset(store), sampler=...)",
    "batch_sampler": "use batch_size=, drop_last=, shuffle= and seed=, or DataLoader(LatentDataset(store), batch_sampler=...)",
    "collate_fn": "batches are (latents, labels) tensors already; use DataLoader(LatentDataset(store), collate_fn=...) "
                  "for another layout",
    "persistent_workers": "there are no worker processes to keep (see num_workers)",
    "prefetch_factor": "use prefetch= (batches read ahead on a thread)",
    "worker_init_fn": "there are no worker processes (see num_workers)",
    "multiprocessing_context": "there are no worker processes (see num_workers)",
    "timeout": "reads do not wait on workers; there is nothing to time out",
    "generator": "the order is drawn from seed= and the epoch; pass seed=",
}


def _refuse_dataloader_arguments(arguments: dict) -> None:
    for name in arguments:
        if name in _DATALOADER_INSTEAD:
            raise TypeError(f"LatentLoader has no {name}= argument: {_DATALOADER_INSTEAD[name]}")
        raise TypeError(f"LatentLoader() got an unexpected keyword argument {name!r}")


class _BatchPositions:
    """The remaining batches of a loader's current epoch as lists of dataset positions (a batch sampler)."""

    def __init__(self, loader: "LatentLoader"):
        _, batches = loader._plan()
        valid = np.flatnonzero(loader.store.valid)
        self._batches = [np.searchsorted(valid, batch).tolist() for batch in batches]

    def __iter__(self):
        return iter(self._batches)

    def __len__(self) -> int:
        return len(self._batches)


class LatentLoader:
    """Batches of ``(latents, labels)`` tensors for a training loop, read ahead on a thread.

    ``store``: a :class:`LatentStore` or a path. Each epoch is a seeded
    permutation of the valid samples (a function of (seed, epoch) alone,
    ``store.epoch_indices``); under ``torch.distributed`` (or with explicit
    ``rank`` and ``world_size``) each rank reads a disjoint, equal share.
    Iterating runs the rest of the current epoch, then moves to the next one;
    :meth:`set_epoch` picks an epoch, :meth:`state_dict` /
    :meth:`load_state_dict` resume mid-epoch with exactly the remaining batches.

    Latents are float32 (or ``dtype=torch.float16``) of shape (B, C, H, W),
    labels int64 (B,). On a bucketed (multi-aspect) store every batch holds
    samples of one bucket, (B, C, h, w) with that bucket's (h, w): the epoch is
    ``sampling.bucket_batches`` (each valid sample once, each bucket's partial
    last batch kept or dropped with ``drop_last``, the batches in an order
    drawn from (seed, epoch), dealt round-robin to the ranks, every rank the
    same number of batches: without ``drop_last`` the first few batches of the
    epoch repeat on the ranks that would otherwise run short, as with
    ``DistributedSampler``). ``normalize`` as in :meth:`LatentStore.read`;
    ``flip_prob`` reads the stored ``flip/`` latent of a sample with that
    probability. ``dequantize_on="host"`` gathers and dequantizes in the
    compiled reader; ``"device"`` (the default for a CUDA ``device``) ships
    the int8 codes and float16 scales and dequantizes with
    :func:`latentstore.quantization.torch_quant.dequantize` on ``device`` (same bytes).

    ``prefetch`` batches are read ahead on a background thread; the default
    is 2 with a CUDA device (the reads overlap the GPU's work) and 0 on the
    CPU, where a training step needs the same cores and the reader is
    fastest using all of them in the foreground (measured: 1.9 M vs 1.2 M
    samples/s on 2 cores).

    A batch stays valid for as long as it is kept (a fixed visualisation
    batch, a prefetcher's queue): on the CPU a buffer is refilled only once no
    tensor of a batch handed out of it is alive, so a loop that drops each
    batch reuses the same few buffers and one that keeps them never sees them
    change. With CUDA the host buffers are pinned, reused and copied
    asynchronously, and the device tensors are new. On a bucketed store the
    buffers are sized for the largest bucket, (B, C, max_tokens), and a batch is
    a view of their first B * C * h * w elements, with the same rules.

    For code written around ``torch.utils.data.DataLoader``: ``loader.dataset``
    is the equivalent :class:`LatentDataset` and ``loader.batch_sampler`` yields
    this epoch's remaining batches as dataset positions, which is what
    ``accelerate``'s ``skip_first_batches`` rebuilds a DataLoader from;
    :meth:`skip` skips batches of the current epoch (resuming by step count).
    DataLoader arguments that have no meaning here (``num_workers``,
    ``sampler``, ``collate_fn``, ...) raise a TypeError that says what to use
    instead; see docs/training.md for the whole mapping.

    ``columns`` and ``caption_choice`` (as for :class:`LatentDataset`) make each
    batch ``(latents, labels, {name: values})``: text and bytes as lists, numbers
    as tensors (on ``device``), aligned with the latents.
    """

    def __init__(
        self,
        store,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        device=None,
        pin_memory: bool = True,
        prefetch: int | None = None,
        flip_prob: float = 0.0,
        normalize=False,
        rank: int | None = None,
        world_size: int | None = None,
        *,
        dtype: torch.dtype = torch.float32,
        dequantize_on: str | None = None,
        num_threads: int | None = None,
        columns=None,
        caption_choice=None,
        **dataloader_arguments,
    ):
        _refuse_dataloader_arguments(dataloader_arguments)
        self.store = _open(store)
        self.columns = ColumnReader.of(self.store, columns, caption_choice)
        batch_size = integer(batch_size, "batch_size", minimum=1)
        if prefetch is not None:
            prefetch = integer(prefetch, "prefetch", minimum=0)
        if dtype not in _DTYPES:
            raise TypeError(f"dtype must be torch.float32 or torch.float16, got {dtype}")
        self.batch_size = batch_size
        self.shuffle = flag(shuffle, "shuffle")
        self.seed = integer(seed, "seed", minimum=0)
        self.drop_last = flag(drop_last, "drop_last")
        self.device = torch.device(device if device is not None else "cpu")
        self.prefetch = (2 if self.device.type == "cuda" else 0) if prefetch is None else prefetch
        self.flip_prob = _check_flip(self.store, flip_prob)
        self.normalize = normalize
        self.dtype = dtype
        self.num_threads = num_threads
        self.rank, self.world_size = _distributed_rank(rank, world_size)
        if not 0 <= self.rank < self.world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={self.rank}, world_size={self.world_size}")
        self._normalization = self.store.normalization(normalize)
        self._cuda = self.device.type == "cuda"
        if dequantize_on is None:
            dequantize_on = "device" if self._cuda else "host"
        dequantize_on = choice(dequantize_on, "dequantize_on", ("host", "device"))
        self.dequantize_on = dequantize_on
        self._lut = None
        if dequantize_on == "device":
            lut = self.store.metadata.quant.lookup_table()
            self._lut = None if lut is None else torch.from_numpy(lut).to(self.device)
        self._pin = flag(pin_memory, "pin_memory") and self._cuda
        self.pin_memory = self._pin  # what DataLoader-shaped code reads: whether batches are pinned
        self._share = int(self.store.valid.sum()) // self.world_size
        # A bucketed store: the layout its epochs are drawn from (see _bucket_layout).
        self._bucketed = _bucket_layout(self.store) if self.store.bucket_indices is not None else None
        self._epoch = 0
        self._position = 0
        self._restored: int | None = None  # the epoch load_state_dict restored, until it is iterated
        self._host_buffers: list[_Buffer] = []
        self._stream = torch.cuda.Stream(self.device) if self._cuda else None

    # -- epochs and resumption ---------------------------------------------
    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        if self._bucketed is not None:
            return bucket_batch_count(self._bucketed[2], self.batch_size, world_size=self.world_size,
                                      drop_last=self.drop_last)
        return len(batch_slices(self._share, self.batch_size, self.drop_last))

    @property
    def epoch(self) -> int:
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch at the next iteration.

        After :meth:`load_state_dict`, ``set_epoch`` of the restored epoch keeps
        the restored position (the usual ``for epoch in range(start_epoch, ...):
        loader.set_epoch(epoch)`` loop resumes mid-epoch); another epoch before
        the restored one has been iterated raises, since it would drop the resume.
        """
        epoch = integer(epoch, "epoch", minimum=0)
        if self._restored is not None:
            if epoch == self._restored:
                return
            raise ValueError(
                f"the loader was restored to epoch {self._restored}, batch {self._position}, and "
                f"set_epoch({epoch}) would drop that resume; call set_epoch({self._restored}) (or nothing) "
                "before iterating, or load_state_dict the state of the epoch you want"
            )
        self._epoch = epoch
        self._position = 0

    def skip(self, batches: int) -> None:
        """Skip the next ``batches`` batches of the current epoch (resume by step count:
        ``loader.set_epoch(step // len(loader)); loader.skip(step % len(loader))``)."""
        batches = integer(batches, "batches", minimum=0)
        if self._position + batches > len(self):
            raise ValueError(
                f"cannot skip {batches} batches at batch {self._position} of an epoch of {len(self)}; "
                "skip at most the batches left, and set_epoch for later epochs"
            )
        self._position += batches

    def state_dict(self) -> dict:
        """Where the loader stands: the next iteration resumes from here exactly."""
        return {
            "epoch": self._epoch,
            "batches_done": self._position,
            "seed": self.seed,
            "shuffle": self.shuffle,
            "batch_size": self.batch_size,
            "drop_last": self.drop_last,
            "rank": self.rank,
            "world_size": self.world_size,
            "flip_prob": self.flip_prob,
            "num_samples": len(self.store),
        }

    def load_state_dict(self, state: dict) -> None:
        """Resume from :meth:`state_dict`; the batch layout settings must match."""
        _check_resumable(state, self.state_dict(), ("shuffle", "batch_size", "drop_last", "rank", "world_size",
                                                    "flip_prob", "num_samples"), "loader")
        self.seed = int(state["seed"])
        self._epoch = int(state["epoch"])
        self._position = int(state["batches_done"])
        self._restored = self._epoch

    # -- what DataLoader-shaped code looks for -------------------------------
    @property
    def dataset(self) -> "LatentDataset":
        """The :class:`LatentDataset` of this store with this loader's flips and normalisation."""
        dataset = LatentDataset(self.store, flip_prob=self.flip_prob, normalize=self.normalize, seed=self.seed)
        dataset.columns = self.columns
        dataset.set_epoch(self._epoch)
        return dataset

    @property
    def batch_sampler(self) -> "_BatchPositions":
        """The remaining batches of the current epoch, as positions in :attr:`dataset`."""
        return _BatchPositions(self)

    # DataLoader's attributes, as a DataLoader over batch_sampler without workers has them.
    sampler = None
    num_workers = 0
    collate_fn = None
    prefetch_factor = None

    # -- producing batches (on the prefetch thread) --------------------------
    def _new_buffer(self) -> _Buffer:
        shape = (self.batch_size, *self.store.latent_shape)
        if self._cuda:
            def empty(shape, dtype):
                torch_dtype = torch.from_numpy(np.empty(0, dtype)).dtype
                return torch.empty(shape, dtype=torch_dtype, pin_memory=self._pin)

        else:
            empty = np.empty
        latents = codes = scales = None
        if self.dequantize_on == "host":
            latents = empty(shape, np.dtype(_DTYPES[self.dtype]))
        else:
            codes = empty(shape, self.store.metadata.code_dtype)
            if self.store.metadata.quant.has_scales:
                scales = empty((self.batch_size, *self.store.metadata.scale_shape), np.dtype(np.float16))
        return _Buffer(latents, codes, scales, empty((self.batch_size,), np.dtype(np.int64)))

    def _idle_host_buffer(self) -> _Buffer:
        """A CPU buffer no handed-out batch still uses: batches stay valid as long as they are kept,
        and a loop that drops each batch reuses the same few buffers (no allocation, no page faults)."""
        for buffer in self._host_buffers:
            if not buffer.in_use():
                return buffer
        buffer = self._new_buffer()
        buffer.idle_refcounts = _refcounts(buffer.arrays())  # held by the buffer alone
        if len(self._host_buffers) < self.prefetch + 3:  # enough for a loop that drops its batches
            self._host_buffers.append(buffer)
        return buffer

    def _fill(self, buffer: _Buffer, indices: np.ndarray, epoch: int) -> _Ready:
        if not self._cuda:
            buffer = self._idle_host_buffer()
        if buffer.copied is not None:
            buffer.copied.synchronize()  # never overwrite memory a copy is still reading
        n = len(indices)
        flip = flip_mask(indices, self.flip_prob, self.seed, epoch) if self.flip_prob else None
        shape = self.store.batch_shape(indices[:1])  # a planned batch is one bucket's
        host = (lambda t: t[:n].numpy()) if self._cuda else (lambda a: a[:n])  # noqa: E731
        labels = host(buffer.labels)
        names = ["latents"] if self.dequantize_on == "host" else ["codes"]
        if self.dequantize_on == "host":
            latents = _first(buffer.latents, n, shape)
            latents = latents.numpy() if self._cuda else latents
            _, label_values = self.store.read(
                indices,
                dtype=_DTYPES[self.dtype],
                normalize=self._normalization or False,
                out=latents,
                flip=flip,
                num_threads=self.num_threads,
            )
            labels[...] = label_values
            parts = (latents,)
        else:
            q, s = self.store.codes(indices, flip=flip, num_threads=self.num_threads)
            labels[...] = self.store.labels[indices]
            codes = _first(buffer.codes, n, shape)
            codes = codes.numpy() if self._cuda else codes
            codes[...] = q
            parts = (codes,)
            if s is not None:
                scales = host(buffer.scales)
                scales[...] = s
                parts = (codes, scales)
                names.append("scales")
        columns = None if self.columns is None else self.columns.read(self.store, indices, self.seed, epoch)
        if not self._cuda:
            return _Ready(buffer, tuple(torch.from_numpy(a) for a in (*parts, labels)), columns=columns)
        tensors = tuple(_first(getattr(buffer, name), n, shape if name in ("latents", "codes") else None)
                        for name in (*names, "labels"))
        with torch.cuda.stream(self._stream):
            tensors = tuple(t.to(self.device, non_blocking=True) for t in tensors)
            if columns is not None:
                columns = {k: v.to(self.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                           for k, v in columns.items()}
            copied = torch.cuda.Event()
            copied.record(self._stream)
        buffer.copied = copied
        return _Ready(buffer, tensors, copied, columns)

    def _deliver(self, ready: _Ready):
        tensors = ready.tensors
        if ready.copied is not None:
            current = torch.cuda.current_stream(self.device)
            current.wait_event(ready.copied)
            for t in tensors:
                t.record_stream(current)
        labels = tensors[-1]
        if self.dequantize_on == "host":
            batch = (tensors[0], labels)
        else:
            q = tensors[0]
            scales = tensors[1] if len(tensors) == 3 else None
            q = q.to(self.device)
            latents = torch_quant.dequantize(
                q, None if scales is None else scales.to(self.device), self.dtype, self._normalization, lut=self._lut
            )
            batch = (latents, labels.to(self.device))
        return batch if ready.columns is None else (*batch, ready.columns)

    def _plan(self) -> tuple[int, list[np.ndarray]]:
        """The epoch and the sample indices of each of its remaining batches on this rank."""
        if self._bucketed is not None:
            candidates, buckets, _ = self._bucketed
            batches = bucket_batches(candidates, buckets, self.batch_size, shuffle=self.shuffle, seed=self.seed,
                                     epoch=self._epoch, rank=self.rank, world_size=self.world_size, drop_last=self.drop_last)
            return self._epoch, batches[self._position :]
        order = self.store.epoch_indices(
            shuffle=self.shuffle, seed=self.seed, epoch=self._epoch, rank=self.rank, world_size=self.world_size
        )
        return self._epoch, [order[part] for part in batch_slices(len(order), self.batch_size, self.drop_last)[self._position :]]

    # -- iterating ---------------------------------------------------------
    def __iter__(self):
        self._restored = None
        epoch, batches = self._plan()
        if self.prefetch == 0:
            buffer = self._new_buffer()
            for indices in batches:
                ready = self._fill(buffer, indices, epoch)
                self._position += 1
                yield self._deliver(ready)
        else:
            yield from self._iter_prefetched(epoch, batches)
        self._epoch += 1
        self._position = 0

    def _iter_prefetched(self, epoch, batches):
        if not batches:
            return
        free: queue.Queue = queue.Queue()
        for _ in range(self.prefetch):
            free.put(self._new_buffer())
        ready: queue.Queue = queue.Queue()
        # The first batch is read here, not behind a thread start: that is
        # most of the time to first batch.
        ready.put(self._fill(self._new_buffer(), batches[0], epoch))
        batches = batches[1:]
        stop = threading.Event()

        def produce():
            try:
                for indices in batches:
                    while True:
                        if stop.is_set():
                            return
                        try:
                            buffer = free.get(timeout=0.05)
                            break
                        except queue.Empty:
                            continue
                    ready.put(self._fill(buffer, indices, epoch))
                ready.put(_DONE)
            except BaseException as exc:  # handed to the consumer, raised there
                ready.put(_Failure(exc))

        thread = threading.Thread(target=produce, name="latentstore-prefetch", daemon=True)
        thread.start()
        held = None
        try:
            while True:
                if held is not None:
                    free.put(held)  # the consumer asked for the next batch: done with this one
                    held = None
                item = ready.get()
                if item is _DONE:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                if self._cuda:
                    free.put(item.buffer)  # the copy event guards its reuse
                else:
                    held = item.buffer
                self._position += 1
                yield self._deliver(item)
        finally:
            stop.set()
            thread.join()
