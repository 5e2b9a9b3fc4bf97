"""Reading stores (store/reader.py): the mapped fast path, the zarr fallback, indexing, threads, pickling."""

import json
import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import latentstore
from latentstore import format as fmt
from latentstore.errors import (
    CorruptChunkError,
    FormatError,
    FormatVersionError,
    InvalidSampleError,
    NonFiniteError,
    StoreNotFoundError,
)
from tests.store.stores import CHUNK, SHAPE, N, expected_values, write_store


# -- reading -------------------------------------------------------------------
@pytest.mark.parametrize(
    "indices",
    [[0], [5, 3, 5, 299, 0], [-1, -300, 17], np.array([64, 63, 128, 255], np.uint32), list(range(N))],
    ids=["one", "repeats", "negative", "uint32", "all"],
)
def test_read_returns_requested_rows_in_order(store, data, indices):
    x, labels = data
    rows = np.asarray(indices, dtype=np.int64) % N
    latents, got_labels = store.read(indices)
    np.testing.assert_array_equal(latents, expected_values(store, x, rows))
    np.testing.assert_array_equal(got_labels, labels[rows])
    assert latents.dtype == np.float32 and latents.shape == (len(rows), *SHAPE)


def test_scalar_slice_mask_and_getitem(store, data):
    x, labels = data
    latent, label = store.read(7)
    assert latent.shape == SHAPE and label == labels[7] and isinstance(label, int)
    np.testing.assert_array_equal(store[10:20:3], expected_values(store, x, np.arange(10, 20, 3)))
    mask = np.zeros(N, bool)
    mask[[3, 9]] = True
    np.testing.assert_array_equal(store[mask], expected_values(store, x, [3, 9]))
    assert store.read([])[0].shape == (0, *SHAPE)


@pytest.mark.parametrize("bad", [[N], [-N - 1], [0, 5, 10**9]])
def test_out_of_range_raises_index_error(store, bad):
    with pytest.raises(IndexError, match="out of range"):
        store.read(bad)


def test_bad_index_types(store):
    with pytest.raises(TypeError, match="integers"):
        store.read([0.5, 1.0])
    with pytest.raises(IndexError, match="one-dimensional"):
        store.read([[0, 1]])
    with pytest.raises(IndexError, match="mask"):
        store.read(np.ones(3, bool))


