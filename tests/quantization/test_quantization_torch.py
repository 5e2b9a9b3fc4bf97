"""latentstore.quantization.torch_quant against the compiled kernels and the numpy reference, byte for byte."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

torch = pytest.importorskip("torch")

import latentstore  # noqa: E402
from latentstore.errors import NonFiniteError, ScaleOverflowError  # noqa: E402
from latentstore.format import QuantSpec  # noqa: E402
from latentstore.quantization import reference as _reference  # noqa: E402
from latentstore.quantization import torch_quant  # noqa: E402
from latentstore.quantization.kernels import Normalization, group_shape  # noqa: E402

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
    ),
]


def assert_same_bytes(actual: torch.Tensor, expected: np.ndarray, context: str):
    actual = actual.cpu().numpy()
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (context, actual.dtype, actual.shape)
    if actual.tobytes() != np.ascontiguousarray(expected).tobytes():
        bad = np.flatnonzero(actual.view(np.uint8).ravel() != np.ascontiguousarray(expected).view(np.uint8).ravel())
        pytest.fail(f"{context}: bytes differ at {bad[:5]}")


def reference_status(x: np.ndarray, granularity: str) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    groups, size = group_shape(x.shape[1:], granularity)
    status = np.zeros(n, np.uint8)
    _reference.quantize_absmax(
        x.reshape(n, groups, size), np.zeros((n, groups, size), np.int8), np.zeros((n, groups), np.uint16), status
    )
    return status


def check_quantize(x: np.ndarray, granularity: str, device: str, torch_dtype=torch.float32):
    """torch_quant.quantize of x (given to torch as torch_dtype) equals latentstore.quantize."""
    xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(device=device, dtype=torch_dtype)
    x32 = xt.float().cpu().numpy()  # what the numpy path sees: the same values widened
    q, scales, bad = torch_quant.quantize(xt, granularity)
    assert q.device.type == scales.device.type == bad.device.type == torch.device(device).type
    assert not bad.any(), f"no sample of {x!r} is bad"
    ref_q, ref_scales = latentstore.quantize(x32, granularity)
    assert_same_bytes(q, ref_q, f"codes of {x32!r}")
    assert_same_bytes(scales, ref_scales, f"scales of {x32!r}")
    strict_q, strict_scales = torch_quant.quantize_strict(xt, granularity)
    assert torch.equal(strict_q, q) and torch.equal(strict_scales, scales)
    return q, scales


def check_dequantize(q: torch.Tensor, scales: torch.Tensor, normalization=None):
    for np_dtype, torch_dtype in ((np.float32, torch.float32), (np.float16, torch.float16)):
        out = torch_quant.dequantize(q, scales, torch_dtype, normalization)
        assert out.device == q.device
        expected = latentstore.dequantize(q.cpu().numpy(), scales.cpu().numpy(), np_dtype, normalization=normalization)
        assert_same_bytes(out, expected, f"dequantized {np_dtype.__name__} (normalization={normalization})")


finite_floats = st.floats(-1e5, 1e5, width=32, allow_subnormal=True)


@pytest.mark.parametrize("device", DEVICES)
@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=6), elements=finite_floats),
    granularity=st.sampled_from(["sample", "channel"]),
    scaling_factor=st.floats(0.0625, 8, width=32),
)
def test_matches_kernels_on_random_input(device, x, granularity, scaling_factor):
    q, scales = check_quantize(x, granularity, device)
    channels = x.shape[1]
    rng = np.random.default_rng(channels)
    normalization = Normalization(scaling_factor, rng.normal(size=channels), rng.uniform(0.2, 3, size=channels))
    check_dequantize(q, scales)
    check_dequantize(q, scales, normalization)


def edge_cases():
    rng = np.random.default_rng(0)
    heavy = (rng.standard_t(4, size=(8, 4, 3, 3)) * 1.7).astype(np.float32)  # synthetic, heavy-tailed
    ties = np.zeros((2, 1, 4), np.float32)
    ties[:, 0] = [127.0, 0.5, 1.5, -2.5]  # s = 1: x / s lands exactly on halves
    outlier = np.full((2, 2, 4), 0.01, np.float32)
    outlier[:, 0, 0] = 60000.0
    tiny = np.full((3, 2, 2), 1e-9, np.float32)  # a / 127 underflows float16: s == 0, q == 0
    tiny[1] = 3e-6  # subnormal float16 scales
    near_overflow = np.full((1, 2, 2), 127 * 65504.0, np.float32)
    return {
        "zeros": np.zeros((3, 2, 2, 2), np.float32),
        "heavy tailed": heavy,
        "ties": ties,
        "huge outlier": outlier,
        "tiny scales": tiny,
        "largest scale": near_overflow,
        "negative zero": np.full((1, 2, 2), -0.0, np.float32),
        "two axes": rng.normal(size=(5, 7)).astype(np.float32),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("granularity", ["sample", "channel"])
@pytest.mark.parametrize("name", list(edge_cases()))
def test_matches_kernels_on_edge_cases(device, granularity, name):
    x = edge_cases()[name]
    q, scales = check_quantize(x, granularity, device)
    if x.ndim == 2 and granularity == "channel":
        # latentstore.dequantize applies only the first per-channel scale to
        # 2-D codes (reported), so hold this case to the contract's formula.
        expected = q.cpu().numpy().astype(np.float32) * scales.cpu().numpy().astype(np.float32)
        assert_same_bytes(torch_quant.dequantize(q, scales), expected, "2-D per-channel codes")
    else:
        check_dequantize(q, scales)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("torch_dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("granularity", ["sample", "channel"])
def test_half_precision_input_is_widened_first(device, torch_dtype, granularity):
    x = (np.random.default_rng(1).standard_t(4, size=(6, 4, 2, 2)) * 1.7).astype(np.float32)
    check_quantize(x, granularity, device, torch_dtype)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("granularity", ["sample", "channel"])
def test_empty_batch(device, granularity):
    q, scales, bad = torch_quant.quantize(torch.zeros((0, 4, 2, 2), device=device), granularity)
    assert q.shape == (0, 4, 2, 2) and q.dtype == torch.int8
    assert scales.shape == ((0,) if granularity == "sample" else (0, 4)) and scales.dtype == torch.float16
    assert bad.shape == (0,)
    assert torch_quant.dequantize(q, scales).shape == (0, 4, 2, 2)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("granularity", ["sample", "channel"])
def test_bad_samples_are_flagged_zeroed_and_raised_in_order(device, granularity):
    x = (np.random.default_rng(2).standard_t(4, size=(6, 3, 2, 2)) * 1.7).astype(np.float32)
    x[1, 2, 0, 0] = np.nan
    x[2, 0, 1, 1] = -np.inf
    x[3, 1, 0, 0] = 1e10  # scale overflows float16
    x[4, 0, 0, 0] = 1e10
    x[4, 2, 0, 0] = np.nan  # overflow first in channel order, NaN in the sample as a whole
    q, scales, bad = torch_quant.quantize(torch.from_numpy(x).to(device), granularity)
    assert bad.cpu().tolist() == [False, True, True, True, True, False]
    assert not q[bad].any() and not scales[bad].any()
    good = [0, 5]
    ref_q, ref_scales = latentstore.quantize(x[good], granularity)
    assert_same_bytes(q[good], ref_q, "codes of the good samples")
    assert_same_bytes(scales[good], ref_scales, "scales of the good samples")

    with pytest.raises(NonFiniteError, match="sample 1 ") as raised:
        torch_quant.quantize_strict(torch.from_numpy(x).to(device), granularity)
    assert raised.value.sample == 1
    with pytest.raises(ScaleOverflowError, match="sample 0 "):
        torch_quant.quantize_strict(torch.from_numpy(x[3:4]).to(device), granularity)


@pytest.mark.parametrize("granularity", ["sample", "channel"])
def test_error_kind_follows_the_first_bad_group_like_the_kernel(granularity):
    x = np.ones((1, 3, 2), np.float32)
    x[0, 0, 0] = 1e10
    x[0, 2, 0] = np.nan
    expected = {1: NonFiniteError, 2: ScaleOverflowError}[int(reference_status(x, granularity)[0])]
    with pytest.raises(expected):
        latentstore.quantize(x, granularity)
    with pytest.raises(expected):
        torch_quant.quantize_strict(torch.from_numpy(x), granularity)


@pytest.mark.parametrize("device", DEVICES)
def test_affine_codes_dequantize_through_the_lookup_table(device):
    spec = QuantSpec.affine(13 / 255, -6.5)
    lut = spec.lookup_table()
    codes = np.random.default_rng(3).integers(0, 256, size=(5, 4, 2, 2), dtype=np.uint8)
    normalization = Normalization(0.41407, np.arange(4) * 0.1, np.linspace(0.5, 2, 4))
    for norm in (None, normalization):
        out = torch_quant.dequantize(torch.from_numpy(codes).to(device), None, normalization=norm, lut=torch.from_numpy(lut))
        expected = _reference.dequantize_codes(
            codes.reshape(5, 4, -1), None, lut, np.float32, norm is not None, 0.41407,
            normalization.mean, normalization.std,
        )
        assert_same_bytes(out.reshape(5, 4, -1), expected, f"affine codes, normalization={norm}")


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: torch_quant.quantize(np.zeros((2, 2), np.float32)), TypeError, "torch.Tensor"),
        (lambda: torch_quant.quantize(torch.zeros((2, 2), dtype=torch.int8)), TypeError, "float32"),
        (lambda: torch_quant.quantize(torch.zeros(3)), ValueError, "at least 2 axes"),
        (lambda: torch_quant.quantize(torch.zeros((2, 2)), "pixel"), ValueError, "granularity"),
        (lambda: torch_quant.dequantize(torch.zeros((2, 2), dtype=torch.int8), torch.zeros(3, dtype=torch.float16)), ValueError, "do not fit"),
        (lambda: torch_quant.dequantize(torch.zeros((2, 2)), torch.zeros(2, dtype=torch.float16)), TypeError, "int8"),
        (lambda: torch_quant.dequantize(torch.zeros((2, 2), dtype=torch.int8), torch.zeros(2)), TypeError, "float16"),
        (lambda: torch_quant.dequantize(torch.zeros((2, 2), dtype=torch.int8), torch.zeros(2, dtype=torch.float16), torch.int32), TypeError, "dtype"),
        (
            lambda: torch_quant.dequantize(
                torch.zeros((2, 3), dtype=torch.int8), torch.zeros(2, dtype=torch.float16), normalization=Normalization(1.0, [0, 0], [1, 1])
            ),
            ValueError,
            "2 channels",
        ),
    ],
)
def test_rejects_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
