import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci", derandomize=True, max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True, scope="session")
def _cache_in_a_temporary_directory(tmp_path_factory):
    """Remote stores opened by the tests are cached under pytest's temporary directory, not ~/.cache."""
    os.environ["LATENTSTORE_CACHE_DIR"] = str(tmp_path_factory.mktemp("latentstore-cache"))


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
    import latentstore.store.columns
    import latentstore.store.reader

    kernels = KERNEL_VARIANTS[request.param]
    monkeypatch.setattr(latentstore.quantization.kernels, "_kernels", kernels)
    monkeypatch.setattr(latentstore.store.reader, "_kernels", kernels)
    monkeypatch.setattr(latentstore.store.columns, "_kernels", kernels)
    return kernels


# -- a real S3 server on loopback ---------------------------------------------------
@pytest.fixture(scope="session")
def s3_server():
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    from tests.s3server import S3Server

    server = S3Server()
    yield server
    server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch, request):
    """A fresh bucket on the loopback server: yields its URL (s3://NAME)."""
    import fsspec
    import s3fs

    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server.endpoint}.items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    bucket = "t" + format(abs(hash(request.node.nodeid)) % 10**12, "012d")
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    fs.mkdir(bucket)
    return f"s3://{bucket}"
