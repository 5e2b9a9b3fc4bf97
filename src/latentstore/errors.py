"""The exceptions latentstore raises.

Every error derives from :class:`LatentStoreError`, and also from the builtin
exception a caller would naturally catch (``ValueError``, ``FileNotFoundError``,
...), so ``except ValueError`` keeps working. Messages say what went wrong and
what to do next.

Every error survives :mod:`pickle` (DataLoader workers, torchrun ranks, process
pools) with its type, message and attributes. Errors whose constructor takes
other arguments than the message define ``__reduce__`` to rebuild themselves
from those arguments; pickling ``args`` alone would call the constructor with
the finished message (a ``TypeError``, or a message prefixed twice).
"""

__all__ = [
    "LatentStoreError",
    "StoreNotFoundError",
    "StoreExistsError",
    "FormatError",
    "FormatVersionError",
    "IncompatibleStoreError",
    "CorruptChunkError",
    "UnreadableFileError",
    "StoreWriteError",
    "TransferError",
    "InvalidSampleError",
    "NonFiniteError",
    "ScaleOverflowError",
    "ModelLoadError",
    "SourceError",
    "ImageDecodeError",
]


def _state(exc: BaseException) -> dict:
    """What ``__setstate__`` restores after the constructor has run again.

    The instance ``__dict__`` (attributes, ``__notes__``) and ``args``, so an
    error whose ``args`` were changed after it was raised keeps them.
    """
    state = dict(exc.__dict__)
    state["args"] = exc.args
    return state


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

    def __reduce__(self):
        return type(self), (self.array, self.chunk, self.reason), _state(self)


class UnreadableFileError(LatentStoreError, OSError):
    """A path that must be a regular file within a size cap is not: a directory,
    FIFO, device, symlink loop, unreadable or too large. ``reason`` says which."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):
        return type(self), (self.path, self.reason), _state(self)


class StoreWriteError(LatentStoreError, OSError):
    """A chunk could not be written (disk full, quota, file size limit). The
    chunks written before are intact and a rerun resumes after them."""

    def __init__(self, path: str, chunk: int, reason: str):
        self.path = path
        self.chunk = chunk
        self.reason = reason
        super().__init__(
            f"cannot write chunk {chunk} of {path}: {reason}; free space (or move the store), then rerun "
            "the same command: the finished chunks are kept and the run resumes after them"
        )

    def __reduce__(self):
        return type(self), (self.path, self.chunk, self.reason), _state(self)


class TransferError(LatentStoreError, OSError):
    """A file could not be copied between a store and its remote copy (the network or the
    server failed); the files copied before it are in place and a rerun resumes."""

    def __init__(self, key: str, source: str, reason: str):
        self.key = key
        self.source = source
        self.reason = reason
        super().__init__(f"cannot copy {key} from {source}: {reason}; check the connection and rerun: "
                         "what was copied is kept and verified")

    def __reduce__(self):
        return type(self), (self.key, self.source, self.reason), _state(self)


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

    def __reduce__(self):
        # The finished message is passed back as ``message``, so it is used as is.
        message = self.args[0] if len(self.args) == 1 else None
        return type(self), (self.sample, message), _state(self)


class ScaleOverflowError(LatentStoreError, OverflowError):
    """A quantization scale does not fit in float16."""


class ModelLoadError(LatentStoreError, RuntimeError):
    """An autoencoder could not be loaded."""


class SourceError(LatentStoreError, ValueError):
    """An image source could not be enumerated or a label could not be resolved."""


class ImageDecodeError(SourceError):
    """An image file is damaged, empty or not an image; the sample cannot be encoded.

    ``source`` names the file (or ``None`` for in-memory data) and ``reason``
    says what the decoder reported.
    """

    def __init__(self, reason: str, source: str | None = None):
        self.reason = reason
        self.source = source
        what = f"image {source!r}" if source is not None else "in-memory image"
        super().__init__(
            f"cannot decode {what}: {reason}; replace the file or leave it out of the dataset"
        )

    def __reduce__(self):
        return type(self), (self.reason, self.source), _state(self)
