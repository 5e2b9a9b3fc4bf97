"""latentstore.torch: LatentLoader and LatentDataset against store.read, workers, resumption, DDP, memory."""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import latentstore  # noqa: E402
from latentstore.store.sampling import batch_slices  # noqa: E402
from latentstore.torch import LatentDataset, LatentLoader, SampleBatch, collate, flip_mask  # noqa: E402

SHAPE = (4, 2, 2)
NUM_SAMPLES = 45
INVALID = (3, 17, 40)


def make_store(path, num_samples=NUM_SAMPLES, flip=True, invalid=INVALID, shape=SHAPE, chunk=16, seed=0):
    """A small finalized store of synthetic heavy-tailed latents; label i for sample i."""
    rng = np.random.default_rng(seed)
    synthetic = lambda: (rng.standard_t(4, size=(num_samples, *shape)) * 1.7).astype(np.float32)  # noqa: E731
    latents, flipped = synthetic(), synthetic()
    valid = np.ones(num_samples, bool)
    valid[list(invalid)] = False
    with latentstore.create(path, num_samples, shape, chunk_samples=chunk, flip=flip) as writer:
        for start in range(0, num_samples, chunk):
            part = slice(start, min(start + chunk, num_samples))
            writer.write(
                start,
                latents[part],
                labels=np.arange(part.start, part.stop),
                valid=valid[part],
                flip_latents=flipped[part] if flip else None,
            )
    return latentstore.open(path)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("loader") / "small.zarr")


@pytest.fixture(scope="module")
def plain_store(tmp_path_factory):
    return make_store(tmp_path_factory.mktemp("loader") / "noflip.zarr", flip=False, invalid=())


def expected_batches(store, batch_size, *, seed=0, epoch=0, shuffle=True, drop_last=False, flip_prob=0.0, normalize=False, dtype=np.float32, rank=0, world_size=1):
    order = store.epoch_indices(shuffle=shuffle, seed=seed, epoch=epoch, rank=rank, world_size=world_size)
    for part in batch_slices(len(order), batch_size, drop_last):
        indices = order[part]
        flip = flip_mask(indices, flip_prob, seed, epoch) if flip_prob else None
        yield store.read(indices, normalize=normalize, flip=flip, dtype=dtype)


def assert_batches_equal(got, expected):
    got, expected = list(got), list(expected)
    assert len(got) == len(expected)
    for (latents, labels), (want_latents, want_labels) in zip(got, expected):
        assert latents.numpy().tobytes() == want_latents.tobytes() and latents.shape == want_latents.shape
        assert labels.dtype == torch.int64 and labels.tolist() == want_labels.tolist()


def cloned(loader):
    return [(latents.clone(), labels.clone()) for latents, labels in loader]


@pytest.mark.parametrize("prefetch", [0, 2])
@pytest.mark.parametrize("dequantize_on", ["host", "device"])
@pytest.mark.parametrize(
    ("normalize", "dtype", "drop_last", "shuffle"),
    [(False, torch.float32, False, True), (True, torch.float32, True, True), (True, torch.float16, False, False)],
)
def test_loader_batches_are_the_store_reads(store, prefetch, dequantize_on, normalize, dtype, drop_last, shuffle):
    loader = LatentLoader(
        store, 8, shuffle=shuffle, seed=3, drop_last=drop_last, prefetch=prefetch,
        normalize=normalize, dtype=dtype, dequantize_on=dequantize_on,
    )
    expected = list(expected_batches(store, 8, seed=3, shuffle=shuffle, drop_last=drop_last, normalize=normalize, dtype={torch.float32: np.float32, torch.float16: np.float16}[dtype]))
    assert len(loader) == len(expected) == (5 if drop_last else 6)
    assert_batches_equal(cloned(loader), expected)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_kept_batches_stay_valid_by_default(store, prefetch):
    loader = LatentLoader(store, 4, prefetch=prefetch)
    kept = list(loader)  # no clone
    expected = list(expected_batches(store, 4))
    assert len({latents.data_ptr() for latents, _ in kept}) == len(kept)
    assert_batches_equal(kept, expected)


