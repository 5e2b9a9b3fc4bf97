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
import dataclasses
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
#: ``open(url)`` fetches a store below this size whole at open, a larger one on first touch.
PREFETCH_BELOW_BYTES = 4 << 30
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


def check_crc32c(data: "bytes | mmap.mmap", key: str) -> None:
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


class _Copier:
    """Copies chunk files of one snapshot to one destination, each verified on the way: the
    mechanism of :func:`transfer`, :func:`cached_copy` and the on-touch fetching of
    :class:`ChunkFetcher`. Building it plans how each array travels: chunks compressed for a
    push (``compress``), decompressed into a local copy, or as they are."""

    def __init__(self, snapshot: _Snapshot, destination_url: str, compress: str | None = None):
        if compress not in (None, "zstd"):
            raise ValueError(f"compress must be None or 'zstd', got {compress!r}")
        self.snapshot, self.source, self.destination = snapshot, snapshot.side, _Side(destination_url)
        self.raw = dict(snapshot.raw)
        self.documents = {key: parse_json(data, f"{self.source.url}/{key}") for key, data in self.raw.items()}
        self.checksummed = _checksummed_arrays(self.documents)
        # Arrays whose chunks change form on the way: compressed for a push, decompressed into a local copy.
        self.recode: dict[str, str] = {}
        for key, document in self.documents.items():
            if key == "zarr.json" or document.get("node_type") != "array":
                continue
            array, names = key[: -len("/zarr.json")], _codec_names(document)
            if compress and _plain(names):
                self.recode[array] = "compress"
            elif self.destination.local and _zstd(names):
                self.recode[array] = "decompress"
        for array, how in self.recode.items():
            self.raw[f"{array}/zarr.json"] = json.dumps(
                _recoded(self.documents[f"{array}/zarr.json"], how == "compress"), indent=2).encode()

    def todo(self, keys) -> list[str]:
        """The chunk files among ``keys`` that are missing at the destination or differ."""
        there = self.destination.listing()

        def done(key: str) -> bool:
            if key.split("/c/")[0] in self.recode:  # another size by design; files land whole, so being there is enough
                return key in there
            return there.get(key, {}).get("size") == self.snapshot.files[key].get("size")

        return [k for k in keys if not done(k)]

    def __call__(self, key: str) -> int:
        """Copy one chunk file; returns the bytes written."""
        source, destination, files = self.source, self.destination, self.snapshot.files
        array = key.split("/c/")[0]
        if destination.local and not source.local and array not in self.recode:
            return destination.fetch_from(source, key, files[key].get("size"), array in self.checksummed)
        data = source.read(key)
        if len(data) != files[key].get("size", len(data)):
            raise CorruptChunkError(array, -1, f"{key} is {len(data)} bytes, listed as {files[key]['size']}")
        if array in self.checksummed:
            check_crc32c(data, key)
        if self.recode.get(array) == "compress":
            data = _compress_chunk(data)
        elif self.recode.get(array) == "decompress":
            data = _decompress_chunk(data, key, _chunk_nbytes(self.documents[f"{array}/zarr.json"]))
        try:
            destination.write(key, data)
        except Exception as exc:
            raise TransferError(key, source.url, f"writing to {destination.url} failed: {type(exc).__name__}: {exc}") from exc
        return len(data)

    def write_metadata(self) -> None:
        """The arrays' metadata, then the group's own document at the very end: until it lands,
        the destination is not a store that opens as complete."""
        for key in sorted((k for k in self.raw if k != "zarr.json"), key=len, reverse=True):
            self.destination.write(key, self.raw[key])
        self.destination.write("zarr.json", self.raw["zarr.json"])


def _copy_store(snapshot: _Snapshot, destination_url: str, *, workers: int, progress: bool, allow_incomplete: bool,
                compress: str | None, description: str, keys=None) -> TransferReport:
    """:func:`transfer` of what ``snapshot`` saw: the files listed then (those in ``keys``, when
    given), with the metadata read then."""
    attributes = parse_json(snapshot.raw["zarr.json"], f"{snapshot.side.url}/zarr.json").get(
        "attributes", {}).get(fmt.ATTRIBUTE_KEY)
    if not isinstance(attributes, dict):
        raise FormatError(f"{snapshot.side.url} is a Zarr group but not a latent store")
    if not attributes.get("complete") and not allow_incomplete:
        raise FormatError(f"{snapshot.side.url} is not finalized (complete is false): finish the encode first, "
                          "or pass --allow-incomplete to copy it as it is")
    copier = _Copier(snapshot, destination_url, compress)
    chunks = sorted(k for k in snapshot.files if not k.endswith("zarr.json") and (keys is None or k in keys))
    todo = copier.todo(chunks)
    report = TransferReport(snapshot.side.url, destination_url, files_kept=len(chunks) - len(todo))
    lock = threading.Lock()
    bar = Progress(sum(int(snapshot.files[k].get("size") or 0) for k in todo), description, unit="B", enabled=progress)

    def copy(key: str) -> None:
        copied = copier(key)
        with lock:
            report.files_copied += 1
            report.bytes_copied += copied
            bar.update(copied)

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
    copier.write_metadata()
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


