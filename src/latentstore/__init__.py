"""latentstore: compressed autoencoder latents in Zarr v3, read at memory speed.

>>> import latentstore
>>> store = latentstore.open("imagenet-dcae.zarr")
>>> latents, labels = store.read([3, 1, 4, 1, 5])

The read path (``open``, ``read``, ``batches``) needs numpy alone and never
imports torch; encoding and the PyTorch loader live in modules that import
their heavy dependencies themselves.
"""

from ._version import __version__
from .errors import (
    CorruptChunkError,
    FormatError,
    FormatVersionError,
    IncompatibleStoreError,
    InvalidSampleError,
    LatentStoreError,
    NonFiniteError,
    ScaleOverflowError,
    StoreExistsError,
    StoreNotFoundError,
)
from .format import FORMAT_VERSION, QuantSpec, StoreMetadata
from ._threads import get_num_threads, set_num_threads, thread_budget
from .quantization import Normalization, dequantize, quantize
from .store import LatentStore, open
from .writer import StoreWriter, create


def kernels_info() -> str:
    """Which compiled kernels are active and the thread budget, e.g.
    'compiled Cython kernels (avx2, OpenMP, up to 2 threads: 2 cores)'."""
    from ._native import kernels, variant

    if kernels.OPENMP:
        try:
            budget = thread_budget()
        except ValueError as exc:  # a bad LATENTSTORE_NUM_THREADS or OMP_NUM_THREADS
            return f"compiled Cython kernels ({variant}, OpenMP; thread budget: {exc})"
        threads = f"OpenMP, up to {budget.threads} thread{'s' if budget.threads > 1 else ''}: {budget.reason}"
    else:
        threads = "single-threaded, no OpenMP"
    return f"compiled Cython kernels ({variant}, {threads})"


def encode(source, out, **options):
    """Encode an image collection into a store; see :func:`latentstore.pipeline.encode`."""
    from .pipeline import encode as _encode

    return _encode(source, out, **options)


__all__ = [
    "FORMAT_VERSION",
    "CorruptChunkError",
    "FormatError",
    "FormatVersionError",
    "IncompatibleStoreError",
    "InvalidSampleError",
    "LatentStore",
    "LatentStoreError",
    "Normalization",
    "NonFiniteError",
    "QuantSpec",
    "ScaleOverflowError",
    "StoreExistsError",
    "StoreMetadata",
    "StoreNotFoundError",
    "StoreWriter",
    "__version__",
    "create",
    "dequantize",
    "encode",
    "get_num_threads",
    "kernels_info",
    "open",
    "quantize",
    "set_num_threads",
    "thread_budget",
]
