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


# -- bucketed (multi-aspect) stores ------------------------------------------------------------------
from latentstore.encoding.decoding import read_latents, stored_crops  # noqa: E402
from latentstore.encoding.preprocess import StoredCrops  # noqa: E402
from latentstore.format import BucketTable, ColumnSpec  # noqa: E402
from latentstore.store.writer import pack_buckets  # noqa: E402

#: The tiny DC model's latents of a 64 x 64 square, 32 x 128 wide and 128 x 32 tall image.
TABLE = BucketTable(((2, 2), (1, 4), (4, 1)), compression=32)
BUCKETS = [0, 1, 2, 1, 0, 2, 1, 1, 0, 2, 1]  # sample i's bucket


def bucket_pixels(i):
    h, w = TABLE.shapes[BUCKETS[i]]
    return (32 * h, 32 * w)


@pytest.fixture(scope="module")
def bucketed_path(tmp_path_factory, backend):
    """Synthetic latents (Student-t, std about 2.4) in three buckets, with stored PNG crops of each bucket's size."""
    rng = np.random.default_rng(7)
    n = len(BUCKETS)
    latents = [(rng.standard_t(4, size=(32, *TABLE.shapes[b])) * 1.7).astype(np.float32) for b in BUCKETS]
    rows, indices = pack_buckets(latents, TABLE)
    crops = [rng.integers(0, 256, size=(*bucket_pixels(i), 3), dtype=np.uint8) for i in range(n)]
    png = StoredCrops.parse("png")
    path = tmp_path_factory.mktemp("stores") / "buckets.zarr"
    columns = [ColumnSpec("image", "bytes", media_type=png.media_type, attributes={"stored_crops": str(png)})]
    with latentstore.create(path, n, (32,), chunk_samples=8, buckets=TABLE, encoder=backend.metadata(),
                            classes=["a", "b"], columns=columns, flip=True) as writer:
        for start in range(0, n, 8):
            block = slice(start, start + 8)
            writer.write(start, rows[block], buckets=indices[block], flip_latents=-rows[block],
                         labels=np.arange(start, min(start + 8, n)) % 2,
                         valid=np.arange(start, min(start + 8, n)) != 10,
                         columns={"image": [png.encode(c) for c in crops[block]]})
    return path


def test_decode_gives_each_bucket_its_shape_in_the_order_asked(bucketed_path, backend):
    store = latentstore.open(bucketed_path)
    asked = [3, 0, 2, -8, 5, 1]  # -8 is sample 3 again
    images = decode(store, asked, backend=backend)
    assert isinstance(images, list) and [im.shape[:2] for im in images] == [bucket_pixels(i % 11) for i in asked]
    assert all(im.dtype == np.uint8 and im.shape[2] == 3 for im in images)
    np.testing.assert_array_equal(images[0], images[3])
    # Each bucket's samples are decoded together, as decode_latents decodes that group.
    from latentstore.encoding.decoding import decode_latents

    for bucket in range(3):
        positions = [k for k, i in enumerate(asked) if BUCKETS[i % 11] == bucket]
        expected = decode_latents(backend, store.read([asked[k] for k in positions])[0])
        for k, image in zip(positions, expected):
            np.testing.assert_array_equal(images[k], image)


def test_decode_of_one_bucket_is_one_array(bucketed_path, backend):
    images = decode(bucketed_path, [1, 3, 6], backend=backend)
    assert isinstance(images, np.ndarray) and images.shape == (3, 32, 128, 3)
    flipped = decode(bucketed_path, [1, 3, 6], backend=backend, flip=True)
    store = latentstore.open(bucketed_path)
    expected = backend.decode(torch.from_numpy(store.read([1, 3, 6], flip=True)[0])).permute(0, 2, 3, 1).numpy()
    np.testing.assert_array_equal(flipped, expected)
    groups = read_latents(store, [1, 0, 3], flip=[True, False, True])
    assert [(p.tolist(), x.shape) for p, x in groups] == [([0, 2], (2, 32, 1, 4)), ([1], (1, 32, 2, 2))]
    np.testing.assert_array_equal(groups[0][1], store.read([1, 3], flip=True)[0])


def test_bad_indices_of_a_bucketed_store_fail_before_the_model_loads(bucketed_path):
    with pytest.raises(IndexError, match="index 11 is out of range for a store of 11 samples"):
        decode(bucketed_path, [0, 1, 11], model="/nonexistent/model")
    with pytest.raises(InvalidSampleError, match="sample 10 is marked invalid"):
        decode(bucketed_path, [0, 1, 10], model="/nonexistent/model")
    with pytest.raises(IndexError, match="boolean mask must have shape"):
        decode(bucketed_path, np.ones(3, bool), model="/nonexistent/model")
    with pytest.raises(TypeError, match="must be integers"):
        decode(bucketed_path, [0.5, 1.0], model="/nonexistent/model")