def cached_copy(url: str, *, cache_dir=None, workers: int = DEFAULT_WORKERS, progress: bool = False,
                prefetch: bool | None = True) -> tuple[Path, "ChunkFetcher | None"]:
    """A verified local copy of the remote store at ``url``, fetched once per content (``_Snapshot.key``),
    and None or the :class:`ChunkFetcher` still filling it.

    Processes that open the same store at once (DataLoader workers, ranks on
    one node) take a file lock: one fetches, the others wait and then find
    the copy done. A copy counts as done only once its ``.complete`` marker
    lands, after every file was verified. With ``prefetch=False`` (complete
    stores) only the metadata and the small per-sample arrays are fetched
    now; the latents and the text and bytes columns come chunk by chunk as
    reads touch them, and in the background, through the returned fetcher.
    """
    import fcntl

    snapshot = _Snapshot.of(url)
    key = snapshot.key()
    root = cache_root(cache_dir)
    target = root / key
    done = target / ".complete"
    if done.exists():
        return target, None
    if prefetch is None:
        prefetch = sum(int(info.get("size") or 0) for info in snapshot.files.values()) < PREFETCH_BELOW_BYTES
    group = parse_json(snapshot.raw["zarr.json"], f"{url}/zarr.json")
    lazy = not prefetch and bool((group.get("attributes", {}).get(fmt.ATTRIBUTE_KEY) or {}).get("complete"))
    on_touch = _on_touch_keys(snapshot) if lazy else None
    lazy = on_touch is not None
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not done.exists():
                small = None if on_touch is None else {k for k in snapshot.files if k not in on_touch}
                _copy_store(snapshot, str(target), workers=workers, progress=progress and not lazy, allow_incomplete=True,
                            compress=None, description="fetching", keys=small)
                (target / ".source").write_text(url + "\n")
                if not lazy:
                    done.write_text(key + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if not lazy or done.exists():
        return target, None
    fetcher = ChunkFetcher(snapshot, target, on_touch or set(), workers=workers)
    fetcher.start()
    return target, fetcher


def _on_touch_keys(snapshot: _Snapshot) -> set[str] | None:
    """The chunk files a store opened with ``prefetch=False`` fetches on first touch: those of the
    latents and of the text and bytes columns, nearly all of its bytes (ids and failures, read
    through zarr, come at open). None when one of those arrays would not land in the mapped layout
    (compressed otherwise than zstd + crc32c): such a store is fetched whole at open."""
    vlen = {name for name, _ in fmt.VLEN_TYPES.values()}
    arrays = set()
    for key, data in snapshot.raw.items():
        array = key[: -len("/zarr.json")]
        if key == "zarr.json":
            continue
        document = parse_json(data, key)
        if array in (fmt.LATENTS, fmt.FLIP_LATENTS) or (array.startswith(f"{fmt.COLUMNS}/")
                                                          and document.get("data_type") in vlen):
            names = _codec_names(document)
            if not (_plain(names) or _zstd(names)):
                return None
            arrays.add(array)
    return {k for k in snapshot.files if not k.endswith("zarr.json") and k.split("/c/")[0] in arrays}


class ChunkFetcher:
    """Fills a cached copy's large arrays: each chunk file on first touch (:meth:`ensure`, which a
    read calls for the chunks it needs), and every other one in the background, in order.

    A chunk file is fetched once however many threads and processes want it
    (a file lock per chunk), checked against its crc32c and renamed into place
    whole, so a file there is a verified one. When the last one lands, the
    copy is marked complete and later opens map it as any cached store.
    """

    def __init__(self, snapshot: _Snapshot, target: Path, keys, *, workers: int = DEFAULT_WORKERS):
        self._snapshot, self._pid = snapshot, os.getpid()
        self.copier = _Copier(snapshot, str(target))
        self.target = target
        self.key = snapshot.key()
        self.keys = sorted(keys)
        self._keys = set(self.keys)
        self.workers = max(1, workers)
        self._present = {k for k in self.keys if (target / k).exists()}
        self._stop = threading.Event()
        self.error: BaseException | None = None  # what stopped the background fetch, if anything

    @property
    def complete(self) -> bool:
        return len(self._present) == len(self.keys)

    def has_source(self, key: str) -> bool:
        """Whether ``key`` is one of the files this fetcher brings (it is on the remote store)."""
        return key in self._keys

    def has(self, key: str) -> bool:
        return key in self._present

    def ensure(self, keys) -> None:
        """Fetch the chunk files among ``keys`` that are not here yet (in parallel); return once all are."""
        missing = [k for k in keys if k not in self._present]
        if len(missing) == 1:
            self._fetch(missing[0])
        elif missing:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(missing))) as pool:
                list(pool.map(self._fetch, missing))

    def _fetch(self, key: str) -> None:
        import fcntl

        if key in self._present:
            return
        if self._pid != os.getpid():  # a forked child: fsspec clients of the parent are not fork-safe
            snapshot = dataclasses.replace(self._snapshot, side=_Side(self._snapshot.side.url))
            self.copier, self._pid = _Copier(snapshot, str(self.target)), os.getpid()
        locks = self.target / ".locks"
        locks.mkdir(exist_ok=True)
        with open(locks / f"{hashlib.sha256(key.encode()).hexdigest()[:16]}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if not (self.target / key).exists():
                    self.copier(key)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
        self._present.add(key)  # a set's add is atomic under the GIL: no lock a fork could inherit held

    def start(self) -> None:
        """Fetch every chunk not yet here on a background thread, then mark the copy complete."""
        def run():
            try:
                for key in self.keys:
                    if self._stop.is_set():
                        return
                    self._fetch(key)
                (self.target / ".complete").write_text(self.key + "\n")
            except BaseException as exc:  # a read that needs the chunk raises it again, naming it
                self.error = exc

        threading.Thread(target=run, name="latentstore-fetch", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()


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