@pytest.mark.parametrize("prefetch", [0, 2])
def test_a_loop_that_drops_its_batches_reuses_a_few_buffers_and_kept_ones_never_change(store, prefetch):
    loader = LatentLoader(store, 4, prefetch=prefetch)
    expected = list(expected_batches(store, 4))
    pointers = set()
    kept = None
    for k, (latents, labels) in enumerate(loader):
        pointers.add(latents.data_ptr())
        if k == 2:
            kept = (latents[1:3], labels)  # a view of a batch, kept: its buffer must never be refilled
    assert len(pointers) <= loader.prefetch + 3
    assert kept[0].numpy().tobytes() == expected[2][0][1:3].tobytes()
    assert kept[1].tolist() == expected[2][1].tolist()


def test_set_epoch_of_the_restored_epoch_keeps_the_resume(store):
    """The documented loop: load_state_dict, then for epoch in range(start_epoch, ...): set_epoch(epoch)."""
    loader = LatentLoader(store, 7, seed=5)
    loader.set_epoch(2)
    for k, _ in enumerate(loader):
        if k == 3:
            break
    state = loader.state_dict()
    resumed = LatentLoader(store, 7, seed=5)
    resumed.load_state_dict(state)
    got = []
    for epoch in range(state["epoch"], state["epoch"] + 2):
        resumed.set_epoch(epoch)
        got.append([labels.tolist() for _, labels in resumed])
    expected = [list(expected_batches(store, 7, seed=5, epoch=e)) for e in (2, 3)]
    assert got[0] == [labels.tolist() for _, labels in expected[0][4:]]
    assert got[1] == [labels.tolist() for _, labels in expected[1]]


def test_set_epoch_of_another_epoch_after_a_restore_is_refused(store):
    loader = LatentLoader(store, 7)
    loader.load_state_dict({**loader.state_dict(), "epoch": 3, "batches_done": 2})
    with pytest.raises(ValueError, match=r"restored to epoch 3, batch 2.*set_epoch\(4\) would drop"):
        loader.set_epoch(4)
    loader.set_epoch(3)
    assert loader.state_dict()["batches_done"] == 2


