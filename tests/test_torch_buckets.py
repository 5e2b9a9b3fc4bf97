"""Bucketed (multi-aspect) stores through latentstore.torch: LatentLoader and BucketBatchSampler give
batches of one bucket, every valid sample once an epoch, seeded orders, equal rank shares, exact resume."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import latentstore  # noqa: E402
from latentstore.format import BucketTable  # noqa: E402
from latentstore.store.sampling import bucket_batches  # noqa: E402
from latentstore.store.writer import pack_buckets  # noqa: E402
from latentstore.torch import BucketBatchSampler, LatentDataset, LatentLoader, collate, flip_mask  # noqa: E402

N, C, CHUNK = 70, 4, 16
TABLE = BucketTable(((2, 2), (1, 4), (4, 1), (2, 3)))
INVALID = (3, 17, 40, 41, 66)


def caption(i: int) -> str:
    return f"caption of sample {i}"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Sample i is bucket ``of[i]`` (uneven counts), its latent (i + 1) * (c + 1) / C in channel c
    (the flipped one negated), label i, width 2i: every value says which sample it is."""
    path = tmp_path_factory.mktemp("buckets") / "b.zarr"
    of = np.random.default_rng(0).choice(len(TABLE.shapes), N, p=[0.45, 0.25, 0.2, 0.1])
    channel = (np.arange(C, dtype=np.float32) + 1) / C
    latents = [np.broadcast_to(((i + 1) * channel)[:, None, None], (C, *TABLE.shapes[b])).copy() for i, b in enumerate(of)]
    rows, buckets = pack_buckets(latents, TABLE)
    flipped, _ = pack_buckets([-x for x in latents], TABLE)
    valid = np.ones(N, bool)
    valid[list(INVALID)] = False
    columns = {"caption": "text", "alt": "text", "width": "int32"}
    with latentstore.create(path, N, (C,), chunk_samples=CHUNK, flip=True, columns=columns, buckets=TABLE) as writer:
        for start in range(0, N, CHUNK):
            part = slice(start, min(start + CHUNK, N))
            numbers = range(part.start, part.stop)
            writer.write(start, rows[part], labels=np.asarray(numbers), valid=valid[part], flip_latents=flipped[part],
                         buckets=buckets[part], columns={"caption": [caption(i) for i in numbers],
                                                         "alt": [f"alt of sample {i}" for i in numbers],
                                                         "width": np.asarray(numbers) * 2})
    return latentstore.open(path)


def valid_samples(store) -> np.ndarray:
    return np.flatnonzero(store.valid)


def expected(store, batch_size, **settings) -> list[np.ndarray]:
    samples = valid_samples(store)
    return bucket_batches(samples, store.bucket_indices[samples], batch_size, **settings)


def shape_of(store, sample: int) -> tuple[int, ...]:
    return (C, *store.bucket_table.shapes[int(store.bucket_indices[sample])])


def labels_of(batches) -> list[list[int]]:
    return [batch[1].tolist() for batch in batches]


def check_batch(store, latents, labels, *, flip=None, normalize=False):
    """One bucket, its shape, the values of store.read of the same samples, and those say which samples."""
    samples = labels.numpy()
    assert len({int(store.bucket_indices[s]) for s in samples}) == 1
    assert tuple(latents.shape) == (len(samples), *shape_of(store, int(samples[0])))
    want, want_labels = store.read(samples, flip=flip, normalize=normalize)
    assert latents.numpy().tobytes() == want.tobytes()
    np.testing.assert_array_equal(want_labels, samples)
    if not normalize:
        sign = np.where(flip, -1, 1) if flip is not None else 1
        np.testing.assert_allclose(latents.numpy()[:, -1].mean(axis=(1, 2)), sign * (samples + 1), rtol=2e-3)


def test_the_fixture_is_bucketed_with_uneven_counts(store):
    counts = [b["count"] for b in store.buckets]
    assert len(counts) == 4 and len(set(counts)) == 4 and sum(counts) == N - len(INVALID)


