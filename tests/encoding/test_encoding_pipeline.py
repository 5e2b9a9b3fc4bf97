"""The encode pipeline in-process: labels, failures, crops, codes, flip, non-finite latents, limit, CLI.

Every store here is made with a tiny randomly initialised DC-AE (f32, 32
channels) at 64 px, so latents are (32, 2, 2) and mean nothing.
"""

import importlib
import json
import multiprocessing
import os
import shutil

import numpy as np
import pytest

from tests.paths import IMAGES, PHOTOS

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

import latentstore  # noqa: E402
from latentstore import cli  # noqa: E402
from latentstore.encoding.backends import Backend, load_backend, save_tiny_model  # noqa: E402
from latentstore.encoding.preprocess import Preprocessing  # noqa: E402
from latentstore.encoding.sources import ImageFolderSource, open_source  # noqa: E402
from latentstore.errors import IncompatibleStoreError, StoreExistsError  # noqa: E402

DATA = IMAGES
encode_module = importlib.import_module("latentstore.encoding.pipeline")
RESOLUTION = 64
OPTIONS = dict(resolution=RESOLUTION, chunk_samples=8, batch_size=4, device="cpu", progress=False)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("model") / "dc", "dc", seed=1)


@pytest.fixture(scope="module")
def image_tree(tmp_path_factory):
    """An ImageFolder tree: the sample photos' classes plus 'odd' and 'broken'."""
    root = tmp_path_factory.mktemp("images") / "tree"
    shutil.copytree(PHOTOS, root, ignore=shutil.ignore_patterns("metadata.jsonl"))  # a plain ImageFolder tree
    for kind in ("odd", "broken"):
        shutil.copytree(DATA / kind, root / kind)
    return root


@pytest.fixture(scope="module")
def encoded(tmp_path_factory, tiny_model, image_tree):
    out = tmp_path_factory.mktemp("stores") / "tree.zarr"
    summary = latentstore.encode(image_tree, out, model=tiny_model, workers=1, **OPTIONS)
    return summary, latentstore.open(out)


def test_one_valid_sample_per_decodable_image_with_its_label(encoded, image_tree):
    summary, store = encoded
    source = ImageFolderSource(str(image_tree))
    ids = list(source.ids)
    broken = {f"broken/{p.name}" for p in (DATA / "broken").iterdir()}
    assert len(store) == len(ids) == summary.samples
    np.testing.assert_array_equal(store.valid, [i not in broken for i in ids])
    np.testing.assert_array_equal(store.labels, source.labels)
    assert store.classes == tuple(source.classes) and "odd" in store.classes
    assert store.metadata.complete and summary.valid == len(ids) - len(broken)
    assert summary.encoded == len(ids) and summary.resumed_chunks == 0


def test_broken_files_are_reported_by_name_and_reason(encoded):
    summary, store = encoded
    reported = {f.id: f.reason for f in summary.failures}
    assert set(reported) == {"broken/corrupt_data.png", "broken/empty.jpg", "broken/not_an_image.jpg", "broken/truncated.jpg"}
    assert "truncated" in reported["broken/truncated.jpg"]
    assert "identify" in reported["broken/empty.jpg"]
    stored = store.metadata.extra["failures"]
    assert stored == [{"index": f.index, "id": f.id, "reason": f.reason} for f in summary.failures]
    assert all(not store.valid[f.index] for f in summary.failures)
    text = str(summary)
    assert "broken/truncated.jpg" in text and "RANDOM WEIGHTS" in text
    assert summary.to_dict()["random_model"] is True