def test_skip_resumes_by_step_count(store):
    loader = LatentLoader(store, 7, seed=1)
    step = len(loader) + 2  # two batches into the second epoch
    loader.set_epoch(step // len(loader))
    loader.skip(step % len(loader))
    expected = list(expected_batches(store, 7, seed=1, epoch=1))[2:]
    assert_batches_equal(cloned(loader), expected)
    with pytest.raises(ValueError, match="cannot skip 7 batches"):
        loader.skip(len(loader) + 1)


def test_accelerate_skip_first_batches_gives_the_same_batches(store):
    accelerate = pytest.importorskip("accelerate")
    loader = LatentLoader(store, 7, seed=3, flip_prob=0.5)
    loader.set_epoch(1)
    skipped = accelerate.skip_first_batches(loader, 2)
    got = [(latents, labels) for latents, labels in skipped]
    assert_batches_equal(got, list(expected_batches(store, 7, seed=3, epoch=1, flip_prob=0.5))[2:])


@pytest.mark.parametrize("name", ["num_workers", "sampler", "collate_fn", "persistent_workers", "prefetch_factor"])
def test_dataloader_arguments_without_meaning_here_say_what_to_use(store, name):
    with pytest.raises(TypeError, match=f"LatentLoader has no {name}= argument: ") as info:
        LatentLoader(store, 4, **{name: 2})
    assert "use" in str(info.value) or "there are no" in str(info.value)
    with pytest.raises(TypeError, match="unexpected keyword argument 'shuffel'"):
        LatentLoader(store, 4, shuffel=True)


def test_epochs_advance_and_differ(store):
    loader = LatentLoader(store, 64, seed=1)
    first = [labels.tolist() for _, labels in loader]
    assert loader.epoch == 1
    second = [labels.tolist() for _, labels in loader]
    assert sorted(first[0]) == sorted(second[0]) == sorted(np.flatnonzero(store.valid).tolist())
    assert first != second
    loader.set_epoch(0)
    assert [labels.tolist() for _, labels in loader] == first


@pytest.mark.parametrize("stop_after", [0, 1, 4, 6])
@pytest.mark.parametrize("prefetch", [0, 2])
def test_resume_reproduces_the_remaining_batches(store, stop_after, prefetch):
    settings = dict(batch_size=7, seed=5, flip_prob=0.5, prefetch=prefetch)
    loader = LatentLoader(store, **settings)
    loader.set_epoch(2)
    taken = []
    for batch in loader:
        if len(taken) == stop_after:
            break
        taken.append(batch[1].clone())
    state = loader.state_dict()
    # The batch in hand when the loop broke counts as consumed; a loop that
    # ran to the end has moved on to the next epoch.
    assert (state["epoch"], state["batches_done"]) == ((2, stop_after + 1) if stop_after < 6 else (3, 0))
    resumed = LatentLoader(store, **{**settings, "seed": 0})
    resumed.load_state_dict(state)
    expected = list(expected_batches(store, 7, seed=5, epoch=state["epoch"], flip_prob=0.5))
    assert_batches_equal(cloned(resumed), expected[state["batches_done"] :])
    assert resumed.epoch == state["epoch"] + 1


def test_resume_refuses_other_settings(store):
    state = LatentLoader(store, 8).state_dict()
    with pytest.raises(ValueError, match="batch_size: saved 8, loader has 9"):
        LatentLoader(store, 9).load_state_dict(state)


def test_flip_reads_stored_flip_latents(store):
    loader = LatentLoader(store, 8, seed=2, flip_prob=0.5)
    batches = cloned(loader)
    assert_batches_equal(batches, expected_batches(store, 8, seed=2, flip_prob=0.5))
    order = store.epoch_indices(seed=2)
    mask = flip_mask(order, 0.5, 2, 0)
    assert 0 < mask.sum() < len(mask)  # a real mixture of flipped and unflipped samples
    assert mask.tolist() != flip_mask(order, 0.5, 2, 1).tolist()  # fresh flips each epoch
    all_flipped = LatentLoader(store, 64, shuffle=False, flip_prob=1.0)
    latents, _ = next(iter(all_flipped))
    assert latents.numpy().tobytes() == store.read(np.flatnonzero(store.valid), flip=True)[0].tobytes()


def test_flip_without_stored_flip_latents_is_an_error(plain_store):
    for make in (lambda: LatentLoader(plain_store, 4, flip_prob=0.5), lambda: LatentDataset(plain_store, flip_prob=0.5)):
        with pytest.raises(ValueError, match="re-encode with --flip"):
            make()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(batch_size=0), ValueError, "batch_size"),
        (dict(batch_size=4, prefetch=-1), ValueError, "prefetch"),
        (dict(batch_size=4, flip_prob=1.5), ValueError, "flip_prob"),
        (dict(batch_size=4, rank=1), ValueError, "both rank and world_size"),
        (dict(batch_size=4, rank=2, world_size=2), ValueError, "rank < world_size"),
        (dict(batch_size=4, dequantize_on="gpu"), ValueError, "dequantize_on"),
        (dict(batch_size=4, dtype=torch.int8), TypeError, "dtype"),
        (dict(batch_size=4, normalize="zscore"), ValueError, "normalize"),
        (dict(batch_size=4, normalize=0), ValueError, "normalize"),
        (dict(batch_size=4.0), TypeError, "batch_size must be an integer"),
        (dict(batch_size=4, prefetch=True), TypeError, "prefetch must be an integer"),
        (dict(batch_size=4, shuffle="no"), TypeError, "shuffle must be True or False"),
        (dict(batch_size=4, drop_last=1), TypeError, "drop_last must be True or False"),
        (dict(batch_size=4, pin_memory="yes"), TypeError, "pin_memory must be True or False"),
        (dict(batch_size=4, flip_prob=True), ValueError, "flip_prob"),
        (dict(batch_size=4, flip_prob="0.5"), ValueError, "flip_prob"),
        (dict(batch_size=4, seed=1.5), TypeError, "seed must be an integer"),
    ],
)
def test_loader_rejects_bad_arguments(store, kwargs, error, match):
    with pytest.raises(error, match=match):
        LatentLoader(store, **kwargs)


