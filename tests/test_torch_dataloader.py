"""LatentDataset under DataLoader workers: no deadlock after fork, batches read where they land."""

import pickle
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import latentstore  # noqa: E402
from latentstore.torch import LatentDataset, RowBatch, SampleBatch, collate, flip_mask  # noqa: E402

SHAPE = (32, 8, 8)  # the real latent shape: batches of 128+ go parallel in the kernels


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("dataloader") / "s.zarr"
    n, chunk = 2600, 1024
    rng = np.random.default_rng(0)
    with latentstore.create(path, n, SHAPE, chunk_samples=chunk, flip=True) as writer:
        for start in range(0, n, chunk):
            m = min(chunk, n - start)
            writer.write(
                start,
                (rng.standard_t(4, size=(m, *SHAPE)) * 1.7).astype(np.float32),
                labels=np.arange(start, start + m) % 1000,
                flip_latents=(rng.standard_t(4, size=(m, *SHAPE)) * 1.7).astype(np.float32),
            )
    return latentstore.open(path)


# The deadlock: a parent that started an OpenMP team (any large torch op, or
# a parallel read of ours) forks DataLoader workers; a worker that starts a
# team of its own waits forever for threads that do not exist. The script
# runs in a fresh interpreter under a timeout, so a hang fails the test.
DEADLOCK_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    import latentstore
    from latentstore.torch import LatentDataset

    def main(path, method, parent_op):
        store = latentstore.open(path)
        if parent_op == "torch":
            a = torch.randn(4_000_000)
            a.exp_()
            (torch.randn(800, 800) @ torch.randn(800, 800)).sum()
        else:
            store.read(np.arange(len(store))[::-1], num_threads=2)
        for read_in in ("worker", "consumer"):
            ds = LatentDataset(store, read_in=read_in)
            for epoch in range(2):
                # Batches of 128, 256 and 1,024 in one shuffled pass (all go parallel in the kernels).
                order = np.random.default_rng(epoch).permutation(len(store)).tolist()
                batches, start = [], 0
                while start < len(order):
                    size = (128, 256, 1024)[len(batches) % 3]
                    batches.append(order[start : start + size])
                    start += size
                loader = torch.utils.data.DataLoader(
                    ds, batch_sampler=batches, num_workers=2, multiprocessing_context=method
                )
                seen = 0
                for latents, labels in loader:
                    expected, _ = store.read(labels.numpy())  # label i -> sample i
                    assert torch.equal(latents, torch.from_numpy(expected)), "wrong values"
                    seen += len(latents)
                assert seen == len(store), (seen, len(store))
        print("ok")

    if __name__ == "__main__":
        main(*sys.argv[1:])
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("parent_op", ["torch", "latentstore"])
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_workers_never_deadlock_after_the_parent_ran_thread_teams(tmp_path, method, parent_op):
    path = tmp_path / "s.zarr"
    n = 2000
    rng = np.random.default_rng(1)
    with latentstore.create(path, n, SHAPE, chunk_samples=512) as writer:
        for start in range(0, n, 512):
            m = min(512, n - start)
            writer.write(start, (rng.standard_normal((m, *SHAPE)) * 2).astype(np.float32),
                         labels=np.arange(start, start + m))  # label i for sample i
    script = tmp_path / "loop.py"
    script.write_text(DEADLOCK_SCRIPT)
    try:
        result = subprocess.run(
            [sys.executable, str(script), str(path), method, parent_op], capture_output=True, text=True, timeout=240
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"DataLoader workers ({method}) hung after the parent ran {parent_op} thread teams")
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_a_worker_batch_travels_as_rows_and_lands_as_tensors(big_store):
    rows = np.array([5, 1, 2048, 5])
    flip = np.array([False, True, False, True])
    for as_list in (True, False):
        batch = RowBatch(big_store.path, rows, flip, "stats", as_list)
        assert len(pickle.dumps(batch)) < 1000  # no data on the way
        latents, labels = landed = pickle.loads(pickle.dumps(batch))
        assert isinstance(landed, list if as_list else tuple)
        expected, expected_labels = big_store.read(rows, flip=flip, normalize="stats")
        assert torch.equal(latents, torch.from_numpy(expected))
        assert labels.dtype == torch.int64 and labels.tolist() == expected_labels.tolist()


