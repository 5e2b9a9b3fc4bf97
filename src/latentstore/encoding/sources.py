"""Image collections to encode, each enumerated in a fixed, reproducible order.

A :class:`Source` maps a sample index to ``(raw, label)`` where ``raw`` is the
encoded image file (bytes) ready for :func:`latentstore.encoding.preprocess.load_image`.
Sources are small picklable objects: the sample ids and labels are packed in
numpy buffers, so DataLoader workers share them after ``fork`` without copying
and receive them quickly under ``spawn``; files and Arrow tables are opened
lazily in the process that reads.

A source may also carry per-sample **columns** (captions, numbers, bytes):
``source.columns`` maps each column name to its kind (``"text"``, ``"bytes"``,
``"int64"`` or ``"float64"``) and ``source.read_fields(i)`` returns sample
``i``'s values. The folder sources have none; :class:`MetadataFolderSource`
(``metadata.jsonl`` / ``metadata.csv``), :class:`HFDatasetSource` (``text_column``,
``columns``) and :class:`~latentstore.encoding.shards.WebDatasetSource` (tar
shards: captions, ``.json`` fields) do.

:func:`open_source` picks the right kind for a path.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
import json
import math
import operator
import os
import posixpath
import re
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from latentstore._filesystem import read_regular
from latentstore.errors import FormatError, ImageDecodeError, SourceError
from latentstore.format import ColumnSpec

__all__ = [
    "COLUMN_KINDS",
    "IMAGE_EXTENSIONS",
    "HFDatasetSource",
    "ImageFolderSource",
    "LabeledFolderSource",
    "MetadataFolderSource",
    "Source",
    "UnlabeledFolderSource",
    "open_source",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm"}
)

_SHOWN = 5  # how many offending names an error message lists
#: Bytes an image file may have: far above any photo, far below a /dev/zero.
MAX_IMAGE_FILE_BYTES = 256 << 20
#: The kinds of per-sample column a source may carry, and the Python type of their values.
COLUMN_KINDS = {"text": str, "bytes": bytes, "int64": int, "float64": float}
_INT64 = (-(1 << 63), (1 << 63) - 1)


class _PackedStrings(Sequence):
    """Strings stored as one UTF-8 buffer plus offsets.

    A list of a million ``str`` objects is touched (refcounts) by every read,
    so forked workers slowly copy all of it; this stays shared and pickles as
    two buffers.
    """

    def __init__(self, strings: Iterable[str]):
        # File names that are not UTF-8 arrive surrogate-escaped (PEP 383) and go back unchanged.
        encoded = [s.encode("utf-8", "surrogateescape") for s in strings]
        self._offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(b) for b in encoded], out=self._offsets[1:])
        self._data = b"".join(encoded)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = _check_index(i, len(self))
        return self._data[self._offsets[i] : self._offsets[i + 1]].decode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        head = ", ".join(repr(s) for s in self[:3])
        return f"<{len(self)} ids: {head}{', ...' if len(self) > 3 else ''}>"

    def sha256(self) -> str:
        h = hashlib.sha256(self._offsets.tobytes())
        h.update(self._data)
        return h.hexdigest()


def printable(name: str) -> str:
    """``name`` with the bytes of a non-UTF-8 file name as ``\\xNN`` escapes: safe to print and to store as text.

    (A name that really contains a backslash and "x" followed by two hex digits reads the same; the
    source itself keeps the exact bytes.)
    """
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _check_index(i, n: int) -> int:
    i = operator.index(i)
    if not -n <= i < n:
        raise IndexError(f"sample index {i} is out of range for a source of {n} samples")
    return i % n


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise SourceError(f"limit must be a positive int or None, got {limit!r}")
    return limit


class Source(ABC):
    """A fixed, ordered collection of images with integer labels.

    ``len(source)`` samples; ``source.read(i)`` returns ``(raw, label)``
    where ``raw`` is the image file's bytes and ``label`` an int (-1 where
    unknown); a file that cannot be read raises
    :class:`~latentstore.errors.ImageDecodeError`, like an undecodable one.
    ``ids`` names each sample (a path relative to ``root``, or a row number),
    ``labels`` is an int32 array, ``classes`` the class names by index (or
    ``None``), and ``describe()`` a JSON-able summary that identifies the
    enumeration (kind, root, count and digests of ids and labels).

    ``columns`` maps the name of each per-sample column the source provides to
    its kind, one of :data:`COLUMN_KINDS` (``{}`` for the folder sources; the
    order is the order of the store's columns), and ``read_fields(i)`` returns
    sample ``i``'s values: ``str`` for text, ``bytes``, ``int`` for int64,
    ``float`` for float64 (NaN where a number is missing). A sample whose fields
    are broken (a required caption missing, text that is not UTF-8, an int
    missing) raises :class:`~latentstore.errors.ImageDecodeError` from
    ``read_fields``, and is then invalid like an undecodable image.
    ``describe()`` holds the columns (and the options that chose them) when
    there are any.
    """

    kind: ClassVar[str]
    columns: dict[str, str]

    def __init__(
        self,
        root: str,
        ids: Sequence[str],
        labels: np.ndarray,
        classes: list[str] | None,
        limit: int | None,
    ):
        n = len(ids) if limit is None else min(limit, len(ids))
        if n == 0:
            raise SourceError(
                f"no images found in {root!r} (file types: "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))}); check the path"
            )
        self.root = root
        self.limit = limit
        self.ids: Sequence[str] = _PackedStrings(ids[:n])
        self.labels = np.asarray(labels[:n], dtype=np.int32).copy()
        self.labels.flags.writeable = False
        self.classes = None if classes is None else [str(c) for c in classes]
        self.columns = {}

    def __len__(self) -> int:
        return len(self.ids)

    @abstractmethod
    def read(self, i: int) -> tuple[Any, int]:
        """The raw image (bytes) and label of sample ``i``."""

    def read_fields(self, i: int) -> dict[str, object]:
        """The values of :attr:`columns` for sample ``i``, in their order; ``{}`` without columns."""
        _check_index(i, len(self))
        return {}

    def describe(self) -> dict:
        """A JSON-able description; equal descriptions mean the same enumeration."""
        description = {
            "kind": self.kind,
            "root": self.root,
            "count": len(self),
            "limit": self.limit,
            "num_classes": None if self.classes is None else len(self.classes),
            "ids_sha256": self.ids.sha256(),  # type: ignore[attr-defined]  # a _PackedStrings
            "labels_sha256": hashlib.sha256(self.labels.astype("<i4").tobytes()).hexdigest(),
        }
        if self.columns:  # absent without columns: descriptions stored before columns existed still match
            description["columns"] = dict(self.columns)
        return {**description, **self._describe_extra()}

    def _describe_extra(self) -> dict:
        return {}

    def __repr__(self) -> str:
        classes = "" if self.classes is None else f", {len(self.classes)} classes"
        return f"{type(self).__name__}({self.root!r}, {len(self)} samples{classes})"


def _read_image_file(path: str, missing: str = "the file is gone (deleted since the folder was listed)") -> bytes:
    """The bytes of the image file ``path``; ImageDecodeError (``missing`` when it does not exist)."""
    try:
        return read_regular(path, MAX_IMAGE_FILE_BYTES)
    except FileNotFoundError as e:
        raise ImageDecodeError(missing, path) from e
    except OSError as e:  # UnreadableFileError: a FIFO, device, directory, loop, or too large
        raise ImageDecodeError(getattr(e, "reason", None) or f"cannot read the file: {e.strerror or e}", path) from e


class _FileSource(Source):
    def read(self, i: int) -> tuple[bytes, int]:
        i = _check_index(i, len(self))
        return _read_image_file(os.path.join(self.root, self.ids[i])), int(self.labels[i])


def _column_names(value: str | Sequence[str] | None, what: str) -> list[str] | None:
    """Column names from ``"a,b"`` or ``["a", "b"]`` (stripped, each once); ``None`` stays ``None``."""
    if value is None:
        return None
    if isinstance(value, str):
        names = [n.strip() for n in value.split(",")]
    elif isinstance(value, Sequence) and all(isinstance(n, str) for n in value):
        names = [n.strip() for n in value]
    else:
        raise SourceError(f"{what} must be a comma-separated string or a list of names, got {value!r}")
    if not names or not all(names):
        raise SourceError(f"{what} {value!r} has an empty name; pass names such as 'caption,width'")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise SourceError(f"{what} names {', '.join(map(repr, repeated))} more than once; name each column once")
    return names


_NAME_RULE = "letters, digits, '_', '.' or '-', up to 128, not starting with a digit, '.' or '-'"


def _storable_name(name: str) -> bool:
    """Whether ``name`` can name a store's column (the format's rule)."""
    try:
        ColumnSpec(name, "text")
    except FormatError:
        return False
    return True


def _check_column_name(name: str, what: str) -> str:
    if not _storable_name(name):
        raise SourceError(f"{what} {name!r} cannot name a store column ({_NAME_RULE})")
    return name


def _check_text(value: str, what: str, where: str | None) -> str:
    """``value``, if it can be stored as UTF-8 (a JSON ``\\ud800`` escape cannot)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ImageDecodeError(f"{what} is not valid Unicode (a lone surrogate at character {e.start})", where) from None
    return value


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scan_images(root: str) -> list[str]:
    """Image files under ``root``, recursively, as sorted '/'-separated relative paths.

    Hidden files and folders (a leading '.') are skipped; folders reached
    again through a symlink are not walked twice.
    """
    found: list[str] = []
    seen = set()  # (device, inode) of every folder walked: a symlink loop is walked once
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, root)
        prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        found.extend(prefix + f for f in filenames if not f.startswith(".") and _is_image(f))
    found.sort()
    return found


