"""Every error in ``latentstore.errors`` survives pickling (DataLoader workers, torchrun ranks) unchanged."""

import inspect
import pickle

import pytest

import latentstore.errors as errors
from latentstore.errors import (
    CorruptChunkError,
    FormatError,
    FormatVersionError,
    ImageDecodeError,
    IncompatibleStoreError,
    InvalidSampleError,
    LatentStoreError,
    ModelLoadError,
    NonFiniteError,
    ScaleOverflowError,
    SourceError,
    StoreExistsError,
    StoreNotFoundError,
    StoreWriteError,
    TransferError,
    UnreadableFileError,
)

PROTOCOLS = sorted({pickle.DEFAULT_PROTOCOL, pickle.HIGHEST_PROTOCOL})


def _module_exceptions() -> dict[str, type]:
    """The exception classes defined (not imported) in ``latentstore.errors``."""
    return {
        name: cls
        for name, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, BaseException) and cls.__module__ == errors.__name__
    }


# One or more realistic instances of every class, as latentstore raises them.
CASES = {
    "LatentStoreError": [LatentStoreError("rank 0: the source has no images; check the path")],
    "StoreNotFoundError": [
        StoreNotFoundError("no latent store at /data/in1k (no zarr.json in it); check the path"),
        StoreNotFoundError(2, "No such file or directory", "/data/in1k/zarr.json"),
    ],
    "StoreExistsError": [
        StoreExistsError("/data/out already exists and is not an empty directory; pass overwrite=True to replace it")
    ],
    "FormatError": [FormatError("metadata: expected a 'quant' entry, got ['latent_shape', 'num_samples']")],
    "FormatVersionError": [
        FormatVersionError(
            "this store has format version 2, but latentstore 0.1.0 reads versions up to 1; "
            "upgrade latentstore (pip install -U latentstore)"
        )
    ],
    "IncompatibleStoreError": [IncompatibleStoreError("the store was made with model 'sd-vae-ft-mse', not 'flux-vae'")],
    "CorruptChunkError": [
        CorruptChunkError(
            "latents",
            2,
            "chunk file is 100 bytes, expected 4096; run 'latentstore verify' on the store to list every damaged chunk",
        ),
        CorruptChunkError("scales", 0, "checksum mismatch"),
    ],
    "UnreadableFileError": [
        UnreadableFileError("/data/train/x.jpg", "is a FIFO (named pipe), not a regular file"),
        UnreadableFileError("/data/s.zarr/zarr.json", "is 1,000,000,000 bytes, more than the 67,108,864 this file may have"),
    ],
    "StoreWriteError": [StoreWriteError("/data/in1k.zarr", 12, "No space left on device")],
    "TransferError": [TransferError("latents/c/3/0/0/0", "s3://bucket/in1k.zarr", "connection refused")],
    "InvalidSampleError": [InvalidSampleError("sample 17 is marked invalid (decode failed)")],
    "NonFiniteError": [
        NonFiniteError(5),
        NonFiniteError(0, "sample 0 of batch 3 holds NaN; fix the encoder output"),
    ],
    "ScaleOverflowError": [
        ScaleOverflowError(
            "sample 3 has values beyond 8.3e+06, whose quantization scale overflows float16; check the encoder output"
        )
    ],
    "ModelLoadError": [ModelLoadError("cannot read '/models/vae.safetensors': truncated; re-download the model")],
    "SourceError": [SourceError("the store /data/in1k records no class names; pass a store made from an ImageFolder tree")],
    "ImageDecodeError": [
        ImageDecodeError("image file is truncated", "/data/train/n01440764/broken.JPEG"),
        ImageDecodeError("cannot identify image file"),
    ],
}

ALL_CASES = [pytest.param(exc, id=f"{name}-{i}") for name, excs in CASES.items() for i, exc in enumerate(excs)]


def _public_attributes(exc: BaseException) -> dict[str, object]:
    """Every public, non-method attribute of ``exc`` (``args``, OSError's fields, the class's own)."""
    attrs = {}
    for name in dir(exc):
        if name.startswith("_"):
            continue
        try:
            value = getattr(exc, name)
        except AttributeError:
            continue
        if not callable(value):
            attrs[name] = value
    return attrs


def test_every_class_has_a_case():
    assert set(CASES) == set(_module_exceptions())
    for name, excs in CASES.items():
        assert all(type(exc) is _module_exceptions()[name] for exc in excs)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("exc", ALL_CASES)
