"""The compression benchmark at smoke size, its schemes and its synthetic latents."""

import numpy as np
import pytest

import latentstore
from benchmarks import compression, synthetic

SMOKE_SAMPLES = 300


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    source = compression.synthetic_source(SMOKE_SAMPLES, seed=0)
    result, text, paths = compression.generate(source, results, "compression", "smoke", quick=True)
    return result, text, paths


def _rows(result):
    return {row.scheme.name: row for row in result.rows}


DEFAULT = "per-sample absmax int8 (latentstore default)"


def test_smoke_run_writes_a_table_and_a_plot_that_say_the_latents_are_synthetic(smoke):
    result, text, (md, png) = smoke
    assert md.read_text() == text
    assert text.count("SYNTHETIC") >= 1 and "not from any autoencoder" in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"![rate-distortion]({png.name})" in text
    assert "Not measured: no decoder" in text
    for row in result.rows:
        assert row.scheme.name in text


def test_float32_is_exact_and_absmax_clips_nothing(smoke):
    rows = _rows(smoke[0])
    exact = rows["float32"].errors
    assert (exact.mse, exact.max_abs, exact.snr_db) == (0.0, 0.0, float("inf"))
    for name in (DEFAULT, "per-channel absmax int8", "float16", "bfloat16"):
        assert rows[name].errors.fraction_clipped == 0.0
        assert 0 < rows[name].errors.mse


def test_global_uint8_schemes_clip_the_synthetic_tails(smoke):
    rows = _rows(smoke[0])
    clipped_3gb = rows["Imagenet.3GB global uint8 (±6.5)"].errors
    clipped_int8 = rows["Imagenet.int8 global uint8 (±12)"].errors
    assert 0.01 < clipped_3gb.fraction_clipped < 0.05
    assert 0 < clipped_int8.fraction_clipped < clipped_3gb.fraction_clipped
    # Clipping dominates the error: the worst value is off by far more than one step.
    assert clipped_3gb.max_abs > 13 / 255


def test_fidelity_ranks_as_the_bits_say(smoke):
    snr = {name: row.errors.snr_db for name, row in _rows(smoke[0]).items()}
    order = [
        "float16",
        "bfloat16",
        "per-channel absmax int8",
        DEFAULT,
        "Imagenet.int8 global uint8 (±12)",
        "Imagenet.3GB global uint8 (±6.5)",
    ]
    assert [snr[name] for name in order] == sorted((snr[name] for name in order), reverse=True)


def test_lossless_layers_keep_the_default_errors_and_measure_real_bytes(smoke):
    result = smoke[0]
    rows = _rows(result)
    default = rows[DEFAULT]
    # codes + one float16 scale, plus a crc32c per chunk of each array
    assert 2050 <= default.bytes_per_sample < 2050 + 8 / result.chunk + 1e-9
    for compressor in ("zstd", "blosc"):
        row = rows[f"{DEFAULT} + {compressor}"]
        assert row.errors == default.errors
        assert 0 < row.bytes_per_sample < default.bytes_per_sample + 1
    assert rows[f"{DEFAULT} + zstd"].bytes_per_sample < 0.95 * default.bytes_per_sample
    assert rows["per-channel absmax int8"].bytes_per_sample == 2048 + 64


def test_reads_and_headline_figures_are_consistent(smoke):
    result, text, _ = smoke
    assert result.store_samples == 256 and result.chunk == 256
    for compressor in ("zstd", "blosc", "zarr"):
        assert result.rates[compressor] < result.rates[None]
    assert 2048 < result.imagenet_3gb < 3000
    assert 2050 < result.store_bytes_per_sample < result.imagenet_3gb
    jpeg_mean, photos = result.jpeg256
    assert photos == 16 and 5_000 < jpeg_mean < 60_000
    assert "138 GB" in text and "ESTIMATE" in text and "10.50 GB" in text


@pytest.mark.parametrize(
    "value",
    [1.0, -2.5, 3.14159, 1 + 2**-8, 1 + 3 * 2**-8, 1 + 2**-8 + 2**-20, 65504.0, 1e-40, -1e30, 0.0],
)
def test_bfloat16_roundtrip_matches_torch(value):
    torch = pytest.importorskip("torch")
    x = np.array([value], np.float32)
    expected = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(compression.bfloat16_roundtrip(x), expected)


def test_bfloat16_roundtrip_matches_torch_on_random_values():
    torch = pytest.importorskip("torch")
    x = synthetic.synthetic_latents(64, seed=5)
    expected = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(compression.bfloat16_roundtrip(x), expected)


