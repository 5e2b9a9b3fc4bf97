"""Normalization: every convention training codebases use, bit-identical to their own formula.

Each codebase's formula is written here the way its public code evaluates it
(float32 torch ops in that order), on the store's dequantized latents, and the
store's fused read must give the same bytes.
"""

import json

import numpy as np
import pytest

import latentstore
from latentstore.quantization.kernels import Normalization

torch = pytest.importorskip("torch")

from latentstore.torch import LatentLoader, load_stats  # noqa: E402

SHAPE = (4, 4, 4)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("norm") / "s.zarr"
    x = (np.random.default_rng(0).standard_t(4, size=(96, *SHAPE)) * 1.7 + 0.3).astype(np.float32)  # synthetic
    writer = latentstore.create(path, 96, SHAPE, chunk_samples=32,
                                encoder={"scaling_factor": 0.2325, "random_init": True, "backend": "synthetic"})
    for start in range(0, 96, 32):
        writer.write(start, x[start : start + 32], labels=np.arange(32))
    writer.close()
    return latentstore.open(path)


def dequantized(store, rows):
    return torch.from_numpy(store.read(rows)[0])


def lightningdit_stats(x):
    """LightningDiT's latents_stats.pt: mean and torch.std (ddof=1) over (N, H, W), shape (1, C, 1, 1)."""
    return {"mean": x.mean(dim=[0, 2, 3], keepdim=True), "std": x.std(dim=[0, 2, 3], keepdim=True)}


@pytest.mark.parametrize("multiplier", [1.0, 0.5, 1.5])
def test_lightningdit_formula_from_its_stats_file(store, tmp_path, multiplier):
    rows = np.arange(96)
    x = dequantized(store, rows)
    stats = lightningdit_stats(x[:64])
    torch.save(stats, tmp_path / "latents_stats.pt")
    expected = (x - stats["mean"]) / stats["std"] * multiplier  # the codebase's __getitem__, batched
    normalization = Normalization.from_stats(load_stats(tmp_path / "latents_stats.pt"), multiplier=multiplier)
    got, _ = store.read(rows, normalize=normalization)
    assert got.tobytes() == expected.numpy().tobytes()
    loader = LatentLoader(store, 96, shuffle=False, normalize=normalization, dequantize_on="device")
    latents, _ = next(iter(loader))
    assert latents.numpy().tobytes() == expected.numpy().tobytes()


@pytest.mark.parametrize("factor", [0.18215, 0.2325, 0.41407])
def test_scaling_conventions(store, factor):
    """DiT / fast-DiT / SiT / REPA (x * 0.18215), MAR (x * 0.2325), SANA (x * scaling_factor)."""
    rows = np.arange(96)
    expected = dequantized(store, rows) * factor
    got, _ = store.read(rows, normalize=Normalization.scaling(factor, SHAPE[0]))
    assert got.tobytes() == expected.numpy().tobytes()


def test_scaling_factor_mode_uses_the_recorded_factor(store):
    rows = np.arange(96)
    expected = dequantized(store, rows) * 0.2325
    assert store.read(rows, normalize="scaling_factor")[0].tobytes() == expected.numpy().tobytes()


def test_stats_from_another_store_a_dict_and_files(store, tmp_path):
    own = store.normalization(True)
    from_store = Normalization.from_stats(store)
    np.testing.assert_array_equal(from_store.mean, own.mean)
    np.testing.assert_array_equal(from_store.std, own.std)
    stats = {"mean": own.mean.tolist(), "std": own.std.tolist()}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    np.savez(tmp_path / "stats.npz", mean=own.mean, std=own.std)
    for source in (stats, tmp_path / "stats.json", tmp_path / "stats.npz", str(tmp_path / "stats.npz")):
        normalization = Normalization.from_stats(source, multiplier=2.0)
        np.testing.assert_array_equal(normalization.mean, own.mean)
        assert normalization.multiplier == 2.0


@pytest.mark.parametrize(
    ("source", "match"),
    [
        ({"mean": [0.0] * 4}, "'mean' and 'std'"),
        ({"mean": [0.0] * 4, "std": [1.0] * 3}, "equal length"),
        ({"mean": [0.0] * 4, "std": [1.0, 1.0, 0.0, 1.0]}, "std > 0"),
        ("nonesuch.npz", "cannot read"),
        (42, "a mapping"),
    ],
)
def test_bad_stats_say_what_is_wrong(source, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Normalization.from_stats(source)


@pytest.mark.parametrize("multiplier", [0.0, -1.0, float("nan"), True, "2"])
def test_multiplier_must_be_a_positive_number(multiplier):
    with pytest.raises((ValueError, TypeError), match="multiplier"):
        Normalization(1.0, np.zeros(4), np.ones(4), multiplier=multiplier)


def test_a_store_without_stats_says_so(tmp_path):
    writer = latentstore.create(tmp_path / "s.zarr", 8, SHAPE, chunk_samples=8)
    writer.write(0, np.ones((8, *SHAPE), np.float32))
    with pytest.raises(ValueError, match="no per-channel stats"):
        Normalization.from_stats(latentstore.open(tmp_path / "s.zarr"))