def test_pickle_round_trip(exc, protocol):
    copy = pickle.loads(pickle.dumps(exc, protocol=protocol))
    assert type(copy) is type(exc)
    assert str(copy) == str(exc)
    assert copy.args == exc.args
    assert _public_attributes(copy) == _public_attributes(exc)
    assert copy.__dict__ == exc.__dict__


def test_attributes_survive_by_name():
    corrupt = pickle.loads(pickle.dumps(CASES["CorruptChunkError"][0]))
    assert (corrupt.array, corrupt.chunk) == ("latents", 2)
    assert corrupt.reason.startswith("chunk file is 100 bytes")
    assert str(corrupt).startswith("'latents' chunk 2: chunk file is 100 bytes")

    nonfinite = pickle.loads(pickle.dumps(NonFiniteError(5)))
    assert nonfinite.sample == 5
    assert str(nonfinite).startswith("sample 5 contains NaN or infinity;")
    assert "sample sample" not in str(nonfinite)

    decode = pickle.loads(pickle.dumps(CASES["ImageDecodeError"][0]))
    assert (decode.reason, decode.source) == ("image file is truncated", "/data/train/n01440764/broken.JPEG")
    assert pickle.loads(pickle.dumps(CASES["ImageDecodeError"][1])).source is None


def test_pickling_twice_is_stable():
    for excs in CASES.values():
        for exc in excs:
            twice = pickle.loads(pickle.dumps(pickle.loads(pickle.dumps(exc))))
            assert str(twice) == str(exc)
            assert twice.args == exc.args


def test_notes_and_changed_args_survive():
    exc = CorruptChunkError("latents", 1, "checksum mismatch")
    exc.add_note("while reading sample 70")
    copy = pickle.loads(pickle.dumps(exc))
    assert copy.__notes__ == ["while reading sample 70"]

    exc = NonFiniteError(9)
    exc.args = ("rank 0: sample 9 contains NaN or infinity",)
    copy = pickle.loads(pickle.dumps(exc))
    assert copy.args == exc.args
    assert str(copy) == "rank 0: sample 9 contains NaN or infinity"
    assert copy.sample == 9


def test_messages_are_unchanged():
    assert str(CorruptChunkError("latents", 2, "checksum mismatch")) == "'latents' chunk 2: checksum mismatch"
    assert str(NonFiniteError(5)) == (
        "sample 5 contains NaN or infinity; non-finite latents cannot be quantized "
        "(mark the sample invalid or fix the encoder output)"
    )
    assert str(NonFiniteError(5, "custom")) == "custom"
    assert str(ImageDecodeError("bad header", "a.png")) == (
        "cannot decode image 'a.png': bad header; replace the file or leave it out of the dataset"
    )
    assert str(ImageDecodeError("bad header")) == (
        "cannot decode in-memory image: bad header; replace the file or leave it out of the dataset"
    )


BUILTIN_BASES = {
    "StoreNotFoundError": FileNotFoundError,
    "StoreExistsError": FileExistsError,
    "FormatError": ValueError,
    "FormatVersionError": FormatError,
    "IncompatibleStoreError": ValueError,
    "CorruptChunkError": OSError,
    "InvalidSampleError": ValueError,
    "NonFiniteError": ValueError,
    "ScaleOverflowError": OverflowError,
    "ModelLoadError": RuntimeError,
    "SourceError": ValueError,
    "UnreadableFileError": OSError,
    "StoreWriteError": OSError,
    "TransferError": OSError,
    "ImageDecodeError": SourceError,
}


@pytest.mark.parametrize("name", sorted(BUILTIN_BASES))
def test_class_hierarchy(name):
    cls = getattr(errors, name)
    assert issubclass(cls, LatentStoreError)
    assert issubclass(cls, BUILTIN_BASES[name])


def test_every_class_except_the_base_has_a_known_base():
    assert set(BUILTIN_BASES) == set(_module_exceptions()) - {"LatentStoreError"}
    assert LatentStoreError.__bases__ == (Exception,)


def test_all_lists_every_exception():
    assert len(errors.__all__) == len(set(errors.__all__))
    assert set(errors.__all__) == set(_module_exceptions())
    for name in errors.__all__:
        assert inspect.isclass(getattr(errors, name))