def test_the_store_holds_the_codes_of_the_preprocessed_crops(encoded, image_tree, tiny_model):
    """Crops equal Preprocessing()(path), and codes an in-process encode + quantize of them."""
    _, store = encoded
    source = ImageFolderSource(str(image_tree))
    preprocessing = Preprocessing(resolution=RESOLUTION)
    backend = load_backend(tiny_model, device="cpu")
    m = store.metadata
    batches = encode_module._CropBatches(source, preprocessing, encode_module._batch_ranges(m, range(m.num_chunks), 4))
    q_all, s_all = store.codes(np.arange(len(store)), allow_invalid=True)
    checked = 0
    for batch in batches:
        rows = batch.start + np.flatnonzero(batch.ok)
        crops = np.stack([preprocessing(image_tree / source.ids[i]) for i in rows]) if len(rows) else None
        if crops is None:
            continue
        (pixels,) = batch.pixels  # a square store: one group of crops per batch
        np.testing.assert_array_equal(batch.start + batch.rows[0], rows)
        np.testing.assert_array_equal(pixels.numpy(), crops)
        z = backend.encode(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous())
        q, s = latentstore.quantize(z.numpy())
        np.testing.assert_array_equal(q_all[rows], q)
        np.testing.assert_array_equal(s_all[rows], s)
        checked += len(rows)
    assert checked == int(store.valid.sum())


@pytest.mark.parametrize("name", sorted(p.name for p in (DATA / "odd").iterdir()))
def test_odd_images_become_rgb_crops_with_content(encoded, image_tree, name):
    _, store = encoded
    crop = Preprocessing(resolution=RESOLUTION)(image_tree / "odd" / name)
    assert crop.shape == (RESOLUTION, RESOLUTION, 3) and crop.dtype == np.uint8
    assert crop.std() > 5, "a crop without content: decoding or compositing went wrong"
    ids = list(ImageFolderSource(str(image_tree)).ids)
    assert store.valid[ids.index(f"odd/{name}")]


def test_flip_stores_the_codes_of_the_mirrored_crops(tmp_path, tiny_model):
    out = tmp_path / "flip.zarr"
    latentstore.encode(PHOTOS, out, model=tiny_model, workers=0, flip=True, limit=6, **OPTIONS)
    store = latentstore.open(out)
    assert store.has_flip and store.valid.all()
    source = ImageFolderSource(str(PHOTOS), limit=6)
    preprocessing = Preprocessing(resolution=RESOLUTION)
    backend = load_backend(tiny_model, device="cpu")
    crops = torch.from_numpy(np.stack([preprocessing(PHOTOS / i) for i in source.ids])).permute(0, 3, 1, 2)
    plain, mirrored = store.codes(np.arange(6), flip=False), store.codes(np.arange(6), flip=True)
    for start in (0, 4):  # the pipeline's batches: 4 + 2
        rows = slice(start, min(start + 4, 6))
        q, s = latentstore.quantize(backend.encode(crops[rows].flip(-1).contiguous()).numpy())
        np.testing.assert_array_equal(mirrored[0][rows], q)
        np.testing.assert_array_equal(mirrored[1][rows], s)
    assert not np.array_equal(plain[0], mirrored[0])


def test_non_finite_and_huge_latents_are_marked_invalid(tmp_path, tiny_model, monkeypatch):
    original = Backend.encode

    def broken_encode(self, pixels, **kw):
        z = original(self, pixels, **kw)
        z[0, 3] = float("nan")  # the first image of every batch
        if len(z) > 1:
            z[1] *= 1e30  # the second: beyond 127 * 65504, no float16 scale fits
        return z

    monkeypatch.setattr(Backend, "encode", broken_encode)
    summary = latentstore.encode(PHOTOS, tmp_path / "nan.zarr", model=tiny_model, workers=0, limit=6, **OPTIONS)
    store = latentstore.open(tmp_path / "nan.zarr")
    np.testing.assert_array_equal(store.valid, [False, False, True, True, False, False])
    reasons = {f.index: f.reason for f in summary.failures}
    assert reasons == {
        0: encode_module.NONFINITE_REASON,
        1: encode_module.OVERFLOW_REASON,
        4: encode_module.NONFINITE_REASON,
        5: encode_module.OVERFLOW_REASON,
    }
    q, s = store.codes([0, 1], allow_invalid=True)
    assert not q.any() and not s.any()


