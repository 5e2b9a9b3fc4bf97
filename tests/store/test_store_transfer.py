"""Remote stores against a real S3 server on loopback: open(url) through the cache, pull, push, damage, races."""

import multiprocessing

import numpy as np
import pytest

import latentstore
from latentstore import cli
from latentstore.errors import CorruptChunkError, FormatError, TransferError
from latentstore.inspection.verify import verify
from latentstore.store import transfer
from tests.store.stores import CHUNK, SHAPE, N, write_store


@pytest.fixture(autouse=True)
def _every_kernel_build():
    """Transfers do not touch the kernels: once is enough (overrides the folder's per-build fixture)."""


@pytest.fixture
def local(tmp_path, data):
    x, labels = data
    return write_store(tmp_path / "local.zarr", x, labels=labels, flip=True)


@pytest.fixture
def remote(s3, local, tmp_path):
    url = f"{s3}/in1k.zarr"
    assert cli.main(["push", local.path, url, "--no-progress"]) == 0
    return url


def s3fs():
    import fsspec

    return fsspec.filesystem("s3", skip_instance_cache=True)


def test_open_url_reads_what_the_local_store_reads_through_the_mapped_path(remote, local, tmp_path):
    store = latentstore.open(remote, cache_dir=tmp_path / "cache")
    assert store.fast and store.url == remote
    rows = np.random.default_rng(0).permutation(N)
    for flip in (False, True):
        assert store.read(rows, flip=flip)[0].tobytes() == local.read(rows, flip=flip)[0].tobytes()
    assert store.labels.tolist() == local.labels.tolist()
    [entry] = transfer.cache_entries(tmp_path / "cache")
    assert entry["url"] == remote and entry["complete"]


def test_a_second_open_uses_the_cache_and_a_changed_store_is_fetched_anew(remote, local, tmp_path, monkeypatch):
    latentstore.open(remote, cache_dir=tmp_path / "cache")
    calls = []
    real = transfer._copy_store
    monkeypatch.setattr(transfer, "_copy_store", lambda *a, **k: (calls.append(a), real(*a, **k))[1])
    latentstore.open(remote, cache_dir=tmp_path / "cache")
    assert calls == []
    # Rewrite one chunk on the server (same size, other bytes, a valid checksum): a new ETag, a new key.
    other = write_store(tmp_path / "other.zarr", -np.ones((N, *SHAPE), np.float32), labels=local.labels, flip=True)
    key = "latents/c/1/0/0/0"
    s3fs().pipe_file(f"{remote[5:]}/{key}", (tmp_path / "other.zarr" / key).read_bytes())
    store = latentstore.open(remote, cache_dir=tmp_path / "cache")
    assert len(calls) == 1 and len(transfer.cache_entries(tmp_path / "cache")) == 2
    rows = np.arange(CHUNK, 2 * CHUNK)
    assert store.codes(rows)[0].tobytes() == other.codes(rows)[0].tobytes()


def test_a_corrupted_chunk_on_the_server_is_named_and_never_mapped(remote, tmp_path):
    key = "scales/c/2"
    data = bytearray(s3fs().cat_file(f"{remote[5:]}/{key}"))
    data[0] ^= 0xFF
    s3fs().pipe_file(f"{remote[5:]}/{key}", bytes(data))
    with pytest.raises(CorruptChunkError, match="scales/c/2 fails its crc32c check"):
        latentstore.open(remote, cache_dir=tmp_path / "cache")
    [entry] = transfer.cache_entries(tmp_path / "cache")
    assert not entry["complete"] and not (tmp_path / "cache" / entry["key"] / key).exists()


def test_a_chunk_missing_on_the_server_is_named(remote, tmp_path):
    s3fs().rm(f"{remote[5:]}/latents/c/3/0/0/0")
    with pytest.raises(CorruptChunkError, match="'latents' chunk 3.*missing"):
        latentstore.open(remote, cache_dir=tmp_path / "cache")


def test_pull_then_push_round_trip_and_reruns_copy_nothing(remote, local, tmp_path, capsys):
    assert cli.main(["pull", remote, str(tmp_path / "pulled.zarr"), "--no-progress"]) == 0
    assert verify(tmp_path / "pulled.zarr").ok
    pulled = latentstore.open(tmp_path / "pulled.zarr")
    assert pulled.read(np.arange(N))[0].tobytes() == local.read(np.arange(N))[0].tobytes()
    again = transfer.transfer(remote, str(tmp_path / "pulled.zarr"))
    assert again.files_copied == 0 and again.files_kept > 0
    assert "copied, 0 already there" in capsys.readouterr().out


