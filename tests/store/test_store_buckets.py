"""Bucketed (multi-aspect) stores: the table, the padded rows, reads of one bucket, refusals."""

import json

import numpy as np
import pytest
import zarr

import latentstore
from latentstore import format as fmt
from latentstore.errors import FormatError
from latentstore.format import BucketTable
from latentstore.store.writer import pack_buckets

TABLE = BucketTable.from_base(256, 32)
C, N, CHUNK = 4, 45, 16


def sample_latents(n=N, seed=0):
    """Latents of uneven bucket counts, each one's values offset by its sample number."""
    rng = np.random.default_rng(seed)
    choice = rng.choice(len(TABLE.shapes), size=n, p=np.linspace(1, 3, len(TABLE.shapes)) / np.linspace(1, 3, len(TABLE.shapes)).sum())
    return [(rng.standard_t(4, size=(C, *TABLE.shapes[b])) + i).astype(np.float32) for i, b in enumerate(choice)]


@pytest.fixture
def bucketed(tmp_path):
    latents = sample_latents()
    rows, buckets = pack_buckets(latents, TABLE)
    boxes = np.tile(np.array([[0.0, 0.1, 1.0, 0.9]], np.float32), (N, 1))
    with latentstore.create(tmp_path / "b.zarr", N, (C,), chunk_samples=CHUNK, buckets=TABLE, flip=True) as writer:
        for start in range(0, N, CHUNK):
            part = slice(start, start + CHUNK)
            writer.write(start, rows[part], buckets=buckets[part], crop_boxes=boxes[part], flip_latents=-rows[part])
    return latentstore.open(tmp_path / "b.zarr"), latents, buckets


def test_from_base_gives_equal_area_buckets_from_1_4_to_4_1():
    assert TABLE.shapes == ((4, 16), (5, 12), (6, 10), (7, 9), (8, 8), (9, 7), (10, 6), (12, 5), (16, 4))
    assert TABLE.max_tokens == 64 and set(TABLE.shapes) == {(w, h) for h, w in TABLE.shapes}
    for base in (256, 512, 1024):
        table = BucketTable.from_base(base, 32)
        areas = [h * w for h, w in table.shapes]
        assert max(areas) == (base // 32) ** 2 and min(areas) >= 0.9 * max(areas)
        assert all(max(h / w, w / h) <= 4 for h, w in table.shapes)
        assert len({h for h, _ in table.shapes}) == len(table.shapes) == len({w for _, w in table.shapes})
    assert TABLE.shapes[TABLE.nearest(1920, 1080)] == (6, 10)  # 16:9 -> 10:6, the nearest in log ratio
    assert TABLE.shapes[TABLE.nearest(100, 1000)] == (16, 4)  # beyond 1:4 -> the tallest bucket
    assert TABLE.shapes[TABLE.nearest(640, 640)] == (8, 8)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"shapes": []}, "shapes"),
        ({"shapes": [[8, 8], [8, 8]]}, "distinct"),
        ({"shapes": [[0, 8]]}, r"\[h, w\]"),
        ({"shapes": [[8, 8]], "extra": 1}, "only shapes"),
    ],
)
def test_bad_bucket_tables_are_refused(data, match):
    with pytest.raises(FormatError, match=match):
        BucketTable.from_dict(data)


def test_a_bucket_reads_back_equal_to_quantizing_its_latents(bucketed):
    store, latents, buckets = bucketed
    assert store.metadata.format_version == 2 and store.latent_shape == (C, 64)
    assert [b["count"] for b in store.buckets] == np.bincount(buckets, minlength=len(TABLE.shapes)).tolist()
    for bucket in np.unique(buckets):
        rows = np.flatnonzero(buckets == bucket)[::-1]  # any order
        expected_q, expected_s = latentstore.quantize(np.stack([latents[i] for i in rows]))
        x, labels = store.read(rows)
        assert x.shape == (len(rows), C, *TABLE.shapes[bucket])
        np.testing.assert_array_equal(x, latentstore.dequantize(expected_q, expected_s))
        q, s = store.codes(rows)
        np.testing.assert_array_equal(q, expected_q)
        np.testing.assert_array_equal(store.read(rows, flip=True)[0], -x)
        x16, _ = store.read(rows, dtype=np.float16, normalize=True)
        assert x16.shape == x.shape and np.isfinite(x16).all()
    single, _ = store.read(int(rows[0]))
    assert single.shape == (C, *TABLE.shapes[bucket])
    np.testing.assert_array_equal(store.crop_boxes([0, 1]), np.float32([[0.0, 0.1, 1.0, 0.9]] * 2))


def test_mixed_buckets_are_refused_with_what_to_do(bucketed):
    store, _, buckets = bucketed
    a, b = np.flatnonzero(buckets == buckets[0])[0], np.flatnonzero(buckets != buckets[0])[0]
    with pytest.raises(ValueError, match="several buckets.*BucketBatchSampler"):
        store.read([a, b])
    with pytest.raises(ValueError, match="several buckets"):
        store.codes([a, b])


def test_stats_count_each_samples_own_tokens_not_the_padding(bucketed):
    store, latents, _ = bucketed
    q, s = zip(*(latentstore.quantize(x[None]) for x in latents))
    values = [latentstore.dequantize(qi, si)[0].reshape(C, -1) for qi, si in zip(q, s)]
    joined = np.concatenate(values, axis=1).astype(np.float64)
    np.testing.assert_allclose(store.metadata.stats["mean"], joined.mean(axis=1), rtol=1e-10)
    np.testing.assert_allclose(store.metadata.stats["std"], joined.std(axis=1), rtol=1e-10)


