"""docs/format.md's absmax quantization in torch, on any device, bit-identical to the kernels.

The same contract as :func:`latentstore.quantize` / :func:`latentstore.dequantize`
(and the numpy oracle ``latentstore.quantization.reference``), written with torch
operations so that an encoder can quantize on the GPU where its latents
already are, and a training loop can dequantize int8 codes there:

- x is cast to float32 first; a = max |x| over the group, in float32;
- s = float16(a / 127), the division in float32, rounded to nearest-even;
- q = clamp(round_half_to_even(x / float32(s)), -127, 127), and q = 0 where s == 0;
- x̂ = float32(q) * float32(s), then optionally (x̂ * scaling_factor - mean_c) / std_c * multiplier.

Every step is one IEEE-correct float32 operation (no fused multiply-add), so
the result does not depend on the device.
"""

import numpy as np
import torch

from latentstore.quantization.kernels import (
    CODE_MAX,
    Normalization,
    check_status,
    group_shape,
)

_STATUS_OK, _STATUS_NONFINITE, _STATUS_OVERFLOW = 0, 1, 2
_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _grouped(x: torch.Tensor, granularity: str) -> tuple[torch.Tensor, int]:
    """x as float32 of shape (N, groups, values per group), and the group count."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}; use latentstore.quantize for numpy arrays")
    if x.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"latents must be float32, float16, bfloat16 or float64 (quantized as float32), got {x.dtype}; "
            "convert them with x.float()"
        )
    if x.ndim < 2:
        raise ValueError(f"latents must have shape (N, ...) with at least 2 axes, got shape {tuple(x.shape)}")
    groups, size = group_shape(tuple(x.shape[1:]), granularity)
    return x.to(torch.float32).reshape(x.shape[0], groups, size), groups


def _quantize(x: torch.Tensor, granularity: str):
    """(q, scales, status): status is uint8 per sample, 0 ok, 1 non-finite, 2 scale overflow."""
    x3, _ = _grouped(x, granularity)
    finite = torch.isfinite(x3).all(dim=2)
    half = (x3.abs().amax(dim=2) / CODE_MAX).to(torch.float16)
    bad_group = ~finite | torch.isinf(half)
    # A sample's status is that of its first bad group, as in the kernel.
    first = bad_group.to(torch.uint8).argmax(dim=1, keepdim=True)
    first_nonfinite = ~finite.gather(1, first).squeeze(1)
    bad = bad_group.any(dim=1)
    status = torch.where(
        bad,
        torch.where(first_nonfinite, _STATUS_NONFINITE, _STATUS_OVERFLOW),
        _STATUS_OK,
    ).to(torch.uint8)

    half = torch.where(bad[:, None], 0, half)
    s = half.to(torch.float32)[:, :, None]
    # Clamping before rounding equals rounding before clamping (127 is an
    # integer) and keeps inf out of the rounding.
    r = torch.round((x3 / s).clamp_(-CODE_MAX, CODE_MAX))
    r = torch.where((s == 0) | bad[:, None, None], 0, r)
    q = r.to(torch.int8).reshape(x.shape)
    scales = half[:, 0].contiguous() if granularity == "sample" else half
    return q, scales, status


def quantize(x: torch.Tensor, granularity: str = "sample"):
    """Quantize float latents (N, ...) on their device; never raises for bad samples.

    Returns ``(q, scales, bad)``: ``q`` int8 of ``x.shape``; ``scales``
    float16 of shape (N,) (``granularity="sample"``) or (N, C)
    (``"channel"``); ``bad`` a bool tensor (N,) marking samples that hold NaN
    or inf or whose scale overflows float16. Bad samples get zero codes and
    scales: mark them invalid in the store. Use :func:`quantize_strict` to
    raise instead.
    """
    q, scales, status = _quantize(x, granularity)
    return q, scales, status != _STATUS_OK


def quantize_strict(x: torch.Tensor, granularity: str = "sample"):
    """As :func:`quantize`, but returns ``(q, scales)`` and raises like :func:`latentstore.quantize`.

    NonFiniteError names the first sample holding NaN or inf,
    ScaleOverflowError the first whose scale does not fit in float16.
    """
    q, scales, status = _quantize(x, granularity)
    if bool(status.any()):
        check_status(status.cpu().numpy())
    return q, scales


def _channel_column(values, channels: int, ndim: int, device) -> torch.Tensor:
    """A float32 (C, 1, ..., 1) tensor on ``device`` to broadcast over (N, C, ...)."""
    column = torch.as_tensor(np.asarray(values, dtype=np.float32), device=device)
    if column.shape != (channels,):
        raise ValueError(f"normalization has {column.shape[0]} channels, latents have {channels}")
    return column.reshape(channels, *([1] * (ndim - 2)))


def dequantize(
    q: torch.Tensor,
    scales: torch.Tensor | None,
    dtype: torch.dtype = torch.float32,
    normalization: Normalization | None = None,
    *,
    lut: torch.Tensor | None = None,
) -> torch.Tensor:
    """float32(q) * float32(s) on ``q``'s device, optionally normalised.

    ``q`` int8 (N, C, ...); ``scales`` float16 (N,) or (N, C). For stores of
    the affine scheme pass ``scales=None`` and ``lut``, the 256-entry float32
    table of ``QuantSpec.lookup_table()`` indexed by the uint8 codes.
    ``normalization`` gives (x̂ * scaling_factor - mean_c) / std_c in
    float32. ``dtype`` float32, or float16 rounded from the float32 result.
    Bit-identical to :func:`latentstore.dequantize` and the store's reads.
    """
    if dtype not in (torch.float32, torch.float16):
        raise TypeError(f"dtype must be torch.float32 or torch.float16, got {dtype}")
    if q.ndim < 2:
        raise ValueError(f"codes must have shape (N, ...) with at least 2 axes, got shape {tuple(q.shape)}")
    n, channels = q.shape[0], q.shape[1]
    if lut is not None:
        if q.dtype != torch.uint8 or lut.dtype != torch.float32 or lut.shape != (256,):
            raise TypeError(f"a lookup table needs uint8 codes and a float32 (256,) table, got {q.dtype} codes and {lut.dtype} {tuple(lut.shape)}")
        values = lut.to(q.device)[q.to(torch.int64)]
    else:
        if q.dtype != torch.int8:
            raise TypeError(f"codes must be int8, got {q.dtype}")
        if scales is None or scales.dtype != torch.float16:
            raise TypeError(f"scales must be a float16 tensor, got {getattr(scales, 'dtype', scales)}")
        if tuple(scales.shape) == (n,):
            s = scales.reshape(n, *([1] * (q.ndim - 1)))
        elif tuple(scales.shape) == (n, channels):
            s = scales.reshape(n, channels, *([1] * (q.ndim - 2)))
        else:
            raise ValueError(
                f"scales of shape {tuple(scales.shape)} do not fit codes of shape {tuple(q.shape)}: "
                f"expected ({n},) or ({n}, {channels})"
            )
        values = q.to(torch.float32) * s.to(device=q.device, dtype=torch.float32)
    if normalization is not None:
        factor = torch.tensor(float(normalization.scaling_factor), dtype=torch.float32, device=q.device)
        mean = _channel_column(normalization.mean, channels, q.ndim, q.device)
        std = _channel_column(normalization.std, channels, q.ndim, q.device)
        multiplier = torch.tensor(float(normalization.multiplier), dtype=torch.float32, device=q.device)
        values = values.mul_(factor).sub_(mean).div_(std).mul_(multiplier)
    return values if dtype == torch.float32 else values.to(torch.float16)
