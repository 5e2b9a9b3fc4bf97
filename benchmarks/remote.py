"""A store behind S3: raw transfer, pull, open(url) through the cache, and the zarr-python path.

    python benchmarks/remote.py                    # 200,000 samples (0.4 GB) through a loopback S3 server

One moto S3 server (server mode, 127.0.0.1) holds a store of SYNTHETIC
(32, 8, 8) int8 latents, pushed with ``latentstore push``. Then, in one run:

(a) s3fs ``get`` of the store's directory: the raw transfer, the reference;
(b) ``latentstore pull`` of the same store (verified, atomic, resumable);
(c) ``latentstore.open(url)`` into an empty cache: time to first batch with
    ``prefetch=True`` (every chunk fetched at open) and ``prefetch=False``
    (each chunk fetched when a read first touches it, the rest in the
    background), and the first epoch of random batches of 256 of the latter;
(d) random batches from the warm cache, against the local store, with the
    server stopped (so no read can have touched the network);
(e) the zarr-python path (``open(url, cache=False)``): bytes fetched per batch.

mosaicml-streaming's ``StreamingDataset`` (method (f) of the issue) is not
installed here and is left out, with a note in the table.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __name__ == "__main__" and not __package__:  # python benchmarks/NAME.py: make the package importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])
import latentstore  # noqa: E402
from benchmarks import _report, synthetic  # noqa: E402

LATENT_SHAPE = (32, 8, 8)
BATCH = 256


def random_batches(store, batches: int, seed: int = 0) -> float:
    """Samples/s of ``batches`` random batches."""
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(batches):
        store.read(rng.integers(0, len(store), BATCH))
    return batches * BATCH / (time.perf_counter() - start)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=200_000)
    parser.add_argument("--zarr-batches", type=int, default=3, help="batches read through zarr-python for (e)")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--name", default="remote")
    args = parser.parse_args(argv)

    import fsspec
    import s3fs

    from latentstore.store.transfer import transfer
    from tests.s3server import S3Server

    server = S3Server()
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1",
                      AWS_ENDPOINT_URL=server.endpoint)
    s3fs.S3FileSystem.clear_instance_cache()
    rows, notes = [], []
    try:
        with tempfile.TemporaryDirectory() as scratch:
            scratch = Path(scratch)
            local = scratch / "local.zarr"
            synthetic.write_store(local, args.samples, LATENT_SHAPE)
            fs = fsspec.filesystem("s3")
            fs.mkdir("bench")
            url = "s3://bench/store.zarr"
            transfer(str(local), url)
            store_bytes = sum(f.stat().st_size for f in local.rglob("*") if f.is_file())

            start = time.perf_counter()
            fs.get("bench/store.zarr", str(scratch / "raw"), recursive=True)
            raw = time.perf_counter() - start
            start = time.perf_counter()
            transfer(url, str(scratch / "pulled.zarr"))
            pulled = time.perf_counter() - start

            first_rows = np.random.default_rng(1).integers(0, args.samples, BATCH)
            start = time.perf_counter()
            latentstore.open(url, cache_dir=scratch / "cache-eager", prefetch=True).read(first_rows)
            eager_first_batch = time.perf_counter() - start
            start = time.perf_counter()
            remote = latentstore.open(url, cache_dir=scratch / "cache", prefetch=False)
            remote.read(first_rows)
            first_batch = time.perf_counter() - start
            epoch_batches = max(1, len(remote) // BATCH)
            epoch_rate = random_batches(remote, epoch_batches)
            direct = latentstore.open(url, cache=False)
            start = time.perf_counter()
            random_batches(direct, args.zarr_batches)
            zarr_seconds = time.perf_counter() - start
            # zarr-python fetches every touched chunk whole: the chunks a random batch touches, times their size.
            m = direct.metadata
            touched = np.mean([np.unique(np.random.default_rng(s).integers(0, m.num_samples, BATCH) // m.chunk_samples).size
                               for s in range(20)])
            zarr_bytes = touched * (local / "latents" / "c" / "0" / "0" / "0" / "0").stat().st_size

            # (d) with the server gone: a read that still needed the network would fail here.
            server.stop()
            local_store = latentstore.open(local)
            warm, local_rate = [], []
            try:
                for seed in range(3):
                    warm.append(random_batches(remote, 200, seed))
                    local_rate.append(random_batches(local_store, 200, seed))
                offline = True
            except Exception as exc:  # noqa: BLE001 - any failure means a read went to the network
                offline, notes[:0] = False, [f"(d) failed with the server gone: {type(exc).__name__}: {exc}"]

            mb = store_bytes / 1e6
            rows = [
                ["(a) s3fs get of the directory (reference)", f"{mb:,.1f} MB", f"{raw:.2f} s", f"{mb / raw:,.1f} MB/s", "1.00"],
                ["(b) latentstore pull", f"{mb:,.1f} MB", f"{pulled:.2f} s", f"{mb / pulled:,.1f} MB/s", f"{raw / pulled:.2f}"],
                ["(c) open(url, prefetch=True), empty cache: first batch", "", f"{eager_first_batch:.2f} s", "", ""],
                ["(c) open(url, prefetch=False), empty cache: first batch", "", f"{first_batch:.2f} s", "", ""],
                ["(c) then its first epoch of random batches (fetching on touch)", "", "", f"{epoch_rate:,.0f} samples/s", ""],
                ["(d) warm cache, random batches", "", "", f"{max(warm, default=0):,.0f} samples/s", f"{max(warm, default=0) / max(local_rate, default=1):.2f} x local"],
                ["(d) the local store, random batches", "", "", f"{max(local_rate, default=1):,.0f} samples/s", "1.00 x local"],
                ["(e) zarr-python path (cache=False)",
                 f"{zarr_bytes / 1e6:,.1f} MB per batch ({touched:.1f} chunks touched)",
                 f"{zarr_seconds / args.zarr_batches:.2f} s per batch", f"{args.zarr_batches * BATCH / zarr_seconds:,.0f} samples/s", ""],
            ]
            notes.append("(f) mosaicml-streaming: not measured. It cannot be installed beside this machine's CPU "
                         "torch 2.13.0: pip resolves it to torch 2.14.1 with the CUDA 13 toolkit (several GB), and "
                         "with --no-deps it imports torchvision, whose only wheels here are CUDA builds that fail "
                         "against the CPU torch (operator torchvision::nms does not exist).")
            targets = [
                ["(b) >= 0.8 x (a)", f"{raw / pulled:.2f}", _report.verdict(raw / pulled >= 0.8)],
                ["(d) >= 0.95 x the local store", f"{max(warm, default=0) / max(local_rate, default=1):.2f}",
                 _report.verdict(max(warm, default=0) / max(local_rate, default=1) >= 0.95)],
                ["bytes per batch of (c) after the first epoch = 0",
                 "(d) read with the server stopped" if offline else "a read needed the server",
                 _report.verdict(offline)],
            ]
    finally:
        if server.process.poll() is None:
            server.stop()
    text = "\n".join([
        f"# A store behind S3 (moto on loopback): {args.samples:,} samples of {LATENT_SHAPE} int8",
        "",
        f"Machine: {_report.machine_line()}. SYNTHETIC latents; one moto server in server mode on 127.0.0.1 "
        "(a Python server: its throughput, not the network's, bounds (a) and (b)). "
        "Command: `python benchmarks/remote.py" + (f" --samples {args.samples}" if args.samples != 200_000 else "") + "`.",
        "",
        _report.markdown_table(["method", "bytes", "time", "rate", "ratio"], rows),
        "",
        *notes,
        "",
        "## Targets",
        "",
        _report.markdown_table(["target", "value", "verdict"], targets),
        "",
    ])
    return _report.publish(args.name, text, args.results)


if __name__ == "__main__":
    main()
