"""Per-sample columns: text, bytes and numbers beside the latents (format version 2).

Numeric columns are small (a few bytes per sample) and are loaded whole when
the store opens, like the labels. Text and bytes columns are Zarr arrays with
the variable-length codecs; decoding a chunk of them through zarr-python
costs a Python object per item of the whole chunk, so a random batch of 256
captions out of 16,384-sample chunks would decode ~76 chunks. Instead
:class:`MappedTextColumn` maps each chunk file once, finds where its items lie
the first time a read touches it (one compiled pass, ``vlen_spans``), keeps
every sample's address and length in two flat tables, and builds only the
requested items (``gather_vlen``). :class:`ZarrColumn` reads through
zarr-python, for compressed or remote stores.
"""

import mmap
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from latentstore import format as fmt
from latentstore._filesystem import file_size, open_regular
from latentstore.errors import CorruptChunkError, UnreadableFileError
from latentstore.format import ArrayLayout, ColumnSpec
from latentstore.quantization._native import kernels as _kernels

_CRC_BYTES = 4


def _damaged(name: str, chunk: int, what: str) -> CorruptChunkError:
    return CorruptChunkError(name, chunk, f"{what}; run 'latentstore verify' on the store to list every damaged chunk")


def describe_span_problem(problem: int, count: int) -> str:
    """What ``vlen_spans``'s return value says is wrong with a chunk."""
    if problem == count:
        return f"the chunk does not hold exactly {count} variable-length items (header or trailing bytes disagree)"
    return f"item {problem} runs past the end of the chunk (truncated or damaged)"


class MappedTextColumn:
    """A local, uncompressed text or bytes column: chunk files mapped, items found on first touch.

    ``present`` says which chunks had a file; the samples of a chunk without
    one read as "" (they are invalid).
    """

    def __init__(self, directory: Path, spec: ColumnSpec, layout: ArrayLayout):
        self.name = spec.array_name
        self.text = spec.kind == fmt.TEXT
        self.chunk_rows = layout.chunk_shape[0]
        self._trailer = _CRC_BYTES if layout.has_checksum else 0
        num_chunks = layout.num_chunks
        self._buffers: list[np.ndarray | None] = [None] * num_chunks
        self._directory, self._layout = directory, layout
        self.present = np.zeros(num_chunks, dtype=bool)
        for k in range(num_chunks):
            self._buffers[k] = self._map(directory / layout.chunk_key(k), k)
            self.present[k] = self._buffers[k] is not None
        rows = num_chunks * self.chunk_rows
        self._addresses = np.zeros(rows, dtype=np.uintp)  # 0 with length 0: an empty item
        self._lengths = np.zeros(rows, dtype=np.int64)
        self._spanned = ~self.present  # a missing chunk needs no pass
        self._remapping, self._remapping_pid = threading.Lock(), os.getpid()

    def chunk_key(self, chunk: int) -> str:
        return f"{self.name}/{self._layout.chunk_key(chunk)}"

    def remap(self, chunk: int) -> None:
        """Map a chunk whose file has arrived since (a store filled on first touch); one another
        thread mapped meanwhile is left as it is (its items may be in a gather)."""
        if self._remapping_pid != os.getpid():  # a forked child: the parent's lock may have been held
            self._remapping, self._remapping_pid = threading.Lock(), os.getpid()
        with self._remapping:
            if self.present[chunk]:
                return
            buffer = self._map(self._directory / self._layout.chunk_key(chunk), chunk)
            if buffer is None:
                raise _damaged(self.name, chunk, "the chunk file did not arrive")
            self._buffers[chunk] = buffer
            self._spanned[chunk] = False  # its items are found on the next read
            self.present[chunk] = True

    def _map(self, path: Path, chunk: int) -> np.ndarray | None:
        try:
            fd = open_regular(path)
        except FileNotFoundError:
            return None
        except UnreadableFileError as exc:
            raise _damaged(self.name, chunk, f"{path} {exc.reason}") from None
        try:
            size = file_size(fd)
            if size < 4 + self._trailer:
                raise _damaged(self.name, chunk, f"chunk file is {size} bytes, too short for a variable-length chunk")
            mapping = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        return np.frombuffer(mapping, dtype=np.uint8)[: size - self._trailer]

    def _span(self, chunk: int) -> None:
        buffer = self._buffers[chunk]
        assert buffer is not None
        start = chunk * self.chunk_rows
        starts = np.empty(self.chunk_rows, dtype=np.int64)
        lengths = self._lengths[start : start + self.chunk_rows]
        problem = _kernels.vlen_spans(buffer, self.chunk_rows, starts, lengths)
        if problem >= 0:
            lengths[:] = 0
            raise _damaged(self.name, chunk, describe_span_problem(problem, self.chunk_rows))
        self._addresses[start : start + self.chunk_rows] = buffer.ctypes.data + starts.view(np.uint64)
        self._spanned[chunk] = True

    def values(self, rows: np.ndarray) -> list:
        """The items of ``rows`` (row numbers in [0, N)), as str or bytes, in order."""
        chunks = rows // self.chunk_rows
        if not self._spanned[chunks].all():
            for chunk in np.unique(chunks[~self._spanned[chunks]]).tolist():
                self._span(chunk)
        try:
            return _kernels.gather_vlen(self._addresses, self._lengths, rows, self.text)
        except UnicodeDecodeError:
            for row in rows.tolist():  # find the chunk to name
                try:
                    _kernels.gather_vlen(self._addresses, self._lengths, np.array([row], np.int64), True)
                except UnicodeDecodeError as exc:
                    raise _damaged(self.name, row // self.chunk_rows, f"sample {row}'s text is not UTF-8 ({exc.reason})") from None
            raise


class ZarrColumn:
    """A text or bytes column read through zarr-python (compressed or remote stores)."""

    def __init__(self, array, spec: ColumnSpec):
        self.array = array
        self.text = spec.kind == fmt.TEXT

    def values(self, rows: np.ndarray) -> list:
        from latentstore.store.mapped import read_rows

        unique, inverse = np.unique(rows, return_inverse=True)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification")
            found = read_rows(self.array, unique) if len(unique) else np.empty(0, object)
        convert = str if self.text else bytes
        items = [convert(v) for v in found]
        return [items[i] for i in inverse.reshape(-1)]