def test_loader_reopens_a_path_and_skips_invalid_samples(store):
    labels = torch.cat([labels.clone() for _, labels in LatentLoader(store.path, 10, shuffle=False)])
    assert labels.tolist() == np.flatnonzero(store.valid).tolist()
    assert not set(INVALID) & set(labels.tolist())


# -- the dataset under DataLoader workers -------------------------------------
def dataloader_cases():
    yield pytest.param(0, None, id="no-workers")
    for method in ("fork", "spawn", "forkserver"):
        marks = () if method == "fork" else pytest.mark.slow  # a fresh interpreter per worker
        yield pytest.param(2, method, id=f"2-workers-{method}", marks=marks)


@pytest.mark.parametrize(("num_workers", "method"), list(dataloader_cases()))
def test_dataloader_batches_are_the_store_reads(store, num_workers, method):
    ds = LatentDataset(store.path, flip_prob=0.5, seed=4)
    ds.set_epoch(1)
    loader = torch.utils.data.DataLoader(ds, batch_size=6, num_workers=num_workers, multiprocessing_context=method)
    got = [(latents, labels) for latents, labels in loader]
    indices = np.flatnonzero(store.valid)
    expected = [
        store.read(indices[part], flip=flip_mask(indices[part], 0.5, 4, 1))
        for part in batch_slices(len(indices), 6)
    ]
    assert_batches_equal(got, expected)


def test_dataset_items_and_the_copy_free_collate(store):
    ds = LatentDataset(store, normalize=True)
    valid = np.flatnonzero(store.valid)
    assert len(ds) == len(valid)
    latent, label = ds[3]
    assert label == valid[3] and latent.numpy().tobytes() == store.read(int(valid[3]), normalize=True)[0].tobytes()
    batch = ds.__getitems__([0, 5, 5, 2])
    assert isinstance(batch, SampleBatch) and len(batch) == 4
    latents, labels = collate(batch)
    assert latents.data_ptr() == batch.latents.data_ptr()  # handed on, not copied
    stacked, stacked_labels = torch.utils.data.default_collate(batch)
    assert torch.equal(stacked, latents) and torch.equal(stacked_labels, labels)
    assert labels.tolist() == valid[[0, 5, 5, 2]].tolist()
    with pytest.raises(IndexError):
        ds[len(ds)]


def test_dataset_pickles_as_a_path(store):
    import pickle

    ds = LatentDataset(store, flip_prob=0.25, seed=9)
    ds.set_epoch(3)
    data = pickle.dumps(ds)
    assert len(data) < 1000
    copy = pickle.loads(data)
    assert (copy.flip_prob, copy.seed, copy.epoch, len(copy)) == (0.25, 9, 3, len(ds))
    assert torch.equal(copy.__getitems__([1, 2]).latents, ds.__getitems__([1, 2]).latents)


