import json
import shutil
import time

import pytest
import torch

from latentstore.encoding.backends import (
    DEFAULT_MODEL,
    Backend,
    SlowDeviceWarning,
    build_tiny_model,
    load_backend,
    save_tiny_model,
)
from latentstore.errors import ModelLoadError

huggingface_hub = pytest.importorskip("huggingface_hub")

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {kind: save_tiny_model(root / kind, kind, seed=3) for kind in ("dc", "kl")}


@pytest.fixture(scope="module")
def backends(tiny_dirs):
    return {kind: load_backend(path, device="cpu") for kind, path in tiny_dirs.items()}


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No network and an empty Hugging Face cache; yields the cache folder."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def pixels(n=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize(
    ("kind", "cls", "scaling", "channels", "f"),
    [("dc", "AutoencoderDC", 0.41407, 32, 32), ("kl", "AutoencoderKL", 0.18215, 4, 8)],
)
def test_tiny_models_load_like_real_ones(backends, tiny_dirs, kind, cls, scaling, channels, f):
    backend = backends[kind]
    assert isinstance(backend, Backend) and type(backend.model).__name__ == cls
    assert backend.spatial_compression == f and backend.latent_channels == channels
    meta = backend.metadata()
    assert meta["backend"] == f"diffusers.{cls}"
    assert meta["model"] == tiny_dirs[kind] and meta["revision"] is None
    assert meta["random_init"] is True and meta["scaling_factor"] == scaling
    assert meta["dtype"] == "fp32" and meta["sample"] is False
    json.dumps(meta)
    assert "RANDOM WEIGHTS" in repr(backend)
    with open(f"{tiny_dirs[kind]}/config.json") as fh:
        assert json.load(fh)["_latentstore_random_init"] is True


@pytest.mark.parametrize(("kind", "resolution"), [("dc", 64), ("dc", 256), ("kl", 64)])
def test_encode_shapes_match_latent_shape(backends, kind, resolution):
    backend = backends[kind]
    z = backend.encode(pixels(2, resolution))
    assert z.dtype == torch.float32 and z.device.type == "cpu"
    assert tuple(z.shape) == (2, *backend.latent_shape(resolution))
    assert torch.isfinite(z).all() and z.std() > 0
    assert backend.latent_shape(256) == ((32, 8, 8) if kind == "dc" else (4, 32, 32))


@pytest.mark.parametrize("kind", ["dc", "kl"])
def test_encode_maps_pixels_to_unit_range_and_returns_unscaled_latents(backends, kind):
    backend, x = backends[kind], pixels()
    with torch.no_grad():
        out = backend.model.encode(x.float() / 127.5 - 1)
        expected = out.latent if kind == "dc" else out.latent_dist.mode()
    torch.testing.assert_close(backend.encode(x), expected, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["dc", "kl"])
def test_decode_gives_uint8_pixels(backends, kind):
    backend = backends[kind]
    z = backend.encode(pixels())
    y = backend.decode(z)
    assert y.dtype == torch.uint8 and tuple(y.shape) == (2, 3, 64, 64)
    with torch.no_grad():
        raw = backend.model.decode(z).sample
    torch.testing.assert_close(y, ((raw + 1) * 127.5).clamp(0, 255).round().to(torch.uint8), rtol=0, atol=0)


