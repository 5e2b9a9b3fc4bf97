"""Image collections to encode, each enumerated in a fixed, reproducible order.

A :class:`Source` maps a sample index to ``(raw, label)`` where ``raw`` is the
encoded image file (bytes) ready for :func:`latentstore.encoding.preprocess.load_image`.
Sources are small picklable objects: the sample ids and labels are packed in
numpy buffers, so DataLoader workers share them after ``fork`` without copying
and receive them quickly under ``spawn``; files and Arrow tables are opened
lazily in the process that reads.

:func:`open_source` picks the right kind for a path.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import json
import operator
import os
import warnings
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np

from latentstore._filesystem import read_regular
from latentstore.errors import ImageDecodeError, SourceError

__all__ = [
    "IMAGE_EXTENSIONS",
    "HFDatasetSource",
    "ImageFolderSource",
    "LabeledFolderSource",
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
    """

    kind: ClassVar[str]

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

    def __len__(self) -> int:
        return len(self.ids)

    @abstractmethod
    def read(self, i: int) -> tuple[Any, int]:
        """The raw image (bytes) and label of sample ``i``."""

    def describe(self) -> dict:
        """A JSON-able description; equal descriptions mean the same enumeration."""
        return {
            "kind": self.kind,
            "root": self.root,
            "count": len(self),
            "limit": self.limit,
            "num_classes": None if self.classes is None else len(self.classes),
            "ids_sha256": self.ids.sha256(),
            "labels_sha256": hashlib.sha256(self.labels.astype("<i4").tobytes()).hexdigest(),
            **self._describe_extra(),
        }

    def _describe_extra(self) -> dict:
        return {}

    def __repr__(self) -> str:
        classes = "" if self.classes is None else f", {len(self.classes)} classes"
        return f"{type(self).__name__}({self.root!r}, {len(self)} samples{classes})"


class _FileSource(Source):
    def read(self, i: int) -> tuple[bytes, int]:
        i = _check_index(i, len(self))
        path = os.path.join(self.root, self.ids[i])
        try:
            raw = read_regular(path, MAX_IMAGE_FILE_BYTES)
        except FileNotFoundError as e:
            raise ImageDecodeError("the file is gone (deleted since the folder was listed)", path) from e
        except OSError as e:  # UnreadableFileError: a FIFO, device, directory, loop, or too large
            raise ImageDecodeError(getattr(e, "reason", None) or f"cannot read the file: {e.strerror or e}", path) from e
        return raw, int(self.labels[i])


def _is_image(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _scan_images(root: str) -> list[str]:
    """Image files under ``root``, recursively, as sorted '/'-separated relative paths.

    Hidden files and folders (a leading '.') are skipped; folders reached
    again through a symlink are not walked twice.
    """
    found = []
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
        ids, labels = [], []
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


def _parse_int(text: str) -> int | None:
    try:
        return int(text)
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
        if name not in lookup and _parse_int(label.split()[0] if label else "") is None:
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
        numbers = [_parse_int(t) for t in tokens]
        names = sorted({t for t, v in zip(tokens, numbers) if v is None})
        if names:
            classes = list(class_list) if class_list is not None else names
            index = _class_index(names, classes, "label names are")
        else:
            classes = None if class_list is None else list(class_list)
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


class HFDatasetSource(Source):
    """A Hugging Face dataset written by ``save_to_disk``, or parquet files.

    ``path`` is a ``save_to_disk`` folder of one split, a folder holding
    ``*.parquet`` files, one parquet file or a glob of them (read in sorted
    order). The image column may be a struct ``{bytes, path}`` as the
    ``datasets`` Image feature writes it, raw bytes, or a file path. Labels
    come from ``label_column`` (``None`` for unlabeled data, -1 for nulls);
    class names from its ``ClassLabel`` feature when there is one. Ids are row
    numbers. Needs ``pyarrow``.
    """

    kind = "hf"

    def __init__(
        self,
        path: str,
        image_column: str = "image",
        label_column: str | None = "label",
        *,
        limit: int | None = None,
    ):
        pa, _ = _pyarrow()
        limit = _check_limit(limit)
        self.image_column = image_column
        self.label_column = label_column
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
            column = self._unit_column(u, self.label_column)
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

    def read(self, i: int) -> tuple[bytes, int]:
        i = _check_index(i, len(self))
        u = int(np.searchsorted(self._starts, i, side="right")) - 1
        value = self._unit_column(u, self.image_column)[i - int(self._starts[u])].as_py()
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
        }


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
}


def _entry_is(entry: os.DirEntry, test) -> bool:
    """``test(entry)``, False for an entry that cannot be resolved (a symlink loop, a vanished file)."""
    try:
        return test(entry)
    except OSError:
        return False


def _detect(spec: str, labels: str | None) -> str:
    if labels is not None:
        return "labeled"
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
    if names & {"state.json", "dataset_info.json", "dataset_dict.json"} or any(
        n.endswith(".parquet") for n in names
    ):
        return "hf"
    has_folders = any(_entry_is(e, os.DirEntry.is_dir) for e in entries)
    has_images = any(_entry_is(e, os.DirEntry.is_file) and _is_image(e.name) for e in entries)
    return "imagefolder" if has_folders and not has_images else "unlabeled"


def open_source(
    spec: str,
    *,
    labels: str | None = None,
    class_list: Sequence[str] | None = None,
    limit: int | None = None,
    kind: str | None = None,
) -> Source:
    """Open the image collection at ``spec``.

    Without ``kind`` it is detected: a ``save_to_disk`` folder or parquet
    files are a Hugging Face dataset; with ``labels`` a folder (or glob) is
    labelled by that CSV; a folder of sub-folders and no loose images is an
    ImageFolder; any other folder is unlabeled. ``kind`` forces one of
    'imagefolder', 'labeled', 'hf' or 'unlabeled'. ``class_list`` maps class
    names to indices (ImageFolder and labelled folders). ``limit`` keeps the
    first N samples of the order.
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
    if class_list is not None and kind not in ("imagefolder", "labeled"):
        raise SourceError(f"a class list applies to image and labelled folders, not to a {kind!r} source")
    if kind == "labeled":
        return LabeledFolderSource(spec, labels, class_list, limit=limit)
    if kind == "imagefolder":
        return ImageFolderSource(spec, class_list=class_list, limit=limit)
    return _KINDS[kind](spec, limit=limit)
