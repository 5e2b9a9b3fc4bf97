"""The exceptions latentstore raises.

Every error derives from :class:`LatentStoreError`, and also from the builtin
exception a caller would naturally catch (``ValueError``, ``FileNotFoundError``,
...), so ``except ValueError`` keeps working. Messages say what went wrong and
what to do next.
"""


class LatentStoreError(Exception):
    """Base class of every error raised by latentstore."""


class StoreNotFoundError(LatentStoreError, FileNotFoundError):
    """No latent store at the given path or URL."""


class StoreExistsError(LatentStoreError, FileExistsError):
    """A store already exists where a new one was to be created."""


class FormatError(LatentStoreError, ValueError):
    """The metadata or layout of a store does not match format v1."""


class FormatVersionError(FormatError):
    """The store was written by a newer format version than this library reads."""


class IncompatibleStoreError(LatentStoreError, ValueError):
    """An existing store was made with other settings (model, shape, source...)."""


class CorruptChunkError(LatentStoreError, OSError):
    """A chunk file is missing, truncated or fails its checksum."""

    def __init__(self, array: str, chunk: int, reason: str):
        self.array = array
        self.chunk = chunk
        self.reason = reason
        super().__init__(f"{array!r} chunk {chunk}: {reason}")


class InvalidSampleError(LatentStoreError, ValueError):
    """A requested sample is marked invalid (missing, failed or non-finite)."""


class NonFiniteError(LatentStoreError, ValueError):
    """Input latents contain NaN or infinity."""

    def __init__(self, sample: int, message: str | None = None):
        self.sample = sample
        super().__init__(
            message
            or f"sample {sample} contains NaN or infinity; non-finite latents cannot "
            "be quantized (mark the sample invalid or fix the encoder output)"
        )


class ScaleOverflowError(LatentStoreError, OverflowError):
    """A quantization scale does not fit in float16."""


class ModelLoadError(LatentStoreError, RuntimeError):
    """An autoencoder could not be loaded."""


class SourceError(LatentStoreError, ValueError):
    """An image source could not be enumerated or a label could not be resolved."""