@pytest.mark.parametrize(
    "value, low, high, expected",
    [(-6.5, -6.5, 6.5, -6.5), (6.5, -6.5, 6.5, 6.5), (100.0, -6.5, 6.5, 6.5), (-9.0, -6.5, 6.5, -6.5),
     (0.0, -12.0, 12.0, (128 / 255 - 0.5) * 24), (12.0, -12.0, 12.0, 12.0)],
)
def test_global_uint8_follows_the_published_formulas(value, low, high, expected):
    got = compression.global_uint8_roundtrip(np.array([value], np.float32), low, high)
    assert got[0] == pytest.approx(expected, abs=1e-5)


def test_global_uint8_error_within_half_a_step_inside_the_range():
    x = np.linspace(-6.5, 6.5, 10001, dtype=np.float32)
    error = np.abs(compression.global_uint8_roundtrip(x, -6.5, 6.5) - x)
    assert error.max() <= 13 / 255 / 2 + 1e-6


@pytest.mark.slow
def test_images_with_a_random_model_say_the_pixel_columns_are_meaningless(tmp_path):
    from latentstore.encoding.backends import load_backend, save_tiny_model

    backend = load_backend(save_tiny_model(tmp_path / "tiny"), device="cpu")
    source = compression.image_source(compression.PHOTOS / "grayscale", backend, 2, 64)
    assert source.x.shape == (2, 32, 2, 2) and source.crops.shape == (2, 64, 64, 3)
    assert "RANDOMLY INITIALISED" in source.description
    result, text, _ = compression.generate(source, tmp_path / "out", "images", "smoke", pixel_samples=2, quick=True)
    assert "MEANINGLESS" in text and "[MEANINGLESS: random model]" in text
    rows = _rows(result)
    assert rows["float32"].pixels[:2] == (float("inf"), 1.0)
    assert all(row.pixels is not None and row.pixels[2] is not None for row in result.rows)


def test_store_source_says_its_dequantized_latents_are_the_reference(tmp_path):
    x = synthetic.synthetic_latents(40, shape=(4, 2, 2), seed=1)
    writer = latentstore.create(tmp_path / "s.zarr", 40, (4, 2, 2), chunk_samples=16)
    for start in range(0, 40, 16):
        writer.write(start, x[start : start + 16])
    writer.close()
    source = compression.store_source(tmp_path / "s.zarr", 30)
    assert source.x.shape == (30, 4, 2, 2) and "DEQUANTIZED" in source.description
    np.testing.assert_array_equal(source.x, latentstore.dequantize(*latentstore.quantize(x[:30])))


@pytest.mark.parametrize("argv, message", [(["--images", "x"], "needs --model"), (["--samples", "0"], "at least 1")])
def test_cli_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        compression.main(argv)
    assert message in capsys.readouterr().err


def test_synthetic_latents_have_the_documented_statistics():
    x = synthetic.synthetic_latents(2000, seed=0)
    assert x.dtype == np.float32 and x.shape == (2000, 32, 8, 8)
    assert x.std() == pytest.approx(synthetic.TARGET_STD, rel=0.05)
    channel_means = x.mean(axis=(0, 2, 3))
    channel_stds = x.std(axis=(0, 2, 3))
    assert channel_means.std() > 0.5 and channel_stds.max() / channel_stds.min() > 2
    # heavier tails than a Gaussian of the same std (which would clip 0.68% at ±6.5)
    assert np.mean(np.abs(x) > 6.5) > 0.015
    sample_stds = x.reshape(2000, -1).std(axis=1)
    assert sample_stds.max() / sample_stds.min() > 1.5  # the per-sample gain


def test_synthetic_latents_are_deterministic_per_seed():
    a = synthetic.synthetic_latents(8, seed=3)
    np.testing.assert_array_equal(a, synthetic.synthetic_latents(8, seed=3))
    assert not np.array_equal(a, synthetic.synthetic_latents(8, seed=4))
    # the channel profile belongs to the "model", not to the seed
    np.testing.assert_array_equal(synthetic.channel_profile(32)[0], synthetic.channel_profile(32)[0])


@pytest.mark.parametrize("n, shape", [(-1, (32, 8, 8)), (4, ()), (4, (0, 8, 8))])
def test_synthetic_latents_reject_bad_arguments(n, shape):
    with pytest.raises(ValueError):
        synthetic.synthetic_latents(n, shape=shape)
