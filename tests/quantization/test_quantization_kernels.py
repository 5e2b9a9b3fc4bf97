"""The compiled quantization kernels against the numpy reference, bit for bit."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import latentstore
from latentstore.errors import NonFiniteError, ScaleOverflowError
from latentstore.quantization import reference as _reference
from latentstore.quantization.kernels import Normalization, group_shape


def reference_quantize(x, granularity):
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = x.shape[0]
    groups, size = group_shape(x.shape[1:], granularity)
    q = np.zeros((n, groups, size), np.int8)
    bits = np.zeros((n, groups), np.uint16)
    status = np.zeros(n, np.uint8)
    _reference.quantize_absmax(x.reshape(n, groups, size), q, bits, status)
    return q.reshape(x.shape), bits.view(np.float16), status


def assert_same_bytes(actual, expected, context):
    actual, expected = np.ascontiguousarray(actual), np.ascontiguousarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, context
    if actual.tobytes() != expected.tobytes():
        bad = np.flatnonzero(actual.view(np.uint8).ravel() != expected.view(np.uint8).ravel())[:5]
        pytest.fail(f"{context}: bytes differ at {bad}; input: {context}")


def check_against_reference(x, granularity):
    q, scales = latentstore.quantize(x, granularity)
    ref_q, ref_bits, status = reference_quantize(x, granularity)
    assert not status.any()
    assert_same_bytes(q, ref_q, f"codes for {x!r}")
    expected_scales = ref_bits[:, 0] if granularity == "sample" else ref_bits
    assert_same_bytes(scales, expected_scales, f"scales for {x!r}")
    n = x.shape[0]
    for dtype in (np.float32, np.float16):
        out = latentstore.dequantize(q, scales, dtype=dtype)
        ref = _reference.dequantize_codes(
            q.reshape(n, x.shape[1], -1), ref_bits.view(np.uint16), None, dtype, False, 1.0, None, None
        )
        assert_same_bytes(out.reshape(ref.shape), ref, f"dequantized {dtype.__name__} of {x!r}")
    return q, scales


@pytest.fixture(autouse=True)
def _every_kernel_build(each_kernel_variant):
    """Every test here runs against each compiled kernel build (baseline, AVX2)."""


finite_floats = st.floats(-1e5, 1e5, width=32, allow_subnormal=True)


@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=6), elements=finite_floats),
    granularity=st.sampled_from(["sample", "channel"]),
)
def test_kernels_match_reference_on_random_input(x, granularity):
    check_against_reference(x, granularity)


@pytest.mark.parametrize("granularity", ["sample", "channel"])
@pytest.mark.parametrize(
    "case",
    [
        "zeros",
        "outlier",
        "at_absmax",
        "ties",
        "tiny",
        "subnormal_scale",
        "heavy_tails",
        "mixed_zero_samples",
    ],
)
def test_kernels_match_reference_on_edge_cases(case, granularity, latents_factory):
    x = latents_factory(16, (3, 4, 4), seed=1)
    if case == "zeros":
        x[:] = 0
    elif case == "outlier":
        x[2, 1, 1, 1] = 3e4
    elif case == "at_absmax":
        x[:, 0, 0, 0] = np.abs(x).max(axis=(1, 2, 3))
        x[:, 1, 0, 0] = -np.abs(x).max(axis=(1, 2, 3))
    elif case == "ties":
        # scale 1.0 exactly (absmax 127): x / s lands on .5 ties everywhere.
        x = np.tile(np.arange(-127, 128, 0.5, dtype=np.float32)[: 3 * 4 * 4], (16, 1)).reshape(16, 3, 4, 4)
        x[:, :, 0, 0] = 127.0
    elif case == "tiny":
        x *= np.float32(1e-30)
    elif case == "subnormal_scale":
        x *= np.float32(1e-5)
    elif case == "mixed_zero_samples":
        x[::3] = 0
    check_against_reference(x, granularity)


def test_values_at_absmax_map_to_127_and_round_trip_within_half_a_step():
    x = np.array([[[1.0, -2.0, 0.5, 2.0]]], np.float32)
    q, s = latentstore.quantize(x)
    assert q.max() == 127 and q.min() == -127
    assert s[0] == np.float16(2.0 / 127)
    err = np.abs(latentstore.dequantize(q, s) - x).max()
    assert err <= s.astype(np.float32)[0] / 2 + 1e-7


def test_ties_round_to_even():
    # absmax 127 gives scale 1.0, so x / s == x and rint decides.
    x = np.array([[127.0, 0.5, 1.5, 2.5, -0.5, -1.5, -126.5]], np.float32)
    q, s = latentstore.quantize(x)
    assert s[0] == 1.0
    assert q.tolist() == [[127, 0, 2, 2, 0, -2, -126]]


def test_all_zero_sample_has_zero_scale_and_codes():
    q, s = latentstore.quantize(np.zeros((2, 3, 2, 2), np.float32))
    assert not q.any() and not s.any()
    assert not latentstore.dequantize(q, s).any()


def test_scale_underflowing_float16_gives_zero_codes():
    x = np.full((1, 4), 1e-12, np.float32)
    q, s = latentstore.quantize(x)
    assert s[0] == 0 and not q.any()


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("granularity", ["sample", "channel"])
def test_non_finite_input_names_the_first_bad_sample(value, granularity, latents_factory):
    x = latents_factory(8, (2, 2, 2))
    x[5, 1, 0, 1] = value
    x[7, 0, 0, 0] = value
    with pytest.raises(NonFiniteError, match="sample 5") as info:
        latentstore.quantize(x, granularity)
    assert info.value.sample == 5
    _, _, status = reference_quantize(x, granularity)
    assert status.tolist() == [0, 0, 0, 0, 0, 1, 0, 1]


def test_scale_overflowing_float16_is_an_error():
    x = np.zeros((3, 4), np.float32)
    x[1, 2] = 127 * 70000.0
    with pytest.raises(ScaleOverflowError, match="sample 1"):
        latentstore.quantize(x)
    _, _, status = reference_quantize(x, "sample")
    assert status.tolist() == [0, 2, 0]


def test_largest_finite_scale_is_accepted():
    x = np.array([[127 * 65504.0, 1.0]], np.float32)
    q, s = latentstore.quantize(x)
    assert s[0] == np.float16(65504) and q[0, 0] == 127


def test_non_contiguous_and_float16_input(latents_factory):
    x = latents_factory(10, (4, 6, 6))
    strided = x[::2, :, ::2, 1:5]
    q, s = check_against_reference(strided, "sample")
    q16, s16 = latentstore.quantize(x.astype(np.float16))
    ref_q, ref_s = latentstore.quantize(x.astype(np.float16).astype(np.float32))
    assert_same_bytes(q16, ref_q, "float16 codes")
    assert_same_bytes(s16, ref_s, "float16 scales")


@pytest.mark.parametrize("bad", [np.zeros((2, 3), np.int32), np.zeros((2, 3), bool), np.zeros((2, 3), np.complex64)])
def test_wrong_dtype_is_rejected(bad):
    with pytest.raises(TypeError, match="must be floating point"):
        latentstore.quantize(bad)


def test_float64_latents_are_quantized_as_their_float32_cast(latents_factory):
    x = latents_factory(5).astype(np.float64)
    q, s = latentstore.quantize(x)
    ref_q, ref_s = latentstore.quantize(x.astype(np.float32))
    assert_same_bytes(q, ref_q, "codes")
    assert_same_bytes(s, ref_s, "scales")


def test_wrong_shapes_are_rejected():
    with pytest.raises(ValueError, match="at least 2 axes"):
        latentstore.quantize(np.zeros(5, np.float32))
    with pytest.raises(ValueError, match="granularity"):
        latentstore.quantize(np.zeros((2, 3), np.float32), "tensor")
    q, s = latentstore.quantize(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="do not fit"):
        latentstore.dequantize(q, np.zeros(3, np.float16))
    with pytest.raises(TypeError, match="float16"):
        latentstore.dequantize(q, s.astype(np.float32))
    with pytest.raises(TypeError, match="int8"):
        latentstore.dequantize(q.astype(np.int16), s)


@pytest.mark.parametrize("granularity", ["sample", "channel"])
def test_empty_batch(granularity):
    q, s = latentstore.quantize(np.zeros((0, 3, 2, 2), np.float32), granularity)
    assert q.shape == (0, 3, 2, 2) and s.shape == ((0,) if granularity == "sample" else (0, 3))
    assert latentstore.dequantize(q, s).shape == (0, 3, 2, 2)


def test_dequantize_into_out_and_its_checks(latents_factory):
    q, s = latentstore.quantize(latents_factory(4))
    out = np.empty((4, 4, 4, 4), np.float32)
    assert latentstore.dequantize(q, s, out=out) is out
    with pytest.raises(ValueError, match="out must be"):
        latentstore.dequantize(q, s, out=np.empty((4, 4, 4, 4), np.float16))
    with pytest.raises(ValueError, match="C-contiguous"):
        latentstore.dequantize(q, s, out=np.empty((4, 4, 4, 8), np.float32)[..., ::2])
    with pytest.raises(TypeError, match="dtype"):
        latentstore.dequantize(q, s, dtype=np.float64)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("granularity", ["sample", "channel"])
def test_fused_normalization_matches_reference(dtype, granularity, latents_factory):
    x = latents_factory(32, (4, 3, 3), seed=3)
    q, s = latentstore.quantize(x, granularity)
    rng = np.random.default_rng(0)
    norm = Normalization(0.41407, rng.normal(size=4), rng.uniform(0.5, 2, size=4))
    out = latentstore.dequantize(q, s, dtype=dtype, normalization=norm)
    bits = s.reshape(32, -1).view(np.uint16)
    ref = _reference.dequantize_codes(q.reshape(32, 4, 9), bits, None, dtype, True, 0.41407, norm.mean, norm.std)
    assert_same_bytes(out.reshape(ref.shape), ref, "normalized")


def test_threaded_kernels_give_identical_bytes(latents_factory):
    from latentstore.quantization.threads import available_cores, threads_for

    if available_cores() < 2:
        pytest.skip("needs two cores to run the threaded path")
    threads = 2
    x = latents_factory(3000, (8, 8, 8))  # 6 MB: above the threading threshold
    assert threads_for(x.nbytes, threads) == threads, "the threaded path must really run"
    q1, s1 = latentstore.quantize(x, num_threads=1)
    qn, sn = latentstore.quantize(x, num_threads=threads)
    assert_same_bytes(qn, q1, "codes")
    assert_same_bytes(sn, s1, "scales")
    assert_same_bytes(latentstore.dequantize(q1, s1, num_threads=threads), latentstore.dequantize(q1, s1, num_threads=1), "floats")


def test_half_conversions_match_numpy_for_every_half_and_many_floats(each_kernel_variant):
    _kernels = each_kernel_variant
    every_half = np.arange(1 << 16, dtype=np.uint16)
    widened = np.empty(every_half.size, np.float32)
    _kernels.half_to_float_array(every_half, widened)
    expected = every_half.view(np.float16).astype(np.float32)
    same = (widened.view(np.uint32) == expected.view(np.uint32)) | (np.isnan(widened) & np.isnan(expected))
    assert same.all()

    rng = np.random.default_rng(0)
    floats = np.concatenate(
        [
            rng.integers(0, 1 << 32, size=200_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
            # Every float32 around the float16 rounding boundaries and subnormals.
            (every_half.view(np.float16).astype(np.float32).view(np.uint32)[:, None] + np.arange(-2, 3, dtype=np.int64))
            .astype(np.uint32)
            .ravel()
            .view(np.float32),
            (every_half.view(np.float16).astype(np.float32).view(np.uint32) + (1 << 12)).view(np.float32),
        ]
    )
    floats = floats[~np.isnan(floats)]
    narrowed = np.empty(floats.size, np.uint16)
    _kernels.float_to_half_array(np.ascontiguousarray(floats), narrowed)
    with np.errstate(over="ignore"):
        expected_bits = floats.astype(np.float16).view(np.uint16)
    mismatch = np.flatnonzero(narrowed != expected_bits)
    assert mismatch.size == 0, f"float32 {floats[mismatch[:5]]} -> {narrowed[mismatch[:5]]}, numpy {expected_bits[mismatch[:5]]}"


@pytest.mark.parametrize("granularity", ["sample", "channel"])
def test_quantize_into_preallocated_buffers(granularity, latents_factory):
    x = latents_factory(6, (3, 2, 2))
    expected_q, expected_s = latentstore.quantize(x, granularity)
    q, s = np.empty_like(expected_q), np.empty_like(expected_s)
    got_q, got_s = latentstore.quantize(x, granularity, out=(q, s))
    assert got_q is q and got_s is s
    assert_same_bytes(q, expected_q, "codes")
    assert_same_bytes(s, expected_s, "scales")
    with pytest.raises(ValueError, match="out must be"):
        latentstore.quantize(x, granularity, out=(q, np.empty(6, np.float32)))
    with pytest.raises(ValueError, match="C-contiguous"):
        latentstore.quantize(x[:3], granularity, out=(np.empty((6, 3, 2, 2), np.int8)[::2], s[:3]))


@pytest.mark.parametrize("granularity", ["sample", "channel"])
def test_two_dimensional_latents(granularity, latents_factory):
    x = latents_factory(5, (7,))
    q, s = latentstore.quantize(x, granularity)
    expected = q.astype(np.float32) * (s[:, None] if granularity == "sample" else s).astype(np.float32)
    np.testing.assert_array_equal(latentstore.dequantize(q, s), expected)
    norm = Normalization(2.0, np.arange(7), np.full(7, 3.0))
    np.testing.assert_array_equal(
        latentstore.dequantize(q, s, normalization=norm),
        (expected * np.float32(2.0) - norm.mean) / norm.std,
    )
