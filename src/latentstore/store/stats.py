"""Per-channel statistics of dequantized latents, accumulated exactly.

A dequantized value is float32(q) * float32(s), an exact product, so sums of
codes in integers, weighted by the scales in float64, give the moments
without a float32 pass over the data.
"""

import numpy as np


class ChannelMoments:
    """Running count, sum, sum of squares, min and max per channel."""

    def __init__(self, channels: int):
        self.channels = channels
        self.count = 0
        self.sum = np.zeros(channels)
        self.sumsq = np.zeros(channels)
        self.min = np.full(channels, np.inf)
        self.max = np.full(channels, -np.inf)

    def add_codes(self, q: np.ndarray, scales: np.ndarray | None, lut: np.ndarray | None = None) -> None:
        """Add samples given as codes (n, C, ...) with scales (n,) / (n, C), or a lookup table."""
        n = q.shape[0]
        if n == 0:
            return
        q = q.reshape(n, self.channels, -1)
        if lut is not None:
            values = lut[q.view(np.uint8)].astype(np.float64)
            self.add_values(values)
            return
        if scales is None:
            raise ValueError("absmax codes need their scales")
        s = scales.astype(np.float64).reshape(n, -1)
        q32 = q.astype(np.int32)
        code_sum = q32.sum(axis=2, dtype=np.int64)
        code_sumsq = (q32 * q32).sum(axis=2, dtype=np.int64)
        self.sum += (code_sum * s).sum(axis=0)
        self.sumsq += (code_sumsq * s * s).sum(axis=0)
        # min/max of q*s: the extreme code times a positive scale.
        self.min = np.minimum(self.min, (q32.min(axis=2) * s).min(axis=0))
        self.max = np.maximum(self.max, (q32.max(axis=2) * s).max(axis=0))
        self.count += n * q.shape[2]

    def add_values(self, values: np.ndarray) -> None:
        """Add float latents (n, C, ...)."""
        n = values.shape[0]
        if n == 0:
            return
        v = values.reshape(n, self.channels, -1).astype(np.float64)
        self.sum += v.sum(axis=(0, 2))
        self.sumsq += (v * v).sum(axis=(0, 2))
        self.min = np.minimum(self.min, v.min(axis=(0, 2)))
        self.max = np.maximum(self.max, v.max(axis=(0, 2)))
        self.count += n * v.shape[2]

    @property
    def mean(self) -> np.ndarray:
        return self.sum / max(self.count, 1)

    @property
    def std(self) -> np.ndarray:
        var = self.sumsq / max(self.count, 1) - self.mean**2
        return np.sqrt(np.maximum(var, 0.0))

    def to_dict(self) -> dict | None:
        """The ``stats`` metadata entry, or None when no valid sample was seen."""
        if self.count == 0:
            return None
        return {
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "min": self.min.tolist(),
            "max": self.max.tolist(),
            "count": int(self.count),
        }