def test_limit_encodes_the_first_images(tmp_path, tiny_model):
    summary = latentstore.encode(PHOTOS, tmp_path / "l.zarr", model=tiny_model, workers=0, limit=3, **OPTIONS)
    store = latentstore.open(tmp_path / "l.zarr")
    assert len(store) == summary.samples == 3
    assert store.metadata.source == open_source(str(PHOTOS), limit=3).describe()
    assert store.metadata.source["limit"] == 3


class _Crash(Exception):
    pass


def _crash_after_first_chunk(monkeypatch, error=_Crash):
    original = encode_module._Chunk.write

    def write(self, *args):
        original(self, *args)
        raise error()

    monkeypatch.setattr(encode_module._Chunk, "write", write)


@pytest.fixture
def unfinished(tmp_path, tiny_model, monkeypatch):
    """A store left by a run that died after its first chunk."""
    out = tmp_path / "unfinished.zarr"
    with monkeypatch.context() as patch:
        _crash_after_first_chunk(patch)
        with pytest.raises(_Crash):
            latentstore.encode(PHOTOS, out, model=tiny_model, workers=0, limit=12, **OPTIONS)
    assert not latentstore.open(out).metadata.complete
    return out


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (dict(resolution=96), "encoder"),
        (dict(limit=11), "source"),
        (dict(resize="bicubic"), "encoder"),
        (dict(chunk_samples=4), "chunk_samples"),
        (dict(flip=True), "flip"),
    ],
)
def test_a_store_made_with_other_settings_is_refused(unfinished, tiny_model, change, named):
    options = {**OPTIONS, "limit": 12, **change}
    with pytest.raises(IncompatibleStoreError, match=f"{named}: store has") as info:
        latentstore.encode(PHOTOS, unfinished, model=tiny_model, workers=0, **options)
    assert "overwrite" in str(info.value)


def test_another_model_is_refused_and_overwrite_replaces(unfinished, tiny_model, tmp_path):
    other = save_tiny_model(tmp_path / "other", "dc", seed=2)
    with pytest.raises(IncompatibleStoreError, match="encoder: store has"):
        latentstore.encode(PHOTOS, unfinished, model=other, workers=0, limit=12, **OPTIONS)
    summary = latentstore.encode(PHOTOS, unfinished, model=other, workers=0, limit=12, overwrite=True, **OPTIONS)
    assert summary.resumed_chunks == 0 and latentstore.open(unfinished).metadata.encoder["model"] == other


def test_resuming_finishes_the_store_and_a_complete_store_is_refused(unfinished, tiny_model):
    summary = latentstore.encode(PHOTOS, unfinished, model=tiny_model, workers=0, limit=12, **OPTIONS)
    assert summary.resumed_chunks == 1 and summary.encoded == 4 and summary.chunks == 2
    assert latentstore.open(unfinished).valid.all()
    with pytest.raises(StoreExistsError, match="complete store"):
        latentstore.encode(PHOTOS, unfinished, model=tiny_model, workers=0, limit=12, **OPTIONS)


def test_ctrl_c_stops_workers_keeps_finished_chunks_and_says_how_to_resume(tmp_path, tiny_model, monkeypatch, capsys):
    out = tmp_path / "interrupted.zarr"
    _crash_after_first_chunk(monkeypatch, KeyboardInterrupt)
    with pytest.raises(KeyboardInterrupt):
        latentstore.encode(PHOTOS, out, model=tiny_model, workers=2, limit=12, **OPTIONS)
    err = capsys.readouterr().err
    assert "1 of 2 chunks" in err and "run the same command again to resume" in err
    assert multiprocessing.active_children() == []
    assert (out / "valid" / "c" / "0").exists() and not (out / "valid" / "c" / "1").exists()


