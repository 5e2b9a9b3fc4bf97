"""Batches that carry per-sample columns: LatentLoader, LatentDataset, workers, ranks, resume, caption_choice."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import latentstore  # noqa: E402
from latentstore.torch import LatentDataset, LatentLoader, collate  # noqa: E402

N, SHAPE, CHUNK = 90, (4, 2, 2), 32


def texts(prefix: str, rows) -> list[str]:
    return [f"{prefix} of sample {i}" for i in rows]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """Labels, captions and widths all encode the sample number, so alignment is checkable per sample."""
    path = tmp_path_factory.mktemp("columns") / "s.zarr"
    x = np.random.default_rng(0).normal(size=(N, *SHAPE)).astype(np.float32)
    valid = np.ones(N, bool)
    valid[[5, 40]] = False
    columns = {"caption": "text", "caption_long": "text", "width": "int32"}
    with latentstore.create(path, N, SHAPE, chunk_samples=CHUNK, columns=columns) as writer:
        for start in range(0, N, CHUNK):
            rows = range(start, min(start + CHUNK, N))
            writer.write(start, x[start : rows.stop], labels=np.asarray(rows), valid=valid[start : rows.stop], columns={
                "caption": texts("caption", rows), "caption_long": texts("long caption", rows),
                "width": np.asarray(rows) * 2,
            })
    return latentstore.open(path)


def check_aligned(labels, columns, names=("caption", "width")):
    labels = labels.tolist()
    if "caption" in names:
        assert all(c.endswith(f"of sample {i}") for c, i in zip(columns["caption"], labels, strict=True))
    if "width" in names:
        assert columns["width"].tolist() == [2 * i for i in labels]


def test_loader_batches_carry_columns_aligned_with_latents(store):
    loader = LatentLoader(store, 16, columns=["caption", "width"], seed=3)
    seen = []
    for latents, labels, columns in loader:
        np.testing.assert_array_equal(latents.numpy(), store.read(labels.numpy())[0])
        assert columns["caption"] == texts("caption", labels.tolist())
        check_aligned(labels, columns)
        seen += labels.tolist()
    assert sorted(seen) == sorted(np.flatnonzero(store.valid).tolist())


def test_prefetched_loader_and_resume_keep_columns_aligned(store):
    loader = LatentLoader(store, 8, columns=["caption", "width"], prefetch=2, seed=1)
    batches = iter(loader)
    next(batches)
    next(batches)
    state = loader.state_dict()
    rest = [labels.tolist() for _, labels, _ in batches]
    resumed = LatentLoader(store, 8, columns=["caption", "width"], prefetch=2)
    resumed.load_state_dict(state)
    again = []
    for _, labels, columns in resumed:
        check_aligned(labels, columns)
        again.append(labels.tolist())
    assert again == rest


def test_ranks_get_disjoint_shares_with_their_columns(store):
    shares = []
    for rank in range(2):
        loader = LatentLoader(store, 10, columns=["caption"], rank=rank, world_size=2, seed=5)
        mine = []
        for _, labels, columns in loader:
            check_aligned(labels, columns, names=("caption",))
            mine += labels.tolist()
        shares.append(set(mine))
    assert not shares[0] & shares[1]


def test_caption_choice_is_a_function_of_seed_epoch_and_sample(store):
    def choices(seed, epoch, batch_size):
        loader = LatentLoader(store, batch_size, caption_choice=["caption", "caption_long"], seed=seed, shuffle=False)
        loader.set_epoch(epoch)
        return {int(i): c for _, labels, cols in loader for i, c in zip(labels, cols["caption"], strict=True)}

    first = choices(0, 0, 7)
    assert first == choices(0, 0, 13)  # any batching draws the same
    assert all(text.endswith(f"of sample {i}") for i, text in first.items())
    long = sum(text.startswith("long") for text in first.values())
    assert 0.25 * len(first) < long < 0.75 * len(first)  # both columns drawn, about evenly
    assert first != choices(0, 1, 7) and first != choices(1, 0, 7)
    weighted = LatentLoader(store, 100, caption_choice={"caption": 0.0, "caption_long": 1.0})
    (_, _, columns), = list(weighted)
    assert all(c.startswith("long") for c in columns["caption"])


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"columns": ["nope"]}, KeyError, "no column 'nope'"),
        ({"caption_choice": ["width"]}, ValueError, "text columns"),
        ({"caption_choice": []}, ValueError, "text columns"),
        ({"caption_choice": ["caption"], "columns": ["caption"]}, ValueError, "do not list 'caption'"),
        ({"caption_choice": {"caption": -1}}, ValueError, "non-negative"),
        ({"caption_choice": {"caption": 0}}, ValueError, "must not all be 0"),
    ],
)
def test_bad_column_options_fail_at_construction(store, options, error, match):
    with pytest.raises(error, match=match):
        LatentLoader(store, 4, **options)
    with pytest.raises(error, match=match):
        LatentDataset(store, **options)


def test_dataset_items_and_batches_carry_columns(store):
    dataset = LatentDataset(store, columns=["caption", "width"])
    latent, label, columns = dataset[7]
    assert columns == {"caption": texts("caption", [label])[0], "width": 2 * label}
    latents, labels, batch = collate(dataset.__getitems__([0, 1, 2]))
    check_aligned(labels, batch)


@pytest.mark.slow
@pytest.mark.parametrize("collate_fn", [None, collate])
def test_dataloader_workers_deliver_columns_aligned(store, collate_fn):
    dataset = LatentDataset(store, columns=["caption", "width"], caption_choice=None)
    sampler = torch.utils.data.DistributedSampler(dataset, num_replicas=2, rank=1, shuffle=True, seed=0)
    loader = torch.utils.data.DataLoader(dataset, batch_size=9, sampler=sampler, num_workers=2, collate_fn=collate_fn)
    count = 0
    for latents, labels, columns in loader:
        check_aligned(labels, columns)
        np.testing.assert_array_equal(latents.numpy(), store.read(labels.numpy())[0])
        count += len(labels)
    assert count == len(sampler)


def test_unsigned_wide_columns_come_as_int64(tmp_path):
    with latentstore.create(tmp_path / "u.zarr", 4, SHAPE, columns={"pixels": "uint32", "big": "uint64"}) as writer:
        writer.write(0, np.zeros((4, *SHAPE), np.float32), columns={"pixels": [0, 1, 2**32 - 1, 7], "big": [1, 2, 3, 2**63]})
    loader = LatentLoader(tmp_path / "u.zarr", 4, columns=["pixels"], shuffle=False)
    (_, _, columns), = list(loader)
    assert columns["pixels"].dtype == torch.int64 and columns["pixels"].tolist() == [0, 1, 2**32 - 1, 7]
    with pytest.raises(ValueError, match="above 2\\*\\*63"):
        list(LatentLoader(tmp_path / "u.zarr", 4, columns=["big"], shuffle=False))