def test_encode_and_decode_check_their_input(backends):
    dc = backends["dc"]
    with pytest.raises(TypeError, match="uint8 torch tensor, got torch.float32 tensor"):
        dc.encode(pixels().float())
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        dc.encode(pixels()[:, :1])
    with pytest.raises(ValueError, match="not a multiple of the model's spatial compression 32; pick e.g. 64"):
        dc.encode(pixels(size=80))
    with pytest.raises(ValueError, match=r"\(N, 32, h, w\)"):
        dc.decode(torch.zeros(1, 4, 2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        dc.decode(torch.zeros(1, 32, 2, 2, dtype=torch.int8))


def test_kl_mode_is_deterministic_and_sample_is_seeded(tiny_dirs, backends):
    x = pixels()
    mode = backends["kl"].encode(x)
    torch.testing.assert_close(backends["kl"].encode(x), mode, rtol=0, atol=0)
    a = load_backend(tiny_dirs["kl"], device="cpu", sample=True, seed=7)
    b = load_backend(tiny_dirs["kl"], device="cpu", sample=True, seed=7)
    first = a.encode(x)
    assert not torch.equal(first, mode)
    with torch.no_grad():
        posterior = a.model.encode(x.float() / 127.5 - 1).latent_dist
    noise = (first - posterior.mean) / posterior.std  # a draw from the posterior: N(0, 1)
    assert abs(noise.mean()) < 0.2 and 0.8 < noise.std() < 1.2
    torch.testing.assert_close(b.encode(x), first, rtol=0, atol=0)
    assert not torch.equal(a.encode(x), first)  # the generator moves on
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    torch.testing.assert_close(a.encode(x, generator=g1), a.encode(x, generator=g2), rtol=0, atol=0)
    assert a.metadata()["sample"] is True and a.metadata()["seed"] == 7


def test_cpu_fallback_warns(tiny_dirs, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(SlowDeviceWarning, match="pass device='cpu'"):
        backend = load_backend(tiny_dirs["dc"])
    assert backend.device.type == "cpu" and backend.dtype == torch.float32


@pytest.mark.parametrize(("dtype", "expected"), [("bf16", torch.bfloat16), (torch.bfloat16, torch.bfloat16), ("fp32", torch.float32)])
def test_dtype_selection(tiny_dirs, dtype, expected):
    backend = load_backend(tiny_dirs["dc"], device="cpu", dtype=dtype)
    assert next(backend.model.parameters()).dtype == expected
    assert backend.metadata()["dtype"] == {torch.bfloat16: "bf16", torch.float32: "fp32"}[expected]
    assert backend.encode(pixels()).dtype == torch.float32


@pytest.mark.parametrize("dtype", ["int8", torch.float64])
def test_bad_dtype(tiny_dirs, dtype):
    with pytest.raises(ValueError, match="fp32"):
        load_backend(tiny_dirs["dc"], device="cpu", dtype=dtype)


def test_offline_unknown_model_fails_fast_with_a_local_hint(offline):
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        load_backend(DEFAULT_MODEL, device="cpu")
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert "\n" not in message
    assert f"'{DEFAULT_MODEL}'" in message and "(offline?)" in message
    assert f"huggingface-cli download {DEFAULT_MODEL} --local-dir DIR" in message and "local directory" in message


def test_nonexistent_hub_id(offline, monkeypatch):
    # Without HF_HUB_OFFLINE: the hub answers 'not found' or cannot be reached.
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(ModelLoadError, match="'latentstore-tests/no-such-model-x9'.*local directory"):
        load_backend("latentstore-tests/no-such-model-x9", device="cpu")


def test_hub_id_loads_from_the_cache_offline_with_its_commit(offline, tiny_dirs):
    repo = offline / "models--latentstore-tests--tiny-dc"
    shutil.copytree(tiny_dirs["dc"], repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    backend = load_backend("latentstore-tests/tiny-dc", device="cpu")
    meta = backend.metadata()
    assert meta["model"] == "latentstore-tests/tiny-dc" and meta["revision"] == COMMIT
    assert meta["random_init"] is True and "RANDOM WEIGHTS" in repr(backend)
    assert backend.encode(pixels()).shape == (2, 32, 2, 2)


def test_local_directory_problems(tmp_path, tiny_dirs):
    with pytest.raises(ModelLoadError, match="local model directory .* does not exist"):
        load_backend(str(tmp_path / "missing"), device="cpu")
    with pytest.raises(ModelLoadError, match="has no config.json"):
        load_backend(str(tmp_path), device="cpu")
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    with pytest.raises(ModelLoadError, match="holds a 'UNet2DModel'"):
        load_backend(str(tmp_path), device="cpu")
    shutil.copy(f"{tiny_dirs['dc']}/config.json", tmp_path / "config.json")
    with pytest.raises(ModelLoadError, match="could not load the AutoencoderDC weights") as info:
        load_backend(str(tmp_path), device="cpu")
    assert "\n" not in str(info.value)
    with pytest.raises(ModelLoadError, match="has no revisions"):
        load_backend(tiny_dirs["dc"], revision="main", device="cpu")


@pytest.mark.parametrize("kind", ["dc", "kl"])
def test_tiny_models_are_seeded_and_leave_the_global_rng_alone(kind):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = build_tiny_model(kind, 0), build_tiny_model(kind, 0), build_tiny_model(kind, 1)
    assert torch.rand(1) == expected_next
    pa, pb, pc = (torch.cat([p.flatten() for p in m.parameters()]) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)
    with pytest.raises(ValueError, match="unknown tiny model kind"):
        build_tiny_model("vq")