# -- distributed -------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world_size, port, path, out_dir):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    try:
        loader = LatentLoader(path, 4, seed=7, prefetch=1)
        assert (loader.rank, loader.world_size) == (rank, world_size)
        for epoch in range(2):
            loader.set_epoch(epoch)
            labels = torch.cat([labels.clone() for _, labels in loader])
            np.save(os.path.join(out_dir, f"epoch{epoch}-rank{rank}.npy"), labels.numpy())
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_shares_are_disjoint_and_complete(store, tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), store.path, str(tmp_path)), nprocs=2)
    valid = set(np.flatnonzero(store.valid).tolist())
    epochs = []
    for epoch in range(2):
        shares = [np.load(tmp_path / f"epoch{epoch}-rank{rank}.npy").tolist() for rank in range(2)]
        assert len(shares[0]) == len(shares[1]) == len(valid) // 2
        assert not set(shares[0]) & set(shares[1])
        union = set(shares[0]) | set(shares[1])
        assert union <= valid and len(valid - union) == len(valid) % 2  # only the remainder is dropped
        epochs.append(shares)
    assert epochs[0] != epochs[1]


# -- the read path stays torch-free and shares one copy of the data -----------
READER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import latentstore

    def pss_kib():
        with open("/proc/self/smaps_rollup") as f:
            fields = dict(line.split()[:2] for line in f if line.startswith(("Pss:", "Pss_File:")))
        return f"{fields['Pss:']} {fields['Pss_File:']}"

    store = latentstore.open(sys.argv[1])
    out = np.empty((256, *store.latent_shape), np.float32)  # 2 MiB
    before = pss_kib()
    for start in range(0, len(store), 256):
        stop = min(start + 256, len(store))
        store.read(np.arange(start, stop), out=out[: stop - start])
    for _, batch in zip(range(4), store.batches(256, seed=1)):
        pass
    assert "torch" not in sys.modules, "the read path imported torch"
    print(before, flush=True)
    sys.stdin.readline()  # wait until every reader has touched every page
    print(pss_kib(), flush=True)
    sys.stdin.readline()
    """
)


@pytest.mark.slow
def test_readers_share_one_copy_and_never_import_torch(tmp_path):
    """4 processes each read every sample of a 64 MiB store, in batches of 256.

    Measured from /proc/<pid>/smaps_rollup: PSS (proportional set size:
    shared pages split between the processes mapping them), summed over the
    readers, after reading minus before reading (the interpreter, numpy and
    latentstore are the baseline). The mapped store pages (Pss_File) must
    total at most 1.25 x the store; all memory at most that plus 8 MiB a
    process for batch buffers (a 256-sample float32 batch is 2 MiB).
    """
    num_samples, shape = 32768, (32, 8, 8)  # 2048-byte samples: 64 MiB of int8 codes
    rng = np.random.default_rng(0)
    path = tmp_path / "pss.zarr"
    with latentstore.create(path, num_samples, shape) as writer:
        chunk = writer.metadata.chunk_samples
        for start in range(0, num_samples, chunk):
            n = min(chunk, num_samples - start)
            codes = rng.integers(-127, 128, size=(n, *shape), dtype=np.int8)
            writer.write(start, codes=(codes, np.full(n, 0.02, np.float16)))
    store_bytes = num_samples * 2048
    readers = [
        subprocess.Popen([sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]

    def summed_kib():
        rows = [p.stdout.readline().split() for p in readers]
        return np.array([[int(v) for v in row] for row in rows]).sum(axis=0) * 1024

    try:
        before = summed_kib()
        for p in readers:
            p.stdin.write("\n")
            p.stdin.flush()
        after = summed_kib()
        for p in readers:
            p.stdin.write("\n")
            p.stdin.flush()
    finally:
        for p in readers:
            p.communicate(timeout=60)
    assert all(p.returncode == 0 for p in readers)
    total, mapped = after - before
    mib = lambda b: f"{b / 2**20:.1f} MiB"  # noqa: E731
    assert store_bytes * 0.9 < mapped, f"the readers mapped only {mib(mapped)}: did they read at all?"
    assert mapped <= 1.25 * store_bytes, f"4 readers map {mib(mapped)} of a {mib(store_bytes)} store"
    assert total <= 1.25 * store_bytes + 4 * (8 << 20), f"4 readers grew by {mib(total)} for a {mib(store_bytes)} store"


# -- the loader benchmark at smoke size ---------------------------------------
