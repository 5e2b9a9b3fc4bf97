"""The docs' code runs: every python block of the pages below, in order, against a small real store."""

import numpy as np
import pytest

import latentstore
from tests.docs_code import python_blocks


@pytest.fixture
def imagenet_zarr(tmp_path, monkeypatch, latents_factory):
    """A store named as the docs name it: 1,300 samples of (32, 8, 8) in chunks of 256, with flips and columns."""
    monkeypatch.chdir(tmp_path)
    x = latents_factory(1300, (32, 8, 8))
    columns = {"caption": "text", "width": "int32"}
    with latentstore.create("imagenet.zarr", 1300, (32, 8, 8), chunk_samples=256, flip=True, columns=columns) as writer:
        for start in range(0, 1300, 256):
            block = slice(start, start + 256)
            rows = np.arange(1300)[block]
            writer.write(start, x[block], labels=rows % 10, flip_latents=-x[block],
                         columns={"caption": [f"photo {i}, ünïcode" for i in rows], "width": rows * 2})
    from latentstore.format import BucketTable
    from latentstore.store.writer import pack_buckets

    table = BucketTable.from_base(256, 32)
    shapes = table.shapes * 4
    rows, buckets = pack_buckets([x[i].reshape(32, 64)[:, : h * w].reshape(32, h, w) for i, (h, w) in enumerate(shapes)], table)
    with latentstore.create("multi-aspect.zarr", len(rows), (32,), buckets=table) as writer:
        writer.write(0, rows, buckets=buckets)
    return latentstore.open("imagenet.zarr")


def run_page(page):
    namespace = {}
    for code in python_blocks(page):
        exec(compile(code, f"docs/{page}", "exec"), namespace)
    return namespace


def test_reading_a_store_without_latentstore(imagenet_zarr):
    pytest.importorskip("tensorstore")
    assert len(python_blocks("format.md")) >= 4
    names = run_page("format.md")
    store = imagenet_zarr
    rows = np.arange(1000, 1256)
    latents, labels = store.read(rows)
    assert names["x"].tobytes() == latents.tobytes()
    assert names["labels"].tolist() == labels.tolist()
    assert names["flipped"].tobytes() == store.codes(rows, flip=True)[0].tobytes()
    assert names["normalized"].tobytes() == store.read(rows, normalize=True)[0].tobytes()
    assert names["q"].tobytes() == store.codes(rows)[0].tobytes()  # tensorstore's read
    assert names["chunk"].tobytes() == store.codes(np.arange(768, 1024))[0].tobytes()
    assert [str(c) for c in names["captions"]] == store.column("caption", rows)
    assert names["widths"].tolist() == store.column("width", rows).tolist()
    assert names["texts"] == store.column("caption", np.arange(768, 1024))
    assert names["sample"].tobytes() == latentstore.open("multi-aspect.zarr").codes(12)[0].tobytes()


# -- the other pages and the README ---------------------------------------------
# What the snippets name but a test machine lacks is stood in for, and said here:
# a CUDA device becomes the CPU when there is none, a training model is a tiny
# stand-in, the Hub URL is an in-memory fsspec store, and the default
# autoencoder (which cannot be downloaded here) is a tiny random DC-AE.
def run_snippets(blocks, namespace, replacements=()):
    import torch

    if not torch.cuda.is_available():
        replacements = (*replacements, ('device="cuda"', 'device="cpu"'), ("pin_memory=True", "pin_memory=False"))
    for code in blocks:
        for old, new in replacements:
            code = code.replace(old, new)
        exec(compile(code, "docs snippet", "exec"), namespace)
    return namespace


def stand_in_model(channels):
    import torch

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mix = torch.nn.Conv2d(channels, channels, 1)

        def forward(self, latents, labels):
            return self.mix(latents).pow(2).mean()

        def loss(self, latents, labels):
            return self(latents, labels)

    return Model()


