"""``latentstore import-pt``: a ``torch.save``d list of latent dicts (the Imagenet.3GB layout).

The file holds one Python list of dicts ``{'id', 'latent', 'label'}``, each
``latent`` a uint8 tensor (32, 8, 8 for Imagenet.3GB) quantized with one
global affine map: clamp to [-6.5, 6.5], ``round((z + 6.5) / 13 * 255)``.
The codes are copied unchanged into an ``affine`` store (lossless), or
requantized to per-sample absmax int8 with ``requantize=True``.

The file is read with ``torch.load(weights_only=True)`` only: a file that
needs arbitrary unpickling (which can run any code) is refused. Tensors are
memory-mapped from the file where torch allows it (``mmap=True``), and
records are dropped chunk by chunk once written, so the import never holds a
second full copy of the data.
"""

import os
import pickle
import warnings
import zipfile
from pathlib import Path

import numpy as np

from latentstore.errors import SourceError
from latentstore.interop._common import (
    ImportReport,
    affine_range,
    affine_spec,
    run_import,
)

#: Imagenet.3GB's quantization range: clamp to [-6.5, 6.5], 255 steps.
IMAGENET_3GB_RANGE = (-6.5, 6.5)
FORMAT_NAME = "torch.save list of {'id', 'latent', 'label'} dicts (Imagenet.3GB layout)"



def load_records(path, *, mmap: bool = True) -> list:
    """``torch.load(path, weights_only=True)``, with errors that say what to do.

    ``mmap`` memory-maps the tensor data (only possible for the zip format
    that ``torch.save`` writes by default; older files are read normally).
    Raises SourceError for a missing or unreadable file, and for one that
    needs arbitrary unpickling, which is never attempted.
    """
    import torch

    path = Path(path)
    if not path.exists():
        raise SourceError(f"no file at {path}; pass the .pt file written by torch.save")
    if not path.is_file():
        raise SourceError(f"{path} is not a regular file (a directory, FIFO or device); pass the .pt file written by torch.save")
    mmap = mmap and zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():
            # Files pickled with another protocol than torch's own 2 load fine
            # (or are refused below); torch's warning about it is noise here.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SourceError(
            f"refusing to load {path}: it needs arbitrary unpickling, which can run any code "
            f"(torch.load(weights_only=True) said: {reason}). Latent files hold only lists, dicts, "
            "strings, numbers and tensors; if you trust this file, load it yourself with "
            "torch.load(weights_only=False) and torch.save the plain list of dicts again"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise SourceError(f"cannot read {path} as a torch.save file: {exc}") from exc


def _scalar(value):
    """A Python int or str out of a record field (which may be a 0-d tensor)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


class RecordList:
    """Row access to a list of latent dicts: codes, labels and ids of a range of samples."""

    def __init__(self, records, path):
        if not isinstance(records, (list, tuple)) or not records:
            raise SourceError(
                f"{path} holds {type(records).__name__}"
                + (" (empty)" if isinstance(records, (list, tuple)) else "")
                + ", expected a non-empty list of dicts {'id', 'latent' (uint8 tensor), 'label'}"
            )
        self.records = records if isinstance(records, list) else list(records)
        self.path = path
        first = self._record(0)
        latent = first["latent"]
        self.dtype = getattr(latent, "dtype", None)
        self.latent_shape = tuple(getattr(latent, "shape", ()))
        if str(self.dtype) != "torch.uint8" or not self.latent_shape or 0 in self.latent_shape:
            raise SourceError(
                f"record 0 of {path} has a latent of {self.dtype} {self.latent_shape}, expected a uint8 tensor "
                "(C, H, W) with no empty axis; this importer copies uint8 codes of a global affine quantization"
            )
        self.has_labels = "label" in first
        self.has_ids = "id" in first

    def __len__(self) -> int:
        return len(self.records)

    def _record(self, i: int) -> dict:
        record = self.records[i]
        if not isinstance(record, dict) or "latent" not in record:
            raise SourceError(f"record {i} of {self.path} is not a dict with a 'latent' entry: {type(record).__name__}")
        return record

    def read(self, start: int, stop: int):
        """(uint8 codes (n, C, H, W), int labels or None, id strings or None) of records [start, stop).

        The records are dropped from the list afterwards, freeing their memory.
        """
        import torch

        block = [self._record(i) for i in range(start, stop)]
        latents = [r["latent"] for r in block]
        kinds = {(t.dtype, tuple(t.shape)) for t in latents}
        if kinds != {(torch.uint8, self.latent_shape)}:
            want = (torch.uint8, self.latent_shape)
            bad = next(i for i, t in enumerate(latents) if (t.dtype, tuple(t.shape)) != want)
            t = latents[bad]
            raise SourceError(
                f"record {start + bad} of {self.path} has a latent of {t.dtype} {tuple(t.shape)}; "
                f"every latent must be torch.uint8 {self.latent_shape} like record 0"
            )
        codes = torch.stack(latents).numpy()
        try:
            labels = np.array([int(_scalar(r["label"])) for r in block], dtype=np.int64) if self.has_labels else None
            ids = [str(_scalar(r["id"])) for r in block] if self.has_ids else None
        except KeyError as exc:
            bad = next(i for i, r in enumerate(block) if exc.args[0] not in r)
            raise SourceError(f"record {start + bad} of {self.path} has no {exc.args[0]!r} entry, unlike record 0") from None
        except (TypeError, ValueError) as exc:
            raise SourceError(f"a label between records {start} and {stop} of {self.path} is not an integer: {exc}") from None
        self.records[start:stop] = [None] * (stop - start)
        return codes, labels, ids


def read_classes(path) -> list[str]:
    """Class names from a text file, one per line, in label order."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise SourceError(f"cannot read the class list {path}: {exc}") from exc
    return [line.strip() for line in lines if line.strip()]


def import_pt(
    path,
    out,
    *,
    value_range=IMAGENET_3GB_RANGE,
    requantize: bool = False,
    granularity: str = "sample",
    classes=None,
    mmap: bool = True,
    chunk_samples: int | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> ImportReport:
    """Import a ``torch.save``d list of latent dicts into a new store at ``out``.

    ``value_range`` (low, high) is the affine map the codes were made with
    (code 0 -> low, 255 -> high); the default is Imagenet.3GB's. Without
    ``requantize`` the store keeps the uint8 codes under that map
    (``store.read`` then returns float32(q * scale + low), evaluated in
    float64); with it, per-sample (``granularity="sample"``) or per-channel
    absmax int8, and the report carries the error that added. ``classes``
    names the labels. An interrupted import resumes when rerun with the same
    arguments.
    """

    source_quant = affine_spec(*value_range)
    path = Path(path)
    records = RecordList(load_records(path, mmap=mmap), path)
    source = {
        "format": FORMAT_NAME,
        "path": str(path.resolve()),
        "bytes": os.path.getsize(path),
        "affine_range": affine_range(source_quant),
    }

    return run_import(
        out, records, source_quant=source_quant, requantize=requantize, progress=progress, description="import-pt",
        chunk_samples=chunk_samples, granularity=granularity, classes=classes, source=source, ids=records.has_ids,
        overwrite=overwrite,
    )