def test_stored_crops_of_several_buckets(bucketed_path):
    crops, kind = stored_crops(bucketed_path, [0, 1, 2])
    assert kind == "png" and [c.shape for c in crops] == [(64, 64, 3), (32, 128, 3), (128, 32, 3)]
    flipped, _ = stored_crops(bucketed_path, [1, 2], flip=True)
    np.testing.assert_array_equal(flipped[0], crops[1][:, ::-1])
    np.testing.assert_array_equal(flipped[1], crops[2][:, ::-1])
    one, _ = stored_crops(bucketed_path, [1, 3])
    assert isinstance(one, np.ndarray) and one.shape == (2, 32, 128, 3)


def test_source_crops_of_a_bucketed_store_never_have_another_shape(tmp_path, backend, images_dir):
    """The recorded preprocessing makes square crops: only a square bucket's samples can be remade."""
    source = open_source(str(images_dir))
    n = len(source)
    buckets = [0] + [1] * (n - 1)  # the first image square, the others wide
    rng = np.random.default_rng(0)
    rows, indices = pack_buckets([rng.standard_normal((32, *TABLE.shapes[b])).astype(np.float32) for b in buckets], TABLE)
    preprocessing = Preprocessing(resolution=64)
    path = tmp_path / "b.zarr"
    with latentstore.create(path, n, (32,), buckets=TABLE, ids=True, source=source.describe(),
                            encoder={**backend.metadata(), "preprocessing": preprocessing.to_dict()}) as writer:
        writer.write(0, rows, buckets=indices, ids=list(source.ids))
    crops, why = source_crops(path, [0])
    assert why is None
    np.testing.assert_array_equal(crops[0], preprocessing(source.read(0)[0]))
    crops, why = source_crops(path, [0, 1])
    assert crops is None and "encoded as a 32x128 crop (its bucket)" in why and "sample 1" in why
    # preprocessing settings this latentstore does not know: said, not raised
    import zarr

    group = zarr.open_group(path, mode="r+")
    meta = group.attrs["latentstore"]
    group.attrs["latentstore"] = {**meta, "encoder": {**meta["encoder"], "preprocessing": {
        **preprocessing.to_dict(), "a_setting_from_the_future": 1}}}
    crops, why = source_crops(path, [0])
    assert crops is None and "cannot be rebuilt here" in why


def test_cli_grid_of_several_buckets(bucketed_path, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["decode", str(bucketed_path), "0", "1", "2", "--out", str(out), "--grid", "--device", "cpu"]) == 0
    from PIL import Image

    with Image.open(out) as grid:
        # 2 x 2 cells of 128 x 128 (the tallest and the widest bucket), two caption lines under each
        assert grid.size == (4 + 2 * (128 + 4), 4 + 2 * (128 + 2 * 13 + 4))
    files = tmp_path / "pngs"
    assert cli.main(["decode", str(bucketed_path), "0", "1", "2", "--out", str(files), "--device", "cpu"]) == 0
    for i in range(3):
        with Image.open(files / f"{i:08d}.png") as image:
            assert image.size == bucket_pixels(i)[::-1]


def test_cli_compare_pairs_of_several_buckets_with_the_stored_crops(bucketed_path, tmp_path, capsys):
    out = tmp_path / "grid.png"
    assert cli.main(["decode", str(bucketed_path), "1", "0", "2", "--out", str(out), "--grid", "--compare", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "comparing with the png crops kept in the store" in captured.err
    lines = captured.out.splitlines()
    assert lines[0].split() == ["sample", "PSNR", "dB", "SSIM"] and lines[4].startswith("mean")
    assert [line.split()[0] for line in lines[1:4]] == ["#1", "#0", "#2"]
    from PIL import Image

    with Image.open(out) as grid:
        assert grid.width == 4 + 2 * (128 + 4)  # stored crop | decoded, one pair per row
        assert grid.height > 3 * 128
    files = tmp_path / "pairs"
    assert cli.main(["decode", str(bucketed_path), "2", "--out", str(files), "--compare", "--device", "cpu"]) == 0
    with Image.open(files / "00000002.png") as pair:
        assert pair.width == 4 + 2 * (32 * 4 + 4)  # a 128 x 32 crop is narrower than min_tile: enlarged 4x
