"""Epoch orders, rank shares and batch slicing (store/sampling.py) as the store serves them."""


import numpy as np
import pytest

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
