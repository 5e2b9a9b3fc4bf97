"""The affine code maps shared by the importers (interop/_common.py)."""


import numpy as np
import pytest

from latentstore.interop import affine_spec
from tests.interop.sources import (
    DECODERS,
)


@pytest.mark.parametrize("value_range", sorted(DECODERS))
def test_affine_lookup_table_is_the_sources_decode_in_float64(value_range):
    """The store's affine values equal the source formula in float64 rounded to float32, for all 256 codes.

    The same formula evaluated step by step in float32 (as the datasets' own
    loaders do) rounds three times; it differs by at most 1.5 float32 ulps
    of the range bound (7.2e-7 at 6.5, 9.5e-7 at 12).
    """
    decode = DECODERS[value_range]
    codes = np.arange(256, dtype=np.uint8)
    lut = affine_spec(*value_range).lookup_table()
    np.testing.assert_array_equal(lut, decode(codes, np.float64).astype(np.float32))
    bound_ulp = np.spacing(np.float32(value_range[1]))
    assert np.abs(lut.astype(np.float64) - decode(codes, np.float32)).max() <= 1.5 * bound_ulp


@pytest.mark.parametrize("value_range", [(1.0, 1.0), (2.0, -2.0), (float("nan"), 1.0)])
def test_affine_range_must_be_increasing_and_finite(value_range):
    with pytest.raises(ValueError, match="LOW < HIGH"):
        affine_spec(*value_range)
