import numpy as np
import pytest

from latentstore.inspection.metrics import LatentErrors, fraction_clipped, latent_errors, psnr, ssim


def _ramp_pair():
    """A deterministic RGB ramp and a copy with a fixed pseudo-noise pattern in [-20, 20]."""
    i, j, c = np.meshgrid(np.arange(32), np.arange(40), np.arange(3), indexing="ij")
    image = ((i * 8 + j * 5 + c * 60) % 256).astype(np.uint8)
    noisy = np.clip(image.astype(int) + ((i * 37 + j * 91 + c * 53) % 41 - 20), 0, 255).astype(np.uint8)
    return image, noisy


def _gradient_pair():
    image = np.add.outer(np.arange(24) * 8, np.arange(30) * 4).astype(np.uint8)
    return image, (image // 2 + 30).astype(np.uint8)


# Reference values from scikit-image 0.26.0, computed independently of this code:
# structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
#                       use_sample_covariance=False, data_range=255[, channel_axis=2])
@pytest.mark.parametrize(
    "pair, expected",
    [(_ramp_pair, 0.835410163089337), (_gradient_pair, 0.7917294823317249)],
    ids=["rgb-noise", "gray-contrast"],
)
def test_ssim_matches_scikit_image(pair, expected):
    assert ssim(*pair()) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("shape", [(11, 11), (16, 20, 3), (12, 13, 1)])
def test_ssim_of_identical_images_is_one(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    assert ssim(image, image) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("a, b", [(100, 100), (100, 150), (0, 255), (40, 41)])
def test_ssim_of_constant_images_has_closed_form(a, b):
    # Zero variance everywhere: SSIM = (2ab + C1) / (a² + b² + C1).
    c1 = (0.01 * 255) ** 2
    x = np.full((14, 15, 3), a, np.uint8)
    y = np.full((14, 15, 3), b, np.uint8)
    assert ssim(x, y) == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-12)


def test_ssim_is_symmetric_and_drops_with_noise():
    image, noisy = _ramp_pair()
    assert ssim(image, noisy) == pytest.approx(ssim(noisy, image), rel=1e-12)
    rng = np.random.default_rng(3)
    noisier = np.clip(image + rng.normal(0, 60, image.shape), 0, 255).astype(np.uint8)
    assert ssim(image, noisier) < ssim(image, noisy) < 1.0


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_psnr_of_a_known_error_level(k):
    image = np.full((8, 9, 3), 100, np.uint8)
    signs = np.where(np.indices(image.shape).sum(axis=0) % 2 == 0, k, -k)
    noisy = (image.astype(int) + signs).astype(np.uint8)
    assert psnr(image, noisy) == pytest.approx(20 * np.log10(255 / k), rel=1e-12)


def test_psnr_of_identical_images_is_infinite():
    image = np.zeros((4, 4), np.uint8)
    assert psnr(image, image) == float("inf")


@pytest.mark.parametrize(
    "a, b, error, match",
    [
        (np.zeros((16, 16), np.float32), np.zeros((16, 16), np.uint8), TypeError, "uint8"),
        (np.zeros((16, 16), np.uint8), np.zeros((16, 17), np.uint8), ValueError, "same shape"),
        (np.zeros(16, np.uint8), np.zeros(16, np.uint8), ValueError, r"\(H, W\)"),
        (np.zeros((10, 16), np.uint8), np.zeros((10, 16), np.uint8), ValueError, "at least 11x11"),
    ],
)
def test_pixel_metrics_reject_bad_input(a, b, error, match):
    with pytest.raises(error, match=match):
        ssim(a, b)
    if "11x11" not in match:
        with pytest.raises(error, match=match):
            psnr(a, b)


def test_latent_errors_of_an_exact_copy():
    x = np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32)
    assert latent_errors(x, x.copy()) == LatentErrors(mse=0.0, max_abs=0.0, snr_db=float("inf"), fraction_clipped=0.0)


def test_latent_errors_of_a_known_perturbation():
    x = np.array([3.0, -4.0, 0.0, 0.0], np.float32)
    y = x + np.array([0.5, -0.5, 0.5, -0.5], np.float32)
    errors = latent_errors(x, y, clip_range=(-3.5, 3.5))
    assert errors.mse == pytest.approx(0.25)
    assert errors.max_abs == pytest.approx(0.5)
    assert errors.snr_db == pytest.approx(10 * np.log10(25 / 1.0))
    assert errors.fraction_clipped == pytest.approx(0.25)
    assert set(errors.as_dict()) == {"mse", "max_abs", "snr_db", "fraction_clipped"}


@pytest.mark.parametrize("low, high, expected", [(-1, 1, 0.4), (-10, 10, 0.0), (0, 0, 0.8)])
def test_fraction_clipped_counts_values_outside_the_range(low, high, expected):
    assert fraction_clipped(np.array([-2.0, -1.0, 0.0, 1.0, 5.0]), low, high) == pytest.approx(expected)


@pytest.mark.parametrize(
    "x, y, match",
    [
        (np.zeros(3), np.zeros(4), "same shape"),
        (np.zeros(0), np.zeros(0), "empty"),
        (np.array([np.nan]), np.zeros(1), "finite"),
    ],
)
def test_latent_errors_reject_bad_input(x, y, match):
    with pytest.raises(ValueError, match=match):
        latent_errors(x, y)
