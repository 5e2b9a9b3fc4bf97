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