def test_cli_encodes_and_prints_a_summary(tmp_path, tiny_model, capsys):
    out = tmp_path / "cli.zarr"
    argv = ["encode", str(PHOTOS), str(out), "--model", tiny_model, "--resolution", "64", "--limit", "5",
            "--chunk-samples", "4", "--workers", "0", "--device", "cpu", "--no-progress", "--json"]
    assert cli.main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == summary["valid"] == 5 and summary["random_model"] is True
    assert latentstore.open(out).metadata.encoder["resolution"] == 64


def test_cli_rejects_a_resolution_the_model_cannot_encode(tmp_path, tiny_model, capsys):
    argv = ["encode", str(PHOTOS), str(tmp_path / "x.zarr"), "--model", tiny_model, "--resolution", "48",
            "--device", "cpu", "--no-progress"]
    assert cli.main(argv) == 2
    assert "multiple of the model's spatial compression 32" in capsys.readouterr().err


def test_latentstore_encode_is_the_pipeline(tmp_path, tiny_model):
    summary = latentstore.encode(PHOTOS, tmp_path / "c.zarr", model=tiny_model, workers=0, limit=2, **OPTIONS)
    assert summary.samples == 2 and isinstance(summary, encode_module.EncodeSummary)


def test_cli_help_explains_the_options(capsys):
    with pytest.raises(SystemExit):
        cli.main(["encode", "--help"])
    text = capsys.readouterr().out
    for option in ("--flip", "--class-list-from", "--resize", "--limit", "torchrun", "resumes"):
        assert option in text


# -- captioned collections -------------------------------------------------------------
def test_a_metadata_folder_encodes_its_captions_and_keeps_its_crops(tmp_path, tiny_model):
    from tests.encoding.captioned import caption, sample_number, write_metadata_folder

    rows = [{"file_name": f"{'cats' if k % 2 else 'dogs'}/{k:03d}.png", "caption": caption(k), "score": k / 4}
            for k in range(10)]
    rows.append({"file_name": "dogs/gone.png", "caption": "the file is missing", "score": 0.0})
    folder = write_metadata_folder(tmp_path / "folder", rows, images={r["file_name"]: k for k, r in enumerate(rows[:10])})
    out = tmp_path / "m.zarr"
    summary = latentstore.encode(folder, out, model=tiny_model, workers=0, store_images="png", **OPTIONS)
    assert summary.samples == 11 and summary.valid == 10
    store = latentstore.open(out)
    assert store.columns == {"caption": "text", "score": "float64", "image": "bytes"}
    assert store.metadata.column("image").media_type == "image/png"
    assert store.column("caption", range(10)) == [caption(k) for k in range(10)]
    np.testing.assert_array_equal(store.column("score", range(10)), np.arange(10) / 4)
    assert store.column("caption", 10, allow_invalid=True) == ""  # an invalid sample holds the placeholder
    crops = store.column("image", range(10))
    assert [sample_number(c) for c in crops] == list(range(10))
    # the crop kept is exactly what the encoder saw
    import io

    from PIL import Image

    expected = Preprocessing(resolution=RESOLUTION)(str(folder / rows[3]["file_name"]))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(crops[3]))), expected)
    assert store.labels[:10].tolist() == [0 if k % 2 else 1 for k in range(10)]  # cats, dogs


def test_decode_compare_falls_back_to_the_stored_crops(tmp_path, tiny_model, capsys):
    from tests.encoding.captioned import caption, write_metadata_folder

    folder = write_metadata_folder(tmp_path / "folder", [{"file_name": f"{k}.png", "caption": caption(k)} for k in range(3)])
    out = tmp_path / "d.zarr"
    latentstore.encode(folder, out, model=tiny_model, workers=0, store_images="jpeg:90", **OPTIONS)
    shutil.rmtree(folder)
    grid = tmp_path / "grid.png"
    assert cli.main(["decode", str(out), "0", "1", "--out", str(grid), "--grid", "--compare", "--device", "cpu"]) == 0
    captured = capsys.readouterr()
    assert "comparing with the jpeg:90 crops kept in the store" in captured.err and "PSNR" in captured.out
    from latentstore.encoding.decoding import caption as tile_caption

    assert tile_caption(latentstore.open(out), 1) == f"#1\n{caption(1)}"


