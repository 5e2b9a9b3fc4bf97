"""Moving a store between filesystems: ``pull``, ``push`` and the local cache of a remote store.

One mechanism, over fsspec filesystems on both sides (a local directory is
fsspec's ``file`` filesystem): list the source's files, copy those the
destination lacks or holds with another size, in parallel, then the metadata
documents, the group's ``zarr.json`` last, so that a half-copied store never
opens as complete. Every chunk file with a crc32c trailer (latentstore's
default codecs) is checked against it on the bytes that were moved: a corrupt
or truncated file is refused, named, and never lands. A local destination
receives each file by atomic rename, so a killed transfer leaves only whole,
verified files, and a rerun copies what is missing.
"""

import contextlib
import hashlib
import json
import mmap
import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from latentstore import format as fmt
from latentstore.errors import CorruptChunkError, FormatError, StoreNotFoundError, TransferError
from latentstore.progress import Progress
from latentstore.store.files import parse_json

#: Parallel transfers: object stores answer many small requests best in parallel.
DEFAULT_WORKERS = 16
#: The Hugging Face Hub's limits (huggingface.co/docs/hub/storage-limits): files per folder and file size.
HUB_FILES_PER_FOLDER = 10_000
HUB_MAX_FILE_BYTES = 50 << 30
CACHE_ENV = "LATENTSTORE_CACHE_DIR"


