"""WebDataset tar shards, as img2dataset writes them, as a :class:`~latentstore.encoding.sources.Source`.

A shard is an uncompressed ``.tar`` whose members are grouped into samples by
key, WebDataset's rule: the member's path up to the first dot of its file name
(``000000001.jpg``, ``000000001.txt`` and ``000000001.json`` are one sample;
keys may hold folders). One pass over the shards' headers, in shard order then
member order, records where each sample's members lie (offset and size in the
shard file); a read then fetches exactly those bytes. Local shards are read with
random access (the pass seeks over the data), other fsspec URLs are streamed
once for the pass and read by byte ranges afterwards.
"""

from __future__ import annotations

import array
import glob
import hashlib
import itertools
import json
import math
import os
import posixpath
import tarfile
import warnings
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np

from latentstore._filesystem import open_regular
from latentstore.encoding.sources import (
    MAX_IMAGE_FILE_BYTES,
    Source,
    _check_column_name,
    _check_index,
    _check_limit,
    _check_text,
    _is_url,
    _PackedStrings,
)
from latentstore.errors import ImageDecodeError, SourceError
from latentstore.progress import Progress

__all__ = ["IMAGE_SUFFIXES", "JSON_FIELD_KINDS", "WebDatasetSource", "parse_json_fields"]

#: Member extensions that hold the image (case-insensitive).
IMAGE_SUFFIXES = frozenset({"jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff"})
#: The kinds a ``.json`` field may be stored as; a field without one is float64.
JSON_FIELD_KINDS = ("float64", "int64", "text")
#: Bytes a caption or ``.json`` member may have.
MAX_FIELD_BYTES = 16 << 20
_MAX_LABEL_BYTES = 64  # a .cls member: an integer as text
_MAX_SHARDS = 1 << 20  # shards a brace pattern may expand to
_TAIL_BYTES = 1 << 20  # how much after the last member is checked to be the end-of-archive zeros
_PROGRESS_SHARDS = 16  # the index pass shows progress from this many shards on
_FIRST_SAMPLES = 16  # a caption is looked for in this many samples when caption_key is not given
_IMAGE, _CAPTION, _JSON = range(3)  # the members whose place is recorded, per sample


def parse_json_fields(spec: str | Sequence[str] | None) -> list[tuple[str, str]]:
    """``"width:int64,aesthetic,url:text"`` (or a list of such items) as ``[(name, kind), ...]``.

    A field without a kind is float64; the kinds are :data:`JSON_FIELD_KINDS`.
    """
    if spec is None:
        return []
    if isinstance(spec, str):
        items = spec.split(",")
    elif isinstance(spec, Sequence) and all(isinstance(item, str) for item in spec):
        items = list(spec)
    else:
        raise SourceError(f"json_fields must be a string such as 'width:int64,aesthetic' or a list of them, got {spec!r}")
    fields: dict[str, str] = {}
    for item in items:
        name, _, kind = item.rpartition(":") if ":" in item else (item, "", "float64")
        name, kind = name.strip(), kind.strip().lower()
        if not name:
            raise SourceError(f"json_fields item {item!r} has no field name; write 'name' or 'name:kind'")
        if kind not in JSON_FIELD_KINDS:
            raise SourceError(f"json_fields item {item!r}: kind {kind!r} is not one of {', '.join(JSON_FIELD_KINDS)}")
        if name in fields:
            raise SourceError(f"json_fields names {name!r} more than once; name each field once")
        _check_column_name(name, "json field")
        fields[name] = kind
    if not fields:
        raise SourceError("json_fields is empty; name the fields, e.g. 'width:int64,height:int64'")
    return list(fields.items())


def _caption_suffix(caption_key: str | None) -> str | None:
    """The member extension of the caption: ``None`` to look for ``.txt``, ``""`` for no caption."""
    if caption_key is None:
        return None
    if not isinstance(caption_key, str):
        raise SourceError(f"caption_key must be a member extension such as 'txt', got {caption_key!r}")
    suffix = caption_key.strip().lstrip(".").lower()
    if "/" in suffix or suffix in IMAGE_SUFFIXES or suffix in ("json", "cls"):
        raise SourceError(
            f"caption_key {caption_key!r} cannot name the caption member; pass the extension of the "
            "text member, such as 'txt'"
        )
    return suffix