def test_plain_zarr_reads_a_bucketed_sample_as_documented(bucketed):
    store, latents, buckets = bucketed
    group = zarr.open_group(store.path, mode="r")
    meta = group.attrs["latentstore"]
    i = 7
    h, w = meta["buckets"]["shapes"][int(group["buckets"][i])]
    q = group["latents"][i][:, : h * w].reshape(-1, h, w)
    x = q.astype(np.float32) * np.float32(group["scales"][i])
    np.testing.assert_array_equal(x, store.read(i)[0])
    assert not group["latents"][i][:, h * w :].any()  # the padding is zeros


def test_writes_check_the_buckets(tmp_path):
    writer = latentstore.create(tmp_path / "w.zarr", 4, (C,), buckets=TABLE)
    rows = np.zeros((4, C, 64), np.float32)
    with pytest.raises(ValueError, match="needs buckets="):
        writer.write(0, rows)
    with pytest.raises(ValueError, match=r"lie in \[0, 9\)"):
        writer.write(0, rows, buckets=[0, 1, 2, 9])
    with pytest.raises(ValueError, match="crop_boxes must have shape"):
        writer.write(0, rows, buckets=[0, 1, 2, 3], crop_boxes=np.zeros((4, 3)))
    with pytest.raises(ValueError, match=r"expected \(4, h, w\)"):
        pack_buckets([np.zeros((C, 3, 3), np.float32)], TABLE)
    plain = latentstore.create(tmp_path / "p.zarr", 4, (C, 2, 2))
    with pytest.raises(ValueError, match="without buckets"):
        plain.write(0, np.zeros((4, C, 2, 2), np.float32), buckets=[0, 0, 0, 0])
    with pytest.raises(FormatError, match=r"\(C, 64\)"):
        latentstore.create(tmp_path / "x.zarr", 4, (C, 32), buckets=TABLE)
    document = json.loads((tmp_path / "w.zarr" / "zarr.json").read_text())["attributes"]["latentstore"]
    assert document["buckets"] == {"shapes": [list(s) for s in TABLE.shapes], "base": 256, "compression": 32}


def test_a_square_store_reports_one_bucket(tmp_path):
    with latentstore.create(tmp_path / "s.zarr", 4, (C, 2, 2)) as writer:
        writer.write(0, np.ones((4, C, 2, 2), np.float32))
    store = latentstore.open(tmp_path / "s.zarr")
    assert store.buckets == [{"bucket": 0, "shape": (C, 2, 2), "count": 4}]
    assert store.bucket_table is None and store.bucket_indices is None
    assert fmt.version_for((), None) == 1


def test_batches_of_a_bucketed_store_are_one_bucket_each_and_cover_the_epoch(bucketed):
    store, _, buckets = bucketed
    seen = []
    for latents, _ in store.batches(8, seed=1):
        assert latents.shape[2:] in {TABLE.shapes[b] for b in buckets}
        seen.append(latents.shape[0])
    assert sum(seen) == N


@pytest.mark.parametrize("shapes", [((1, 1), (4, 4)), ((1, 3), (3, 3), (2, 7)), ((5, 12), (7, 9), (8, 8))])
@pytest.mark.parametrize("channels", [1, 2, 3, 32])
def test_every_bucket_size_reads_exactly_whatever_its_padding(tmp_path, shapes, channels):
    """The kernel computes channels to a multiple of 8 into the next channel's place: no value may
    leak between channels or samples, whatever the bucket's tokens, the padding, the thread count."""
    table = BucketTable(shapes)
    rng = np.random.default_rng(channels)
    latents = [(rng.standard_normal((channels, *shapes[i % len(shapes)])) * 3 + i).astype(np.float32) for i in range(300)]
    rows, buckets = pack_buckets(latents, table)
    for granularity in ("sample", "channel"):
        path = tmp_path / f"{granularity}.zarr"
        with latentstore.create(path, 300, (channels,), chunk_samples=128, buckets=table, granularity=granularity) as writer:
            for start in range(0, 300, 128):
                writer.write(start, rows[start : start + 128], buckets=buckets[start : start + 128])
        store = latentstore.open(path)
        for b in range(len(shapes)):
            picked = np.flatnonzero(buckets == b)[::-1]
            q, s = latentstore.quantize(np.stack([latents[i] for i in picked]), granularity)
            for dtype in (np.float32, np.float16):
                for threads in (1, 2):
                    got, _ = store.read(picked, dtype=dtype, num_threads=threads)
                    np.testing.assert_array_equal(got, latentstore.dequantize(q, s, dtype=dtype))
            normalized, _ = store.read(picked, normalize=True)
            mean = np.float32(store.metadata.stats["mean"])[:, None, None]
            std = np.float32(store.metadata.stats["std"])[:, None, None]
            np.testing.assert_array_equal(normalized, (latentstore.dequantize(q, s) - mean) / std)


def test_a_bucket_index_beyond_the_table_is_named_at_open(tmp_path):
    rows = np.zeros((4, C, 64), np.float32)
    with latentstore.create(tmp_path / "b.zarr", 4, (C,), buckets=TABLE) as writer:
        writer.write(0, rows, buckets=[0, 1, 2, 3])
    import google_crc32c

    path = tmp_path / "b.zarr" / "buckets" / "c" / "0"
    payload = np.array([0, 1, 200, 3], "<u2").tobytes()
    path.write_bytes(payload + google_crc32c.value(payload).to_bytes(4, "little"))
    with pytest.raises(latentstore.errors.CorruptChunkError, match="sample 2 names bucket 200 of a table of 9"):
        latentstore.open(tmp_path / "b.zarr")