def _require_dir(root: str, what: str) -> str:
    if not os.path.isdir(root):
        state = "is not a directory" if os.path.exists(root) else "does not exist"
        raise SourceError(f"{what} {root!r} {state}; pass the folder that holds the images")
    return os.path.abspath(root)


def _class_index(names: Iterable[str], class_list: Sequence[str], what: str) -> dict[str, int]:
    index = {str(c): k for k, c in enumerate(class_list)}
    if len(index) != len(class_list):
        raise SourceError("the class list has duplicate names; pass each class once")
    unknown = sorted(set(names) - index.keys())
    if unknown:
        raise SourceError(
            f"{len(unknown)} {what} not in the class list of {len(class_list)} names "
            f"(first: {', '.join(map(repr, unknown[:_SHOWN]))}); pass the class list "
            "the labels were made with"
        )
    return index


class ImageFolderSource(_FileSource):
    """``root/<class>/**/<image>``, as torchvision's ImageFolder.

    The label is the index of the class folder in sorted order (ImageNet train
    gives 0..999), or its index in ``class_list`` when one is given (so a
    folder holding some of the classes keeps the full set's numbering).
    Samples are ordered by relative path; hidden files and folders are skipped.
    """

    kind = "imagefolder"

    def __init__(self, root: str, *, class_list: Sequence[str] | None = None, limit: int | None = None):
        root = _require_dir(root, "image folder")
        limit = _check_limit(limit)
        with os.scandir(root) as it:
            folders = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
        if not folders:
            raise SourceError(
                f"image folder {root!r} has no class folders; use an unlabeled folder "
                "source for a flat folder of images"
            )
        if class_list is None:
            classes, index = folders, {name: k for k, name in enumerate(folders)}
        else:
            classes, index = list(class_list), _class_index(folders, class_list, "class folders are")
        ids: list[str] = []
        labels: list[int] = []
        for name in folders:
            files = _scan_images(os.path.join(root, name))
            ids.extend(f"{name}/{f}" for f in files)
            labels.extend([index[name]] * len(files))
        super().__init__(root, ids, np.array(labels, np.int32), classes, limit)


class UnlabeledFolderSource(_FileSource):
    """Every image under ``root`` (recursively), ordered by relative path, labels -1."""

    kind = "unlabeled"

    def __init__(self, root: str, *, limit: int | None = None):
        root = _require_dir(root, "image folder")
        limit = _check_limit(limit)
        ids = _scan_images(root)
        super().__init__(root, ids, np.full(len(ids), -1, np.int32), None, limit)


def _glob_base(pattern: str) -> str:
    parts = []
    for part in pattern.replace(os.sep, "/").split("/"):
        if glob.has_magic(part):
            break
        parts.append(part)
    return "/".join(parts) or "."