def small_store(path, n=600, captioned=False):
    """With ``captioned``, the columns the docs' shards give: encode --json-fields width:int64,height:int64,caption_long:text."""
    x = (np.random.default_rng(0).standard_t(4, size=(n, 32, 8, 8)) * 1.7).astype(np.float32)  # synthetic
    columns = {"caption": "text", "width": "int64", "height": "int64", "caption_long": "text"} if captioned else None
    with latentstore.create(path, n, (32, 8, 8), chunk_samples=256, flip=True, columns=columns) as writer:
        for start in range(0, n, 256):
            block = slice(start, start + 256)
            rows = np.arange(n)[block]
            values = {"caption": [f"photo {i}" for i in rows], "width": 256 + rows, "height": 192 + rows % 64,
                      "caption_long": [f"a long caption of photo {i}, ünïcode" for i in rows]} if captioned else None
            writer.write(start, x[block], labels=rows % 10, flip_latents=-x[block], columns=values)


def bucketed_store(path, n=600):
    from latentstore.format import BucketTable
    from latentstore.store.writer import pack_buckets

    table = BucketTable.from_base(256, 32)
    rng = np.random.default_rng(0)
    latents = [(rng.standard_t(4, size=(32, *table.shapes[i % 4 * 2])) * 1.7).astype(np.float32) for i in range(n)]  # synthetic
    rows, buckets = pack_buckets(latents, table)
    with latentstore.create(path, n, (32,), chunk_samples=256, buckets=table) as writer:
        for start in range(0, n, 256):
            writer.write(start, rows[start : start + 256], buckets=buckets[start : start + 256])


@pytest.mark.parametrize("page", ["training.md", "README.md", "captions.md"])
def test_training_snippets(tmp_path, monkeypatch, page):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    for name in ("imagenet-dcae.zarr", "imagenet-train.zarr", "toy-source.zarr"):
        small_store(name)
    small_store("captioned.zarr", captioned=True)
    bucketed_store("multi-aspect.zarr")
    blocks, replacements = python_blocks(page), []
    if page == "README.md":
        url = f"memory://docs-readme/{tmp_path.name}/imagenet-dcae"
        from latentstore.store.transfer import transfer

        transfer("imagenet-train.zarr", url)
        replacements = [("hf://datasets/USER/imagenet-dcae", url)]
    model = stand_in_model(32)
    namespace = run_snippets(blocks, {"model": model, "start_epoch": 0, "epochs": 2, "torch": __import__("torch")},
                             replacements)
    assert "loader" in namespace
    if page == "README.md":
        assert namespace["store"].fast and namespace["store"].url.startswith("memory://")


@pytest.mark.slow  # a whole encode with the tiny model
def test_encoding_and_importing_snippets(tmp_path, monkeypatch):
    pytest.importorskip("diffusers")
    import shutil

    from latentstore.encoding import backends
    from latentstore.interop import affine_spec, export_npy
    from tests.paths import PHOTOS

    monkeypatch.chdir(tmp_path)
    shutil.copytree(PHOTOS, "imagenet/train")
    tiny = backends.save_tiny_model(tmp_path / "tiny-dc", "dc", seed=0)
    monkeypatch.setattr(backends, "DEFAULT_MODEL", str(tiny))  # the real DC-AE cannot be downloaded here
    run_snippets(python_blocks("encoding.md"), {},
                 [('flip=True)', 'flip=True, resolution=64, device="cpu", workers=0, progress=False)')])
    assert latentstore.open("imagenet-train.zarr").metadata.complete
    with latentstore.create("imagenet-3gb.zarr", 8, (2, 2, 2), quant=affine_spec(-6.5, 6.5)) as writer:
        writer.write(0, codes=np.arange(64, dtype=np.uint8).reshape(8, 2, 2, 2))
    export_npy("imagenet-3gb.zarr", "imagenet-3gb-npy")
    names = run_snippets(python_blocks("importing.md"), {})
    assert names["latents"].shape == (8, 2, 2, 2) and "6.5" in names["meta"]["dequantize"]
