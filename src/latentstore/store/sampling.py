"""Epoch orders: a seeded permutation per epoch, split across ranks.

The order of an epoch is a function of (seed, epoch) alone, so every rank of
a distributed job computes the same permutation and takes its own share
without talking to the others, and a resumed job replays it exactly.

Bucketed stores (samples of several latent shapes) are served in batches of
one bucket each: :func:`bucket_batches` forms them and deals them to ranks,
:func:`bucket_batch_count` says how many each rank gets.
"""

import numpy as np

from latentstore._options import flag, integer

#: The draw of the batch order of a bucketed epoch, apart from the draw of its samples.
_BATCH_ORDER_STREAM = 1


def _checked_share(seed, epoch, rank, world_size) -> tuple[int, int, int, int]:
    world_size = integer(world_size, "world_size", minimum=1)
    rank = integer(rank, "rank", minimum=0)
    if rank >= world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    return integer(seed, "seed", minimum=0), integer(epoch, "epoch", minimum=0), rank, world_size


def epoch_order(
    candidates: np.ndarray,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> np.ndarray:
    """This rank's sample indices for one epoch.

    ``candidates`` are the sample indices to draw from (the valid ones). Each
    rank gets ``len(candidates) // world_size`` of them: shares are disjoint
    and equal, the few left over are dropped (a different few every epoch
    when shuffling).
    """
    seed, epoch, rank, world_size = _checked_share(seed, epoch, rank, world_size)
    order = np.asarray(candidates, dtype=np.int64)
    if flag(shuffle, "shuffle"):
        order = np.random.default_rng([seed, epoch]).permutation(order)
    share = len(order) // world_size
    return order[rank * share : (rank + 1) * share]


def batch_slices(count: int, batch_size: int, drop_last: bool = False):
    """Slices of consecutive batches over ``count`` items."""
    batch_size = integer(batch_size, "batch_size", minimum=1)
    count = int(count)
    stop = count - count % batch_size if flag(drop_last, "drop_last") else count
    # Slicing clamps at the end, so the last slice may reach past ``stop``.
    return [slice(i, i + batch_size) for i in range(0, stop, batch_size)]


def bucket_batches(
    candidates: np.ndarray,
    buckets: np.ndarray,
    batch_size: int,
    *,
    shuffle: bool = True,
    seed: int = 0,
    epoch: int = 0,
    rank: int = 0,
    world_size: int = 1,
    drop_last: bool = False,
) -> list[np.ndarray]:
    """This rank's batches of one epoch over samples of several buckets: each batch one bucket's.

    ``candidates`` are the sample indices to draw from (the valid ones) and
    ``buckets`` the bucket of each. Returns int64 arrays of sample indices
    (read-only), in the order to read them. The epoch, a function of
    (seed, epoch) alone:

    1. the candidates in :func:`epoch_order`'s permutation (as given without
       ``shuffle``), stably grouped by bucket, so each bucket's samples come in
       a seeded order;
    2. each bucket cut into batches of ``batch_size``; its last, partial batch
       is kept, or dropped with ``drop_last`` (per bucket, so at most one
       partial batch per bucket, and only those, is dropped);
    3. with ``shuffle`` the batches put in a seeded order (a draw of its own),
       else bucket by bucket, each in sample order;
    4. dealt round-robin to the ranks (rank r gets batches r, r + world_size,
       ...), every rank the same number of batches, as distributed training
       needs (a rank with fewer batches would leave the others waiting in their
       gradient all-reduce): like ``DistributedSampler``, without
       ``drop_last`` the list is padded to a multiple of ``world_size`` by
       repeating its first batches (fewer than ``world_size`` batches repeat,
       so every sample is read and the ranks' shares are disjoint but for
       them), and with ``drop_last`` cut to one (the last
       ``len % world_size`` batches of the epoch's order are dropped too).

    With one rank every candidate appears exactly once (without
    ``drop_last``). :func:`bucket_batch_count` gives the length without forming
    the batches.
    """
    seed, epoch, rank, world_size = _checked_share(seed, epoch, rank, world_size)
    batch_size = integer(batch_size, "batch_size", minimum=1)
    shuffle, drop_last = flag(shuffle, "shuffle"), flag(drop_last, "drop_last")
    samples = np.asarray(candidates, dtype=np.int64).reshape(-1)
    of = np.asarray(buckets).reshape(-1)
    if len(of) != len(samples) or (len(of) and not np.issubdtype(of.dtype, np.integer)):
        raise ValueError(f"buckets must be one integer per candidate ({len(samples)}), got {of.dtype} {np.shape(buckets)}")
    of = of.astype(np.int64)
    if shuffle:
        permutation = np.random.default_rng([seed, epoch]).permutation(len(samples))
        samples, of = samples[permutation], of[permutation]
    grouped = np.argsort(of, kind="stable")
    samples, of = samples[grouped], of[grouped]
    samples.flags.writeable = False
    starts = np.flatnonzero(np.diff(of, prepend=of[:1] - 1)) if len(of) else np.empty(0, np.int64)
    stops = np.append(starts[1:], len(of))
    batches = [samples[start:stop][part] for start, stop in zip(starts.tolist(), stops.tolist())
               for part in batch_slices(stop - start, batch_size, drop_last)]
    if shuffle:
        order = np.random.default_rng([seed, epoch, _BATCH_ORDER_STREAM]).permutation(len(batches))
        batches = [batches[i] for i in order.tolist()]
    per_rank = _per_rank(len(batches), world_size, drop_last)
    if batches:
        batches = [batches[i % len(batches)] for i in range(per_rank * world_size)]
    return batches[rank::world_size]


def _per_rank(total: int, world_size: int, drop_last: bool) -> int:
    return total // world_size if drop_last else -(-total // world_size)


def bucket_batch_count(counts, batch_size: int, *, world_size: int = 1, drop_last: bool = False) -> int:
    """How many batches :func:`bucket_batches` gives each rank, from the number of candidates
    in each bucket (``counts``)."""
    batch_size = integer(batch_size, "batch_size", minimum=1)
    world_size = integer(world_size, "world_size", minimum=1)
    drop_last = flag(drop_last, "drop_last")
    counts = np.asarray(counts, dtype=np.int64)
    per_bucket = counts // batch_size if drop_last else -(-counts // batch_size)
    return _per_rank(int(per_bucket.sum()), world_size, drop_last)