def _brace_expand(spec: str) -> list[str]:
    if "{" not in spec:
        return [spec]
    try:
        from braceexpand import braceexpand
    except ImportError as e:
        raise SourceError(
            "brace patterns in shard paths need braceexpand; install it with "
            "'pip install latentstore[encode]' (or 'pip install braceexpand')"
        ) from e
    expanded = list(itertools.islice(braceexpand(spec), _MAX_SHARDS + 1))
    if len(expanded) > _MAX_SHARDS:
        raise SourceError(f"{spec!r} expands to more than {_MAX_SHARDS:,} shards; check the brace pattern")
    return expanded


def _local_shards(patterns: list[str]) -> list[str]:
    paths: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            found = sorted(p for p in glob.glob(pattern, recursive=True) if p.lower().endswith(".tar") and os.path.isfile(p))
            if not found:
                raise SourceError(f"no .tar files match {pattern!r}; check the pattern")
        elif os.path.isdir(pattern):
            with os.scandir(pattern) as it:
                names = sorted(e.name for e in it if not e.name.startswith(".") and e.name.lower().endswith(".tar"))
            found = [os.path.join(pattern, name) for name in names if os.path.isfile(os.path.join(pattern, name))]
            if not found:
                raise SourceError(f"folder {pattern!r} holds no .tar shards; pass the folder of the shards")
        elif os.path.lexists(pattern):
            found = [pattern]
        else:
            raise SourceError(f"shard {pattern!r} does not exist; check the path (and a brace pattern's range)")
        paths.extend(os.path.abspath(p) for p in found)
    return paths


def _remote_shards(patterns: list[str]) -> tuple[Any, list[str], list[int | None]]:
    """The fsspec filesystem, shard paths on it and their sizes (``None`` where the listing has none)."""
    try:
        import fsspec
    except ImportError as e:
        raise SourceError("reading shards from a URL needs fsspec; install it with 'pip install fsspec'") from e
    fs: Any = None
    paths: list[str] = []
    sizes: list[int | None] = []
    for pattern in patterns:
        try:
            fs, path = fsspec.core.url_to_fs(pattern)
            if glob.has_magic(path):
                infos = fs.glob(path, detail=True)
                found = sorted((p, i) for p, i in infos.items() if p.lower().endswith(".tar") and i.get("type") == "file")
                if not found:
                    raise SourceError(f"no .tar files match {pattern!r}; check the pattern")
            elif fs.isdir(path):
                infos = fs.ls(path, detail=True)
                found = sorted(
                    (i["name"], i) for i in infos
                    if i.get("type") == "file" and i["name"].lower().endswith(".tar")
                    and not posixpath.basename(i["name"]).startswith(".")
                )
                if not found:
                    raise SourceError(f"{pattern!r} holds no .tar shards; pass the folder of the shards")
            else:
                found = [(path, fs.info(path))]
        except SourceError:
            raise
        except FileNotFoundError:
            raise SourceError(f"shard {pattern!r} does not exist; check the URL (and a brace pattern's range)") from None
        except Exception as e:  # fsspec raises whatever its backend raises
            raise SourceError(f"cannot list {pattern!r}: {e}") from e
        for p, info in found:
            paths.append(p)
            sizes.append(None if info.get("size") is None else int(info["size"]))
    return fs, paths, sizes