def test_codes_are_the_stored_bytes(store, data):
    x, _ = data
    q, s = store.codes([9, 2, 9])
    ref_q, ref_s = latentstore.quantize(x[[9, 2, 9]], store.metadata.quant.granularity)
    np.testing.assert_array_equal(q, ref_q)
    np.testing.assert_array_equal(s, ref_s)
    q1, s1 = store.codes(2)
    np.testing.assert_array_equal(q1, ref_q[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_float16_output_and_out_buffer(store, data, dtype):
    x, _ = data
    out = np.empty((3, *SHAPE), dtype)
    latents, _ = store.read([1, 2, 3], dtype=dtype, out=out)
    assert latents is out
    np.testing.assert_array_equal(out, expected_values(store, x, [1, 2, 3]).astype(dtype))


def test_normalize_with_stats_centres_each_channel(store):
    latents, _ = store.read(slice(None), normalize=True)
    per_channel = latents.transpose(1, 0, 2, 3).reshape(SHAPE[0], -1)
    np.testing.assert_allclose(per_channel.mean(axis=1), 0, atol=1e-4)
    np.testing.assert_allclose(per_channel.std(axis=1), 1, atol=1e-4)
    with pytest.raises(ValueError, match="scaling_factor"):
        store.read([0], normalize="scaling_factor")


def test_stats_match_numpy(store):
    values, _ = store.read(slice(None))
    stats = store.metadata.stats
    per_channel = values.transpose(1, 0, 2, 3).reshape(SHAPE[0], -1).astype(np.float64)
    np.testing.assert_allclose(stats["mean"], per_channel.mean(axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(stats["std"], per_channel.std(axis=1), rtol=1e-9)
    np.testing.assert_array_equal(stats["max"], per_channel.max(axis=1))


# -- invalid samples -------------------------------------------------------------
def test_invalid_samples_raise_unless_allowed_and_are_skipped_by_batches(tmp_path, data):
    x, labels = data
    x = x.copy()
    valid = np.ones(N, bool)
    valid[[4, 100]] = False
    x[4] = np.nan  # a non-finite latent marked invalid is stored as zeros, not an error
    store = write_store(tmp_path / "s.zarr", x, labels=labels, valid=valid)
    with pytest.raises(InvalidSampleError, match="sample 100"):
        store.read([0, 100, 4])
    latents, _ = store.read([4], allow_invalid=True)
    assert not latents.any()
    seen = np.concatenate([lab for _, lab in store.batches(64, shuffle=False)])
    assert len(seen) == N - 2
    assert store.valid.sum() == N - 2 and not store.valid.flags.writeable


def test_non_finite_latents_of_valid_samples_are_an_error(tmp_path, data):
    x, _ = data
    x = x[:CHUNK].copy()
    x[10, 0, 0, 0] = np.inf
    writer = latentstore.create(tmp_path / "s.zarr", CHUNK, SHAPE, chunk_samples=CHUNK)
    with pytest.raises(NonFiniteError, match="sample 10"):
        writer.write(0, x)


# -- iteration -----------------------------------------------------------------






# -- concurrency and processes -------------------------------------------------------
def test_reads_from_many_threads(store, data):
    x, _ = data
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, N, 200) for _ in range(16)]
    expected = [expected_values(store, x, b) for b in batches]
    results = [None] * len(batches)

    def work(i):
        results[i] = store.read(batches[i], num_threads=2)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected):
        np.testing.assert_array_equal(got, want)


def test_pickles_by_path(store):
    clone = pickle.loads(pickle.dumps(store))
    assert len(pickle.dumps(store)) < 1000
    np.testing.assert_array_equal(clone.read([1, 2])[0], store.read([1, 2])[0])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_reads_after_parent_used_threads(tmp_path, latents_factory):
    x = latents_factory(4096, (8, 8, 8))
    store = write_store(tmp_path / "big.zarr", x, chunk=1024)
    parent, _ = store.read(np.arange(4096)[::-1], num_threads=2)  # starts an OpenMP team
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            child, _ = store.read(np.arange(4096)[::-1], num_threads=2)
            os.write(w, b"ok" if np.array_equal(child, parent) else b"differ")
        finally:
            os._exit(0)
    os.close(w)
    _, status = os.waitpid(pid, 0)
    assert os.read(r, 10) == b"ok" and status == 0


def test_read_path_never_imports_torch_or_zarr(store):
    code = (
        "import sys, latentstore\n"
        f"s = latentstore.open({str(store.path)!r})\n"
        "s.read([1, 2]); s.codes([3]); list(s.batches(100)); s.epoch_indices()\n"
        "print(sorted(m for m in ('torch', 'zarr', 'PIL', 'diffusers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- the zarr fallback ------------------------------------------------------------
@pytest.mark.parametrize("compressor", ["zstd", "blosc"])
def test_compressed_store_reads_identical_values_through_zarr(tmp_path, data, compressor):
    x, labels = data
    fast = write_store(tmp_path / "fast.zarr", x, labels=labels, flip=True)
    slow = write_store(tmp_path / "slow.zarr", x, labels=labels, flip=True, compressor=compressor)
    assert fast.fast and not slow.fast
    idx = [299, 0, 5, 5, -2, 130]
    for kw in ({}, {"flip": [True, False, True, False, True, False]}, {"normalize": True}):
        a, la = fast.read(idx, **kw)
        b, lb = slow.read(idx, **kw)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(fast.codes(idx)[0], slow.codes(idx)[0])


def test_a_url_store_reads_through_the_cache_or_through_zarr(tmp_path, data):
    pytest.importorskip("fsspec")
    x, labels = data
    url = f"memory://latentstore-test/{tmp_path.name}/remote.zarr"  # the memory filesystem outlives a test
    write_store(url, x[:128], labels=labels[:128])
    local = write_store(tmp_path / "local.zarr", x[:128], labels=labels[:128])
    cached = latentstore.open(url, cache_dir=tmp_path / "cache")
    direct = latentstore.open(url, cache=False)
    assert cached.fast and cached.url == url and not direct.fast
    for store in (cached, direct):
        assert store.read([3, 1, 3])[0].tobytes() == local.read([3, 1, 3])[0].tobytes()


def test_uncompressed_store_is_plain_zarr(store, data):
    import zarr

    group = zarr.open_group(store.path, mode="r")
    q, s = store.codes(slice(None))
    np.testing.assert_array_equal(group["latents"][:], q)
    np.testing.assert_array_equal(group["scales"][:], s)
    assert group.attrs["latentstore"]["format_version"] == 1


# -- flip ------------------------------------------------------------------------------


def test_flip_without_flip_latents_is_a_clear_error(store):
    with pytest.raises(ValueError, match="--flip"):
        store.read([0], flip=True)


# -- writing, resuming, overwriting ----------------------------------------------------










# -- opening bad stores ------------------------------------------------------------------
def test_missing_and_foreign_paths(tmp_path):
    with pytest.raises(StoreNotFoundError, match="no latent store"):
        latentstore.open(tmp_path / "nope")
    import zarr

    zarr.open_group(tmp_path / "plain", mode="w")
    with pytest.raises(FormatError, match="not a latent store"):
        latentstore.open(tmp_path / "plain")


def test_newer_format_version_is_refused(store):
    meta_path = Path(store.path, "zarr.json")
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["latentstore"]["format_version"] = fmt.FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FormatVersionError, match="upgrade latentstore"):
        latentstore.open(store.path)


def test_truncated_chunk_is_reported_on_open(store):
    chunk = os.path.join(store.path, "latents", "c", "1", "0", "0", "0")
    with open(chunk, "r+b") as f:
        f.truncate(100)
    with pytest.raises(CorruptChunkError, match="'latents' chunk 1.*verify"):
        latentstore.open(store.path)


def test_inconsistent_array_metadata_is_reported(store):
    meta_path = Path(store.path, "scales", "zarr.json")
    meta = json.loads(meta_path.read_text())
    meta["data_type"] = "float32"
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(FormatError, match="'scales' dtype"):
        latentstore.open(store.path)


@pytest.mark.parametrize(
    "indices", [np.arange(10)[::-1], np.array([1, 2], np.int32), np.array([3], np.uint64), (4, -5), range(3)]
)
def test_index_containers(store, data, indices):
    x, _ = data
    rows = np.asarray(list(indices) if isinstance(indices, range) else indices).astype(np.int64) % N
    np.testing.assert_array_equal(store[indices], expected_values(store, x, rows))


def test_huge_unsigned_index_is_out_of_range(store):
    with pytest.raises(IndexError, match="out of range"):
        store.read(np.array([2**63 + 5], np.uint64))


