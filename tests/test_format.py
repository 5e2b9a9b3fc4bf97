"""Stores written by format version 1 stay readable, forever.

``tests/data/golden/`` holds small stores written once by format v1 with the
values they must read back. They are regenerated only on purpose, never by
the test run: ``python tests/test_golden.py --regenerate``.
"""

import shutil
import sys

import numpy as np
import pytest

import latentstore
from tests.paths import GOLDEN

CASES = {
    "v1-sample-flip": dict(granularity="sample", flip=True),
    "v1-channel": dict(granularity="channel"),
    "v1-affine": dict(quant=latentstore.QuantSpec.affine(13 / 255, -6.5)),
}


def _write(path, options):
    rng = np.random.default_rng(2024)
    n, shape = 20, (2, 2, 2)
    x = (rng.standard_t(4, size=(n, *shape)) * 2.4).astype(np.float32)  # synthetic
    writer = latentstore.create(path, n, shape, chunk_samples=8, classes=["cat", "dog", "fish"], **options)
    for start in range(0, n, 8):
        block = slice(start, start + 8)
        labels = np.arange(n)[block] % 3
        valid = np.arange(n)[block] != 13
        if "quant" in options:
            codes = np.clip(np.round((np.clip(x[block], -6.5, 6.5) + 6.5) / 13 * 255), 0, 255).astype(np.uint8)
            writer.write(start, codes=codes, labels=labels, valid=valid)
        else:
            flip = -x[block] if options.get("flip") else None
            writer.write(start, x[block], labels=labels, valid=valid, flip_latents=flip)
    writer.close()


def regenerate():
    for name, options in CASES.items():
        path = GOLDEN / f"{name}.zarr"
        shutil.rmtree(path, ignore_errors=True)
        _write(path, options)
        store = latentstore.open(path)
        latents, labels = store.read(np.flatnonzero(store.valid))
        np.savez(GOLDEN / f"{name}.expected.npz", latents=latents, labels=labels, valid=store.valid)
        print(f"wrote {path}")


@pytest.mark.parametrize("name", CASES)
def test_golden_store_reads_back(name):
    store = latentstore.open(GOLDEN / f"{name}.zarr")
    expected = np.load(GOLDEN / f"{name}.expected.npz")
    assert store.metadata.format_version == 1 and store.metadata.complete
    np.testing.assert_array_equal(store.valid, expected["valid"])
    latents, labels = store.read(np.flatnonzero(store.valid))
    np.testing.assert_array_equal(latents, expected["latents"])
    np.testing.assert_array_equal(labels, expected["labels"])
    assert store.classes == ("cat", "dog", "fish")
    with pytest.raises(latentstore.InvalidSampleError):
        store.read([13])


if __name__ == "__main__":
    if sys.argv[1:] != ["--regenerate"]:
        sys.exit("usage: python tests/test_golden.py --regenerate  (rewrites the format v1 fixtures)")
    regenerate()
