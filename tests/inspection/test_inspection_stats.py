"""``latentstore stats``: recomputed statistics against numpy, the stored-stats check, the PNG."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import latentstore
from latentstore import cli
from latentstore.inspection.stats import PERCENTILES, compute_stats, format_table, plot_stats

N, SHAPE, CHUNK = 300, (4, 4, 4), 128


def make_store(path, x, *, finalize=True, chunks=None, **options):
    writer = latentstore.create(path, len(x), SHAPE, chunk_samples=CHUNK, **options)
    for chunk in range(writer.metadata.num_chunks) if chunks is None else chunks:
        start = chunk * CHUNK
        block = slice(start, min(start + CHUNK, len(x)))
        valid = np.arange(block.start, block.stop) % 7 != 0
        if options.get("quant") is not None:
            q = np.random.default_rng(chunk).integers(0, 256, size=(block.stop - block.start, *SHAPE), dtype=np.uint8)
            writer.write(start, codes=q, valid=valid)
        else:
            writer.write(start, x[block], valid=valid)
    if finalize:
        writer.finalize()
    return latentstore.open(path)


@pytest.fixture
def latents(latents_factory):
    # Synthetic heavy-tailed latents with a different offset per channel.
    return latents_factory(N, SHAPE, seed=11) + np.arange(SHAPE[0], dtype=np.float32)[:, None, None]


@pytest.fixture(params=["sample", "channel"])
def store(request, tmp_path, latents):
    return make_store(tmp_path / "s.zarr", latents, granularity=request.param)


def test_moments_match_numpy_over_valid_samples(store):
    stats = compute_stats(store)
    valid = np.flatnonzero(store.valid)
    assert stats.valid == len(valid) == N - len(range(0, N, 7))
    values = store.read(valid)[0].astype(np.float64).transpose(1, 0, 2, 3).reshape(SHAPE[0], -1)
    np.testing.assert_allclose(stats.mean, values.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, values.std(axis=1), rtol=1e-9)
    np.testing.assert_array_equal(stats.min, values.min(axis=1))
    np.testing.assert_array_equal(stats.max, values.max(axis=1))
    assert stats.count == values.shape[1]  # per channel


def test_limit_codes_beyond_the_scales_own_and_scale_percentiles(store):
    stats = compute_stats(store)
    valid = np.flatnonzero(store.valid)
    q, scales = store.codes(valid)
    hits = np.abs(q.astype(np.int16)) == 127
    assert stats.limit_fraction == np.count_nonzero(hits) / q.size
    # Every scale group holds its own largest magnitude at ±127: only the others count as excess.
    groups = scales.reshape(len(valid), -1).shape[1]
    per_group = hits.reshape(len(valid), groups, -1).sum(axis=2)
    assert (per_group >= 1).all()
    assert stats.excess_limit_fraction == (per_group - 1).sum() / q.size < stats.limit_fraction
    assert "beyond the one per scale group" in format_table(stats)
    scales = scales.astype(np.float32)
    np.testing.assert_array_equal(stats.scale_percentiles, np.percentile(scales.ravel(), PERCENTILES))
    if store.metadata.quant.granularity == "channel":
        np.testing.assert_array_equal(stats.channel_scale_percentiles, np.percentile(scales, PERCENTILES, axis=0).T)
    else:
        assert stats.channel_scale_percentiles is None


def test_value_sample_is_seeded_and_sized(store):
    a, b, c = compute_stats(store, sample_size=10, seed=1), compute_stats(store, sample_size=10, seed=1), compute_stats(store, sample_size=10, seed=2)
    assert a.value_sample.shape == (10, SHAPE[0], 16)
    np.testing.assert_array_equal(a.value_sample, b.value_sample)
    assert not np.array_equal(a.value_sample, c.value_sample)
    assert compute_stats(store, sample_size=10_000).value_sample.shape[0] == store.valid.sum()


def test_stored_stats_agree_and_a_tampered_value_is_flagged(store, capsys):
    assert compute_stats(store).mismatches == []
    assert cli.main(["stats", store.path]) == 0
    assert "agree with the recomputed ones" in capsys.readouterr().out
    meta_path = Path(store.path, "zarr.json")
    meta = json.loads(meta_path.read_text())
    meta["attributes"]["latentstore"]["stats"]["std"][2] *= 1.01
    meta_path.write_text(json.dumps(meta))
    stats = compute_stats(store.path)
    assert len(stats.mismatches) == 1 and stats.mismatches[0].startswith("std[2]: stored")
    assert cli.main(["stats", store.path]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH in 1 values" in out
    assert [line.split()[0] for line in out.splitlines() if line.endswith("MISMATCH")] == ["2"]


def test_incomplete_store_has_no_stored_stats(tmp_path, latents):
    store = make_store(tmp_path / "s.zarr", latents, finalize=False, chunks=[1])
    stats = compute_stats(store)
    assert stats.stored is None and stats.mismatches == []
    assert stats.valid == sum(i % 7 != 0 for i in range(CHUNK, 2 * CHUNK))
    assert "none (the store is not finalized)" in format_table(stats)


def test_empty_store_says_so(tmp_path, latents):
    store = make_store(tmp_path / "s.zarr", latents, finalize=False, chunks=[])
    stats = compute_stats(store)
    assert stats.count == 0 and stats.value_sample is None
    assert "no valid samples" in format_table(stats)


def test_affine_store_counts_the_code_range_ends(tmp_path, latents):
    store = make_store(tmp_path / "a.zarr", latents, quant=latentstore.QuantSpec.affine(13 / 255, -6.5))
    stats = compute_stats(store)
    q, _ = store.codes(np.flatnonzero(store.valid))
    assert stats.limit_codes == (0, 255)
    assert stats.limit_fraction == stats.excess_limit_fraction == np.count_nonzero((q == 0) | (q == 255)) / q.size
    assert "may have clipped" in format_table(stats)
    assert stats.scale_percentiles is None and stats.mismatches == []


@pytest.mark.slow
def test_png_is_written(store, tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    path = tmp_path / "stats.png"
    plot_stats(compute_stats(store), path)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1300, 850)


def test_cli_without_matplotlib_says_how_to_install_it(store, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    assert cli.main(["stats", store.path, "--png", str(tmp_path / "x.png")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before reading the store
    assert "pip install 'latentstore[plot]'" in captured.err
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("where", ["missing/x.png", "."])
def test_cli_checks_the_png_path_before_reading(store, tmp_path, monkeypatch, capsys, where):
    import latentstore.cli.stats as command

    monkeypatch.setattr(command, "compute_stats", lambda *a, **k: pytest.fail("read the store before checking"))
    assert cli.main(["stats", store.path, "--png", str(tmp_path / where)]) == 1
    err = capsys.readouterr().err
    assert "not a directory; create it first" in err or "it is a directory" in err


def test_cli_json(store, capsys):
    assert cli.main(["stats", store.path, "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["valid"] == int(store.valid.sum()) and len(data["mean"]) == SHAPE[0]
    assert data["percentiles"] == list(PERCENTILES) and data["mismatches"] == []


# -- bucketed stores -------------------------------------------------------------------------------
from latentstore.format import BucketTable  # noqa: E402
from latentstore.store.writer import pack_buckets  # noqa: E402

TABLE = BucketTable(((2, 2), (1, 3), (3, 1), (1, 4)), compression=16)  # (1, 3) and (3, 1) pad a token


def make_bucketed(path, *, granularity="sample", n=90, chunk=32):
    """Three of the four buckets used (the last stays empty); channel c centred near 5c, so the
    zero padding would pull the moments if it were counted."""
    rng = np.random.default_rng(4)
    buckets = rng.integers(0, 3, size=n)
    latents = [(rng.standard_t(4, size=(3, *TABLE.shapes[b])) * 2 + np.arange(3)[:, None, None] * 5).astype(np.float32)
               for b in buckets]
    rows, indices = pack_buckets(latents, TABLE)
    with latentstore.create(path, n, (3,), chunk_samples=chunk, buckets=TABLE, granularity=granularity) as writer:
        for start in range(0, n, chunk):
            block = slice(start, start + chunk)
            writer.write(start, rows[block], buckets=indices[block], valid=np.arange(start, min(start + chunk, n)) % 5 != 1)
    return latentstore.open(path)


@pytest.fixture(params=["sample", "channel"])
def bucketed(request, tmp_path):
    return make_bucketed(tmp_path / "b.zarr", granularity=request.param)


def own_values(store, rows):
    """Each sample's own tokens, read one sample at a time: (C, total tokens) float64."""
    return np.concatenate([store.read([r])[0][0].reshape(store.metadata.channels, -1) for r in rows], axis=1).astype(np.float64)


