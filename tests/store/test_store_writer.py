"""Writing stores (store/writer.py): whole chunks, resume, protection of existing stores, ids, affine codes, failures."""


import numpy as np
import pytest

import latentstore
from latentstore.errors import (
    FormatError,
    IncompatibleStoreError,
    InvalidSampleError,
    StoreExistsError,
)
from tests.store.stores import CHUNK, SHAPE, N, write_store


def test_resume_continues_an_incomplete_store_and_matches_a_straight_run(tmp_path, data):
    x, labels = data
    straight = write_store(tmp_path / "straight.zarr", x, labels=labels)
    path = tmp_path / "resumed.zarr"
    writer = latentstore.create(path, N, SHAPE, chunk_samples=CHUNK)
    writer.write(0, x[:CHUNK], labels=labels[:CHUNK])
    writer.write(128, x[128:192], labels=labels[128:192])
    del writer  # "crash"
    partial = latentstore.open(path)
    assert not partial.metadata.complete and partial.valid.sum() == 2 * CHUNK
    with pytest.raises(InvalidSampleError):
        partial.read([70])
    writer = latentstore.create(path, N, SHAPE, chunk_samples=CHUNK)
    assert writer.pending_chunks() == [1, 3, 4]
    with pytest.raises(FormatError, match="3 of 5 chunks"):
        writer.close()
    for k in writer.pending_chunks():
        writer.write(k * CHUNK, x[k * CHUNK : (k + 1) * CHUNK], labels=labels[k * CHUNK : (k + 1) * CHUNK])
    writer.close()
    for array in ("latents", "scales", "labels", "valid"):
        for k in range(5):
            key = f"{array}/c/{k}" + ("/0/0/0" if array == "latents" else "")
            assert (path / key).read_bytes() == (straight.path and (tmp_path / "straight.zarr" / key).read_bytes())
    assert latentstore.open(path).metadata.stats == straight.metadata.stats


def test_existing_stores_are_protected(tmp_path, data):
    x, _ = data
    path = tmp_path / "s.zarr"
    write_store(path, x)
    with pytest.raises(StoreExistsError, match="overwrite=True"):
        latentstore.create(path, N, SHAPE, chunk_samples=CHUNK)
    writer = latentstore.create(path, 10, SHAPE, overwrite=True)
    assert writer.pending_chunks() == [0]
    with pytest.raises(IncompatibleStoreError, match="num_samples"):
        latentstore.create(path, 11, SHAPE)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "file.txt").write_text("hi")
    with pytest.raises(StoreExistsError, match="not an empty directory"):
        latentstore.create(tmp_path / "other", 10, SHAPE)


def test_write_rejects_misaligned_blocks_and_bad_input(tmp_path, data):
    x, _ = data
    writer = latentstore.create(tmp_path / "s.zarr", N, SHAPE, chunk_samples=CHUNK, classes=["a", "b"])
    with pytest.raises(ValueError, match="chunk boundary"):
        writer.write(10, x[:CHUNK])
    with pytest.raises(ValueError, match="does not end"):
        writer.write(0, x[:10])
    with pytest.raises(ValueError, match="shape"):
        writer.write(0, x[:CHUNK, :2])
    with pytest.raises(ValueError, match="labels must lie"):
        writer.write(0, x[:CHUNK], labels=np.full(CHUNK, 2))
    with pytest.raises(ValueError, match="flip=True"):
        writer.write(0, x[:CHUNK], flip_latents=x[:CHUNK])
    writer.write(256, x[256:])  # the short last chunk
    q, s = latentstore.quantize(x[:CHUNK])
    writer.write(0, codes=(q, s))
    with pytest.raises(ValueError, match="float16"):
        writer.write(0, codes=(q, s.astype(np.float32)))


def test_ids_are_stored(tmp_path, data):
    import zarr

    x, _ = data
    writer = latentstore.create(tmp_path / "s.zarr", CHUNK, SHAPE, chunk_samples=CHUNK, ids=True)
    names = [f"class/img_{i}.jpg" for i in range(CHUNK)]
    writer.write(0, x[:CHUNK], ids=names)
    writer.close()
    assert list(zarr.open_group(tmp_path / "s.zarr", mode="r")["ids"][:5]) == names[:5]
    store = latentstore.open(tmp_path / "s.zarr")
    assert store.ids([3, -1, 3]) == [names[3], names[-1], names[3]] and store.ids(7) == names[7]
    with pytest.raises(IndexError):
        store.ids([CHUNK])


def test_affine_scheme_uses_the_lookup_table(tmp_path):
    quant = latentstore.QuantSpec.affine(13 / 255, -6.5)
    q = np.random.default_rng(0).integers(0, 256, size=(CHUNK, *SHAPE), dtype=np.uint8)
    writer = latentstore.create(tmp_path / "a.zarr", CHUNK, SHAPE, chunk_samples=CHUNK, quant=quant)
    writer.write(0, codes=q)
    writer.close()
    store = latentstore.open(tmp_path / "a.zarr")
    latents, _ = store.read([5, 1])
    np.testing.assert_array_equal(latents, (q[[5, 1]].astype(np.float64) * 13 / 255 - 6.5).astype(np.float32))
    assert store.scales is None and store.codes([1])[1] is None