def _read_label_rows(path: str) -> list[tuple[int, str, str]]:
    """(line number, file name, label text) for each non-empty row of a CSV or
    whitespace-separated labels file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise SourceError(f"cannot read labels file {path!r}: {e.strerror or e}") from e
    first = next((line for line in lines if line.strip()), "")
    split = (lambda line: next(csv.reader([line]))) if "," in first else str.split
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        cells = [c.strip() for c in split(line)]
        if len(cells) < 2:
            raise SourceError(
                f"{path}:{number}: expected 'filename,label', got {line!r}; fix or remove the row"
            )
        rows.append((number, cells[0], cells[1]))
    if not rows:
        raise SourceError(f"labels file {path!r} is empty; it needs 'filename,label' rows")
    return rows


def _parse_number(text: str, kind: type = int):
    """``kind(text)`` (int or float), or None where the text is not such a number."""
    try:
        return kind(text)
    except ValueError:
        return None


class LabeledFolderSource(_FileSource):
    """Images in a folder (or matching a glob) labelled by a CSV file.

    Each row is ``filename,label`` (a header row is optional; whitespace
    instead of the comma works too). The file name may be a path relative to
    the folder, a bare file name or a name without extension (as in ImageNet's
    ``LOC_val_solution.csv``). The label is an int or a class name; only its
    first whitespace-separated token is used, so ``n01751748 0 0 10 10`` reads
    as ``n01751748``. Names are mapped through ``class_list`` (e.g. the train
    store's classes), or, without one, numbered in sorted order.

    Samples are the rows, ordered by relative path. A row whose file is
    missing, a duplicate row or an unknown class name raises SourceError;
    image files without a row are left out with a warning.
    """

    kind = "labeled"

    def __init__(
        self,
        root_or_glob: str,
        labels_csv: str,
        class_list: Sequence[str] | None = None,
        *,
        limit: int | None = None,
    ):
        limit = _check_limit(limit)
        if glob.has_magic(root_or_glob):
            base = os.path.abspath(_glob_base(root_or_glob))
            files = sorted(
                os.path.relpath(p, base).replace(os.sep, "/")
                for p in glob.glob(root_or_glob, recursive=True)
                if os.path.isfile(p)
            )
        else:
            base = _require_dir(root_or_glob, "image folder")
            files = _scan_images(base)
        self.labels_file = os.path.abspath(labels_csv)
        rows = _read_label_rows(self.labels_file)
        lookup = _file_lookup(files)

        _, name, label = rows[0]
        if name not in lookup and _parse_number(label.split()[0] if label else "") is None:
            rows = rows[1:]  # a header

        matched: dict[str, tuple[int, str]] = {}
        missing, ambiguous = [], []
        for number, name, label in rows:
            rel = lookup.get(name, "")
            if rel is None:
                ambiguous.append(name)
            elif not rel:
                missing.append(name)
            elif rel in matched:
                raise SourceError(
                    f"{self.labels_file}:{number}: {name!r} is the same file as the row on "
                    f"line {matched[rel][0]}; remove the duplicate row"
                )
            else:
                token = label.split()[0] if label.split() else ""
                if not token:
                    raise SourceError(f"{self.labels_file}:{number}: the label of {name!r} is empty")
                matched[rel] = (number, token)
        if ambiguous:
            raise SourceError(
                f"{len(ambiguous)} names in {self.labels_file} match more than one file "
                f"(first: {', '.join(map(repr, ambiguous[:_SHOWN]))}); use paths relative "
                f"to {base!r}"
            )
        if missing:
            raise SourceError(
                f"{len(missing)} files named in {self.labels_file} are not in {root_or_glob!r} "
                f"(first: {', '.join(map(repr, missing[:_SHOWN]))}); check the folder and "
                "the labels file belong together"
            )
        unlisted = len(files) - len(matched)
        if unlisted:
            warnings.warn(
                f"{unlisted} image files in {root_or_glob!r} have no row in "
                f"{self.labels_file} and are left out",
                stacklevel=2,
            )

        ids = sorted(matched)
        tokens = [matched[rel][1] for rel in ids]
        numbers = [_parse_number(t) for t in tokens]
        names = sorted({t for t, v in zip(tokens, numbers) if v is None})
        if names:
            classes = list(class_list) if class_list is not None else names
            index = _class_index(names, classes, "label names are")
        else:
            classes = None if class_list is None else list(class_list)  # type: ignore[assignment]
            index = {}
        top = len(classes) if classes is not None else None
        labels = np.empty(len(ids), np.int32)
        for k, (rel, token, value) in enumerate(zip(ids, tokens, numbers)):
            if value is None:
                value = index[token]
            elif value < -1 or (top is not None and value >= top):
                raise SourceError(
                    f"{self.labels_file}:{matched[rel][0]}: label {value} is out of range "
                    f"for {top if top is not None else 'any'} classes; labels run from 0 "
                    "(or -1 for unknown)"
                )
            labels[k] = value
        super().__init__(base, ids, labels, classes, limit)

    def _describe_extra(self) -> dict:
        return {"labels_file": self.labels_file}


def _file_lookup(files: list[str]) -> dict[str, str | None]:
    """Relative path, file name and file name without extension -> relative
    path (``None`` where a short name fits several files)."""
    lookup: dict[str, str | None] = {}
    for short in (lambda r: os.path.splitext(os.path.basename(r))[0], os.path.basename):
        for rel in files:
            key = short(rel)
            lookup[key] = None if key in lookup and lookup[key] != rel else rel
    lookup.update((rel, rel) for rel in files)
    return lookup


MANIFESTS = ("metadata.jsonl", "metadata.csv")
#: Bytes a metadata.jsonl or metadata.csv may have (read whole, and held parsed, in memory).
MAX_MANIFEST_BYTES = 1 << 30
_ABSENT = object()  # a field a JSONL row does not have


def _manifest_rows(path: str, raw: bytes) -> tuple[list[str], list[tuple[int, dict]]]:
    """The field names (in order of first appearance) and (line number, row) of each
    non-blank row of a ``metadata.jsonl`` or ``metadata.csv``."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        where = raw[: e.start].count(b"\n") + 1
        raise SourceError(f"{path}:{where}: not valid UTF-8 (byte {e.start}); save the manifest as UTF-8") from None
    names: dict[str, None] = {}
    rows: list[tuple[int, dict]] = []
    if path.endswith(".jsonl"):
        for number, line in enumerate(text.split("\n"), 1):  # not splitlines: JSON strings may hold U+2028
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise SourceError(f"{path}:{number}: not JSON ({e.msg} at column {e.colno}); fix or remove the row") from None
            except RecursionError:
                raise SourceError(f"{path}:{number}: the JSON is nested too deeply; fix or remove the row") from None
            if not isinstance(row, dict):
                raise SourceError(f"{path}:{number}: expected a JSON object with a file_name, got {type(row).__name__}")
            names.update(dict.fromkeys(row))
            rows.append((number, row))
    else:
        reader = csv.reader(io.StringIO(text, newline=""))
        try:
            header = [h.strip() for h in next(reader, [])]
            repeated = sorted({h for h in header if header.count(h) > 1})
            if repeated:
                raise SourceError(f"{path}:1: the header names {', '.join(map(repr, repeated))} more than once")
            names.update(dict.fromkeys(header))
            for cells in reader:
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise SourceError(
                        f"{path}:{reader.line_num}: {len(cells)} cells where the header has {len(header)}; "
                        "fix the row (quote cells that hold commas)"
                    )
                rows.append((reader.line_num, dict(zip(header, cells))))
        except csv.Error as e:
            raise SourceError(f"{path}:{reader.line_num}: {e}; fix the row") from None
    if "file_name" not in names:
        raise SourceError(
            f"{path} has no file_name field (fields: {', '.join(map(repr, names)) or 'none'}); every row "
            "names its image with a file_name relative to the folder"
        )
    if not rows:
        raise SourceError(f"{path} has no rows; add one per image, with its file_name")
    return list(names), rows


def _manifest_path(name) -> str | None:
    """``name`` as a normalised '/'-separated path inside the folder, or ``None``."""
    if not isinstance(name, str) or not name.strip() or "\0" in name:
        return None
    rel = posixpath.normpath(name)
    if rel.startswith("/") or rel == "." or rel == ".." or rel.startswith("../"):
        return None
    return rel


def _infer_kind(values: list, from_csv: bool) -> tuple[str | None, str]:
    """The kind a manifest column is stored as over all its ``values``, or ``None`` and why not.

    JSONL: strings -> text; integers -> int64, or float64 when some rows lack
    the value (NaN there); numbers -> float64. CSV cells are strings: int64
    when all parse as integers, float64 when all parse as numbers (an empty
    cell is NaN), else text.
    """
    if from_csv:
        present = [v for v in values if v.strip()]
        if not present:
            return None, "it is empty in every row"
        ints = [_parse_number(v) for v in present]
        if all(v is not None and _INT64[0] <= v <= _INT64[1] for v in ints) and len(present) == len(values):
            return "int64", ""
        if all(_parse_number(v, float) is not None for v in present):
            return "float64", ""
        return "text", ""
    present = [v for v in values if v is not None and v is not _ABSENT]
    if not present:
        return None, "it has no value in any row"
    types = {type(v) for v in present}
    if types == {str}:
        return "text", ""
    if types <= {int, float}:
        if any(type(v) is int and not _INT64[0] <= v <= _INT64[1] for v in present):
            return None, "it holds integers beyond int64"
        return ("int64" if types == {int} and len(present) == len(values) else "float64"), ""
    shown = {bool: "booleans", list: "lists", dict: "objects"}
    odd = sorted(shown[t] for t in types if t in shown)
    if odd:
        return None, f"it holds {' and '.join(odd)}"
    return None, f"it mixes {' and '.join(sorted(t.__name__ for t in types))} values"


class MetadataFolderSource(Source):
    """A folder of images described by a ``metadata.jsonl`` or ``metadata.csv`` at its root,
    as Hugging Face's ImageFolder reads it.

    Each row names an image by ``file_name`` (relative to the folder; sub-folders
    allowed) and may hold other fields. Samples are the rows in the manifest's
    order; a file_name listed twice raises SourceError (naming both lines), a row
    whose file is missing is a sample whose ``read`` raises ImageDecodeError.

    Labels: from the ``label_column`` field (default ``label``) when the manifest
    has one: integers, or class names numbered in sorted order or through
    ``class_list`` (a missing value is -1); otherwise, when every file sits in a
    sub-folder, the first folder of its path as ImageFolder does; otherwise -1.
    ``label_column=None`` leaves every label -1.

    Columns: every other field whose kind is the same over the whole manifest
    (see :func:`_infer_kind`; fields holding lists, objects, booleans or mixed
    types are skipped, and ``describe()`` says why), or the fields named by
    ``columns`` in that order. Kinds are inferred over the whole manifest even
    with ``limit``. A missing text value reads ``""`` and a missing number NaN.
    ``caption_key`` names a text field every sample needs: a missing or blank
    caption makes the sample invalid; it is returned stripped of surrounding
    whitespace, and comes first unless ``columns`` places it.
    """

    kind = "metadata"

    def __init__(
        self,
        root: str,
        *,
        columns: str | Sequence[str] | None = None,
        caption_key: str | None = None,
        label_column: str | None = "label",
        class_list: Sequence[str] | None = None,
        limit: int | None = None,
    ):
        root = _require_dir(root, "image folder")
        limit = _check_limit(limit)
        wanted = _column_names(columns, "columns")
        found = [name for name in MANIFESTS if os.path.lexists(os.path.join(root, name))]
        if not found:
            raise SourceError(
                f"{root!r} has no metadata.jsonl or metadata.csv; pass a folder with one, or use an "
                "imagefolder or unlabeled source"
            )
        if len(found) > 1:
            raise SourceError(f"{root!r} has both metadata.jsonl and metadata.csv; keep the one to use")
        self.manifest = found[0]
        path = os.path.join(root, self.manifest)
        try:
            raw = read_regular(path, MAX_MANIFEST_BYTES)
        except OSError as e:  # UnreadableFileError: a FIFO, device, directory, or too large
            raise SourceError(f"cannot read {path}: {getattr(e, 'reason', None) or e.strerror or e}") from e
        self.manifest_sha256 = hashlib.sha256(raw).hexdigest()
        from_csv = self.manifest.endswith(".csv")
        names, rows = _manifest_rows(path, raw)
        del raw

        ids: list[str] = []
        first_line: dict[str, int] = {}
        for number, row in rows:
            rel = _manifest_path(row.get("file_name"))
            if rel is None:
                raise SourceError(
                    f"{path}:{number}: file_name {row.get('file_name')!r} is not a path inside the folder; "
                    "use a path relative to it, such as 'images/0001.jpg'"
                )
            if rel in first_line:
                raise SourceError(
                    f"{path}:{number}: file_name {rel!r} repeats line {first_line[rel]}; remove the duplicate row"
                )
            first_line[rel] = number
            ids.append(rel)
        n = len(ids) if limit is None else min(limit, len(ids))
        self._lines = np.array([number for number, _ in rows[:n]], np.int64)

        self.label_column = label_column
        self.caption_key = caption_key or None
        self.labels_from: str | None = None  # 'column', 'folders' or None
        self.requested_columns = wanted
        if label_column is not None and label_column in names:
            labels, classes = _manifest_labels(path, rows, label_column, class_list, from_csv)
            self.labels_from = "column"
        elif label_column is not None and all("/" in rel for rel in ids):
            folders = [rel.split("/", 1)[0] for rel in ids]
            classes = sorted(set(folders)) if class_list is None else list(class_list)
            index = _class_index(folders, classes, "folders are")
            labels = np.array([index[f] for f in folders], np.int32)
            self.labels_from = "folders"
        else:
            labels = np.full(len(ids), -1, np.int32)
            classes = None if class_list is None else list(class_list)

        reserved = {"file_name", label_column}
        kinds: dict[str, str] = {}
        self.skipped_columns: dict[str, str] = {}
        for name in names:
            if name in reserved or not name:
                continue
            if not _storable_name(name):
                self.skipped_columns[name] = f"its name cannot name a store column ({_NAME_RULE})"
                continue
            values = [row.get(name, _ABSENT) for _, row in rows]
            if name == self.caption_key:
                bad = next((k for k, v in enumerate(values) if v is not None and v is not _ABSENT
                            and not isinstance(v, str)), None)
                if bad is not None:
                    raise SourceError(
                        f"{path}:{rows[bad][0]}: caption field {name!r} holds {values[bad]!r}, not text; "
                        "pass a text field as caption_key"
                    )
                kinds[name] = "text"
                continue
            kind, why = _infer_kind(values, from_csv)
            if kind is None:
                self.skipped_columns[name] = why
            else:
                kinds[name] = kind
        for name in ([self.caption_key] if self.caption_key else []) + (wanted or []):
            if name in reserved:
                raise SourceError(f"{name!r} is the file name or label of each row, not a column; leave it out")
            if name in self.skipped_columns:
                raise SourceError(f"field {name!r} of {path} cannot be stored: {self.skipped_columns[name]}; leave it out")
            if name not in kinds:
                raise SourceError(
                    f"{path} has no field {name!r} (fields that can be columns: "
                    f"{', '.join(map(repr, kinds)) or 'none'}); check the name"
                )
        if wanted is not None:
            order = wanted if self.caption_key in wanted or not self.caption_key else [self.caption_key, *wanted]
        else:
            order = list(kinds)
        self._text: dict[str, _PackedStrings] = {}
        self._numbers: dict[str, np.ndarray] = {}
        self._broken: dict[int, str] = {}  # sample -> why its fields cannot be read
        for name in order:
            kind = kinds[name]
            values = [row.get(name) for _, row in rows[:n]]
            if kind == "text":
                texts = []
                for k, v in enumerate(values):
                    v = "" if v is None else v
                    try:
                        v.encode("utf-8")
                    except UnicodeEncodeError as e:
                        self._broken.setdefault(k, f"field {name!r} is not valid Unicode (a lone surrogate at character {e.start})")
                        v = ""
                    texts.append(v)
                self._text[name] = _PackedStrings(texts)
            elif kind == "int64":
                self._numbers[name] = np.array([int(v) for v in values], np.int64)
            else:
                self._numbers[name] = np.array(
                    [math.nan if v is None or (from_csv and not v.strip()) else float(v) for v in values], np.float64
                )
        del rows
        super().__init__(root, ids, labels, classes, limit)
        self.columns = {name: kinds[name] for name in order}

    def read(self, i: int) -> tuple[bytes, int]:
        i = _check_index(i, len(self))
        path = os.path.join(self.root, self.ids[i])
        missing = f"the file named on line {self._lines[i]} of {self.manifest} does not exist"
        return _read_image_file(path, missing), int(self.labels[i])

    def read_fields(self, i: int) -> dict[str, object]:
        i = _check_index(i, len(self))
        where = os.path.join(self.root, self.ids[i])
        if i in self._broken:
            raise ImageDecodeError(f"{self._broken[i]} on line {self._lines[i]} of {self.manifest}", where)
        fields: dict[str, object] = {}
        for name, kind in self.columns.items():
            if kind == "text":
                value = self._text[name][i]
                if name == self.caption_key:
                    value = value.strip()
                    if not value:
                        raise ImageDecodeError(
                            f"the caption {name!r} is missing or empty on line {self._lines[i]} of {self.manifest}", where
                        )
                fields[name] = value
            else:
                number = self._numbers[name][i]
                fields[name] = int(number) if kind == "int64" else float(number)
        return fields

    def _describe_extra(self) -> dict:
        return {
            "manifest": self.manifest,
            "manifest_sha256": self.manifest_sha256,
            "label_column": self.label_column,
            "labels_from": self.labels_from,
            "caption_key": self.caption_key,
            "requested_columns": self.requested_columns,
            "skipped_columns": dict(self.skipped_columns),
        }


def _manifest_labels(path: str, rows: list[tuple[int, dict]], column: str, class_list: Sequence[str] | None,
                     from_csv: bool) -> tuple[np.ndarray, list[str] | None]:
    """The labels of a manifest's ``column`` (ints, or names through ``class_list`` / sorted order)."""
    values: list[int | str | None] = []
    for number, row in rows:
        value = row.get(column)
        if from_csv:
            text = value.strip() if value is not None else ""
            parsed = _parse_number(text) if text else None
            value = None if not text else (text if parsed is None else parsed)
        if value is not None and (type(value) not in (int, str) or value == ""):
            raise SourceError(
                f"{path}:{number}: label {value!r} is neither an integer nor a class name; fix the row"
            )
        values.append(value)
    kinds = {type(v) for v in values if v is not None}
    if kinds == {int, str}:
        first = next(number for (number, _), v in zip(rows, values) if isinstance(v, str))
        raise SourceError(
            f"{path}:{first}: the {column!r} field mixes integers and class names; use one or the other"
        )
    if kinds == {str}:
        names = sorted({v for v in values if isinstance(v, str)})
        classes = names if class_list is None else list(class_list)
        index = _class_index(names, classes, "label names are")
        return np.array([-1 if v is None else index[str(v)] for v in values], np.int32), classes
    top = (1 << 31) if class_list is None else len(class_list)
    for (number, _), v in zip(rows, values):
        if isinstance(v, int) and not -1 <= v < top:
            raise SourceError(
                f"{path}:{number}: label {v} is out of range"
                + (f" for {top} classes" if class_list is not None else "")
                + "; labels run from 0 (or -1 for unknown)"
            )
    return np.array([-1 if v is None else v for v in values], np.int32), None if class_list is None else list(class_list)


class HFDatasetSource(Source):
    """A Hugging Face dataset written by ``save_to_disk``, or parquet files.

    ``path`` is a ``save_to_disk`` folder of one split, a folder holding
    ``*.parquet`` files, one parquet file or a glob of them (read in sorted
    order). The image column may be a struct ``{bytes, path}`` as the
    ``datasets`` Image feature writes it, raw bytes, or a file path. Labels
    come from ``label_column`` (``None`` for unlabeled data, -1 for nulls);
    class names from its ``ClassLabel`` feature when there is one. Ids are row
    numbers. Needs ``pyarrow``.

    Columns: ``text_column`` names a string column that every sample needs
    (a caption: a null or blank value makes the sample invalid; the text is
    returned with surrounding whitespace stripped); ``columns`` (``"a,b"`` or a
    list) passes other columns through, their kind from the Arrow type
    (string -> text, integer -> int64, floating -> float64, binary -> bytes).
    A null is ``""``, ``b""`` or NaN there, and makes the sample invalid in an
    integer column. Each column keeps its own name; the text column comes first.
    """

    kind = "hf"

    def __init__(
        self,
        path: str,
        image_column: str = "image",
        label_column: str | None = "label",
        *,
        text_column: str | None = None,
        columns: str | Sequence[str] | None = None,
        limit: int | None = None,
    ):
        pa, _ = _pyarrow()
        limit = _check_limit(limit)
        self.image_column = image_column
        self.label_column = label_column
        self.text_column = text_column = text_column or None
        wanted = _column_names(columns, "columns") or []
        root, self._files, self._format, features = _hf_files(path)
        self._cache: dict[Any, Any] = {}
        schema = self._schema(0)
        for column in (image_column, label_column):
            if column is not None and column not in schema.names:
                raise SourceError(
                    f"dataset {path!r} has no column {column!r} (columns: "
                    f"{', '.join(schema.names)}); pass image_column/label_column"
                    + (", or label_column=None for unlabeled data" if column == label_column else "")
                )
        column_kinds = {}
        for column in ([text_column] if text_column is not None else []) + wanted:
            if column not in schema.names:
                what = "text_column" if column == text_column else "columns"
                raise SourceError(
                    f"dataset {path!r} has no column {column!r} (columns: {', '.join(schema.names)}); "
                    f"fix {what}"
                )
            if column in (image_column, label_column):
                raise SourceError(f"{column!r} is the dataset's image or label column; it cannot be a column too")
            _check_column_name(column, "column")
            kind = _arrow_kind(schema.field(column).type)
            if column == text_column and kind != "text":
                raise SourceError(
                    f"text_column {column!r} holds {schema.field(column).type}, not strings; "
                    "pass a string column"
                )
            if kind is None:
                raise SourceError(
                    f"column {column!r} holds {schema.field(column).type}; only string, integer, "
                    "floating-point and binary columns can be stored: leave it out of columns"
                )
            column_kinds[column] = kind
        # One unit per arrow file or parquet row group: the granularity of reads.
        self._units = [(f, g, n) for f in range(len(self._files)) for g, n in enumerate(self._unit_rows(f))]
        self._starts = np.cumsum([0] + [n for _, _, n in self._units], dtype=np.int64)
        total = int(self._starts[-1])
        count = total if limit is None else min(limit, total)
        if label_column is None:
            labels = np.full(count, -1, np.int32)
        else:
            labels = self._read_labels(count)
        feature = (features or {}).get(label_column) or {}
        classes = feature.get("names") if feature.get("_type") == "ClassLabel" else None
        super().__init__(root, [str(i) for i in range(count)], labels, classes, limit)
        self.columns = column_kinds

    def __getstate__(self) -> dict:
        # Memory maps and parquet readers are reopened in the reading process.
        return {**self.__dict__, "_cache": {}}

    def _schema(self, f: int):
        pa, pq = _pyarrow()
        if self._format == "parquet":
            return pq.read_schema(self._files[f])
        return self._arrow_table(f).schema

    def _arrow_table(self, f: int):
        key = ("arrow", f)
        if key not in self._cache:
            pa, _ = _pyarrow()
            source = pa.memory_map(self._files[f])
            try:
                self._cache[key] = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                self._cache[key] = pa.ipc.open_file(source).read_all()
        return self._cache[key]

    def _unit_rows(self, f: int) -> list[int]:
        if self._format == "parquet":
            _, pq = _pyarrow()
            meta = pq.ParquetFile(self._files[f]).metadata
            return [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        return [self._arrow_table(f).num_rows]

    def _unit_column(self, u: int, column: str):
        f, g, _ = self._units[u]
        if self._format == "arrow":
            return self._arrow_table(f).column(column)
        key = ("parquet", u, column)
        if key not in self._cache:
            _, pq = _pyarrow()
            # Keep one decoded row group per column: sequential reads hit it.
            for old in [k for k in self._cache if k[0] == "parquet" and k[2] == column]:
                del self._cache[old]
            reader = self._cache.setdefault(("reader", f), pq.ParquetFile(self._files[f]))
            self._cache[key] = reader.read_row_group(g, columns=[column]).column(0)
        return self._cache[key]

    def _read_labels(self, count: int) -> np.ndarray:
        parts = []
        for u in range(len(self._units)):
            if self._starts[u] >= count:
                break
            column = self._unit_column(u, self.label_column)  # type: ignore[arg-type]  # not None here
            values = column.to_numpy(zero_copy_only=False) if column.null_count == 0 else np.array(
                [-1 if v is None else v for v in column.to_pylist()]
            )
            if values.dtype.kind not in "iu":
                raise SourceError(
                    f"label column {self.label_column!r} holds {column.type}, not integers; "
                    "pass an integer (ClassLabel) column or label_column=None"
                )
            parts.append(values)
        self._cache.clear()
        return np.concatenate(parts)[:count]

    def _value(self, i: int, column: str):
        u = int(np.searchsorted(self._starts, i, side="right")) - 1
        return self._unit_column(u, column)[i - int(self._starts[u])].as_py()

    def read_fields(self, i: int) -> dict[str, object]:
        i = _check_index(i, len(self))
        fields: dict[str, object] = {}
        for column, kind in self.columns.items():
            where = f"row {i} of {self.root}"
            try:
                value = self._value(i, column)
            except UnicodeDecodeError as e:  # arrow does not always validate the UTF-8 of a string column
                raise ImageDecodeError(f"column {column!r} is not valid UTF-8 (byte {e.start})", where) from None
            if column == self.text_column:
                if value is None or not value.strip():
                    raise ImageDecodeError(f"text column {column!r} is {'null' if value is None else 'blank'}", where)
                value = _check_text(value.strip(), f"column {column!r}", where)
            elif kind == "text":
                value = "" if value is None else _check_text(value, f"column {column!r}", where)
            elif kind == "bytes":
                value = b"" if value is None else bytes(value)
            elif kind == "float64":
                value = math.nan if value is None else float(value)
            elif value is None or not _INT64[0] <= value <= _INT64[1]:
                raise ImageDecodeError(
                    f"integer column {column!r} is {'null' if value is None else f'{value}, beyond int64'}", where
                )
            fields[column] = value
        return fields

    def read(self, i: int) -> tuple[bytes, int]:
        i = _check_index(i, len(self))
        value = self._value(i, self.image_column)
        if isinstance(value, dict):
            data, path = value.get("bytes"), value.get("path")
        elif isinstance(value, str):
            data, path = None, value
        else:
            data, path = value, None
        if data is None and path:
            path = os.path.join(self.root, path)
            try:
                with open(path, "rb") as f:
                    data = f.read()
            except OSError as e:
                raise ImageDecodeError(f"cannot read the file: {e.strerror or e}", path) from e
        if not data:
            raise ImageDecodeError(f"row {i} of {self.root!r} has no image data")
        return bytes(data), int(self.labels[i])

    def _describe_extra(self) -> dict:
        return {
            "format": self._format,
            "files": [os.path.relpath(f, self.root) for f in self._files],
            "image_column": self.image_column,
            "label_column": self.label_column,
            **({"text_column": self.text_column} if self.text_column is not None else {}),
        }


def _arrow_kind(arrow_type) -> str | None:
    """The column kind an Arrow type is stored as, or ``None``."""
    pa, _ = _pyarrow()
    t = pa.types
    if t.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    tests = [("text", ("is_string", "is_large_string", "is_string_view")),
             ("int64", ("is_integer",)), ("float64", ("is_floating",)),
             ("bytes", ("is_binary", "is_large_binary", "is_fixed_size_binary", "is_binary_view"))]
    for kind, names in tests:
        if any(getattr(t, name, lambda _: False)(arrow_type) for name in names):
            return kind
    return None


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise SourceError(
            "reading Hugging Face datasets needs pyarrow; install it with "
            "'pip install latentstore[hf]'"
        ) from e
    return pa, pq


def _hf_files(path: str) -> tuple[str, list[str], str, dict | None]:
    """(root, data files, 'arrow' or 'parquet', features dict or None)."""
    if glob.has_magic(path):
        files = sorted(p for p in glob.glob(path, recursive=True) if p.endswith(".parquet"))
        root = os.path.abspath(_glob_base(path))
    elif os.path.isfile(path):
        files, root = [path], os.path.dirname(os.path.abspath(path))
    elif os.path.isdir(path):
        root = os.path.abspath(path)
        if os.path.exists(os.path.join(root, "dataset_dict.json")):
            with open(os.path.join(root, "dataset_dict.json")) as f:
                splits = json.load(f).get("splits", [])
            raise SourceError(
                f"{path!r} holds several splits ({', '.join(splits)}); pass one of them, "
                f"e.g. {os.path.join(path, splits[0] if splits else 'train')!r}"
            )
        if os.path.exists(os.path.join(root, "state.json")):
            with open(os.path.join(root, "state.json")) as f:
                state = json.load(f)
            files = [os.path.join(root, d["filename"]) for d in state["_data_files"]]
            features = None
            info = os.path.join(root, "dataset_info.json")
            if os.path.exists(info):
                with open(info) as f:
                    features = json.load(f).get("features")
            return root, files, "arrow", features
        files = sorted(glob.glob(os.path.join(glob.escape(root), "*.parquet")))
    else:
        raise SourceError(f"dataset {path!r} does not exist; pass a save_to_disk folder or parquet files")
    files = [os.path.abspath(f) for f in files]
    if not files:
        raise SourceError(
            f"no parquet files or save_to_disk dataset at {path!r}; pass a dataset folder, "
            "a .parquet file or a glob such as 'data/train-*.parquet'"
        )
    _, pq = _pyarrow()
    meta = pq.read_schema(files[0]).metadata or {}
    features = None
    if b"huggingface" in meta:
        features = json.loads(meta[b"huggingface"]).get("info", {}).get("features")
    return root, files, "parquet", features


_KINDS = {
    "imagefolder": ImageFolderSource,
    "labeled": LabeledFolderSource,
    "hf": HFDatasetSource,
    "unlabeled": UnlabeledFolderSource,
    "metadata": MetadataFolderSource,
    "webdataset": None,  # latentstore.encoding.shards.WebDatasetSource, imported when used
}
#: The kinds each option applies to.
_OPTION_KINDS = {
    "class_list": ("imagefolder", "labeled", "metadata"),
    "caption_key": ("webdataset", "metadata", "hf"),
    "json_fields": ("webdataset",),
    "columns": ("metadata", "hf"),
    "image_column": ("hf",),
    "label_column": ("hf", "metadata"),
}
_BRACES = re.compile(r"\{[^{}]*(?:\.\.|,)[^{}]*\}")


def _is_url(spec: str) -> bool:
    """Whether ``spec`` is an fsspec URL other than a local ``file://`` path."""
    match = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]+)(?:://|::)", spec)  # two letters at least: not a drive
    return match is not None and match.group(1).lower() not in ("file", "local")


def _looks_like_shards(spec: str) -> bool:
    """A ``.tar`` path or a brace pattern over ``.tar`` files (``shards/{00000..00127}.tar``)."""
    return spec.lower().endswith(".tar") or (".tar" in spec.lower() and _BRACES.search(spec) is not None)


def _entry_is(entry: os.DirEntry, test) -> bool:
    """``test(entry)``, False for an entry that cannot be resolved (a symlink loop, a vanished file)."""
    try:
        return test(entry)
    except OSError:
        return False


def _detect(spec: str, labels: str | None) -> str:
    if labels is not None:
        return "labeled"
    if _is_url(spec) and spec.endswith(".parquet"):
        raise SourceError(f"Hugging Face datasets are read from local paths only; download {spec!r} first")
    if _is_url(spec) or _looks_like_shards(spec):
        return "webdataset"  # the only kind read from URLs
    if glob.has_magic(spec):
        if spec.endswith(".parquet"):
            return "hf"
        raise SourceError(
            f"a glob ({spec!r}) selects images only together with a labels file; "
            "pass a folder instead, or the labels"
        )
    if not os.path.exists(spec):
        raise SourceError(f"{spec!r} does not exist; pass an image folder or a dataset path")
    if os.path.isfile(spec):
        if spec.endswith(".parquet"):
            return "hf"
        raise SourceError(f"{spec!r} is a file; pass the folder that holds the images")
    with os.scandir(spec) as it:
        entries = [e for e in it if not e.name.startswith(".")]
    names = {e.name for e in entries}
    if names & set(MANIFESTS):
        return "metadata"
    has_folders = any(_entry_is(e, os.DirEntry.is_dir) for e in entries)
    has_images = any(_entry_is(e, os.DirEntry.is_file) and _is_image(e.name) for e in entries)
    has_shards = any(_entry_is(e, os.DirEntry.is_file) and e.name.lower().endswith(".tar") for e in entries)
    if has_shards and not has_images and not has_folders:
        return "webdataset"  # before hf: img2dataset writes a .parquet beside each shard
    if names & {"state.json", "dataset_info.json", "dataset_dict.json"} or any(
        n.endswith(".parquet") for n in names
    ):
        return "hf"
    return "imagefolder" if has_folders and not has_images else "unlabeled"


def open_source(
    spec: str,
    *,
    labels: str | None = None,
    class_list: Sequence[str] | None = None,
    limit: int | None = None,
    kind: str | None = None,
    caption_key: str | None = None,
    json_fields: str | Sequence[str] | None = None,
    columns: str | Sequence[str] | None = None,
    image_column: str = "image",
    label_column: str | None = "label",
) -> Source:
    """Open the image collection at ``spec``.

    Without ``kind`` it is detected: an fsspec URL, a ``.tar`` file, a brace
    pattern over ``.tar`` files or a folder of ``.tar`` files are WebDataset
    shards; a folder with a ``metadata.jsonl`` or ``metadata.csv`` is a
    metadata folder; a ``save_to_disk`` folder or parquet files are a Hugging
    Face dataset; with ``labels`` a folder (or glob) is labelled by that CSV; a
    folder of sub-folders and no loose images is an ImageFolder; any other
    folder is unlabeled. ``kind`` forces one of 'imagefolder', 'labeled', 'hf',
    'unlabeled', 'metadata' or 'webdataset'.

    ``class_list`` maps class names to indices (ImageFolder, labelled and
    metadata folders). ``limit`` keeps the first N samples of the order.
    Columns: ``caption_key`` names the caption (a shard member's extension, a
    manifest field, a dataset's text column: ``text_column``); ``json_fields``
    picks fields of the shards' ``.json`` members (``"width:int64,aesthetic"``);
    ``columns`` picks manifest fields or dataset columns. ``image_column`` and
    ``label_column`` name a dataset's columns (``label_column`` also a manifest's
    label field; ``None`` for unlabeled data).
    """
    spec = os.fspath(spec)
    if kind is None:
        kind = _detect(spec, labels)
    elif kind not in _KINDS:
        raise SourceError(f"unknown source kind {kind!r}; use one of {', '.join(_KINDS)}")
    if (labels is not None) != (kind == "labeled"):
        raise SourceError(
            "a labels file is needed for a labelled folder source"
            if labels is None
            else f"a labels file applies only to a labelled folder, not to a {kind!r} source"
        )
    given = {
        "class_list": class_list is not None,
        "caption_key": caption_key is not None,
        "json_fields": json_fields is not None,
        "columns": columns is not None,
        "image_column": image_column != "image",
        "label_column": label_column != "label",
    }
    for option, kinds in _OPTION_KINDS.items():
        if given[option] and kind not in kinds:
            where = {"class_list": "image, labelled and metadata folders"}.get(option, " and ".join(f"{k!r}" for k in kinds) + " sources")
            raise SourceError(f"{'a class list' if option == 'class_list' else option} applies to {where}, not to a {kind!r} source")
    if _is_url(spec) and kind != "webdataset":
        raise SourceError(f"a {kind!r} source is read from local paths only; only WebDataset shards can be read from {spec!r}")
    if kind == "labeled":
        return LabeledFolderSource(spec, labels, class_list, limit=limit)  # type: ignore[arg-type]  # checked above
    if kind == "imagefolder":
        return ImageFolderSource(spec, class_list=class_list, limit=limit)
    if kind == "metadata":
        return MetadataFolderSource(spec, columns=columns, caption_key=caption_key, label_column=label_column,
                                    class_list=class_list, limit=limit)
    if kind == "hf":
        return HFDatasetSource(spec, image_column, label_column, text_column=caption_key, columns=columns, limit=limit)
    if kind == "webdataset":
        from latentstore.encoding.shards import WebDatasetSource

        return WebDatasetSource(spec, caption_key=caption_key, json_fields=json_fields, limit=limit)
    return UnlabeledFolderSource(spec, limit=limit)
