"""Decoding stores back to images with a tiny random DC-AE: shapes, grids, comparison with the source, errors."""

import shutil

import numpy as np
import pytest

import latentstore
from latentstore import cli
from latentstore.errors import InvalidSampleError, ModelLoadError
from tests.paths import PHOTOS

torch = pytest.importorskip("torch")

from latentstore.encoding.backends import load_backend, save_tiny_model  # noqa: E402
from latentstore.encoding.decoding import decode, load_decoder, source_crops  # noqa: E402
from latentstore.encoding.preprocess import Preprocessing  # noqa: E402
from latentstore.encoding.sources import open_source  # noqa: E402

RESOLUTION = 64  # the tiny DC model compresses 32x: (32, 2, 2) latents


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny-dc", "dc", seed=1)


@pytest.fixture(scope="module")
def backend(tiny_dir):
    return load_backend(tiny_dir, device="cpu")


@pytest.fixture(scope="module")
def images_dir(tmp_path_factory):
    """An ImageFolder of three classes copied from the shipped sample photos."""
    root = tmp_path_factory.mktemp("images") / "train"
    for name in ("cat", "coffee", "vehicle"):
        shutil.copytree(PHOTOS / name, root / name, ignore=shutil.ignore_patterns("*.md", "*.txt"))
    return root


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, backend, images_dir):
    """A store encoded the way the encode pipeline does it: source, ids, preprocessing, encoder recorded."""
    source = open_source(str(images_dir))
    preprocessing = Preprocessing(resolution=RESOLUTION)
    crops = np.stack([preprocessing(source.read(i)[0]) for i in range(len(source))])
    latents = backend.encode(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()).numpy()
    path = tmp_path_factory.mktemp("stores") / "s.zarr"
    writer = latentstore.create(
        path,
        len(source),
        latents.shape[1:],
        chunk_samples=4,
        classes=source.classes,
        encoder={**backend.metadata(), "resolution": RESOLUTION, "preprocessing": preprocessing.to_dict()},
        source=source.describe(),
        ids=True,
        flip=True,
    )
    flipped = backend.encode(torch.from_numpy(crops[:, :, ::-1].copy()).permute(0, 3, 1, 2).contiguous()).numpy()
    for start in range(0, len(source), 4):
        block = slice(start, start + 4)
        writer.write(start, latents[block], labels=source.labels[block], ids=list(source.ids[block]), flip_latents=flipped[block])
    writer.finalize()
    return path


def test_decode_returns_uint8_images_from_the_stored_latents(store_path, backend):
    store = latentstore.open(store_path)
    images = decode(store, [2, 0, 2], backend=backend)
    assert images.dtype == np.uint8 and images.shape == (3, RESOLUTION, RESOLUTION, 3)
    np.testing.assert_array_equal(images[0], images[2])
    # Exactly the backend's decoding of the dequantized, unnormalised latents (same batch: conv
    # results depend on the batch size in the last bit).
    expected = backend.decode(torch.from_numpy(store.read([2, 0, 2])[0])).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(images, expected)


def test_decode_loads_the_recorded_model(store_path):
    images = decode(store_path, [1], device="cpu")
    assert images.shape == (1, RESOLUTION, RESOLUTION, 3)
    assert load_decoder(store_path, device="cpu").random_init


def test_source_crops_match_the_encoder_input(store_path, images_dir):
    store = latentstore.open(store_path)
    crops, why = source_crops(store, [1, 0])
    assert why is None
    source = open_source(str(images_dir))
    expected = Preprocessing(resolution=RESOLUTION)(source.read(1)[0])
    np.testing.assert_array_equal(crops[0], expected)
    flipped, _ = source_crops(store, [1], flip=True)
    np.testing.assert_array_equal(flipped[0], expected[:, ::-1])


def test_unreachable_source_is_explained(tmp_path, store_path):
    moved = tmp_path / "copy.zarr"
    shutil.copytree(store_path, moved)
    store = latentstore.open(moved)
    meta = store.metadata.to_dict()
    import zarr

    group = zarr.open_group(moved, mode="r+")
    group.attrs["latentstore"] = {**meta, "source": {**meta["source"], "root": str(tmp_path / "gone")}}
    crops, why = source_crops(moved, [0])
    assert crops is None and "is gone" in why