def test_a_killed_pull_resumes_and_leaves_nothing_that_reads_as_valid(remote, local, tmp_path, monkeypatch):
    target = tmp_path / "pulled.zarr"
    real_fetch = transfer._Side.fetch_from
    written = []

    def dying_fetch(self, source, key, *args):
        if len(written) == 5:
            raise KeyboardInterrupt  # the process dies mid-transfer
        written.append(key)
        return real_fetch(self, source, key, *args)

    monkeypatch.setattr(transfer._Side, "fetch_from", dying_fetch)
    with pytest.raises(KeyboardInterrupt):
        transfer.transfer(remote, str(target), workers=1)
    monkeypatch.undo()
    assert not (target / "zarr.json").exists()  # not a store yet: the group metadata comes last
    (target / "latents" / "c" / "4").mkdir(parents=True, exist_ok=True)
    (target / "latents" / "c" / "4" / ".0.partial").write_bytes(b"half")  # what a kill -9 leaves
    report = transfer.transfer(remote, str(target))
    assert report.files_kept == 5
    assert verify(target).ok
    assert latentstore.open(target).read(np.arange(N))[0].tobytes() == local.read(np.arange(N))[0].tobytes()


def test_push_refuses_an_unfinished_store(s3, tmp_path, data, capsys):
    x, _ = data
    writer = latentstore.create(tmp_path / "u.zarr", N, SHAPE, chunk_samples=CHUNK)
    writer.write(0, x[:CHUNK])
    assert cli.main(["push", str(tmp_path / "u.zarr"), f"{s3}/u.zarr", "--no-progress"]) == 1
    assert "--allow-incomplete" in capsys.readouterr().err
    with pytest.raises(FormatError, match="not finalized"):
        transfer.transfer(str(tmp_path / "u.zarr"), f"{s3}/u.zarr")


def _open_in_child(url, cache_dir, queue):
    from latentstore.store import transfer as t

    calls = []
    real = t._copy_store
    t._copy_store = lambda *a, **k: (calls.append(1), real(*a, **k))[1]
    store = latentstore.open(url, cache_dir=cache_dir)
    queue.put((len(calls), float(store.read(np.arange(10))[0].sum())))