def test_a_chunk_of_failures_is_still_written(tmp_path):
    """All-zero chunks (every sample invalid, labels 0) must land, or the chunk never counts as done."""
    writer = latentstore.create(tmp_path / "s.zarr", 8, SHAPE, chunk_samples=4, failures=True)
    writer.write(0, np.zeros((4, *SHAPE), np.float32), labels=np.zeros(4, int), valid=[False] * 4,
                 failures=["truncated file", "empty file", "not an image", "bad crc"])
    writer.write(4, np.ones((4, *SHAPE), np.float32), labels=np.zeros(4, int))
    assert writer.pending_chunks() == []
    assert writer.failure_reasons() == {0: "truncated file", 1: "empty file", 2: "not an image", 3: "bad crc"}
    writer.close()
    store = latentstore.open(tmp_path / "s.zarr")
    assert store.valid.tolist() == [False] * 4 + [True] * 4
    with pytest.raises(ValueError, match="failures=True"):
        latentstore.create(tmp_path / "t.zarr", 4, SHAPE).write(0, np.zeros((4, *SHAPE), np.float32), failures=[""] * 4)


def test_flip_latents(tmp_path, data):
    x, labels = data
    store = write_store(tmp_path / "f.zarr", x, labels=labels, flip=True)
    plain, _ = store.read([3, 4])
    flipped, _ = store.read([3, 4], flip=True)
    np.testing.assert_array_equal(flipped, -plain)
    mixed, _ = store.read([3, 4], flip=[False, True])
    np.testing.assert_array_equal(mixed, [plain[0], -plain[1]])
    q, s = store.codes([3], flip=True)
    np.testing.assert_array_equal(q, -store.codes([3])[0])


# -- append: blocks of any size ---------------------------------------------------
def appended_store(path, data, sizes, **options):
    x, labels = data
    writer = latentstore.create(path, len(x), SHAPE, chunk_samples=CHUNK, ids=True, **options)
    start = 0
    for size in sizes:
        block = slice(start, min(start + size, len(x)))
        writer.append(x[block], labels=labels[block], ids=[f"s{i}" for i in range(block.start, block.stop)],
                      flip_latents=-x[block] if options.get("flip") else None)
        start = block.stop
        if start >= len(x):
            break
    return writer


@pytest.mark.parametrize("sizes", [[7] * 50, [1000], [64, 1, 63, 200, 5], [100, 100, 100]])
def test_append_in_blocks_of_any_size_equals_whole_chunk_writes(tmp_path, data, sizes):
    x, labels = data
    writer = appended_store(tmp_path / "a.zarr", data, sizes, flip=True)
    writer.close()
    appended = latentstore.open(tmp_path / "a.zarr")
    straight = write_store(tmp_path / "b.zarr", x, labels=labels, flip=True)
    rows = np.arange(N)
    for flip in (False, True):
        np.testing.assert_array_equal(appended.codes(rows, flip=flip)[0], straight.codes(rows, flip=flip)[0])
    np.testing.assert_array_equal(appended.labels, labels)
    assert appended.ids([0, 299]) == ["s0", "s299"]


def test_append_holds_at_most_one_chunk(tmp_path, data, monkeypatch):
    writer = latentstore.create(tmp_path / "a.zarr", N, SHAPE, chunk_samples=CHUNK)
    x, labels = data
    writes = []
    real_write = writer.write
    monkeypatch.setattr(writer, "write", lambda start, **block: (writes.append(start), real_write(start, **block)))
    for start in range(0, N, 10):
        writer.append(x[start : start + 10], labels=labels[start : start + 10])
        assert writer._appended.held_rows < CHUNK
    writer.close()
    assert writes == list(range(0, N, CHUNK))


def test_a_rerun_of_an_append_loop_skips_the_finished_chunks(tmp_path, data, monkeypatch):
    x, labels = data
    writer = latentstore.create(tmp_path / "a.zarr", N, SHAPE, chunk_samples=CHUNK)
    writer.append(x[:150], labels=labels[:150])  # two chunks land, 22 rows held; then the run dies
    resumed = latentstore.create(tmp_path / "a.zarr", N, SHAPE, chunk_samples=CHUNK)
    writes = []
    real_write = resumed.write
    monkeypatch.setattr(resumed, "write", lambda start, **block: (writes.append(start), real_write(start, **block)))
    for start in range(0, N, 50):
        resumed.append(x[start : start + 50], labels=labels[start : start + 50])
    resumed.close()
    assert writes == [128, 192, 256]
    np.testing.assert_array_equal(latentstore.open(tmp_path / "a.zarr").labels, labels)


def test_append_mistakes_are_clear(tmp_path, data):
    x, labels = data
    writer = latentstore.create(tmp_path / "a.zarr", N, SHAPE, chunk_samples=CHUNK)
    with pytest.raises(ValueError, match="same number of samples"):
        writer.append(x[:10], labels=labels[:9])
    writer.append(x[:10], labels=labels[:10])
    with pytest.raises(ValueError, match="same columns"):
        writer.append(x[10:20])
    with pytest.raises(ValueError, match="10 of 300 samples were appended"):
        writer.close()
