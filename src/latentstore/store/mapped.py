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
import threading
from pathlib import Path

import numpy as np

from latentstore._filesystem import file_size, open_regular
from latentstore.errors import CorruptChunkError, UnreadableFileError
from latentstore.format import ArrayLayout


def _check_file_size(name: str, chunk: int, size: int, layout: ArrayLayout) -> None:
    if size != layout.chunk_file_nbytes:
        raise CorruptChunkError(
            name,
            chunk,
            f"chunk file is {size} bytes, expected {layout.chunk_file_nbytes}; "
            "run 'latentstore verify' on the store to list every damaged chunk",
        )


def _open_chunk(path: Path, name: str, chunk: int, layout: ArrayLayout) -> int | None:
    """A descriptor of the chunk file of the right size, or None when there is no file."""
    try:
        fd = open_regular(path)
    except FileNotFoundError:
        return None
    except UnreadableFileError as exc:
        raise CorruptChunkError(name, chunk, f"{path} {exc.reason}; run 'latentstore verify' on the store") from None
    try:
        _check_file_size(name, chunk, file_size(fd), layout)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_chunk_file(path: Path, name: str, chunk: int, layout: ArrayLayout) -> np.ndarray | None:
    """The data bytes of one uncompressed chunk file, or None if it does not exist."""
    fd = _open_chunk(path, name, chunk, layout)
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as f:
        data = f.read(layout.chunk_file_nbytes)
    _check_file_size(name, chunk, len(data), layout)  # it may have shrunk since it was opened
    return np.frombuffer(data, dtype=np.uint8, count=layout.chunk_nbytes)


def load_local_array(directory: Path, name: str, layout: ArrayLayout, out: np.ndarray | None = None):
    """A whole small uncompressed array, padded to whole chunks, and which chunks had a file.

    Returns ``(values, present)``; the rows of a chunk without a file are 0.
    ``out`` (zeros of the padded shape, in native byte order) is filled in
    place. Only present chunks are touched, so the zero pages of a large,
    mostly unwritten store are never allocated.
    """
    rows = layout.num_chunks * layout.chunk_shape[0]
    dtype = layout.dtype.newbyteorder("=")
    if out is None:
        out = np.zeros((rows, *layout.shape[1:]), dtype=dtype)
    present = np.zeros(layout.num_chunks, dtype=bool)
    per_chunk = out.reshape(layout.num_chunks, -1) if rows else out
    for k in range(layout.num_chunks):
        data = read_chunk_file(directory / layout.chunk_key(k), name, k, layout)
        if data is not None:
            per_chunk[k] = data.view(layout.dtype.newbyteorder("<"))
            present[k] = True
    return out, present


class MappedChunks:
    """Chunk files of one or more same-shaped local arrays, each mapped read-only once.

    ``present[name]`` says which chunks of each array had a file when it was
    mapped; a chunk without one reads as zeros (its samples must be invalid).
    """

    def __init__(self, arrays: list[tuple[Path, str, ArrayLayout]]):
        layout = arrays[0][2]
        self.chunk_rows = layout.chunk_shape[0]
        self._buffers = []
        self.present: dict[str, np.ndarray] = {}
        # One zero buffer stands for every missing chunk: an unwritten store
        # of a billion samples must not reserve a buffer per chunk.
        self._zeros = np.zeros(layout.chunk_nbytes, dtype=np.uint8)
        self._zeros.flags.writeable = False
        addresses = []
        self._arrays = arrays
        self.num_chunks = layout.num_chunks
        for directory, name, array_layout in arrays:
            present = self.present[name] = np.zeros(array_layout.num_chunks, dtype=bool)
            for k in range(array_layout.num_chunks):
                buffer = self._map(directory / array_layout.chunk_key(k), name, k, array_layout)
                present[k] = buffer is not None
                buffer = self._zeros if buffer is None else buffer
                self._buffers.append(buffer)
                addresses.append(buffer.ctypes.data)
        self.addresses = np.array(addresses, dtype=np.uintp)
        #: Chunks (numbered a * num_chunks + k over the arrays) mapped as zeros for want of a file.
        self.missing = {i for i, buffer in enumerate(self._buffers) if buffer is self._zeros}
        self._remapping, self._remapping_pid = threading.Lock(), os.getpid()

    def chunk_key(self, index: int) -> str:
        """The store-relative key of chunk ``index`` (a * num_chunks + k)."""
        a, k = divmod(index, self.num_chunks)
        _, name, layout = self._arrays[a]
        return f"{name}/{layout.chunk_key(k)}"

    def remap(self, indices) -> None:
        """Map chunks whose files have arrived since (a store filled on first touch). A chunk
        another thread mapped meanwhile is left as it is: its mapping may be in a gather."""
        if self._remapping_pid != os.getpid():  # a forked child: the parent's lock may have been held
            self._remapping, self._remapping_pid = threading.Lock(), os.getpid()
        with self._remapping:
            for index in indices:
                if index in self.missing:
                    self._remap(index)

    def _remap(self, index: int) -> None:
        a, k = divmod(index, self.num_chunks)
        directory, name, layout = self._arrays[a]
        buffer = self._map(directory / layout.chunk_key(k), name, k, layout)
        if buffer is None:
            raise CorruptChunkError(name, k, "the chunk file did not arrive; run 'latentstore verify' on the store")
        self._buffers[index] = buffer
        self.addresses[index] = buffer.ctypes.data  # before it leaves ``missing``: readers check that first
        self.missing.discard(index)

    def _map(self, path: Path, name: str, chunk: int, layout: ArrayLayout) -> np.ndarray | None:
        fd = _open_chunk(path, name, chunk, layout)
        if fd is None:
            return None
        try:
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


def read_rows(array, rows: np.ndarray) -> np.ndarray:
    """``array``'s rows through zarr-python; a chunk its codecs cannot decode is a
    CorruptChunkError naming the array and the chunk."""
    try:
        return array.get_orthogonal_selection((rows,))
    except Exception:  # codecs raise anything from ValueError to zstd's RuntimeError
        pass
    chunk_rows = array.chunks[0]
    for chunk in np.unique(rows // chunk_rows).tolist():
        try:
            array[chunk * chunk_rows : (chunk + 1) * chunk_rows]
        except Exception as exc:
            raise CorruptChunkError(
                array.path, chunk, f"the chunk cannot be decoded ({type(exc).__name__}: {exc}); "
                "run 'latentstore verify' on the store"
            ) from exc
    return array.get_orthogonal_selection((rows,))  # it read on a second try: whatever failed was transient


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
                parts.append(read_rows(array, wanted))
        if not parts:
            return np.empty((0, *self.arrays[0].shape[1:]), self.arrays[0].dtype), unique, inverse
        return np.ascontiguousarray(np.concatenate(parts)), unique, inverse.reshape(-1).astype(np.int64)

    def locate(self, rows: np.ndarray, scale_bits: np.ndarray | None):
        """As ``MappedChunks.locate``, over a block of freshly read rows."""
        block, unique, local_rows = self.fetch(rows)
        block_scales = None if scale_bits is None else np.ascontiguousarray(scale_bits[unique])
        return np.array([block.ctypes.data], dtype=np.uintp), max(len(block), 1), local_rows, block_scales, block