@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("dequantize_on", ["host", "device"])
def test_loader_gives_every_valid_sample_once_in_batches_of_one_bucket(store, prefetch, dequantize_on):
    loader = LatentLoader(store, 4, seed=3, prefetch=prefetch, dequantize_on=dequantize_on)
    batches = [(latents.clone(), labels.clone()) for latents, labels in loader]
    assert len(batches) == len(loader) == len(expected(store, 4, seed=3))
    assert labels_of(batches) == [b.tolist() for b in expected(store, 4, seed=3)]
    for latents, labels in batches:
        check_batch(store, latents, labels)
    seen = np.concatenate([labels.numpy() for _, labels in batches])
    np.testing.assert_array_equal(np.sort(seen), valid_samples(store))


def test_float16_batches_are_the_float16_reads(store):
    for latents, labels in LatentLoader(store, 5, dtype=torch.float16, shuffle=False):
        assert latents.dtype == torch.float16
        assert latents.numpy().tobytes() == store.read(labels.numpy(), dtype=np.float16)[0].tobytes()


def test_unshuffled_epochs_go_bucket_by_bucket_in_sample_order(store):
    batches = labels_of(LatentLoader(store, 4, shuffle=False))
    flat = [s for batch in batches for s in batch]
    samples = valid_samples(store)
    assert flat == samples[np.argsort(store.bucket_indices[samples], kind="stable")].tolist()


def test_the_order_is_a_function_of_seed_and_epoch(store):
    def epoch_of(seed, epoch):
        loader = LatentLoader(store, 4, seed=seed)
        loader.set_epoch(epoch)
        return labels_of(loader)

    first = epoch_of(1, 0)
    assert epoch_of(1, 0) == first
    assert epoch_of(1, 1) != first and epoch_of(2, 0) != first
    buckets = lambda batches: [int(store.bucket_indices[b[0]]) for b in batches]  # noqa: E731
    assert buckets(epoch_of(1, 1)) != buckets(first)  # the bucket order too, not only the samples
    loader = LatentLoader(store, 4, seed=1)
    assert [labels_of(loader) for _ in range(2)] == [first, epoch_of(1, 1)]  # epochs advance by themselves


def test_drop_last_drops_only_each_buckets_partial_batch(store):
    batches = labels_of(LatentLoader(store, 4, drop_last=True, seed=2))
    assert all(len(b) == 4 for b in batches)
    seen = {s for b in batches for s in b}
    missing = set(valid_samples(store).tolist()) - seen
    counts = [b["count"] for b in store.buckets]
    assert len(missing) == sum(c % 4 for c in counts)
    for bucket, count in enumerate(counts):
        assert sum(int(store.bucket_indices[s]) == bucket for s in missing) == count % 4


