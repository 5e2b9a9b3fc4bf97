"""The files of a store, local or behind an fsspec URL: JSON documents, chunk files, arrays.

For the code that looks at a store's files rather than its values: the
writer (which chunks are finished) and ``inspection.verify`` (damage).
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from latentstore import format as fmt
from latentstore._filesystem import open_regular, read_regular
from latentstore.errors import FormatError, StoreNotFoundError, UnreadableFileError

#: Bytes read at a time when streaming a chunk file.
BLOCK_BYTES = 4 << 20


def store_files(path) -> "LocalFiles | FsspecFiles":
    """The files of the store at ``path`` (a directory, ``file://`` path or fsspec URL)."""
    root = fmt.local_path(path)
    return LocalFiles(root) if root is not None else FsspecFiles(str(path))


class LocalFiles:
    """A store directory: JSON documents and chunk files read straight from disk."""

    local = True

    def __init__(self, root: Path):
        self.root = root
        self._group: Any = None

    def read_json(self, key: str) -> dict | None:
        """The parsed document, None if absent; FormatError if unreadable.

        Only a regular file of at most ``format.MAX_METADATA_BYTES`` is read:
        a FIFO there would block forever, a link to /dev/zero never end.
        """
        try:
            text = read_regular(self.root / key, fmt.MAX_METADATA_BYTES)
        except FileNotFoundError:
            return None
        except UnreadableFileError as exc:
            raise FormatError(f"{exc}; the store is damaged, restore this file from the original") from None
        return parse_json(text, str(self.root / key))

    def size(self, key: str) -> int | None:
        """The size of a regular file, None if absent; UnreadableFileError for anything else there."""
        try:
            fd = open_regular(self.root / key)
        except FileNotFoundError:
            return None
        try:
            return os.fstat(fd).st_size
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        """Whether a regular file is there (what a finished chunk leaves)."""
        return (self.root / key).is_file()

    def lexists(self, key: str) -> bool:
        """Whether anything is there: a file, a directory, a FIFO, a dangling link."""
        return os.path.lexists(self.root / key)

    def stream(self, key: str, nbytes: int) -> Iterator[bytes]:
        """The first ``nbytes`` of a file in blocks, then its remaining bytes as one block."""
        with os.fdopen(open_regular(self.root / key), "rb", buffering=0) as f:
            left = nbytes
            while left:
                block = f.read(min(BLOCK_BYTES, left))
                if not block:
                    return
                left -= len(block)
                yield block
            yield f.read()

    def zarr_array(self, name: str):
        import zarr

        if self._group is None:
            self._group = zarr.open_group(str(self.root), mode="r", zarr_format=3)
        return self._group[name]


class FsspecFiles:
    """A store behind an fsspec URL: its files read with fsspec, its arrays with zarr-python."""

    local = False

    def __init__(self, url: str):
        import fsspec

        self.url = url
        try:
            self._fs, self._root = fsspec.core.url_to_fs(url)
        except Exception as exc:  # fsspec raises whatever its backend raises
            raise StoreNotFoundError(f"cannot open {url}: {exc}") from exc
        self._group: Any = None

    def _get(self, key: str) -> bytes | None:
        try:
            return self._fs.cat_file(f"{self._root}/{key}")
        except FileNotFoundError:
            return None

    def read_json(self, key: str) -> dict | None:
        data = self._get(key)
        if data is not None and len(data) > fmt.MAX_METADATA_BYTES:
            raise FormatError(f"{self.url}/{key} is {len(data):,} bytes, more than metadata may have; the store is damaged")
        return None if data is None else parse_json(data, f"{self.url}/{key}")

    def exists(self, key: str) -> bool:
        return self._fs.exists(f"{self._root}/{key}")

    lexists = exists

    def zarr_array(self, name: str):
        import zarr

        if self._group is None:
            self._group = zarr.open_group(self.url, mode="r", zarr_format=3)
        return self._group[name]


def parse_json(data: bytes, where: str) -> dict:
    """The JSON object in ``data`` (the file ``where``); FormatError for anything else."""
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{where} is not valid JSON ({exc}); the file is damaged, restore it from the original") from exc
    except RecursionError:
        raise FormatError(f"{where} nests JSON too deeply to be metadata; the file is damaged") from None
    if not isinstance(document, dict):
        raise FormatError(f"{where} holds a JSON {type(document).__name__}, not an object; the file is damaged")
    return document