def filesystem(url: str):
    """(fsspec filesystem, root path) for a URL or a local directory."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(str(url))
    except Exception as exc:  # fsspec raises whatever its backend raises
        raise StoreNotFoundError(f"cannot reach {url}: {exc}") from exc


@dataclass
class TransferReport:
    """What a transfer did: files and bytes copied, files already there."""

    source: str
    destination: str
    files_copied: int = 0
    bytes_copied: int = 0
    files_kept: int = 0

    def summary(self) -> str:
        return (f"{self.source} -> {self.destination}: {self.files_copied:,} files ({self.bytes_copied / 1e6:,.1f} MB) "
                f"copied, {self.files_kept:,} already there")


def _checksummed_arrays(documents: dict[str, dict]) -> set[str]:
    """The arrays (by folder) whose chunk files end in a crc32c of their bytes."""
    arrays = set()
    for key, document in documents.items():
        if key.endswith("/zarr.json") and document.get("node_type") == "array":
            codecs = [c.get("name") for c in document.get("codecs", []) if isinstance(c, dict)]
            if codecs and codecs[-1] == "crc32c":
                arrays.add(key[: -len("/zarr.json")])
    return arrays


def check_crc32c(data: bytes, key: str) -> None:
    """Raise CorruptChunkError unless ``data`` ends in the crc32c of the bytes before it."""
    import google_crc32c

    import numpy as np

    array, _, chunk = key.partition("/c/")
    # A read-only numpy view: its slices do not copy a 32 MiB chunk, and google_crc32c takes it
    # (it refuses memoryview and mmap objects).
    view = np.frombuffer(data, dtype=np.uint8)
    intact = len(view) >= 4 and google_crc32c.value(view[:-4]) == int.from_bytes(view[-4:].tobytes(), "little")
    del view  # a traceback must not keep a mapped file's buffer exported
    if not intact:
        raise CorruptChunkError(array, int(chunk.split("/")[0]) if chunk.split("/")[0].isdigit() else -1,
                                f"{key} fails its crc32c check (corrupt or truncated at the source); "
                                "restore that file at the source, then rerun")


class _Side:
    """One end of a transfer: a filesystem and the store's root on it."""

    def __init__(self, url: str):
        self.url = str(url)
        self.fs, self.root = filesystem(url)
        self.local = fmt.local_path(self.url) is not None

    def path(self, key: str) -> str:
        return f"{self.root.rstrip('/')}/{key}"

    def listing(self) -> dict[str, dict]:
        """key -> fsspec info (size, and an ETag or mtime where the filesystem has one) of every file."""
        self.fs.invalidate_cache()  # a listing cached by fsspec would hide a changed store
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return {}
        except Exception as exc:
            raise TransferError(self.root, self.url, f"cannot list it: {type(exc).__name__}: {exc}") from exc
        prefix = self.root.rstrip("/") + "/"
        return {path[len(prefix):]: info for path, info in found.items()
                if info.get("type", "file") == "file" and path.startswith(prefix)}

    def read(self, key: str) -> bytes:
        try:
            return self.fs.cat_file(self.path(key))
        except Exception as exc:  # fsspec backends raise their own kinds for a lost connection
            raise TransferError(key, self.url, f"{type(exc).__name__}: {exc}") from exc

    def write(self, key: str, data: bytes) -> None:
        if not self.local:
            self.fs.pipe_file(self.path(key), data)  # an object store's put is atomic
            return
        with self._landing(key) as temporary:
            with open(temporary, "wb") as f:
                f.write(data)

    @contextlib.contextmanager
    def _landing(self, key: str):
        """A temporary file beside ``key`` that becomes it by atomic rename when the block ends
        without an error, and is removed otherwise: nothing half-written ever reads as ``key``."""
        target = Path(self.path(key))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
        os.close(fd)
        try:
            yield temporary
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def fetch_from(self, source: "_Side", key: str, size: int | None, checksummed: bool) -> int:
        """Copy ``key`` from a remote ``source`` into this local side, streamed to disk as the
        filesystem's own ``get`` does (no whole-file buffer), checked (size, crc32c), then renamed
        into place. Returns the bytes copied."""
        with self._landing(key) as temporary:
            try:
                source.fs.get_file(source.path(key), temporary)
            except Exception as exc:  # fsspec backends raise their own kinds for a lost connection
                raise TransferError(key, source.url, f"{type(exc).__name__}: {exc}") from exc
            got = os.path.getsize(temporary)
            if size is not None and got != size:
                raise CorruptChunkError(key.split("/c/")[0], -1, f"{key} is {got} bytes, listed as {size}")
            if checksummed and got < 4:
                check_crc32c(b"", key)  # raises: too short to end in a checksum
            if checksummed:
                with open(temporary, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                    check_crc32c(data, key)
        return got


#: The array-to-bytes codecs whose chunks push --compress wraps in zstd (and pull unwraps):
#: fixed-size values, and the variable-length text and bytes of columns.
SERIALIZERS = ("bytes", "vlen-utf8", "vlen-bytes")


def _plain(names: tuple) -> bool:
    return len(names) == 2 and names[0] in SERIALIZERS and names[1] == "crc32c"


def _zstd(names: tuple) -> bool:
    return len(names) == 3 and names[0] in SERIALIZERS and names[1:] == ("zstd", "crc32c")
ZSTD_LEVEL = 3


def _codec_names(document: dict) -> tuple:
    return tuple(c.get("name") for c in document.get("codecs", []) if isinstance(c, dict))


def _recoded(document: dict, compress: bool) -> dict:
    """An array's metadata with zstd between its bytes and crc32c codecs (``compress``), or without it."""
    bytes_codec, *_, crc_codec = document["codecs"]
    middle = [{"name": "zstd", "configuration": {"level": ZSTD_LEVEL, "checksum": False}}] if compress else []
    return {**document, "codecs": [bytes_codec, *middle, crc_codec]}


def _with_crc32c(payload: bytes) -> bytes:
    import google_crc32c

    return payload + google_crc32c.value(payload).to_bytes(4, "little")


def _compress_chunk(data: bytes) -> bytes:
    from numcodecs import Zstd

    return _with_crc32c(bytes(Zstd(level=ZSTD_LEVEL).encode(data[:-4])))


def _decompress_chunk(data: bytes, key: str, nbytes: int | None) -> bytes:
    """A zstd chunk's payload decompressed, with its crc32c; ``nbytes`` the size it must have
    (None for the variable-length chunks of text and bytes columns)."""
    import numpy as np
    from numcodecs import Zstd

    out = None if nbytes is None else np.empty(nbytes, dtype=np.uint8)
    try:
        raw = bytes(np.frombuffer(Zstd().decode(data[:-4], out=out), dtype=np.uint8))
    except (ValueError, RuntimeError) as exc:
        size = "its" if nbytes is None else f"its {nbytes}"
        raise CorruptChunkError(key.split("/c/")[0], -1, f"{key} does not decompress to {size} bytes: {exc}") from None
    return _with_crc32c(raw)


@dataclass(frozen=True)
class _Snapshot:
    """What a store's source holds at one moment: every file's listing entry and the metadata documents' bytes."""

    side: "_Side"
    files: dict
    raw: dict

    @classmethod
    def of(cls, url: str) -> "_Snapshot":
        side = _Side(url)
        files = side.listing()
        if "zarr.json" not in files:
            raise StoreNotFoundError(f"no latent store at {url} (no zarr.json); check the URL")
        return cls(side, files, {key: side.read(key) for key in files if key.endswith("zarr.json")})

    def key(self) -> str:
        """What identifies the store's content: its URL, every metadata document, and every file's
        size and ETag (or mtime, where the filesystem has no ETag). A rewritten chunk or a new
        revision changes it, so a changed store is never served stale from the cache."""
        digest = hashlib.sha256(self.side.url.encode())
        for key in sorted(self.files):
            info = self.files[key]
            tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or ""
            digest.update(f"{key}\0{info.get('size')}\0{tag}\n".encode())
            if key in self.raw:
                digest.update(self.raw[key])
        return digest.hexdigest()[:24]


def transfer(source_url: str, destination_url: str, *, workers: int = DEFAULT_WORKERS, progress: bool = False,
             allow_incomplete: bool = False, compress: str | None = None,
             description: str = "transfer") -> TransferReport:
    """Copy the store at ``source_url`` to ``destination_url``: missing or different files only, verified.

    ``compress="zstd"`` publishes the chunks zstd-compressed (a standard Zarr
    store still: codecs bytes, zstd, crc32c). A compressed source copied to a
    local directory is decompressed once, chunk by chunk and verified, into
    the plain layout the memory-mapped reader needs.

    Raises StoreNotFoundError when the source holds no store, FormatError for
    an incomplete store unless ``allow_incomplete``, and CorruptChunkError
    naming the first chunk file that fails its checksum (the files before it
    are in place; a rerun resumes).
    """
    return _copy_store(_Snapshot.of(source_url), destination_url, workers=workers, progress=progress,
                       allow_incomplete=allow_incomplete, compress=compress, description=description)


def _copy_store(snapshot: _Snapshot, destination_url: str, *, workers: int, progress: bool, allow_incomplete: bool,
                compress: str | None, description: str) -> TransferReport:
    """:func:`transfer` of what ``snapshot`` saw: the files listed then, with the metadata read then."""
    source, files, raw = snapshot.side, snapshot.files, dict(snapshot.raw)
    source_url, destination = source.url, _Side(destination_url)
    documents = {key: parse_json(data, f"{source_url}/{key}") for key, data in raw.items()}
    attributes = documents["zarr.json"].get("attributes", {}).get(fmt.ATTRIBUTE_KEY)
    if not isinstance(attributes, dict):
        raise FormatError(f"{source_url} is a Zarr group but not a latent store")
    if not attributes.get("complete") and not allow_incomplete:
        raise FormatError(f"{source_url} is not finalized (complete is false): finish the encode first, "
                          "or pass --allow-incomplete to copy it as it is")
    if compress not in (None, "zstd"):
        raise ValueError(f"compress must be None or 'zstd', got {compress!r}")
    checksummed = _checksummed_arrays(documents)
    # Arrays whose chunks change form on the way: compressed for a push, decompressed into a local copy.
    recode: dict[str, str] = {}
    for key, document in documents.items():
        if key == "zarr.json" or document.get("node_type") != "array":
            continue
        array, names = key[: -len("/zarr.json")], _codec_names(document)
        if compress and _plain(names):
            recode[array] = "compress"
        elif destination.local and _zstd(names):
            recode[array] = "decompress"
    for array, how in recode.items():
        raw[f"{array}/zarr.json"] = (json.dumps(_recoded(documents[f"{array}/zarr.json"], how == "compress"), indent=2)
                                     .encode())
    there = destination.listing()
    chunks = sorted(k for k in files if not k.endswith("zarr.json"))

    def done(key: str) -> bool:
        if key.split("/c/")[0] in recode:  # another size by design; files land whole, so being there is enough
            return key in there
        return there.get(key, {}).get("size") == files[key].get("size")

    todo = [k for k in chunks if not done(k)]
    report = TransferReport(source_url, destination_url, files_kept=len(chunks) - len(todo))
    lock = threading.Lock()
    bar = Progress(sum(int(files[k].get("size") or 0) for k in todo), description, unit="B", enabled=progress)

    def copy(key: str) -> None:
        array = key.split("/c/")[0]
        if destination.local and not source.local and array not in recode:
            copied = destination.fetch_from(source, key, files[key].get("size"), array in checksummed)
            with lock:
                report.files_copied += 1
                report.bytes_copied += copied
                bar.update(copied)
            return
        data = source.read(key)
        if len(data) != files[key].get("size", len(data)):
            raise CorruptChunkError(key.split("/c/")[0], -1, f"{key} is {len(data)} bytes, listed as {files[key]['size']}")
        array = key.split("/c/")[0]
        if array in checksummed:
            check_crc32c(data, key)
        if recode.get(array) == "compress":
            data = _compress_chunk(data)
        elif recode.get(array) == "decompress":
            data = _decompress_chunk(data, key, _chunk_nbytes(documents[f"{array}/zarr.json"]))
        try:
            destination.write(key, data)
        except Exception as exc:
            raise TransferError(key, source_url, f"writing to {destination_url} failed: {type(exc).__name__}: {exc}") from exc
        with lock:
            report.files_copied += 1
            report.bytes_copied += len(data)
            bar.update(len(data))

    try:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            futures = [pool.submit(copy, key) for key in todo]
            try:
                for future in futures:
                    future.result()
            except BaseException:
                for future in futures:  # the first failure ends the transfer: no waiting on the rest
                    future.cancel()
                raise
    finally:
        bar.close()
    # The metadata last, the group's own document at the very end: until it
    # lands, the destination is not a store that opens as complete.
    for key in sorted((k for k in raw if k != "zarr.json"), key=len, reverse=True):
        destination.write(key, raw[key])
    destination.write("zarr.json", raw["zarr.json"])
    return report


def _chunk_nbytes(document: dict) -> int | None:
    """Bytes of one decoded chunk; None for the variable-length data types."""
    import numpy as np

    if document["data_type"] in {name for name, _ in fmt.VLEN_TYPES.values()}:
        return None
    shape = document["chunk_grid"]["configuration"]["chunk_shape"]
    return int(np.prod(shape)) * np.dtype(document["data_type"]).itemsize


def check_hub_limits(local_dir: str) -> list[str]:
    """Why the store at ``local_dir`` would break the Hugging Face Hub's limits, as advice (empty: fine)."""
    problems = []
    root = Path(local_dir)
    for directory, _, names in os.walk(root):
        if len(names) > HUB_FILES_PER_FOLDER:
            problems.append(f"{Path(directory).relative_to(root)} holds {len(names):,} files, more than the Hub's "
                            f"{HUB_FILES_PER_FOLDER:,} per folder: re-chunk with larger --chunk-samples")
        for name in names:
            if (Path(directory) / name).stat().st_size > HUB_MAX_FILE_BYTES:
                problems.append(f"{name} is larger than the Hub's {HUB_MAX_FILE_BYTES >> 30} GB per file: "
                                "use smaller --chunk-samples")
    return problems


# -- the local cache of remote stores ---------------------------------------------
def cache_root(cache_dir=None) -> Path:
    """Where remote stores are cached: ``cache_dir``, else $LATENTSTORE_CACHE_DIR, else the user's cache directory."""
    if cache_dir is not None:
        return Path(cache_dir)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "latentstore"


def cached_copy(url: str, *, cache_dir=None, workers: int = DEFAULT_WORKERS, progress: bool = False) -> Path:
    """A verified local copy of the remote store at ``url``, fetched once per content (``_Snapshot.key``).

    Processes that open the same store at once (DataLoader workers, ranks on
    one node) take a file lock: one fetches, the others wait and then find
    the copy done. A copy counts as done only once its ``.complete`` marker
    lands, after every file was verified.
    """
    import fcntl

    snapshot = _Snapshot.of(url)
    key = snapshot.key()
    root = cache_root(cache_dir)
    target = root / key
    done = target / ".complete"
    if done.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                _copy_store(snapshot, str(target), workers=workers, progress=progress, allow_incomplete=True,
                            compress=None, description="fetching")
                (target / ".source").write_text(url + "\n")
                done.write_text(key + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return target


def cache_entries(cache_dir=None) -> list[dict]:
    """Every cached store: its key, URL, size on disk and whether it is complete."""
    root = cache_root(cache_dir)
    entries = []
    for entry in sorted(root.iterdir()) if root.is_dir() else []:
        if not entry.is_dir():
            continue
        source = entry / ".source"
        size = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
        entries.append({"key": entry.name, "url": source.read_text().strip() if source.exists() else None,
                        "bytes": size, "complete": (entry / ".complete").exists(), "path": str(entry)})
    return entries


def clear_cache(cache_dir=None, url: str | None = None) -> int:
    """Delete cached stores (all of them, or those of ``url``); return the bytes freed."""
    import shutil

    freed = 0
    for entry in cache_entries(cache_dir):
        if url is None or entry["url"] == url:
            shutil.rmtree(entry["path"])
            Path(entry["path"] + ".lock").unlink(missing_ok=True)
            freed += entry["bytes"]
    return freed