class _Index:
    """What the index pass collects, in flat arrays (a Python object per sample would not scale)."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.shard = array.array("q")
        self.spans = array.array("q")  # per sample: offset, size of image, caption and json (-1: none)
        self.labels = array.array("q")
        self.problems: dict[int, str] = {}  # sample -> why read() fails

    def __len__(self) -> int:
        return len(self.labels)

    def add(self, sample_id: str, shard: int) -> int:
        self.ids.append(sample_id)
        self.shard.append(shard)
        self.spans.extend((-1, -1, -1, -1, -1, -1))
        self.labels.append(-1)
        return len(self.labels) - 1


def _read_label(tf: tarfile.TarFile, info: tarfile.TarInfo) -> tuple[int, str | None]:
    """The label in a ``.cls`` member, or -1 and why it is not one."""
    if info.size > _MAX_LABEL_BYTES:
        return -1, f"the .cls member is {info.size:,} bytes, not an integer label"
    member = tf.extractfile(info)
    data = member.read() if member is not None else b""
    try:
        label = int(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return -1, f"the .cls member holds {data[:20]!r}, not an integer label"
    if not -1 <= label < 1 << 31:
        return -1, f"the .cls label {label} is out of range; labels run from 0 (or -1 for unknown)"
    return label, None


def _index_shard(tf: tarfile.TarFile, size: int, shard: int, name: str, caption: str | None, index: _Index,
                 read_at: Callable[[int, int], bytes]) -> str | None:
    """Adds the samples of one open shard to ``index``; returns why the shard is damaged, or None."""
    keys: dict[str, int] = {}
    members: dict[int, list[str]] = {}
    damage = None
    while True:
        try:
            info = tf.next()
        except (tarfile.ReadError, tarfile.StreamError) as e:  # the data ends early: the shard is truncated
            damage = f"it ends early ({e})"
            break
        if info is None:
            break
        base = posixpath.basename(info.name)
        if not info.isreg() or not base or base.startswith("."):
            continue  # folders, links, hidden files (a macOS ._ file)
        stem, _, suffix = base.partition(".")
        key = posixpath.normpath(posixpath.join(posixpath.dirname(info.name), stem))  # './000' is '000'
        suffix = suffix.lower()
        i = keys.get(key)
        if i is None:
            i = keys[key] = index.add(f"{name}/{key}", shard)
            members[i] = []
        members[i].append("." + suffix if suffix else "(no extension)")
        if info.issparse():
            index.problems.setdefault(i, f"member {info.name!r} is a sparse file, which a shard cannot hold")
            continue
        if info.offset_data + info.size > size:
            have = max(size - info.offset_data, 0)
            index.problems.setdefault(
                i, f"the shard ends inside member {info.name!r} ({have:,} of {info.size:,} bytes): it is truncated"
            )
        image = suffix.rpartition(".")[2] in IMAGE_SUFFIXES  # 'seg.png' too, as WebDataset's decoders see it
        slot = _IMAGE if image else _CAPTION if suffix == caption else _JSON if suffix == "json" else None
        if slot is not None:
            at = 6 * i + 2 * slot
            if index.spans[at] < 0:  # the first such member of the sample counts
                index.spans[at], index.spans[at + 1] = info.offset_data, info.size
        elif suffix == "cls" and i not in index.problems:
            label, why = _read_label(tf, info)
            index.labels[i] = label
            if why is not None:
                index.problems[i] = why
    for i, found in members.items():
        if index.spans[6 * i] < 0:
            index.problems.setdefault(i, f"no image member (it has {', '.join(found)})")
    if damage is None and tf.offset < size:
        tail = read_at(tf.offset, min(size - tf.offset, _TAIL_BYTES))
        if tail.strip(b"\0"):
            damage = f"tar reading stopped at byte {tf.offset:,} of {size:,} (a damaged or cut-off header)"
    return damage


class WebDatasetSource(Source):
    """Samples of WebDataset tar shards (img2dataset's layout).

    ``spec`` is a local path or an fsspec URL: one ``.tar``, a brace pattern
    (``shards/{00000..00127}.tar``, in the pattern's order), a glob or a folder of
    ``.tar`` files (sorted by name). Samples are the keys of each shard in member
    order, shard after shard; ids are ``"<shard>/<key>"``, the shard's path
    relative to the shards' common folder. The image is the sample's first member
    whose extension ends in one of :data:`IMAGE_SUFFIXES` (``jpg``, ``seg.png``); the label an integer in a ``.cls``
    member (else -1); ``classes`` is ``None``.

    Columns: ``caption`` (text) from the member named by ``caption_key`` (an
    extension, default ``txt`` when the first samples have a ``.txt`` member; ``""``
    for none): decoded as strict UTF-8 and stripped of surrounding whitespace; a
    missing, blank or non-UTF-8 caption makes the sample invalid. ``json_fields``
    (see :func:`parse_json_fields`) are top-level fields of each sample's ``.json``
    member: a missing member, field or null is NaN for float64 and makes the sample
    invalid for int64 and text; a member that is not a JSON object, or a value of
    the wrong type, makes it invalid too.

    Damage: a key without an image member is still a sample (so nothing shifts),
    whose ``read`` raises ImageDecodeError; so does a sample with a truncated
    member or a bad ``.cls``. A truncated or damaged shard keeps its complete
    samples and is reported in one warning; a file that is not a tar at all is a
    SourceError. Nothing is cached on disk: the index pass reads every header.
    """

    kind = "webdataset"

    def __init__(
        self,
        spec: str,
        *,
        caption_key: str | None = None,
        json_fields: str | Sequence[str] | None = None,
        limit: int | None = None,
        progress: bool = True,
    ):
        spec = os.fspath(spec)
        limit = _check_limit(limit)
        caption = _caption_suffix(caption_key)
        self.json_fields = parse_json_fields(json_fields)
        if spec.startswith("file://"):
            spec = spec[len("file://"):]
        self._remote = _is_url(spec)
        patterns = _brace_expand(spec)
        self._fs_url: str | None = None  # the filesystem of remote shards, made again where they are read
        if self._remote:
            fs, paths, sizes = _remote_shards(patterns)
            self._fs_url = patterns[0]
        else:
            fs, paths, sizes = None, _local_shards(patterns), []  # local sizes come from the open file
        repeated = sorted({p for p in paths if paths.count(p) > 1}) if len(set(paths)) < len(paths) else []
        if repeated:
            raise SourceError(f"shard {repeated[0]!r} is listed more than once; name each shard once")
        join = posixpath if self._remote else os.path
        dirs = sorted({join.dirname(p) for p in paths})
        try:
            root = dirs[0] if len(dirs) == 1 else join.commonpath(dirs)
        except ValueError:
            root = ""
        names = [p[len(root):].lstrip("/" + os.sep).replace(os.sep, "/") if root else p for p in paths]

        index = _Index()
        damaged: list[tuple[str, str]] = []
        self._cache: dict[str, Any] = {}
        read_paths: list[str] = []
        read_names: list[str] = []
        read_sizes: list[int] = []
        with Progress(len(paths), "indexing shards", unit="shard",
                      enabled=progress and len(paths) >= _PROGRESS_SHARDS, log_every=30.0) as bar:
            for s, (path, name) in enumerate(zip(paths, names)):
                if limit is not None and len(index) >= limit:
                    break
                search = "txt" if caption is None else caption or None
                if self._remote:
                    size, damage = self._index_remote(fs, path, sizes[s], s, name, search, index)
                else:
                    size, damage = self._index_local(path, s, name, search, index)
                read_paths.append(path)
                read_names.append(name)
                read_sizes.append(size)
                if damage is not None:
                    damaged.append((name, damage))
                bar.update()
        if damaged:
            name, why = damaged[0]
            warnings.warn(
                f"{len(damaged)} of {len(read_paths)} shards are truncated or damaged (first: {name}: {why}); "
                "their complete samples are kept and a sample cut off is a failed sample",
                stacklevel=2,
            )
        if not len(index):
            raise SourceError(f"the shards at {spec!r} hold no samples ({len(read_paths)} shards read)")

        n = len(index) if limit is None else min(limit, len(index))
        # Packed, like the ids: a source is pickled to every DataLoader worker.
        self._paths: Sequence[str] = _PackedStrings(read_paths)
        self._names: Sequence[str] = _PackedStrings(read_names)
        self._sizes = np.array(read_sizes, np.int64)
        self._shard = np.frombuffer(index.shard, np.int64)[:n].astype(np.int32)
        self._spans = np.frombuffer(index.spans, np.int64).reshape(-1, 3, 2)[:n].copy()
        self._problems = {i: why for i, why in index.problems.items() if i < n}
        if caption is None:
            first = self._spans[:_FIRST_SAMPLES, _CAPTION, 0]
            caption = "txt" if (first >= 0).any() else ""
        self.caption_key = caption or None
        labels = np.frombuffer(index.labels, np.int64)[:n]
        root_name = fs.unstrip_protocol(root) if self._remote else root
        super().__init__(root_name, index.ids, labels, None, limit)
        self.columns = {"caption": "text"} if self.caption_key else {}
        for field, kind in self.json_fields:
            if field in self.columns:
                raise SourceError(f"json field {field!r} has the caption column's name; leave it out of json_fields")
            self.columns[field] = kind

    # -- the index pass -----------------------------------------------------------
    def _index_local(self, path: str, s: int, name: str, caption: str | None, index: _Index) -> tuple[int, str | None]:
        try:
            fd = open_regular(path)
        except FileNotFoundError:
            raise SourceError(f"shard {path!r} does not exist; check the path") from None
        except OSError as e:  # UnreadableFileError: a FIFO, device, directory, loop
            raise SourceError(f"cannot read shard {path}: {getattr(e, 'reason', None) or e.strerror or e}") from None
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(fd).st_size
            tf = self._open_tar(f, "r:", path, size)
            if tf is None:
                return size, "it is empty or shorter than one tar header"
            try:
                return size, _index_shard(tf, size, s, name, caption, index, lambda at, n: os.pread(fd, n, at))
            except OSError as e:
                raise SourceError(f"cannot read shard {path}: {e.strerror or e}") from None

    def _index_remote(self, fs, path: str, size: int | None, s: int, name: str, caption: str | None,
                      index: _Index) -> tuple[int, str | None]:
        url = fs.unstrip_protocol(path)
        try:
            size = fs.size(path) if size is None else size
            if size is None:
                raise SourceError(f"the server does not tell the size of shard {url}; download the shards first")
            with fs.open(path, "rb") as f:
                tf = self._open_tar(f, "r|", url, size)
                if tf is None:
                    return size, "it is empty or shorter than one tar header"
                read_at = lambda at, n: fs.cat_file(path, start=at, end=at + n)
                return size, _index_shard(tf, size, s, name, caption, index, read_at)
        except SourceError:
            raise
        except Exception as e:  # fsspec raises whatever its backend raises
            raise SourceError(f"cannot read shard {url}: {e}") from e

    @staticmethod
    def _open_tar(f, mode: Literal["r:", "r|"], where: str, size: int) -> tarfile.TarFile | None:
        """The open tar (``None`` for a shard cut off inside its first header)."""
        try:
            return tarfile.open(fileobj=f, mode=mode, encoding="utf-8", errors="surrogateescape")
        except tarfile.ReadError as e:
            if size < tarfile.BLOCKSIZE:
                return None
            raise SourceError(
                f"shard {where} is not a tar file ({e}); pass uncompressed .tar shards "
                "(decompress a .tar.gz first)"
            ) from None

    # -- reads --------------------------------------------------------------------
    def __getstate__(self) -> dict:
        # An fsspec filesystem is made again in the reading process.
        return {**self.__dict__, "_cache": {}}

    def _where(self, i: int) -> str:
        return f"{self.root}/{self.ids[i]}" if self.root else self.ids[i]

    def _read_span(self, shard: int, offset: int, size: int, where: str) -> bytes:
        path = self._paths[shard]
        if self._remote:
            fs = self._cache.get("fs")
            if fs is None:
                import fsspec

                fs = self._cache["fs"] = fsspec.core.url_to_fs(self._fs_url)[0]
            try:
                return bytes(fs.cat_file(path, start=offset, end=offset + size))
            except FileNotFoundError:
                raise ImageDecodeError("the shard is gone (deleted since it was indexed)", where) from None
            except Exception as e:  # fsspec raises whatever its backend raises
                raise ImageDecodeError(f"cannot read the shard: {e}", where) from e
        try:
            fd = open_regular(path)
        except FileNotFoundError:
            raise ImageDecodeError("the shard is gone (deleted since it was indexed)", where) from None
        except OSError as e:  # UnreadableFileError
            raise ImageDecodeError(getattr(e, "reason", None) or f"cannot read the shard: {e.strerror or e}", where) from None
        try:
            chunks, got = [], 0
            while got < size:
                block = os.pread(fd, min(size - got, 16 << 20), offset + got)
                if not block:
                    break
                chunks.append(block)
                got += len(block)
            return b"".join(chunks)
        except OSError as e:
            raise ImageDecodeError(f"cannot read the shard: {e.strerror or e}", where) from None
        finally:
            os.close(fd)

    def _member(self, i: int, slot: int, what: str, cap: int, where: str) -> bytes:
        offset, size = (int(v) for v in self._spans[i, slot])
        if offset < 0:
            raise ImageDecodeError(f"no {what} member", where)
        if size > cap:
            raise ImageDecodeError(f"the {what} member is {size:,} bytes, more than the {cap:,} it may have", where)
        data = self._read_span(int(self._shard[i]), offset, size, where)
        if len(data) != size:
            raise ImageDecodeError(
                f"the shard ends inside the {what} member ({len(data):,} of {size:,} bytes): it is truncated "
                "(or changed since it was indexed)", where
            )
        return data

    def read(self, i: int) -> tuple[bytes, int]:
        i = _check_index(i, len(self))
        where = self._where(i)
        if i in self._problems:
            raise ImageDecodeError(self._problems[i], where)
        return self._member(i, _IMAGE, "image", MAX_IMAGE_FILE_BYTES, where), int(self.labels[i])

    def read_fields(self, i: int) -> dict[str, object]:
        i = _check_index(i, len(self))
        where = self._where(i)
        fields: dict[str, object] = {}
        if self.caption_key:
            what = f".{self.caption_key} caption"
            data = self._member(i, _CAPTION, what, MAX_FIELD_BYTES, where)
            try:
                text = data.decode("utf-8").strip()
            except UnicodeDecodeError as e:
                raise ImageDecodeError(f"the {what} is not valid UTF-8 (byte {e.start})", where) from None
            if not text:
                raise ImageDecodeError(f"the {what} is empty", where)
            fields["caption"] = text
        if self.json_fields:
            doc = self._json(i, where)
            for name, kind in self.json_fields:
                value = None if doc is None else doc.get(name)
                if value is None:
                    if kind != "float64":
                        missing = "there is no .json member" if doc is None else "absent or null in the .json member"
                        raise ImageDecodeError(f"json field {name!r} is missing ({missing})", where)
                    fields[name] = math.nan
                else:
                    fields[name] = _json_value(name, kind, value, where)
        return fields

    def _json(self, i: int, where: str) -> dict | None:
        """The sample's ``.json`` object, ``None`` without one; ImageDecodeError when it is broken."""
        if self._spans[i, _JSON, 0] < 0:
            return None
        data = self._member(i, _JSON, ".json", MAX_FIELD_BYTES, where)
        try:
            doc = json.loads(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise ImageDecodeError(f"the .json member is not valid UTF-8 (byte {e.start})", where) from None
        except json.JSONDecodeError as e:
            raise ImageDecodeError(f"the .json member is not JSON ({e.msg} at byte {e.pos})", where) from None
        except RecursionError:
            raise ImageDecodeError("the .json member is nested too deeply", where) from None
        if not isinstance(doc, dict):
            raise ImageDecodeError(f"the .json member holds {type(doc).__name__}, not an object", where)
        return doc

    def _describe_extra(self) -> dict:
        digest = hashlib.sha256()
        for name, size in zip(self._names, self._sizes.tolist()):  # names relative to the root: a moved folder matches
            digest.update(f"{name}\0{size}\n".encode("utf-8", "surrogateescape"))
        return {
            "shards": len(self._paths),
            "shards_sha256": digest.hexdigest(),
            "caption_key": self.caption_key,
            "json_fields": ",".join(f"{name}:{kind}" for name, kind in self.json_fields) or None,
        }


def _json_value(name: str, kind: str, value, where: str) -> object:
    shown = repr(value)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    if kind == "text":
        if not isinstance(value, str):
            raise ImageDecodeError(f"json field {name!r} holds {shown}, not text", where)
        return _check_text(value, f"json field {name!r}", where)
    if kind == "int64":
        if type(value) is not int or not -(1 << 63) <= value < 1 << 63:
            raise ImageDecodeError(f"json field {name!r} holds {shown}, not an int64 integer", where)
        return value
    if type(value) not in (int, float):
        raise ImageDecodeError(f"json field {name!r} holds {shown}, not a number", where)
    try:
        return float(value)
    except OverflowError:
        raise ImageDecodeError(f"json field {name!r} holds {shown}, beyond float64", where) from None
