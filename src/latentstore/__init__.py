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
from ._threads import get_num_threads, set_num_threads
from .quantization import Normalization, dequantize, quantize
from .store import LatentStore, open
from .writer import StoreWriter, create


def kernels_info() -> str:
    """Which compiled kernels are active, e.g. 'Cython kernels with OpenMP (2 threads)'."""
    from ._native import kernels, variant

    threads = f"OpenMP, up to {get_num_threads()} threads" if kernels.OPENMP else "single-threaded, no OpenMP"
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
]
