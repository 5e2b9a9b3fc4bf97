"""The gather and index kernels against their numpy reference, bit for bit, on every kernel build."""

import numpy as np
import pytest

from latentstore.format import QuantSpec
from latentstore.quantization import reference as _reference

CHUNK_ROWS, CHANNELS, PIXELS = 8, 3, 5


@pytest.fixture
def chunks():
    """Five separately allocated chunks of int8 codes: the kernel must follow each address."""
    rng = np.random.default_rng(0)
    return [rng.integers(-127, 128, (CHUNK_ROWS, CHANNELS, PIXELS), dtype=np.int8) for _ in range(5)]


def addresses(chunks):
    return np.array([c.ctypes.data for c in chunks], dtype=np.uintp)


ROWS = np.array([39, 0, 7, 8, 8, 21, 39, 16, 0], dtype=np.int64)  # every chunk, repeats, chunk edges


@pytest.mark.parametrize("scale_groups", [1, CHANNELS])
@pytest.mark.parametrize("out_dtype", [np.float32, np.float16])
@pytest.mark.parametrize("normalize", [False, True, "multiplier"])
@pytest.mark.parametrize("threads", [1, 2])
def test_gather_dequantize_matches_reference(each_kernel_variant, chunks, scale_groups, out_dtype, normalize, threads):
    rng = np.random.default_rng(1)
    scales = rng.uniform(0, 0.2, (len(chunks) * CHUNK_ROWS, scale_groups)).astype(np.float16).view(np.uint16)
    options = dict(normalize=bool(normalize), scaling_factor=0.41407)
    if normalize:
        options.update(mean=rng.normal(size=CHANNELS).astype(np.float32), std=rng.uniform(0.5, 2, CHANNELS).astype(np.float32))
    if normalize == "multiplier":
        options.update(multiplier=0.7071)
    got = np.empty((len(ROWS), CHANNELS, PIXELS), out_dtype)
    each_kernel_variant.gather_dequantize(
        addresses(chunks), CHUNK_ROWS, ROWS, scales, None,
        got.view(np.uint16) if out_dtype == np.float16 else got, num_threads=threads, **options,
    )
    expected = np.empty_like(got)
    _reference.gather_dequantize(chunks, CHUNK_ROWS, ROWS, scales, None, expected, **options)
    assert got.tobytes() == expected.tobytes()
    if normalize == "multiplier":  # and it is not the multiplier-free result
        _reference.gather_dequantize(chunks, CHUNK_ROWS, ROWS, scales, None, expected, **{**options, "multiplier": 1.0})
        assert got.tobytes() != expected.tobytes()


@pytest.mark.parametrize("code_dtype", ["uint8", "int8"])
def test_gather_with_lookup_table_matches_reference(each_kernel_variant, chunks, code_dtype):
    lut = QuantSpec.affine(13 / 255, -6.5, code_dtype).lookup_table()
    codes = [c.view(code_dtype) for c in chunks]
    got = np.empty((len(ROWS), CHANNELS, PIXELS), np.float32)
    each_kernel_variant.gather_dequantize(
        addresses(codes), CHUNK_ROWS, ROWS, np.zeros((1, 1), np.uint16), lut, got
    )
    expected = np.empty_like(got)
    _reference.gather_dequantize(codes, CHUNK_ROWS, ROWS, None, lut, expected)
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("threads", [1, 2])
def test_gather_rows_matches_reference(each_kernel_variant, chunks, threads):
    flat = [c.reshape(CHUNK_ROWS, -1).view(np.uint8) for c in chunks]
    got = np.empty((len(ROWS), CHANNELS * PIXELS), np.uint8)
    each_kernel_variant.gather_rows(addresses(flat), CHUNK_ROWS, ROWS, got, threads)
    expected = np.empty_like(got)
    _reference.gather_rows(flat, CHUNK_ROWS, ROWS, expected)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    "indices, check_valid",
    [
        ([0, 9, -1, -10, 5, 5], True),  # fine: negatives count from the end
        ([3, 10, 2], False),  # out of range at position 1
        ([3, -11, 2], False),  # out of range below
        ([1, 4, 2], True),  # position 1 lands on an invalid sample
        ([4, 4], False),  # the invalid sample is fine when not checked
        ([], True),
    ],
)
def test_resolve_rows_matches_reference(each_kernel_variant, indices, check_valid):
    valid = np.ones(10, np.uint8)
    valid[4] = 0
    indices = np.array(indices, np.int64)
    got, expected = np.full(len(indices), -7, np.int64), np.full(len(indices), -7, np.int64)
    problem = each_kernel_variant.resolve_rows(indices, 10, valid if check_valid else None, got)
    assert problem == _reference.resolve_rows(indices, 10, valid if check_valid else None, expected)
    stop = len(indices) if problem < 0 else problem // 2
    np.testing.assert_array_equal(got[:stop], expected[:stop])
