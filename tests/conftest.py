import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def synthetic_latents(n, shape=(4, 4, 4), seed=0):
    """Heavy-tailed stand-ins for real latents (Student-t, std about 2.4): synthetic, not DC-AE output."""
    rng = np.random.default_rng(seed)
    return (rng.standard_t(4, size=(n, *shape)) * 1.7).astype(np.float32)


@pytest.fixture
def latents_factory():
    return synthetic_latents


def _kernel_variants():
    import importlib

    variants = {}
    for name in ("_kernels", "_kernels_avx2"):
        try:
            variants[name] = importlib.import_module(f"latentstore.quantization.{name}")
        except ImportError:
            continue
    if "_kernels_avx2" in variants:
        from latentstore.quantization._native import _cpu_has_avx2

        if not _cpu_has_avx2():
            del variants["_kernels_avx2"]
    return variants


KERNEL_VARIANTS = _kernel_variants()


@pytest.fixture(params=sorted(KERNEL_VARIANTS))
def each_kernel_variant(request, monkeypatch):
    """Run a test once per compiled kernel build this CPU can execute."""
    import latentstore.quantization.kernels
    import latentstore.store.reader

    kernels = KERNEL_VARIANTS[request.param]
    monkeypatch.setattr(latentstore.quantization.kernels, "_kernels", kernels)
    monkeypatch.setattr(latentstore.store.reader, "_kernels", kernels)
    return kernels
