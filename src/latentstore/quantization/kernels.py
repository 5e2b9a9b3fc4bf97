"""Per-sample and per-channel absmax int8 quantization (docs/format.md, bit-exact).

``quantize`` and ``dequantize`` validate and shape their input, then hand the
loops to the compiled kernels; ``latentstore.quantization.reference`` is the numpy oracle
the tests hold them to.
"""

import json
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from latentstore.errors import NonFiniteError, ScaleOverflowError
from latentstore.quantization._native import kernels as _kernels
from latentstore.quantization.threads import threads_for

GRANULARITIES = ("sample", "channel")
CODE_MAX = 127


@dataclass(frozen=True)
class Normalization:
    """The training affine fused into dequantization, per channel c:

        (x̂ * scaling_factor - mean_c) / std_c * multiplier

    evaluated in float32 in that order (so it matches codebases that compute
    ``(x - mean) / std * multiplier`` or ``x * scaling_factor`` bit for bit).
    :meth:`from_stats` takes the stats from a dict, a file or another store;
    :meth:`scaling` is a plain ``x * factor``.
    """

    scaling_factor: float
    mean: np.ndarray
    std: np.ndarray
    multiplier: float = 1.0

    def __post_init__(self):
        # Numbers of any shape with C elements: torch's (1, C, 1, 1) stats included.
        mean = np.ascontiguousarray(np.asarray(self.mean, dtype=np.float32).reshape(-1))
        std = np.ascontiguousarray(np.asarray(self.std, dtype=np.float32).reshape(-1))
        if mean.shape != std.shape:
            raise ValueError(f"mean and std must hold one number per channel and be of equal length, got "
                             f"{mean.size} and {std.size}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("normalization needs finite mean and std with std > 0")
        for name in ("scaling_factor", "multiplier"):
            value = getattr(self, name)
            if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not (
                math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    @classmethod
    def scaling(cls, factor: float, channels: int) -> "Normalization":
        """``x * factor`` (DiT's 0.18215, MAR's 0.2325, a model's scaling_factor) for ``channels`` channels."""
        return cls(factor, np.zeros(channels), np.ones(channels))

    @classmethod
    def from_stats(cls, stats, *, scaling_factor: float = 1.0, multiplier: float = 1.0) -> "Normalization":
        """Normalise with stats from elsewhere.

        ``stats``: a mapping with ``"mean"`` and ``"std"`` (lists, arrays or
        tensors of one number per channel, any shape: LightningDiT's
        ``latents_stats.pt`` holds (1, C, 1, 1); load it with
        ``latentstore.torch.load_stats``), a ``.json`` or ``.npz`` file holding
        those two entries, or a store (its own per-channel stats:
        population std over every valid sample).
        """
        metadata = getattr(stats, "metadata", None)
        if metadata is not None:
            if metadata.stats is None:
                raise ValueError("this store has no per-channel stats yet (it is not finalized)")
            stats = metadata.stats
        elif isinstance(stats, (str, os.PathLike)):
            stats = _read_stats_file(stats)
        if not isinstance(stats, Mapping):
            raise TypeError(f"stats must be a mapping with 'mean' and 'std', a .json/.npz file or a store, "
                            f"got {type(stats).__name__}")
        if "mean" not in stats or "std" not in stats:
            raise ValueError(f"stats must hold 'mean' and 'std', got {sorted(stats)}")
        return cls(scaling_factor, channel_values(stats["mean"]), channel_values(stats["std"]), multiplier)


def channel_values(values) -> np.ndarray:
    """A torch tensor, array or list as float32 numbers (tensors through their own .numpy())."""
    to_numpy = getattr(values, "numpy", None)
    if callable(to_numpy):
        values = values.detach().cpu().numpy() if hasattr(values, "detach") else to_numpy()
    return np.asarray(values, dtype=np.float32)


def _read_stats_file(path) -> dict:
    path = os.fspath(path)
    try:
        if path.endswith(".npz"):
            with np.load(path) as data:
                return {key: data[key] for key in data.files}
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read stats from {path}: {exc}; pass a .json or .npz with 'mean' and 'std' "
                         "(a torch .pt file: latentstore.torch.load_stats)") from exc


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
    source_pixels: int = 0,
) -> None:
    """Dequantize rows scattered over mapped chunks into ``out`` (n, C, ...).

    ``source_pixels``: codes per channel in a stored row, when rows are
    padded beyond the output's pixels (a bucketed store's (C, max_tokens) rows).
    """
    n = out.shape[0]
    if n == 0:
        return
    # The kernel walks (channel, pixel); a 2-D latent is D channels of one
    # pixel when each channel has its own scale or normalisation, else one
    # channel of D pixels (the fast, vectorised layout). Padded rows keep
    # their channels apart.
    per_channel = scale_bits is not None and scale_bits.shape[1] > 1
    padded = source_pixels not in (0, int(np.prod(out.shape[2:])))
    channels = out.shape[1] if out.ndim > 2 or per_channel or normalization is not None or padded else 1
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
            multiplier=float(normalization.multiplier),
        )
    _kernels.gather_dequantize(
        chunk_addresses,
        chunk_rows,
        rows,
        scale_bits if scale_bits is not None else np.zeros((1, 1), np.uint16),
        lut,
        out3,
        num_threads=threads_for(out.nbytes, num_threads),
        source_pixels=source_pixels if padded else 0,
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
