"""Row access to the latents: memory-mapped chunk files, or zarr as a fallback.

Both classes answer one question for the gather kernels: given row numbers,
where do the bytes of those rows live? ``MappedChunks`` maps every chunk
file of an uncompressed local array once and hands out the chunk addresses;
``ZarrRows`` reads the needed rows through zarr-python (compressed or remote
stores) into one block. Row numbers run over a *padded* space in which
array ``a`` of the list starts at ``a * padded_rows``: that is how a sample's
horizontally flipped latent (``flip/latents``) is addressed without a second
code path.
"""

import mmap
import os
from pathlib import Path

import numpy as np

from latentstore.errors import CorruptChunkError
from latentstore.format import ArrayLayout


def _check_file_size(name: str, chunk: int, size: int, layout: ArrayLayout) -> None:
    if size != layout.chunk_file_nbytes:
        raise CorruptChunkError(
            name,
            chunk,
            f"chunk file is {size} bytes, expected {layout.chunk_file_nbytes}; "
            "run 'latentstore verify' on the store to list every damaged chunk",
        )


def read_chunk_file(path: Path, name: str, chunk: int, layout: ArrayLayout) -> np.ndarray | None:
    """The data bytes of one uncompressed chunk file, or None if it does not exist."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    _check_file_size(name, chunk, len(data), layout)
    return np.frombuffer(data, dtype=np.uint8, count=layout.chunk_nbytes)


def load_local_array(directory: Path, name: str, layout: ArrayLayout) -> np.ndarray:
    """A whole small uncompressed array, padded to whole chunks; missing chunks read as 0."""
    rows = layout.num_chunks * layout.chunk_shape[0]
    out = np.zeros((rows, *layout.shape[1:]), dtype=layout.dtype.newbyteorder("<"))
    flat = out.reshape(layout.num_chunks, -1).view(np.uint8) if rows else out
    for k in range(layout.num_chunks):
        data = read_chunk_file(directory / layout.chunk_key(k), name, k, layout)
        if data is not None:
            flat[k] = data
    return out.astype(layout.dtype.newbyteorder("="), copy=False)


class MappedChunks:
    """Chunk files of one or more same-shaped local arrays, each mapped read-only once."""

    def __init__(self, arrays: list[tuple[Path, str, ArrayLayout]]):
        layout = arrays[0][2]
        self.chunk_rows = layout.chunk_shape[0]
        self._buffers = []
        addresses = []
        for directory, name, array_layout in arrays:
            for k in range(array_layout.num_chunks):
                buffer = self._map(directory / array_layout.chunk_key(k), name, k, array_layout)
                self._buffers.append(buffer)
                addresses.append(buffer.ctypes.data)
        self.addresses = np.array(addresses, dtype=np.uintp)

    def _map(self, path: Path, name: str, chunk: int, layout: ArrayLayout) -> np.ndarray:
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            # Not written yet: its samples are invalid; zeros keep reads safe.
            return np.zeros(layout.chunk_nbytes, dtype=np.uint8)
        try:
            _check_file_size(name, chunk, os.fstat(fd).st_size, layout)
            mapping = mmap.mmap(fd, layout.chunk_nbytes, access=mmap.ACCESS_READ)
        finally:
            os.close(fd)
        if hasattr(mapping, "madvise"):
            mapping.madvise(mmap.MADV_RANDOM)
        return np.frombuffer(mapping, dtype=np.uint8)

    def locate(self, rows: np.ndarray, scale_bits: np.ndarray | None):
        """What the kernels need for ``rows``: (chunk addresses, rows per chunk,
        kernel row numbers, the scales table those numbers index, keep-alive)."""
        return self.addresses, self.chunk_rows, rows, scale_bits, self


class ZarrRows:
    """Rows of one or more same-shaped zarr arrays, read through zarr-python."""

    def __init__(self, arrays: list, padded_rows: int):
        self.arrays = arrays
        self.padded_rows = padded_rows

    def fetch(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The distinct requested rows (sorted) as one C-contiguous block, those
        rows' numbers, and each requested row's place in the block."""
        unique, inverse = np.unique(rows, return_inverse=True)
        which = unique // self.padded_rows
        parts = []
        for a, array in enumerate(self.arrays):
            wanted = unique[which == a] - a * self.padded_rows
            if wanted.size:
                parts.append(array.get_orthogonal_selection((wanted,)))
        if not parts:
            return np.empty((0, *self.arrays[0].shape[1:]), self.arrays[0].dtype), unique, inverse
        return np.ascontiguousarray(np.concatenate(parts)), unique, inverse.reshape(-1).astype(np.int64)

    def locate(self, rows: np.ndarray, scale_bits: np.ndarray | None):
        """As ``MappedChunks.locate``, over a block of freshly read rows."""
        block, unique, local_rows = self.fetch(rows)
        block_scales = None if scale_bits is None else np.ascontiguousarray(scale_bits[unique])
        return np.array([block.ctypes.data], dtype=np.uintp), max(len(block), 1), local_rows, block_scales, block
