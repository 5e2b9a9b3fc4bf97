"""latentstore: compressed autoencoder latents in Zarr v3, read at memory speed.

>>> import latentstore
>>> store = latentstore.open("imagenet-dcae.zarr")
>>> latents, labels = store.read([3, 1, 4, 1, 5])

The read path (``open``, ``read``, ``batches``) needs numpy alone and never
imports torch; encoding and the PyTorch loader live in modules that import
their heavy dependencies themselves.
"""

from latentstore._version import __version__
from latentstore.errors import (
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
from latentstore.format import FORMAT_VERSION, QuantSpec, StoreMetadata
from latentstore.quantization.kernels import Normalization, dequantize, quantize
from latentstore.quantization.threads import (
    get_num_threads,
    set_num_threads,
    thread_budget,
)
from latentstore.store.reader import LatentStore, open
from latentstore.store.writer import StoreWriter, create


def kernels_info() -> str:
    """Which compiled kernels are active and the thread budget, e.g.
    'compiled Cython kernels (avx2, OpenMP, up to 2 threads: 2 cores)'."""
    from latentstore.quantization._native import kernels, variant

    if kernels.OPENMP:
        try:
            budget = thread_budget()
        except ValueError as exc:  # a bad LATENTSTORE_NUM_THREADS or OMP_NUM_THREADS
            return f"compiled Cython kernels ({variant}, OpenMP; thread budget: {exc})"
        threads = f"OpenMP, up to {budget.threads} thread{'s' if budget.threads > 1 else ''}: {budget.reason}"
    else:
        threads = "single-threaded, no OpenMP"
    return f"compiled Cython kernels ({variant}, {threads})"


def decode(store, indices, **options):
    """Decode samples of a store back to uint8 images (n, H, W, 3) with its recorded model (a list
    of (H_i, W_i, 3) images when a bucketed store's samples have several shapes); see
    :func:`latentstore.encoding.decoding.decode` (needs the ``encode`` extra)."""
    from latentstore.encoding.decoding import decode as _decode

    return _decode(store, indices, **options)


def encode(source, out, **options):
    """Encode an image collection into a store; see :func:`latentstore.encoding.pipeline.encode`."""
    from latentstore.encoding.pipeline import encode as _encode

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
    "decode",
    "dequantize",
    "encode",
    "get_num_threads",
    "kernels_info",
    "open",
    "quantize",
    "set_num_threads",
    "thread_budget",
]
