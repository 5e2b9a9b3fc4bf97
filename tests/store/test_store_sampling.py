"""Epoch orders, rank shares and batch slicing (store/sampling.py) as the store serves them."""


import numpy as np
import pytest

from latentstore.store.sampling import bucket_batch_count, bucket_batches
from tests.store.stores import N


def test_batches_order_depends_on_seed_and_epoch_only(store):
    def labels_of(**kw):
        return [lab.tolist() for _, lab in store.batches(50, **kw)]

    assert labels_of(seed=1, epoch=2) == labels_of(seed=1, epoch=2)
    assert labels_of(seed=1, epoch=2) != labels_of(seed=1, epoch=3)
    unshuffled = np.concatenate([lab for _, lab in store.batches(50, shuffle=False)])
    np.testing.assert_array_equal(unshuffled, store.labels)


@pytest.mark.parametrize("world_size", [2, 3, 7])
def test_ranks_get_disjoint_equal_shares(store, world_size):
    shares = [store.epoch_indices(seed=3, epoch=1, rank=r, world_size=world_size) for r in range(world_size)]
    assert len({len(s) for s in shares}) == 1 and len(shares[0]) == N // world_size
    joined = np.concatenate(shares)
    assert len(np.unique(joined)) == len(joined)
    with pytest.raises(ValueError, match="rank"):
        store.epoch_indices(rank=world_size, world_size=world_size)


def test_batch_sizes_and_drop_last(store):
    sizes = [len(lab) for _, lab in store.batches(128)]
    assert sizes == [128, 128, 44]
    assert [len(lab) for _, lab in store.batches(128, drop_last=True)] == [128, 128]


# -- bucket_batches: batches of one bucket, the epoch of a bucketed store ------------------
def bucketed(n=50, buckets=4, seed=0):
    """Candidates (every third sample invalid) and an uneven bucket per candidate."""
    candidates = np.flatnonzero(np.arange(n) % 3 != 1)
    of = np.random.default_rng(seed).choice(buckets, len(candidates), p=[0.5, 0.3, 0.15, 0.05][:buckets])
    return candidates, of


def bucket_of(candidates, of):
    return dict(zip(candidates.tolist(), of.tolist()))


@pytest.mark.parametrize("batch_size", [1, 4, 7, 100])
def test_bucket_batches_give_every_candidate_once_in_batches_of_one_bucket(batch_size):
    candidates, of = bucketed()
    batches = bucket_batches(candidates, of, batch_size, seed=3, epoch=1)
    joined = np.concatenate(batches)
    np.testing.assert_array_equal(np.sort(joined), candidates)
    which = bucket_of(candidates, of)
    assert all(len({which[s] for s in b.tolist()}) == 1 and 0 < len(b) <= batch_size for b in batches)
    per_bucket = np.bincount(of)
    assert len(batches) == sum(-(-c // batch_size) for c in per_bucket) == bucket_batch_count(per_bucket, batch_size)
    assert all(b.dtype == np.int64 and not b.flags.writeable for b in batches)


def test_bucket_batches_depend_on_seed_and_epoch_only():
    candidates, of = bucketed()

    def epoch(**kw):
        return [b.tolist() for b in bucket_batches(candidates, of, 4, **kw)]

    assert epoch(seed=1, epoch=2) == epoch(seed=1, epoch=2)
    assert epoch(seed=1, epoch=2) != epoch(seed=1, epoch=3) and epoch(seed=1, epoch=2) != epoch(seed=2, epoch=2)
    which = bucket_of(candidates, of)
    orders = {tuple(which[b[0]] for b in epoch(seed=1, epoch=e)) for e in range(4)}
    assert len(orders) > 1  # the order of the buckets, not only of the samples within them
    unshuffled = [s for b in epoch(shuffle=False) for s in b]
    assert unshuffled == candidates[np.argsort(of, kind="stable")].tolist()


def test_bucket_batches_drop_last_drops_each_buckets_partial_batch_only():
    candidates, of = bucketed()
    batches = bucket_batches(candidates, of, 4, drop_last=True, seed=5)
    assert all(len(b) == 4 for b in batches)
    missing = np.setdiff1d(candidates, np.concatenate(batches))
    np.testing.assert_array_equal(np.bincount(of[np.isin(candidates, missing)], minlength=4), np.bincount(of) % 4)


@pytest.mark.parametrize("world_size", [2, 3, 5, 40])
@pytest.mark.parametrize("drop_last", [False, True])
def test_bucket_batches_deal_every_rank_the_same_number(world_size, drop_last):
    candidates, of = bucketed()
    whole = [tuple(b.tolist()) for b in bucket_batches(candidates, of, 4, seed=2, drop_last=drop_last)]
    shares = [[tuple(b.tolist()) for b in bucket_batches(candidates, of, 4, seed=2, rank=r, world_size=world_size,
                                                        drop_last=drop_last)] for r in range(world_size)]
    count = bucket_batch_count(np.bincount(of), 4, world_size=world_size, drop_last=drop_last)
    assert [len(share) for share in shares] == [count] * world_size
    dealt = [b for k in range(count) for b in (share[k] for share in shares)]  # round-robin: the epoch's order
    if drop_last:  # cut to a multiple of world_size: the last few batches of the order go
        assert count == len(whole) // world_size and dealt == whole[: len(dealt)]
    else:  # padded to one by repeating the first batches (cyclically when there are fewer than ranks)
        assert count == -(-len(whole) // world_size)
        assert dealt == [whole[k % len(whole)] for k in range(count * world_size)]
        assert set(s for b in dealt for s in b) == set(candidates.tolist())


def test_bucket_batches_check_their_arguments():
    candidates, of = bucketed()
    assert bucket_batches(candidates[:0], of[:0], 4, world_size=3, rank=2) == []
    with pytest.raises(ValueError, match="one integer per candidate"):
        bucket_batches(candidates, of[:-1], 4)
    with pytest.raises(ValueError, match="rank"):
        bucket_batches(candidates, of, 4, rank=2, world_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        bucket_batches(candidates, of, 0)