@pytest.mark.slow  # two fresh interpreters
def test_two_processes_fill_one_cache_once(remote, tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    children = [context.Process(target=_open_in_child, args=(remote, str(tmp_path / "cache"), queue)) for _ in range(2)]
    for child in children:
        child.start()
    results = [queue.get(timeout=120) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    assert sorted(count for count, _ in results) == [0, 1]  # one fetched, the other waited and found it
    assert results[0][1] == results[1][1]


@pytest.mark.slow  # the client retries a lost server before it gives up
def test_the_server_going_away_mid_pull_is_a_clear_error_and_a_rerun_resumes(local, tmp_path, monkeypatch):
    from tests.s3server import S3Server

    server = S3Server()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
        for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                            "AWS_DEFAULT_REGION": "us-east-1"}.items():
            monkeypatch.setenv(name, value)
        import s3fs as s3fs_module

        s3fs_module.S3FileSystem.clear_instance_cache()  # the cached client still points at the other server
        s3fs().mkdir("gone")
        transfer.transfer(local.path, "s3://gone/in1k.zarr")
        real_fetch = transfer._Side.fetch_from
        reads = []

        def fetch_then_vanish(self, source, key, *args):
            reads.append(key)
            if len(reads) == 8:
                server.stop()
            return real_fetch(self, source, key, *args)

        monkeypatch.setattr(transfer._Side, "fetch_from", fetch_then_vanish)
        with pytest.raises(TransferError, match="cannot copy .* from s3://gone/in1k.zarr.*rerun"):
            transfer.transfer("s3://gone/in1k.zarr", str(tmp_path / "pulled.zarr"), workers=1)
    finally:
        if server.process.poll() is None:
            server.stop()
    kept = sum(1 for p in (tmp_path / "pulled.zarr").rglob("*") if p.is_file())
    assert kept >= 1
    report = transfer.transfer(local.path, str(tmp_path / "pulled.zarr"))  # the same store from another copy
    assert report.files_kept == kept and verify(tmp_path / "pulled.zarr").ok


def test_cache_list_and_clear(remote, tmp_path, capsys):
    latentstore.open(remote, cache_dir=tmp_path / "cache")
    assert cli.main(["cache", "list", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert remote in capsys.readouterr().out
    assert cli.main(["cache", "clear", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "freed" in capsys.readouterr().out and transfer.cache_entries(tmp_path / "cache") == []


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(transfer.CACHE_ENV, str(tmp_path / "elsewhere"))
    assert transfer.cache_root() == tmp_path / "elsewhere"
    assert transfer.cache_root(tmp_path / "given") == tmp_path / "given"


def test_hub_limits_are_checked_before_a_push(tmp_path, data, capsys, monkeypatch):
    x, labels = data
    write_store(tmp_path / "s.zarr", x, labels=labels, chunk=2)  # 150 chunks per array
    monkeypatch.setattr(transfer, "HUB_FILES_PER_FOLDER", 100)
    assert cli.main(["push", str(tmp_path / "s.zarr"), "hf://datasets/user/name", "--no-progress"]) == 1
    assert "larger --chunk-samples" in capsys.readouterr().err


def test_a_zstd_push_is_smaller_plain_zarr_and_reads_back_through_the_mapped_path(s3, local, tmp_path):
    import zarr

    url = f"{s3}/small.zarr"
    assert cli.main(["push", local.path, url, "--compress", "zstd", "--no-progress"]) == 0
    remote_bytes = sum(info["size"] for info in s3fs().find(url[5:], detail=True).values())
    local_bytes = sum(p.stat().st_size for p in (tmp_path / "local.zarr").rglob("*") if p.is_file())
    assert remote_bytes < local_bytes
    group = zarr.open_group(url, mode="r")  # a standard Zarr store: zarr-python decodes it
    assert np.asarray(group["latents"][:10]).tobytes() == local.codes(np.arange(10))[0].tobytes()
    store = latentstore.open(url, cache_dir=tmp_path / "cache")
    assert store.fast  # decompressed once into the cache, then mapped
    rows = np.random.default_rng(1).permutation(N)
    assert store.read(rows, flip=True)[0].tobytes() == local.read(rows, flip=True)[0].tobytes()
    assert cli.main(["pull", url, str(tmp_path / "pulled.zarr"), "--no-progress"]) == 0
    assert verify(tmp_path / "pulled.zarr").ok and latentstore.open(tmp_path / "pulled.zarr").fast
    again = transfer.transfer(url, str(tmp_path / "pulled.zarr"))
    assert again.files_copied == 0


def test_columns_and_buckets_travel_compressed_and_come_back_mapped(s3, tmp_path):
    import zarr

    from latentstore.format import BucketTable
    from latentstore.store.writer import pack_buckets

    table = BucketTable.from_base(128, 32)
    rng = np.random.default_rng(3)
    latents = [rng.normal(size=(4, *table.shapes[i % len(table.shapes)])).astype(np.float32) for i in range(40)]
    rows, buckets = pack_buckets(latents, table)
    captions = [f"a caption of sample {i}, repeated words repeated words ✓" for i in range(40)]
    path = tmp_path / "captioned.zarr"
    with latentstore.create(path, 40, (4,), chunk_samples=16, buckets=table,
                            columns={"caption": "text", "jpeg": "bytes", "width": "int32"}) as writer:
        for start in range(0, 40, 16):
            part = slice(start, start + 16)
            writer.write(start, rows[part], buckets=buckets[part], columns={
                "caption": captions[part], "jpeg": [b"\xff\xd8" * 40] * len(captions[part]), "width": np.arange(40)[part]})
    local = latentstore.open(path)
    url = f"{s3}/captioned.zarr"
    assert cli.main(["push", str(path), url, "--compress", "zstd", "--no-progress"]) == 0
    remote_caption_bytes = sum(info["size"] for info in s3fs().find(f"{url[5:]}/columns/caption", detail=True).values())
    local_caption_bytes = sum(p.stat().st_size for p in (path / "columns" / "caption").rglob("*") if p.is_file())
    assert remote_caption_bytes < local_caption_bytes  # text compresses well
    group = zarr.open_group(url, mode="r")
    assert [str(c) for c in group["columns/caption"][:40]] == captions
    store = latentstore.open(url, cache_dir=tmp_path / "cache")
    assert store.fast and store.column("caption", range(40)) == captions
    assert store.column("jpeg", [5]) == [b"\xff\xd8" * 40]
    one = np.flatnonzero(buckets == buckets[7])
    assert store.read(one)[0].tobytes() == local.read(one)[0].tobytes()
    assert cli.main(["pull", url, str(tmp_path / "pulled.zarr"), "--no-progress"]) == 0
    assert verify(tmp_path / "pulled.zarr").ok


# -- fetching on first touch ---------------------------------------------------------------
@pytest.fixture
def no_background(monkeypatch):
    """The background fetch off, so what a read fetches is what it touched."""
    monkeypatch.setattr(transfer.ChunkFetcher, "start", lambda self: None)


def test_a_store_opened_without_prefetch_fetches_the_chunks_a_read_touches(remote, local, tmp_path, no_background):
    store = latentstore.open(remote, cache_dir=tmp_path / "cache", prefetch=False)
    fetcher = store._fetcher
    assert fetcher is not None and store.fast
    fetched = lambda: sorted(k for k in fetcher.keys if fetcher.has(k))  # noqa: E731
    assert fetched() == []  # only the metadata and the small arrays came at open
    assert store.labels.tolist() == local.labels.tolist() and store.valid.tolist() == local.valid.tolist()
    rows = np.array([CHUNK + 3, 3 * CHUNK + 1])
    assert store.read(rows)[0].tobytes() == local.read(rows)[0].tobytes()
    assert fetched() == ["latents/c/1/0/0/0", "latents/c/3/0/0/0"]
    assert store.read(rows, flip=True)[0].tobytes() == local.read(rows, flip=True)[0].tobytes()
    everything = np.random.default_rng(2).permutation(N)
    for flip in (False, True):
        assert store.read(everything, flip=flip)[0].tobytes() == local.read(everything, flip=flip)[0].tobytes()
    assert fetcher.complete
    import pickle

    copy = pickle.loads(pickle.dumps(store))  # a DataLoader worker reopens it by URL
    assert copy.read(everything)[0].tobytes() == local.read(everything)[0].tobytes()


def test_the_background_fetch_completes_the_cache(remote, local, tmp_path):
    import time

    store = latentstore.open(remote, cache_dir=tmp_path / "cache", prefetch=False)
    deadline = time.monotonic() + 60
    while not store._fetcher.complete and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store._fetcher.complete and store._fetcher.error is None
    while not any(e["complete"] for e in transfer.cache_entries(tmp_path / "cache")) and time.monotonic() < deadline:
        time.sleep(0.05)
    again = latentstore.open(remote, cache_dir=tmp_path / "cache", prefetch=False)
    assert again._fetcher is None  # complete: mapped as any cached store
    assert again.read(np.arange(N))[0].tobytes() == local.read(np.arange(N))[0].tobytes()


def test_a_corrupted_chunk_fetched_on_touch_is_named_and_never_mapped(remote, local, tmp_path, no_background):
    key = "latents/c/2/0/0/0"
    data = bytearray(s3fs().cat_file(f"{remote[5:]}/{key}"))
    data[10] ^= 0xFF
    s3fs().pipe_file(f"{remote[5:]}/{key}", bytes(data))
    store = latentstore.open(remote, cache_dir=tmp_path / "cache", prefetch=False)
    assert store.read([0])[0].tobytes() == local.read([0])[0].tobytes()  # other chunks read
    with pytest.raises(CorruptChunkError, match="latents/c/2/0/0/0 fails its crc32c check"):
        store.read([2 * CHUNK])
    [entry] = transfer.cache_entries(tmp_path / "cache")
    assert not (tmp_path / "cache" / entry["key"] / key).exists()


def test_without_prefetch_ids_come_at_open_and_a_store_compressed_otherwise_is_fetched_whole(s3, data, tmp_path,
                                                                                            no_background):
    x, labels = data
    ids_store = latentstore.create(tmp_path / "ids.zarr", N, SHAPE, chunk_samples=CHUNK, ids=True)
    for start in range(0, N, CHUNK):
        block = slice(start, start + CHUNK)
        ids_store.write(start, x[block], ids=[f"image-{i}.jpg" for i in range(N)][block])
    ids_store.close()
    transfer.transfer(str(tmp_path / "ids.zarr"), f"{s3}/ids.zarr")
    lazy = latentstore.open(f"{s3}/ids.zarr", cache_dir=tmp_path / "cache", prefetch=False)
    assert lazy._fetcher is not None and lazy.ids([0, N - 1]) == ["image-0.jpg", f"image-{N - 1}.jpg"]
    lazy.close()
    assert lazy._fetcher._stop.is_set()  # close stops the background fetch
    write_store(tmp_path / "blosc.zarr", x, labels=labels, compressor="blosc")
    transfer.transfer(str(tmp_path / "blosc.zarr"), f"{s3}/blosc.zarr")
    whole = latentstore.open(f"{s3}/blosc.zarr", cache_dir=tmp_path / "cache", prefetch=False)
    assert whole._fetcher is None  # blosc chunks cannot be mapped: no on-touch fetching, all at open
    assert whole.read(np.arange(N))[0].tobytes() == latentstore.open(tmp_path / "blosc.zarr").read(np.arange(N))[0].tobytes()


def test_a_dataset_over_a_store_still_filling_pickles_by_url(remote, local, tmp_path, no_background):
    import pickle

    pytest.importorskip("torch")
    from latentstore.torch import LatentDataset

    dataset = LatentDataset(latentstore.open(remote, cache_dir=tmp_path / "cache", prefetch=False))
    copy = pickle.loads(pickle.dumps(dataset))  # what a spawn or forkserver worker gets
    rows = np.arange(N)
    assert copy.store.url == remote and copy.store.read(rows)[0].tobytes() == local.read(rows)[0].tobytes()
