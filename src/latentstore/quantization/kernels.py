"""Per-sample and per-channel absmax int8 quantization (docs/format.md, bit-exact).

``quantize`` and ``dequantize`` validate and shape their input, then hand the
loops to the compiled kernels; ``latentstore.quantization.reference`` is the numpy oracle
the tests hold them to.
"""

from dataclasses import dataclass

import numpy as np

from latentstore.errors import NonFiniteError, ScaleOverflowError
from latentstore.quantization._native import kernels as _kernels
from latentstore.quantization.threads import threads_for

GRANULARITIES = ("sample", "channel")
CODE_MAX = 127


@dataclass(frozen=True)
class Normalization:
    """The training affine fused into dequantization: (x̂ * scaling_factor - mean) / std."""

    scaling_factor: float
    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self):
        mean = np.ascontiguousarray(self.mean, dtype=np.float32)
        std = np.ascontiguousarray(self.std, dtype=np.float32)
        if mean.ndim != 1 or mean.shape != std.shape:
            raise ValueError(
                f"mean and std must be 1-D and of equal length, got {mean.shape} and {std.shape}"
            )
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("normalization needs finite mean and std with std > 0")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)


def _as_float32_samples(x) -> np.ndarray:
    x = np.asarray(x)
    if not (np.issubdtype(x.dtype, np.floating) and x.dtype.itemsize <= 8):
        raise TypeError(
            f"latents must be floating point (float16, float32 or float64; quantized as float32), got {x.dtype}; "
            "convert them with x.astype(np.float32)"
        )
    if x.ndim < 2:
        raise ValueError(f"latents must have shape (N, ...) with at least 2 axes, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)


def group_shape(shape: tuple[int, ...], granularity: str) -> tuple[int, int]:
    """(groups per sample, values per group) for a sample of ``shape`` (at least one axis)."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be 'sample' or 'channel', got {granularity!r}")
    size = int(np.prod(shape))
    if size == 0:
        raise ValueError(f"a latent sample must hold at least one value, got shape {shape}")
    if granularity == "sample":
        return 1, size
    return shape[0], size // shape[0]


def _quantize_outputs(shape, groups, granularity, out):
    n = shape[0]
    scale_shape = (n,) if granularity == "sample" else (n, groups)
    if out is None:
        return np.empty(shape, dtype=np.int8), np.zeros(scale_shape, dtype=np.float16)
    q, scales = out
    for array, dtype, want in ((q, np.int8, shape), (scales, np.float16, scale_shape)):
        if not isinstance(array, np.ndarray) or array.dtype != dtype or array.shape != tuple(want):
            raise ValueError(
                f"out must be (int8 array of shape {tuple(shape)}, float16 array of shape {scale_shape}), "
                f"got {getattr(array, 'dtype', type(array).__name__)} {getattr(array, 'shape', '')}"
            )
        if not (array.flags.c_contiguous and array.flags.writeable):
            raise ValueError("out arrays must be C-contiguous and writeable")
    return q, scales


def quantize(x, granularity: str = "sample", *, out=None, num_threads: int | None = None):
    """Quantize float latents of shape (N, ...) to int8 codes and float16 scales.

    Returns ``(q, scales)``: ``q`` int8 of ``x.shape``; ``scales`` float16 of
    shape (N,) for ``granularity="sample"`` or (N, C) for ``"channel"``;
    ``out`` may pass such a pair of preallocated arrays to fill.
    Raises NonFiniteError naming the first sample holding NaN or inf, and
    ScaleOverflowError when a sample's scale does not fit in float16.
    """
    x = _as_float32_samples(x)
    groups, group_size = group_shape(x.shape[1:], granularity)
    n = x.shape[0]
    q, scales = _quantize_outputs(x.shape, groups, granularity, out)
    scale_bits = scales.reshape(n, groups).view(np.uint16)
    if n:
        status = np.zeros(n, dtype=np.uint8)
        _kernels.quantize_absmax(
            x.reshape(n, groups, group_size),
            q.reshape(n, groups, group_size),
            scale_bits,
            status,
            threads_for(x.nbytes, num_threads),
        )
        check_status(status)
    return q, scales


def check_status(status: np.ndarray, first_sample: int = 0) -> None:
    """Raise for the first sample the quantizer flagged."""
    bad = np.flatnonzero(status)
    if not bad.size:
        return
    i = int(bad[0])
    if status[i] == _kernels.STATUS_NONFINITE:
        raise NonFiniteError(first_sample + i)
    raise ScaleOverflowError(
        f"sample {first_sample + i} has values beyond {CODE_MAX * 65504:g}, whose "
        "quantization scale overflows float16; check the encoder output "
        "(latents that large are almost certainly broken)"
    )


def _scale_bits(q: np.ndarray, scales) -> np.ndarray:
    scales = np.asarray(scales)
    if scales.dtype != np.float16:
        raise TypeError(f"scales must be float16, got {scales.dtype}")
    n = q.shape[0]
    if scales.shape == (n,):
        scales = scales[:, None]
    elif not (q.ndim >= 2 and scales.shape == (n, q.shape[1])):
        raise ValueError(
            f"scales of shape {scales.shape} do not fit codes of shape {q.shape}: "
            f"expected ({n},) or ({n}, {q.shape[1] if q.ndim > 1 else 'C'})"
        )
    return np.ascontiguousarray(scales).view(np.uint16)


def output_buffer(shape, dtype, out):
    """Validate ``out`` (or allocate it) for float32 or float16 results."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float16):
        raise TypeError(f"dtype must be float32 or float16, got {dtype}")
    if out is None:
        return np.empty(shape, dtype=dtype)
    if not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != tuple(shape):
        raise ValueError(
            f"out must be a {dtype} array of shape {tuple(shape)}, got "
            f"{getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}"
        )
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError("out must be C-contiguous and writeable")
    return out


def gather_dequantize(
    chunk_addresses: np.ndarray,
    chunk_rows: int,
    rows: np.ndarray,
    scale_bits: np.ndarray | None,
    lut: np.ndarray | None,
    out: np.ndarray,
    *,
    normalization: Normalization | None = None,
    num_threads: int | None = None,
) -> None:
    """Dequantize rows scattered over mapped chunks into ``out`` (n, C, ...)."""
    n = out.shape[0]
    if n == 0:
        return
    # The kernel walks (channel, pixel); a 2-D latent is D channels of one
    # pixel when each channel has its own scale or normalisation, else one
    # channel of D pixels (the fast, vectorised layout).
    per_channel = scale_bits is not None and scale_bits.shape[1] > 1
    channels = out.shape[1] if out.ndim > 2 or per_channel or normalization is not None else 1
    out3 = out.reshape(n, channels, -1)
    if out.dtype == np.float16:
        out3 = out3.view(np.uint16)
    kwargs = {}
    if normalization is not None:
        if normalization.mean.shape[0] != out3.shape[1]:
            raise ValueError(
                f"normalization has {normalization.mean.shape[0]} channels, latents have {out3.shape[1]}"
            )
        kwargs = dict(
            normalize=True,
            scaling_factor=float(normalization.scaling_factor),
            mean=normalization.mean,
            std=normalization.std,
        )
    _kernels.gather_dequantize(
        chunk_addresses,
        chunk_rows,
        rows,
        scale_bits if scale_bits is not None else np.zeros((1, 1), np.uint16),
        lut,
        out3,
        num_threads=threads_for(out.nbytes, num_threads),
        **kwargs,
    )


def dequantize(
    q,
    scales,
    dtype=np.float32,
    out=None,
    *,
    normalization: Normalization | None = None,
    num_threads: int | None = None,
):
    """Turn int8 codes and float16 scales back into floats: float32(q) * float32(s).

    ``q`` has shape (N, ...); ``scales`` (N,) or (N, C). ``dtype`` is float32
    or float16; ``out`` a preallocated C-contiguous array to fill. With
    ``normalization`` the result is (x̂ * scaling_factor - mean_c) / std_c.
    """
    q = np.asarray(q)
    if q.dtype != np.int8:
        raise TypeError(f"codes must be int8, got {q.dtype}")
    if q.ndim < 2:
        raise ValueError(f"codes must have shape (N, ...) with at least 2 axes, got shape {q.shape}")
    bits = _scale_bits(q, scales)
    q = np.ascontiguousarray(q)
    out = output_buffer(q.shape, dtype, out)
    n = q.shape[0]
    gather_dequantize(
        np.array([q.ctypes.data], dtype=np.uintp),
        max(n, 1),
        np.arange(n, dtype=np.int64),
        bits,
        None,
        out,
        normalization=normalization,
        num_threads=num_threads,
    )
    return out