def test_bucketed_moments_are_over_each_samples_own_tokens(bucketed):
    stats = compute_stats(bucketed)
    valid = np.flatnonzero(bucketed.valid)
    values = own_values(bucketed, valid)
    areas = np.array([h * w for h, w in TABLE.shapes])[bucketed.bucket_indices[valid]]
    assert stats.count == values.shape[1] == areas.sum() < len(valid) * TABLE.max_tokens  # the padding is not counted
    np.testing.assert_allclose(stats.mean, values.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(stats.std, values.std(axis=1), rtol=1e-9)
    np.testing.assert_array_equal(stats.min, values.min(axis=1))
    np.testing.assert_array_equal(stats.max, values.max(axis=1))
    assert stats.mismatches == []  # the writer's stats are over the same tokens
    q = np.concatenate([bucketed.codes([r])[0].reshape(3, -1) for r in valid], axis=1)
    assert stats.limit_fraction == np.count_nonzero(np.abs(q.astype(np.int16)) == 127) / q.size


def test_bucketed_value_sample_and_histogram(bucketed):
    stats = compute_stats(bucketed, sample_size=12, seed=3)
    assert len(stats.value_sample) == 12
    chosen = np.sort(np.random.default_rng(3).choice(np.flatnonzero(bucketed.valid), size=12, replace=False))
    for values, row in zip(stats.value_sample, chosen):
        np.testing.assert_array_equal(values, bucketed.read([row])[0][0].reshape(3, -1))
    counts = [entry["count"] for entry in stats.buckets]
    assert counts == np.bincount(bucketed.bucket_indices[bucketed.valid], minlength=4).tolist() and counts[3] == 0
    assert stats.to_dict()["buckets"][0]["shape"] == [2, 2]
    assert "4 shapes, 3 with valid samples" in format_table(stats)


def test_a_store_of_one_shape_has_no_bucket_histogram(store):
    stats = compute_stats(store)
    assert stats.buckets is None and stats.to_dict()["buckets"] is None
    assert "buckets" not in format_table(stats)


@pytest.mark.slow
def test_bucketed_png_has_the_bucket_chart(bucketed, tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    assert cli.main(["stats", bucketed.path, "--png", str(tmp_path / "stats.png")]) == 0
    with Image.open(tmp_path / "stats.png") as image:
        assert image.size == (1300, 1250)  # a third row: the samples per bucket