def test_source_options_need_a_source_path(tmp_path, tiny_model):
    source = ImageFolderSource(str(PHOTOS))
    with pytest.raises(ValueError, match="caption_key apply to a source path"):
        latentstore.encode(source, tmp_path / "x.zarr", model=tiny_model, caption_key="txt", **OPTIONS)
    with pytest.raises(latentstore.errors.SourceError, match="--store-images takes"):
        latentstore.encode(PHOTOS, tmp_path / "y.zarr", model=tiny_model, store_images="gif", **OPTIONS)


# -- multi-aspect stores ----------------------------------------------------------------
@pytest.fixture(scope="module")
def aspect_tree(tmp_path_factory):
    """Photos of many aspect ratios: the shipped photos, a 2000x200 panorama, a 150x900 portrait,
    a 23x17 image, EXIF-rotated and odd-mode files, and the broken ones."""
    root = tmp_path_factory.mktemp("aspects") / "mixed"
    shutil.copytree(PHOTOS, root / "photos", ignore=shutil.ignore_patterns("metadata.jsonl"))
    shutil.copytree(DATA / "odd", root / "odd")
    shutil.copytree(DATA / "broken", root / "broken")
    return root


@pytest.fixture(scope="module")
def bucketed(tmp_path_factory, tiny_model, aspect_tree):
    out = tmp_path_factory.mktemp("bucketed") / "b.zarr"
    summary = latentstore.encode(aspect_tree, out, model=tiny_model, workers=0, buckets="base=128", flip=True,
                                 chunk_samples=8, batch_size=4, device="cpu", progress=False)
    return summary, latentstore.open(out)


def test_a_bucketed_store_holds_each_image_in_its_own_aspect(bucketed, aspect_tree, tiny_model):
    from latentstore.encoding.preprocess import BucketedPreprocessing

    summary, store = bucketed
    assert summary.valid == summary.samples - 4  # the broken files
    table = store.bucket_table
    assert table.base == 128 and table.compression == 32
    used = {tuple(b["shape"][1:]) for b in store.buckets if b["count"]}
    assert {(2, 8), (8, 2), (4, 4)} <= used  # the panorama, the portrait, the squares
    ids = store.ids(np.arange(len(store)))
    preprocessing = BucketedPreprocessing(table, 32)
    backend = load_backend(tiny_model, device="cpu")
    for name, shape in (("odd/panorama_2000x200.jpg", (2, 8)), ("odd/tall_150x900.jpg", (8, 2))):
        i = ids.index(name)
        assert table.shapes[store.bucket_indices[i]] == shape
        pixels, bucket, box = preprocessing(aspect_tree / name)
        assert pixels.shape == (shape[0] * 32, shape[1] * 32, 3) and bucket == store.bucket_indices[i]
        np.testing.assert_allclose(store.crop_boxes(i), box, rtol=1e-6)
    for b in np.unique(store.bucket_indices[store.valid]):
        rows = np.flatnonzero(store.valid & (store.bucket_indices == b))
        crops = np.stack([preprocessing(aspect_tree / ids[r])[0] for r in rows])
        z = backend.encode(torch.from_numpy(crops).permute(0, 3, 1, 2).contiguous()).numpy()
        q, s = latentstore.quantize(z)
        got_q, got_s = store.codes(rows)
        np.testing.assert_array_equal(got_q, q)
        np.testing.assert_array_equal(got_s, s)
        np.testing.assert_array_equal(store.read(rows)[0], latentstore.dequantize(q, s))
    with pytest.raises(ValueError, match="several buckets"):
        store.read(np.flatnonzero(store.valid))