def test_cli_grid_with_comparison(store_path, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["decode", str(store_path), "0", "2", "--out", str(out), "--grid", "--compare", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "RANDOM WEIGHTS" in captured.err and "meaningless" in captured.err
    lines = captured.out.splitlines()
    assert lines[0].split() == ["sample", "PSNR", "dB", "SSIM"]
    assert lines[1].startswith("#0 cat") and lines[3].startswith("mean")
    from PIL import Image

    with Image.open(out) as grid:
        # Two columns (source | decoded) of tiles enlarged 2x to 128 px, two rows, titles and captions.
        assert grid.width == 4 + 2 * (128 + 4)
        # A title row and two caption lines (13 px each at the 11 px font) under every tile.
        assert grid.height == (13 + 4) + 2 * (128 + 2 * 13 + 4) + 4


def test_cli_files_random_and_flip(store_path, tmp_path, capsys):
    out = tmp_path / "pngs"
    assert cli.main(["decode", str(store_path), "--random", "3", "--seed", "1", "--flip", "--out", str(out), "--device", "cpu"]) == 0
    files = sorted(out.iterdir())
    assert len(files) == 3 and all(f.name.endswith("_flip.png") for f in files)
    from PIL import Image

    with Image.open(files[0]) as image:
        assert image.size == (RESOLUTION, RESOLUTION)


def test_cli_compare_without_a_reachable_source_decodes_anyway(tmp_path, backend, capsys):
    path = tmp_path / "bare.zarr"
    writer = latentstore.create(path, 4, (32, 2, 2), chunk_samples=4, encoder={"model": backend.name})
    # Synthetic latents (Student-t, std about 2.4), not encoder output.
    writer.write(0, (np.random.default_rng(0).standard_t(4, size=(4, 32, 2, 2)) * 1.7).astype(np.float32))
    writer.finalize()
    assert cli.main(["decode", str(path), "1", "--out", str(tmp_path / "g.png"), "--grid", "--compare", "--device", "cpu"]) == 0
    assert "no comparison: the store records no source images" in capsys.readouterr().err
    assert (tmp_path / "g.png").exists()


def test_bad_and_invalid_indices_fail_before_the_model_loads(tmp_path, store_path, capsys):
    store = latentstore.open(store_path)
    with pytest.raises(IndexError, match="out of range"):
        decode(store, [len(store)], model="/nonexistent/model")
    path = tmp_path / "invalid.zarr"
    writer = latentstore.create(path, 4, (32, 2, 2), chunk_samples=4)
    writer.write(0, np.zeros((4, 32, 2, 2), np.float32), valid=[True, False, True, True])
    writer.finalize()
    with pytest.raises(InvalidSampleError, match="sample 1 is marked invalid"):
        decode(path, [1], model="/nonexistent/model")
    assert cli.main(["decode", str(store_path), "0", "7", "--out", str(tmp_path / "x")]) == 2
    assert "index 7 is out of range for a store of 3 samples" in capsys.readouterr().err
    assert cli.main(["decode", str(path), "1", "--out", str(tmp_path / "x")]) == 1
    assert "sample 1 is marked invalid" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_store_without_encoder_needs_a_model(tmp_path, tiny_dir, capsys):
    path = tmp_path / "anon.zarr"
    writer = latentstore.create(path, 4, (32, 2, 2), chunk_samples=4)
    writer.write(0, np.ones((4, 32, 2, 2), np.float32))
    writer.finalize()
    with pytest.raises(ModelLoadError, match="records no encoder model.*--model"):
        decode(path, [0])
    assert cli.main(["decode", str(path), "0", "--out", str(tmp_path / "x")]) == 1
    assert "records no encoder model" in capsys.readouterr().err
    assert decode(path, [0], model=tiny_dir, device="cpu").shape == (1, 64, 64, 3)


def test_model_with_other_latent_channels_is_refused(tmp_path, store_path):
    kl = save_tiny_model(tmp_path / "tiny-kl", "kl")
    with pytest.raises(ModelLoadError, match="4 channels.*32-channel"):
        decode(store_path, [0], model=kl, device="cpu")
