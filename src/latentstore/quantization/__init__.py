"""Quantization: the absmax int8 math of ``docs/format.md``, bit for bit.

- :mod:`.kernels`: the numpy-facing functions (``quantize``, ``dequantize``,
  the fused gather) over the compiled loops in ``ext/``;
- :mod:`.reference`: the same math in plain numpy, which the tests compare
  with the kernels byte for byte;
- :mod:`.torch_quant`: the torch twin, for quantizing and dequantizing on a
  GPU (imports torch; nothing here imports it);
- :mod:`.threads`: how many threads a kernel call may use.

This layer imports nothing of latentstore but ``errors`` and ``format``.
"""

from latentstore.quantization.kernels import (
    CODE_MAX,
    Normalization,
    dequantize,
    gather_dequantize,
    quantize,
)
from latentstore.quantization.threads import (
    get_num_threads,
    set_num_threads,
    thread_budget,
)

__all__ = [
    "CODE_MAX",
    "Normalization",
    "dequantize",
    "gather_dequantize",
    "get_num_threads",
    "quantize",
    "set_num_threads",
    "thread_budget",
]