def test_the_default_collate_passes_a_row_batch_through():
    batch = RowBatch("x", np.arange(3), None, False, True)
    assert torch.utils.data.default_collate([batch]) is batch
    assert collate([batch]) is batch
    with pytest.raises(TypeError, match="holds no items"):
        batch["latents"] = 1


def custom_collate(pairs):
    """A user's collate: gets (latent, label) pairs, as a map-style dataset promises."""
    return torch.stack([latent for latent, _ in pairs]), torch.tensor([label for _, label in pairs])


def collect(loader):
    latents, labels = zip(*[(x.clone(), y.clone()) for x, y in loader])
    return torch.cat(latents), torch.cat(labels)


@pytest.mark.slow
@pytest.mark.parametrize("collate_fn", [None, collate, custom_collate], ids=["default", "latentstore", "custom"])
@pytest.mark.parametrize("read_in", ["consumer", "worker"])
def test_workers_give_the_store_reads_with_every_collate(big_store, collate_fn, read_in, monkeypatch):
    # A RowBatch that lands here finds its store through latentstore.torch._store_at,
    # in this process only (worker reads use the dataset's own store): count them.
    import latentstore.torch as module

    landed = []
    store_at = module._store_at
    monkeypatch.setattr(module, "_store_at", lambda path: landed.append(path) or store_at(path))
    ds = LatentDataset(big_store, flip_prob=0.5, seed=3, normalize=True, read_in=read_in)
    ds.set_epoch(2)
    options = {} if collate_fn is None else {"collate_fn": collate_fn}
    sampler = torch.utils.data.DistributedSampler(ds, num_replicas=2, rank=1, shuffle=True, seed=5)
    loader = torch.utils.data.DataLoader(ds, batch_size=256, sampler=sampler, num_workers=2,
                                         persistent_workers=True, **options)
    for _ in range(2):  # persistent workers serve a second pass
        latents, labels = collect(loader)
    consumer_reads = read_in == "consumer" and collate_fn is not custom_collate
    assert len(landed) == (2 * len(loader) if consumer_reads else 0)
    positions = np.array(list(sampler))
    samples = ds.indices[positions]
    expected, expected_labels = big_store.read(samples, flip=flip_mask(samples, 0.5, 3, 2), normalize=True)
    assert torch.equal(latents, torch.from_numpy(expected))
    assert labels.tolist() == expected_labels.tolist()


@pytest.mark.slow
def test_pin_memory_and_no_worker_init_fn_needed(big_store):
    loader = torch.utils.data.DataLoader(LatentDataset(big_store), batch_size=300, num_workers=1, pin_memory=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*pin_memory.*no accelerator.*")
        latents, labels = collect(loader)
    expected, _ = big_store.read(np.arange(len(big_store)))
    assert torch.equal(latents, torch.from_numpy(expected)) and labels.tolist() == big_store.labels.tolist()


def test_in_the_main_process_the_batch_is_read_in_place(big_store):
    ds = LatentDataset(big_store)
    batch = ds.__getitems__([3, 2, 1])
    assert isinstance(batch, SampleBatch)
    loader = torch.utils.data.DataLoader(ds, batch_size=7)
    latents, labels = next(iter(loader))
    assert torch.equal(latents, torch.from_numpy(big_store.read(np.arange(7))[0]))


def test_read_in_must_be_one_of_the_two_places(big_store):
    with pytest.raises(ValueError, match="read_in must be one of 'consumer', 'worker', got 'gpu'"):
        LatentDataset(big_store, read_in="gpu")


@pytest.mark.slow  # DataLoader worker processes
def test_persistent_workers_draw_each_epochs_own_flips(big_store):
    """Persistent workers keep the dataset as it was when they started; the batches they send are
    read where the DataLoader is iterated, with that process's epoch."""
    dataset = LatentDataset(big_store, flip_prob=0.5, seed=3)
    loader = torch.utils.data.DataLoader(dataset, batch_size=300, num_workers=2, persistent_workers=True)
    for epoch in range(3):
        dataset.set_epoch(epoch)
        for k, (latents, _) in enumerate(loader):
            rows = np.arange(k * 300, min((k + 1) * 300, len(dataset)))
            expected, _ = big_store.read(rows, flip=flip_mask(rows, 0.5, 3, epoch))
            np.testing.assert_array_equal(latents.numpy(), expected)
