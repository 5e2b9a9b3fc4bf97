"""Epoch orders: a seeded permutation per epoch, split across ranks.

The order of an epoch is a function of (seed, epoch) alone, so every rank of
a distributed job computes the same permutation and takes its own share
without talking to the others, and a resumed job replays it exactly.
"""

import numpy as np

from latentstore._options import flag, integer


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
    world_size = integer(world_size, "world_size", minimum=1)
    rank = integer(rank, "rank", minimum=0)
    if rank >= world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}")
    seed, epoch = integer(seed, "seed", minimum=0), integer(epoch, "epoch", minimum=0)
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