def test_bucket_tables_from_a_file_and_bad_ones(tmp_path, tiny_model):
    from latentstore.encoding.pipeline import bucket_table

    (tmp_path / "t.json").write_text("[[128, 128], [96, 160], [160, 96]]")
    assert bucket_table(str(tmp_path / "t.json"), 32).shapes == ((4, 4), (3, 5), (5, 3))
    (tmp_path / "bad.json").write_text("[[100, 128]]")
    with pytest.raises(latentstore.errors.SourceError, match="multiple of the model's compression"):
        bucket_table(str(tmp_path / "bad.json"), 32)
    with pytest.raises(latentstore.errors.SourceError, match="base=N needs N"):
        bucket_table("base=100", 32)
    with pytest.raises(latentstore.errors.SourceError, match="base=N or a JSON file"):
        bucket_table(str(tmp_path / "missing.json"), 32)


def test_an_encode_to_a_url_builds_locally_then_pushes(tmp_path, tiny_model, s3):
    from latentstore.encoding.pipeline import staging_path

    url = f"{s3}/encoded.zarr"
    summary = latentstore.encode(PHOTOS, url, model=tiny_model, workers=0, limit=5, **OPTIONS)
    assert summary.path == url and summary.valid == 5
    assert not os.path.exists(staging_path(url))  # pushed, then the staged copy removed
    remote = latentstore.open(url, cache_dir=tmp_path / "cache")
    local = latentstore.encode(PHOTOS, tmp_path / "local.zarr", model=tiny_model, workers=0, limit=5, **OPTIONS)
    assert remote.metadata.complete and remote.columns == latentstore.open(local.path).columns
    np.testing.assert_array_equal(remote.codes(range(5))[0], latentstore.open(local.path).codes(range(5))[0])
    with pytest.raises(StoreExistsError, match="already holds a complete store"):
        latentstore.encode(PHOTOS, url, model=tiny_model, workers=0, limit=5, **OPTIONS)


def test_the_source_crops_of_a_bucketed_encode_are_remade_in_their_buckets(bucketed, aspect_tree):
    from latentstore.encoding.decoding import source_crops

    _, store = bucketed
    ids = store.ids(np.arange(len(store)))
    rows = [ids.index("odd/panorama_2000x200.jpg"), ids.index("odd/tall_150x900.jpg")]
    crops, why = source_crops(store, rows)
    assert why is None and [c.shape for c in crops] == [(64, 256, 3), (256, 64, 3)]


def test_an_encode_to_a_url_never_keeps_another_stores_chunks(tmp_path, tiny_model, s3):
    from latentstore.store.transfer import transfer

    url = f"{s3}/other.zarr"
    first = latentstore.encode(PHOTOS, tmp_path / "first.zarr", model=tiny_model, workers=0, limit=4, **OPTIONS)
    transfer(first.path, url, allow_incomplete=True)
    group = __import__("zarr").open_group(url, mode="r+")
    meta = dict(group.attrs["latentstore"], complete=False)  # an unfinished push of another encode
    group.attrs["latentstore"] = meta
    other = save_tiny_model(tmp_path / "other-model", "dc", seed=9)
    with pytest.raises(IncompatibleStoreError, match="holds another store.*--overwrite"):
        latentstore.encode(PHOTOS, url, model=other, workers=0, limit=4, **OPTIONS)
    summary = latentstore.encode(PHOTOS, url, model=other, workers=0, limit=4, overwrite=True, **OPTIONS)
    assert summary.path == url
    fresh = latentstore.encode(PHOTOS, tmp_path / "fresh.zarr", model=other, workers=0, limit=4, **OPTIONS)
    remote = latentstore.open(url, cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(remote.codes(range(4))[0], latentstore.open(fresh.path).codes(range(4))[0])


def test_train_dit_takes_a_few_steps_on_the_encoded_bucketed_store(bucketed):
    import math

    from examples import train_dit

    _, store = bucketed
    model, losses = train_dit.train(store.path, steps=4, batch_size=2, lr=1e-3, log_every=2, width=32, depth=1, heads=2)
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
