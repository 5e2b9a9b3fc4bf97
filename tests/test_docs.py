"""The docs' code runs: every python block of the pages below, in order, against a small real store."""

import numpy as np
import pytest

import latentstore
from tests.docs_code import python_blocks


@pytest.fixture
def imagenet_zarr(tmp_path, monkeypatch, latents_factory):
    """A store named as the docs name it: 1,300 samples of (32, 8, 8) in chunks of 256, with flips."""
    monkeypatch.chdir(tmp_path)
    x = latents_factory(1300, (32, 8, 8))
    with latentstore.create("imagenet.zarr", 1300, (32, 8, 8), chunk_samples=256, flip=True) as writer:
        for start in range(0, 1300, 256):
            block = slice(start, start + 256)
            writer.write(start, x[block], labels=np.arange(1300)[block] % 10, flip_latents=-x[block])
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