@pytest.mark.parametrize("world_size", [2, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_get_equal_numbers_of_batches_disjoint_but_for_the_padding(store, world_size, drop_last):
    shares = [labels_of(LatentLoader(store, 4, seed=5, rank=r, world_size=world_size, drop_last=drop_last))
              for r in range(world_size)]
    lengths = {len(share) for share in shares}
    assert len(lengths) == 1
    assert lengths == {len(LatentLoader(store, 4, rank=0, world_size=world_size, drop_last=drop_last))}
    everything = expected(store, 4, seed=5, drop_last=drop_last)  # one rank's epoch: every batch once
    batches = [tuple(b) for share in shares for b in share]
    if drop_last:  # the last few batches of the epoch's order go
        kept = len(everything) // world_size * world_size
        assert sorted(batches) == sorted(tuple(b.tolist()) for b in everything[:kept])
    else:  # every sample is read; the first few batches of the epoch's order repeat to even the ranks
        padding = -len(everything) % world_size
        assert sorted(batches) == sorted(tuple(b.tolist()) for b in everything + everything[:padding])
        assert {s for b in batches for s in b} == set(valid_samples(store).tolist())


@pytest.mark.parametrize("stop_after", [0, 3])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_loader_resume_gives_exactly_the_remaining_batches(store, stop_after, prefetch):
    settings = dict(batch_size=4, seed=7, flip_prob=0.5, prefetch=prefetch)
    loader = LatentLoader(store, **settings)
    loader.set_epoch(1)
    for k, _ in enumerate(loader):
        if k == stop_after:
            break
    state = loader.state_dict()
    assert (state["epoch"], state["batches_done"]) == (1, stop_after + 1)
    resumed = LatentLoader(store, **settings)
    resumed.load_state_dict(state)
    got = [(latents.clone(), labels.clone()) for latents, labels in resumed]
    want = expected(store, 4, seed=7, epoch=1)[stop_after + 1 :]
    assert labels_of(got) == [b.tolist() for b in want]
    for latents, labels in got:
        check_batch(store, latents, labels, flip=flip_mask(labels.numpy(), 0.5, 7, 1))
    assert resumed.epoch == 2


@pytest.mark.parametrize("prefetch", [0, 2])
def test_kept_batches_of_any_bucket_stay_valid_and_dropped_ones_reuse_a_few_buffers(store, prefetch):
    loader = LatentLoader(store, 4, prefetch=prefetch, seed=1)
    kept = list(loader)  # no clone: every batch a view of a buffer of its own
    for latents, labels in kept:
        check_batch(store, latents, labels)
    pointers = set()
    for latents, _ in loader:
        pointers.add(latents.data_ptr())
    assert len(pointers) <= loader.prefetch + 3


def test_flips_normalisation_and_columns_work_per_batch(store):
    loader = LatentLoader(store, 4, seed=4, flip_prob=0.5, normalize=True, columns=["width"],
                          caption_choice=["caption", "alt"])
    for latents, labels, columns in loader:
        samples = labels.numpy()
        check_batch(store, latents, labels, flip=flip_mask(samples, 0.5, 4, 0), normalize=True)
        assert columns["width"].tolist() == (2 * samples).tolist()
        assert all(text.endswith(f"of sample {i}") for text, i in zip(columns["caption"], samples.tolist(), strict=True))


def test_normalisation_uses_per_channel_stats_over_every_buckets_own_tokens(store):
    samples = valid_samples(store)
    tokens = [store.read([s])[0][0].reshape(C, -1) for s in samples]
    mean = np.concatenate(tokens, axis=1).mean(axis=1)
    np.testing.assert_allclose(store.metadata.stats["mean"], mean, rtol=1e-3)
    stats = store.metadata.stats
    for latents, labels in LatentLoader(store, 8, normalize=True, shuffle=False):
        raw = store.read(labels.numpy())[0]
        want = (raw - np.asarray(stats["mean"])[:, None, None]) / np.asarray(stats["std"])[:, None, None]
        np.testing.assert_allclose(latents.numpy(), want, rtol=1e-4, atol=1e-4)


def dataloader(dataset, sampler, **options):
    return torch.utils.data.DataLoader(dataset, batch_sampler=sampler, **options)


def test_sampler_through_a_dataloader_gives_the_loaders_batches(store):
    dataset = LatentDataset(store, flip_prob=0.5, seed=2)
    sampler = BucketBatchSampler(dataset, 4, seed=2)
    sampler.set_epoch(1)
    dataset.set_epoch(1)
    got = list(dataloader(dataset, sampler))
    loader = LatentLoader(store, 4, seed=2, flip_prob=0.5)
    loader.set_epoch(1)
    assert len(got) == len(sampler) == len(loader)
    assert labels_of(got) == labels_of(loader)
    for latents, labels in got:
        check_batch(store, latents, labels, flip=flip_mask(labels.numpy(), 0.5, 2, 1))


def test_sampler_yields_dataset_positions_and_takes_a_store_too(store):
    positions = list(BucketBatchSampler(store, 4, seed=3))
    samples = valid_samples(store)
    assert [samples[p].tolist() for p in positions] == [b.tolist() for b in expected(store, 4, seed=3)]
    assert sorted(p for batch in positions for p in batch) == list(range(len(samples)))


def test_a_loaders_dataset_and_batch_sampler_give_its_batches(store):
    loader = LatentLoader(store, 4, seed=6)
    loader.skip(2)
    got = list(torch.utils.data.DataLoader(loader.dataset, batch_sampler=loader.batch_sampler, collate_fn=collate))
    assert labels_of(got) == labels_of(loader)


@pytest.mark.parametrize("world_size", [1, 3])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_ranks_match_the_loaders(store, world_size, drop_last):
    for rank in range(world_size):
        sampler = BucketBatchSampler(store, 4, seed=1, rank=rank, world_size=world_size, drop_last=drop_last)
        loader = LatentLoader(store, 4, seed=1, rank=rank, world_size=world_size, drop_last=drop_last)
        samples = valid_samples(store)
        assert [samples[p].tolist() for p in sampler] == labels_of(loader)
        assert len(sampler) == len(loader)


def test_sampler_resume_through_a_dataloader_gives_the_remaining_batches(store):
    dataset = LatentDataset(store)
    sampler = BucketBatchSampler(dataset, 4, seed=8)
    sampler.set_epoch(2)
    for k, _ in enumerate(dataloader(dataset, sampler)):
        if k == 2:
            break
    state = sampler.state_dict()
    assert (state["epoch"], state["batches_done"]) == (2, 3)
    resumed = BucketBatchSampler(dataset, 4, seed=0)
    with pytest.raises(ValueError, match=r"cannot resume.*batch_size: saved 4, sampler has 5"):
        BucketBatchSampler(dataset, 5).load_state_dict(state)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state
    with pytest.raises(ValueError, match=r"restored to epoch 2, batch 3.*set_epoch\(3\) would drop"):
        resumed.set_epoch(3)
    resumed.set_epoch(2)  # the usual loop's call keeps the resume
    rest = labels_of(dataloader(dataset, resumed))
    assert rest == [b.tolist() for b in expected(store, 4, seed=8, epoch=2)[3:]]
    assert len(labels_of(dataloader(dataset, resumed))) == len(resumed)  # then whole epochs again
    assert resumed.state_dict(batches_done=1)["batches_done"] == 1
    done = resumed.state_dict()  # saved after the epoch's last batch: the next epoch may follow
    assert done["batches_done"] == len(resumed)
    again = BucketBatchSampler(dataset, 4, seed=8)
    again.load_state_dict(done)
    again.set_epoch(3)
    assert len(labels_of(dataloader(dataset, again))) == len(again)


def test_a_sampler_that_mixes_buckets_says_to_use_bucket_batch_sampler(store):
    dataset = LatentDataset(store)
    with pytest.raises(ValueError, match="several buckets.*BucketBatchSampler"):
        next(iter(torch.utils.data.DataLoader(dataset, batch_size=16)))
    with pytest.raises(ValueError, match="several buckets.*BucketBatchSampler"):
        dataset.__getitems__(list(range(16)))
    latent, label = dataset[0]  # single samples are fine, each of its own shape
    assert tuple(latent.shape) == shape_of(store, label)


def test_sampler_over_a_store_of_one_shape_is_one_bucket(tmp_path):
    x = np.zeros((10, 4, 2, 2), np.float32)
    with latentstore.create(tmp_path / "plain.zarr", 10, (4, 2, 2), chunk_samples=16) as writer:
        writer.write(0, x, labels=np.arange(10))
    batches = list(BucketBatchSampler(latentstore.open(tmp_path / "plain.zarr"), 4, shuffle=False))
    assert batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.slow
def test_sampler_with_workers_resumes_from_the_consumed_batches(store):
    dataset = LatentDataset(store, flip_prob=0.5, normalize=True, seed=3, columns=["width"])
    sampler = BucketBatchSampler(dataset, 4, seed=3)
    options = dict(num_workers=2, multiprocessing_context="fork")
    consumed = 0
    for consumed, (latents, labels, columns) in enumerate(dataloader(dataset, sampler, **options), start=1):
        check_batch(store, latents, labels, flip=flip_mask(labels.numpy(), 0.5, 3, 0), normalize=True)
        assert columns["width"].tolist() == (2 * labels.numpy()).tolist()
        if consumed == 3:
            break
    assert sampler.state_dict()["batches_done"] >= consumed  # workers drew ahead
    state = sampler.state_dict(batches_done=consumed)
    resumed = BucketBatchSampler(dataset, 4)
    resumed.load_state_dict(state)
    rest = [labels.tolist() for _, labels, _ in dataloader(dataset, resumed, **options)]
    assert rest == [b.tolist() for b in expected(store, 4, seed=3)[3:]]
