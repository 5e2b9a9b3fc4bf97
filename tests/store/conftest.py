import numpy as np
import pytest

from tests.store.stores import SHAPE, N, write_store


@pytest.fixture
def data(latents_factory):
    x = latents_factory(N, SHAPE, seed=7)
    labels = (np.arange(N) % 5).astype(np.int32)
    return x, labels


@pytest.fixture(params=["sample", "channel"])
def store(request, tmp_path, data):
    x, labels = data
    return write_store(tmp_path / "s.zarr", x, labels=labels, classes=list("abcde"), granularity=request.param)



@pytest.fixture(autouse=True)
def _every_kernel_build(each_kernel_variant):
    """Every test here runs against each compiled kernel build (baseline, AVX2)."""
