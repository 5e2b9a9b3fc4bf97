"""Fidelity metrics: PSNR and SSIM of uint8 images, error statistics of latents.

Pixel metrics take uint8 images of shape (H, W) or (H, W, C) (the layout PIL
and ``preprocess`` produce) and compare a *test* image against a *reference*:

- :func:`psnr`: ``10 log10(255² / MSE)``, ``inf`` for identical images;
- :func:`ssim`: the SSIM index of Wang, Bovik, Sheikh and Simoncelli (2004)
  with their constants: an 11x11 Gaussian window of sigma 1.5, K1 = 0.01,
  K2 = 0.03, dynamic range 255, local statistics over the window positions
  that lie wholly inside the image ("valid" filtering, as in the authors'
  ``ssim_index.m``), averaged over those positions and then over channels.

Latent metrics compare float latents ``x`` with their reconstruction ``x̂``
after a storage scheme (:func:`latent_errors`): mean squared error, maximum
absolute error, signal-to-noise ratio in dB (``10 log10(Σx² / Σ(x - x̂)²)``,
signal power uncentred, ``inf`` when lossless) and the fraction of values of
``x`` that fell outside the range the scheme represents (clipped).

Everything is numpy; nothing here imports torch or PIL.
"""

from dataclasses import dataclass

import numpy as np

#: Wang et al. (2004): Gaussian window size and sigma, stabilising constants.
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
PIXEL_RANGE = 255.0


def _image_pair(reference, test) -> tuple[np.ndarray, np.ndarray]:
    reference, test = np.asarray(reference), np.asarray(test)
    for name, image in (("reference", reference), ("test", test)):
        if image.dtype != np.uint8:
            raise TypeError(f"{name} image must be uint8, got {image.dtype}; convert it with np.asarray(pil_image)")
        if image.ndim not in (2, 3):
            raise ValueError(f"{name} image must have shape (H, W) or (H, W, C), got {image.shape}")
    if reference.shape != test.shape:
        raise ValueError(f"images must have the same shape, got {reference.shape} and {test.shape}")
    if reference.ndim == 2:
        reference, test = reference[..., None], test[..., None]
    return reference.astype(np.float64), test.astype(np.float64)


def psnr(reference, test) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images; ``inf`` when identical."""
    reference, test = _image_pair(reference, test)
    mse = float(np.mean((reference - test) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(PIXEL_RANGE**2 / mse))


def _gaussian_window() -> np.ndarray:
    offsets = np.arange(SSIM_WINDOW, dtype=np.float64) - (SSIM_WINDOW - 1) / 2
    weights = np.exp(-(offsets**2) / (2 * SSIM_SIGMA**2))
    return weights / weights.sum()


def _filter_valid(image: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Separable 'valid' filtering of an (H, W, C) image along H and W."""
    from numpy.lib.stride_tricks import sliding_window_view

    rows = sliding_window_view(image, weights.size, axis=0) @ weights
    return sliding_window_view(rows, weights.size, axis=1) @ weights


def ssim(reference, test) -> float:
    """Mean SSIM of two uint8 images (Wang et al. 2004), averaged over channels.

    Both images must be at least 11 pixels high and wide (one whole window).
    Returns 1.0 for identical images; values near 0 (or below) mean no
    structural similarity.
    """
    reference, test = _image_pair(reference, test)
    if min(reference.shape[:2]) < SSIM_WINDOW:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels, got {reference.shape[:2]}"
        )
    weights = _gaussian_window()
    c1 = (SSIM_K1 * PIXEL_RANGE) ** 2
    c2 = (SSIM_K2 * PIXEL_RANGE) ** 2
    mu_x = _filter_valid(reference, weights)
    mu_y = _filter_valid(test, weights)
    var_x = _filter_valid(reference * reference, weights) - mu_x * mu_x
    var_y = _filter_valid(test * test, weights) - mu_y * mu_y
    cov = _filter_valid(reference * test, weights) - mu_x * mu_y
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return float(index.mean(axis=(0, 1)).mean())


@dataclass(frozen=True)
class LatentErrors:
    """How far reconstructed latents are from the originals (see the module docstring)."""

    mse: float
    max_abs: float
    snr_db: float
    fraction_clipped: float

    def as_dict(self) -> dict:
        return {
            "mse": self.mse,
            "max_abs": self.max_abs,
            "snr_db": self.snr_db,
            "fraction_clipped": self.fraction_clipped,
        }


def fraction_clipped(x, low: float, high: float) -> float:
    """Fraction of the values of ``x`` outside ``[low, high]``: what a clamp to that range changes."""
    x = np.asarray(x)
    if x.size == 0:
        return 0.0
    return float(np.count_nonzero((x < low) | (x > high)) / x.size)


def latent_errors(x, reconstructed, *, clip_range: tuple[float, float] | None = None) -> LatentErrors:
    """Error statistics of ``reconstructed`` against float latents ``x`` (same shape).

    ``clip_range`` is the ``(low, high)`` range a global scheme represents;
    leave it ``None`` for schemes that represent every finite value (floats,
    absmax int8), whose clipped fraction is then 0. Statistics accumulate in
    float64.
    """
    x = np.asarray(x)
    reconstructed = np.asarray(reconstructed)
    if x.shape != reconstructed.shape:
        raise ValueError(f"x and reconstructed must have the same shape, got {x.shape} and {reconstructed.shape}")
    if x.size == 0:
        raise ValueError("cannot measure errors of an empty array")
    x64 = x.astype(np.float64)
    error = reconstructed.astype(np.float64) - x64
    if not (np.isfinite(x64).all() and np.isfinite(error).all()):
        raise ValueError("latents and their reconstruction must be finite to measure errors")
    noise = float(np.sum(error * error))
    signal = float(np.sum(x64 * x64))
    if noise == 0.0:
        snr = float("inf")
    elif signal == 0.0:
        snr = float("-inf")
    else:
        snr = float(10.0 * np.log10(signal / noise))
    return LatentErrors(
        mse=noise / x.size,
        max_abs=float(np.max(np.abs(error))),
        snr_db=snr,
        fraction_clipped=0.0 if clip_range is None else fraction_clipped(x, *clip_range),
    )
