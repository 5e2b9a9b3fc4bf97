"""Multi-aspect (bucketed) stores: same-bucket random batches against the square store, and bytes on disk.

    python benchmarks/buckets.py                        # 1,281,167 samples: two stores, ~5.3 GB, built once
    python benchmarks/buckets.py --work /tmp/buckets    # keep the stores, reuse them on reruns
    python benchmarks/buckets.py --samples 100000       # quicker

Two stores of the same number of SYNTHETIC int8 latents (``synthetic``: not
from any autoencoder; read speed does not depend on the values), DC-AE
f32c32 at 256 px, so C = 32:

- square: every sample (32, 8, 8), as ``synthetic.write_store`` makes it;
- bucketed: ``BucketTable.from_base(256, 32)``, the nine shapes (4, 16) to
  (16, 4) of 60-64 tokens, each sample stored padded in a (32, 64) row
  (``synthetic.write_bucketed_store``). Each sample's bucket is
  ``table.nearest(width, height)`` of an image size drawn from a fixed-seed
  web-photo-like mix of aspect ratios (``ASPECT_MIX``: mostly 4:3, 3:2, 1:1,
  16:9 and portrait 3:4, 2:3, a little jitter around each, thin tails out to
  1:4 and 4:1), in store order as an encode of a shuffled collection would
  write them (the buckets interleave within every chunk).

With a warm page cache, after a pass that touches every sample of both
stores, in alternating rounds (best round of each):

(a) the square store: ``store.read(idx)`` of 256 random indices (the reference);
(b) the bucketed store: same-bucket random batches of 256, drawn as a training
    loader draws them: a bucket with probability proportional to its size,
    then 256 random samples of it; ``store.read(idx)`` -> (256, 32, h, w).

Both fill a preallocated float32 batch, at 1 and 2 kernel threads, with
fresh fixed-seed indices for every batch (drawn with replacement, as for (a)).
A bucket batch moves fewer bytes than a square one when its area is below
64 tokens, so bytes/s of int8 codes are reported beside samples/s.

(c) bytes on disk (file sizes) of the bucketed store against the unpadded sum:
every sample's C*h*w code bytes plus the per-sample arrays the square store
also has (float16 scale, int32 label, uint8 valid flag: 7 bytes), and the
same for the square store, for reference.

Targets: (b) / (a) >= 0.8 in samples/s at each thread count; bucketed bytes
on disk <= 1.15 x the unpadded sum.
"""

import argparse
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __name__ == "__main__" and not __package__:  # python benchmarks/NAME.py: make the package importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])
import latentstore  # noqa: E402
from benchmarks import _report, synthetic  # noqa: E402
from latentstore.format import BucketTable  # noqa: E402

DEFAULT_SAMPLES = 1_281_167
BASE, COMPRESSION, CHANNELS = 256, 32, 32
SQUARE_SHAPE = (CHANNELS, BASE // COMPRESSION, BASE // COMPRESSION)
#: Synthetic latents per bucket, quantized once and repeated (the square store's pool is synthetic.write_store's).
BUCKET_POOL = 4096
SQUARE_POOL = 16384
ASPECT_SEED = 20250701
#: Bump when the mix or the stores change, so kept stores are rebuilt.
GENERATOR_VERSION = 1
#: Per-sample bytes the square store also has: float16 scale, int32 label, uint8 valid flag.
PER_SAMPLE_BYTES = 2 + 4 + 1

#: The aspect-ratio mix, width:height: (name, ratio, share). Web photos and the collections SANA-style
#: multi-aspect training uses are mostly landscape 4:3 and 3:2, square, 16:9, and portrait 3:4, 2:3;
#: each peak gets a log-normal jitter (crops, odd sizes); "tail" is log-uniform over 1:4 to 4:1.
ASPECT_MIX = (
    ("4:3", 4 / 3, 0.30),
    ("3:2", 3 / 2, 0.17),
    ("1:1", 1.0, 0.14),
    ("16:9", 16 / 9, 0.11),
    ("3:4", 3 / 4, 0.10),
    ("2:3", 2 / 3, 0.08),
    ("tail", None, 0.10),
)
JITTER = 0.03  # std of the log aspect ratio around each peak
MAX_ASPECT = 4.0
#: Geometric-mean side of the drawn image sizes, in pixels (only their ratio decides the bucket).
IMAGE_SIDE = 1024


def table() -> BucketTable:
    return BucketTable.from_base(BASE, COMPRESSION)


def bucket_pool(samples: int) -> int:
    """Synthetic latents per bucket for a store of ``samples``: ``BUCKET_POOL``, fewer for small
    (smoke-size) stores, whose rows all stay in the CPU caches anyway."""
    return min(BUCKET_POOL, max(64, samples // 16))


def image_sizes(n: int, seed: int = ASPECT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """(width, height) in pixels of ``n`` images drawn from ``ASPECT_MIX``; deterministic in (n, seed)."""
    rng = np.random.default_rng([seed, n])
    shares = np.array([share for _, _, share in ASPECT_MIX])
    component = rng.choice(len(ASPECT_MIX), n, p=shares / shares.sum())
    log_aspect = np.empty(n)
    limit = math.log(MAX_ASPECT)
    for k, (_, ratio, _) in enumerate(ASPECT_MIX):
        mine = component == k
        count = int(mine.sum())
        if ratio is None:
            log_aspect[mine] = rng.uniform(-limit, limit, count)
        else:
            log_aspect[mine] = math.log(ratio) + rng.normal(0.0, JITTER, count)
    log_aspect = np.clip(log_aspect, -limit, limit)
    width = np.rint(IMAGE_SIDE * np.exp(log_aspect / 2)).astype(np.int64)
    height = np.rint(IMAGE_SIDE * np.exp(-log_aspect / 2)).astype(np.int64)
    return width, height


def assign(buckets: BucketTable, width: np.ndarray, height: np.ndarray) -> np.ndarray:
    """Each image's bucket, ``buckets.nearest(w, h)`` (asked once per distinct size)."""
    sizes, inverse = np.unique(np.stack([width, height], axis=1), axis=0, return_inverse=True)
    nearest = np.array([buckets.nearest(int(w), int(h)) for w, h in sizes], dtype=np.uint16)
    return nearest[inverse.reshape(-1)]


def _params(samples: int, chunk_samples: int | None) -> dict:
    return {"samples": samples, "chunk_samples": chunk_samples, "table": table().to_dict(), "channels": CHANNELS,
            "bucket_pool": bucket_pool(samples), "square_pool": SQUARE_POOL, "aspect_seed": ASPECT_SEED,
            "generator": GENERATOR_VERSION}


def _complete(path: Path) -> bool:
    try:
        return latentstore.open(path).metadata.complete
    except Exception:  # a damaged or half-deleted store is rebuilt
        return False


def build(work: Path, samples: int, chunk_samples: int | None) -> tuple[Path, Path, dict]:
    """(square store, bucketed store, build record) under ``work``; built unless complete ones with the
    same parameters are there. The record's ``built`` is True when they were built by this call."""
    square, bucketed = work / f"square-{samples}.zarr", work / f"buckets-{samples}.zarr"
    marker = work / f"buckets-{samples}.json"
    params = _params(samples, chunk_samples)
    if marker.exists() and square.exists() and bucketed.exists():
        recorded = json.loads(marker.read_text())
        if recorded.get("params") == params and _complete(square) and _complete(bucketed):
            return square, bucketed, {**recorded, "built": False}
    marker.unlink(missing_ok=True)
    for path in (square, bucketed):
        if path.exists():
            shutil.rmtree(path)
    work.mkdir(parents=True, exist_ok=True)
    begin = time.perf_counter()
    synthetic.write_store(square, samples, SQUARE_SHAPE, pool=SQUARE_POOL, chunk_samples=chunk_samples)
    square_seconds = time.perf_counter() - begin
    begin = time.perf_counter()
    buckets = assign(table(), *image_sizes(samples))
    synthetic.write_bucketed_store(bucketed, buckets, table(), CHANNELS, pool=bucket_pool(samples),
                                   chunk_samples=chunk_samples)
    record = {"params": params, "square_seconds": square_seconds, "bucketed_seconds": time.perf_counter() - begin}
    marker.write_text(json.dumps(record, indent=1))
    return square, bucketed, {**record, "built": True}


def disk_bytes(path: Path) -> dict:
    """Per array (and "metadata" for the zarr.json files): (file bytes, allocated bytes)."""
    sizes: dict = {}
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        relative = file.relative_to(path)
        parts = relative.parts
        name = "metadata" if file.name == "zarr.json" else "/".join(parts[: parts.index("c")])
        stat = file.stat()
        have = sizes.setdefault(name, [0, 0])
        have[0] += stat.st_size
        have[1] += stat.st_blocks * 512
    return {name: tuple(v) for name, v in sizes.items()}


def expected_square(rows: np.ndarray, samples: int) -> np.ndarray:
    q, s = latentstore.quantize(synthetic.synthetic_latents(min(SQUARE_POOL, samples), SQUARE_SHAPE, seed=0))
    r = rows % len(q)
    return q[r].astype(np.float32) * s[r].astype(np.float32)[:, None, None, None]


def run(square_path: Path, bucketed_path: Path, batch_size: int, thread_counts: list[int], seconds_scale: float,
        rounds: int) -> tuple[dict, dict]:
    """(rates: threads -> method -> [(samples/s, code bytes/s) per round], facts about the stores and batches)."""
    _report.warm_page_cache(square_path, bucketed_path)
    square, bucketed = latentstore.open(square_path), latentstore.open(bucketed_path)
    shapes = bucketed.bucket_table.shapes
    samples = len(square)
    bucket_of = np.asarray(bucketed.bucket_indices)
    members = [np.flatnonzero(bucket_of == b) for b in range(len(shapes))]
    sizes = np.array([len(m) for m in members])
    # The warm-up pass: every sample of both stores once (faults in every page of every mapping).
    start = time.perf_counter()
    for begin in range(0, samples, 4096):
        square.read(slice(begin, min(begin + 4096, samples)))
    for rows in members:
        for begin in range(0, len(rows), 4096):
            bucketed.read(rows[begin : begin + 4096])
    warm_pass = time.perf_counter() - start

    calls = max(20, int(400 * seconds_scale))
    count = rounds * (1 + calls)  # each round: one untimed call, then `calls` timed ones, each on fresh rows
    rng = np.random.default_rng(1)
    square_batches = rng.integers(0, samples, (count, batch_size))
    drawn = rng.choice(len(shapes), count, p=sizes / sizes.sum())
    bucket_batches = np.stack([members[b][rng.integers(0, sizes[b], batch_size)] for b in drawn.tolist()])

    # Both stores must return the synthetic latents they were written with before anything is timed.
    np.testing.assert_array_equal(square.read(square_batches[0])[0], expected_square(square_batches[0], samples))
    pool = bucket_pool(samples)
    pools = synthetic.bucket_pools(bucketed.bucket_table, CHANNELS, pool)
    for b in sorted(set(drawn[:64].tolist())):
        rows = bucket_batches[int(np.flatnonzero(drawn == b)[0])]
        q, s = pools[b]
        got = bucketed.read(rows)[0]
        assert got.shape == (batch_size, CHANNELS, *shapes[b])
        np.testing.assert_array_equal(got, q[rows % pool].astype(np.float32)
                                      * s[rows % pool].astype(np.float32)[:, None, None, None])

    square_out = np.empty((batch_size, *SQUARE_SHAPE), np.float32)
    # One buffer of the largest bucket, each batch a view of its first 256 * C * h * w floats, as
    # LatentLoader does: (a) and (b) then write into the same 2 MiB, which stays in the CPU caches.
    largest = np.empty(batch_size * CHANNELS * bucketed.bucket_table.max_tokens, np.float32)
    bucket_out = [largest[: batch_size * CHANNELS * h * w].reshape(batch_size, CHANNELS, h, w) for h, w in shapes]
    square_bytes = np.full(count, batch_size * CHANNELS * math.prod(SQUARE_SHAPE[1:]))
    bucket_bytes = batch_size * CHANNELS * np.array([h * w for h, w in shapes])[drawn]

    def square_step(i, threads):
        square.read(square_batches[i], out=square_out, num_threads=threads)

    def bucket_step(i, threads):
        bucketed.read(bucket_batches[i], out=bucket_out[drawn[i]], num_threads=threads)

    methods = {"a": (square_step, square_bytes), "b": (bucket_step, bucket_bytes)}
    rates: dict = {threads: {key: [] for key in methods} for threads in thread_counts}
    # Each timed batch's own time too (NaN for the untimed ones), for the per-bucket medians.
    batch_times = {threads: {key: np.full(count, np.nan) for key in methods} for threads in thread_counts}
    clock = time.perf_counter
    # Alternating rounds (a, b at each thread count, then again): a burst of other
    # work on a shared machine then costs one round of one method, not its figure.
    for r in range(rounds):
        first = r * (1 + calls)
        for threads in thread_counts:
            for key, (step, code_bytes) in methods.items():
                step(first, threads)  # untimed
                times = batch_times[threads][key]
                begin = clock()
                for i in range(first + 1, first + 1 + calls):
                    t0 = clock()
                    step(i, threads)
                    times[i] = clock() - t0
                seconds = clock() - begin
                moved = int(code_bytes[first + 1 : first + 1 + calls].sum())
                rates[threads][key].append((calls * batch_size / seconds, moved / seconds))
    facts = {
        "samples": samples, "chunk_samples": bucketed.metadata.chunk_samples, "shapes": shapes,
        "sizes": sizes.tolist(), "drawn": np.bincount(drawn, minlength=len(shapes)).tolist(),
        "warm_pass": warm_pass, "calls": calls, "rounds": rounds,
        # Median time of a batch: (a)'s, and (b)'s per bucket (robust to bursts of other work).
        "square_median": {t: float(np.nanmedian(batch_times[t]["a"])) for t in thread_counts},
        "bucket_median": {t: [float(np.nanmedian(batch_times[t]["b"][drawn == b])) if (drawn == b).any() else None
                              for b in range(len(shapes))] for t in thread_counts},
        "bucket_batches": [int(np.isfinite(batch_times[thread_counts[0]]["b"][drawn == b]).sum())
                           for b in range(len(shapes))],
        "square_disk": disk_bytes(square_path), "bucketed_disk": disk_bytes(bucketed_path),
    }
    square.close()
    bucketed.close()
    return rates, facts


METHODS = [
    ("a", "square store (32, 8, 8): store.read of random batches (reference)"),
    ("b", "bucketed store: store.read of same-bucket random batches -> (256, 32, h, w)"),
]
READ_TARGET = 0.8
DISK_TARGET = 1.15


def _mb(value: float) -> str:
    return f"{value / 1e6:,.1f} MB"


def _aspect(h: int, w: int) -> str:
    return f"{w / h:.2f}:1" if w >= h else f"1:{h / w:.2f}"


def report(batch_size: int, every: dict, facts: dict, record: dict, command: str) -> str:
    counts = list(every)
    thr = [f"{t} thread{'s' if t > 1 else ''}" for t in counts]
    # Best round by samples/s; its bytes/s goes with it.
    best = {t: {key: max(rounds) for key, rounds in by_key.items()} for t, by_key in every.items()}
    samples, shapes, sizes, drawn = facts["samples"], facts["shapes"], facts["sizes"], facts["drawn"]
    table = [[f"({key}) {name}",
              *(f"{best[t][key][0]:,.0f}" for t in counts),
              *(f"{best[t][key][1] / 1e6:,.0f}" for t in counts),
              " / ".join(f"{best[t][key][0] / best[t]['a'][0]:.2f}" for t in counts),
              " / ".join(f"{best[t][key][1] / best[t]['a'][1]:.2f}" for t in counts),
              " / ".join(f"{batch_size / best[t][key][0] * 1e6:,.0f} µs" for t in counts)]
             for key, name in METHODS]
    rounds_table = [[f"({key})", f"{t} thr", " / ".join(f"{v:,.0f}" for v, _ in every[t][key])]
                    for key, _ in METHODS for t in counts]
    total_drawn = sum(drawn)
    histogram = [[str(b), f"(32, {h}, {w})", f"{w * COMPRESSION} x {h * COMPRESSION}", _aspect(h, w), str(h * w),
                  f"{sizes[b]:,}", f"{sizes[b] / samples:.1%}", f"{drawn[b] / total_drawn:.1%}"]
                 for b, (h, w) in enumerate(shapes)]
    tokens = sum(size * h * w for size, (h, w) in zip(sizes, shapes))
    square_median, bucket_median = facts["square_median"], facts["bucket_median"]
    median_rows = [["(a) square store", "(32, 8, 8)", "64", "-",
                    *(f"{square_median[t] * 1e6:,.0f} µs" for t in counts), " / ".join("1.00" for _ in counts)]]
    for b, (h, w) in enumerate(shapes):
        times = [bucket_median[t][b] for t in counts]
        median_rows.append([f"(b) bucket {b}", f"(32, {h}, {w})", str(h * w), f"{facts['bucket_batches'][b]:,}",
                            *("-" if v is None else f"{v * 1e6:,.0f} µs" for v in times),
                            " / ".join("-" if v is None else f"{square_median[t] / v:.2f}"
                                       for t, v in zip(counts, times))])
    mean_tokens = tokens / samples

    # (c) bytes on disk: everything under each store against the unpadded sum.
    square_disk, bucketed_disk = facts["square_disk"], facts["bucketed_disk"]
    unpadded = CHANNELS * tokens + PER_SAMPLE_BYTES * samples
    square_unpadded = samples * (math.prod(SQUARE_SHAPE) + PER_SAMPLE_BYTES)
    bucketed_total = sum(v[0] for v in bucketed_disk.values())
    square_total = sum(v[0] for v in square_disk.values())
    disk_ratio = bucketed_total / unpadded
    square_ratio = square_total / square_unpadded
    arrays = sorted(set(square_disk) | set(bucketed_disk), key=lambda n: (n == "metadata", n))
    breakdown = [[name, *(_mb(disk[name][0]) if name in disk else "-" for disk in (square_disk, bucketed_disk))]
                 for name in arrays]
    breakdown.append(["all files", _mb(square_total), _mb(bucketed_total)])
    breakdown.append(["allocated (st_blocks)", _mb(sum(v[1] for v in square_disk.values())),
                      _mb(sum(v[1] for v in bucketed_disk.values()))])
    disk_rows = [
        ["square store", _mb(square_total), f"{samples:,} x (32 x 64 + {PER_SAMPLE_BYTES}) = {_mb(square_unpadded)}",
         f"{square_ratio:.3f}"],
        ["bucketed store", _mb(bucketed_total),
         f"32 x {tokens:,} tokens + {samples:,} x {PER_SAMPLE_BYTES} = {_mb(unpadded)}", f"{disk_ratio:.3f}"],
    ]

    read_targets = []
    values = [best[t]["b"][0] / best[t]["a"][0] for t in counts]
    read_targets.append([f"(b) / (a) samples/s >= {READ_TARGET}", *(f"{v:,.2f}" for v in values),
                         _report.verdict(all(v >= READ_TARGET for v in values))])
    disk_targets = [[f"bucketed bytes on disk / unpadded sum <= {DISK_TARGET}", f"{disk_ratio:.3f}",
                     _report.verdict(disk_ratio <= DISK_TARGET)]]
    if record["built"]:
        built = (f"Stores built in this run ({record['square_seconds']:,.0f} s square, "
                 f"{record['bucketed_seconds']:,.0f} s bucketed)")
    else:
        built = (f"Stores reused from an earlier run (built in {record['square_seconds']:,.0f} s square, "
                 f"{record['bucketed_seconds']:,.0f} s bucketed)")
    mix = ", ".join(f"{name} {share:.0%}" for name, _, share in ASPECT_MIX)
    return "\n".join([
        f"# Bucketed store: {samples:,} samples, BucketTable.from_base({BASE}, {COMPRESSION}) against (32, 8, 8), "
        f"batches of {batch_size}",
        "",
        f"Machine: {_report.machine_line()}; {latentstore.kernels_info()}. {synthetic.DESCRIPTION} "
        "(synthetic.write_store and synthetic.write_bucketed_store; not DC-AE; read speed does not depend on "
        f"the values). Chunks of {facts['chunk_samples']:,} samples, uncompressed, crc32c. {built}. "
        f"Aspect ratios (width:height) SYNTHETIC too, fixed seed: {mix} (tail: log-uniform 1:4 to 4:1; "
        f"log-normal jitter {JITTER} around each peak), each image's bucket `table.nearest(w, h)`; samples in "
        "drawn order, so the buckets interleave within every chunk. Warm page cache, after a warm-up pass over "
        f"every sample of both stores ({facts['warm_pass']:,.1f} s); fresh fixed-seed random indices for every "
        f"batch; best of {facts['rounds']} alternating rounds of {facts['calls']} batches; both fill a "
        f"preallocated float32 batch ((b): a view of one buffer of the largest bucket, as LatentLoader's). Command: `{command}`.",
        "",
        "## Buckets",
        "",
        _report.markdown_table(["bucket", "latent", "pixels (w x h)", "aspect", "tokens", "samples", "share",
                                "share of (b)'s batches"], histogram),
        "",
        f"Mean {mean_tokens:.2f} tokens per sample against 64 in a padded row "
        f"({mean_tokens / 64:.1%} of the row holds codes).",
        "",
        "## Random batches (warm steady state)",
        "",
        _report.markdown_table(["method", *(f"{t}: samples/s" for t in thr), *(f"{t}: MB/s of codes" for t in thr),
                                "x (a) samples/s", "x (a) bytes/s", "per batch"], table),
        "",
        "MB/s of codes: the int8 codes of the samples' own tokens (C x h x w; the float32 batch written is 4x). "
        f"A (b) batch moves {mean_tokens / 64:.1%} of a square batch's bytes on average, so (b)'s ratio in "
        "bytes/s is the fairer comparison of the gathers themselves.",
        "",
        "Every round (samples/s), in the order run:",
        "",
        _report.markdown_table(["method", "threads", "rounds"], rounds_table),
        "",
        "Where the time goes: the median time of one batch of 256, (a)'s and (b)'s by bucket, over every timed "
        "batch of every round (medians shrug off bursts of other work); x (a): samples/s against (a)'s median.",
        "",
        _report.markdown_table(["batches of", "latent", "tokens", "timed batches",
                                *(f"{t}: median batch" for t in thr), "x (a)"], median_rows),
        "",
        "## Bytes on disk (file sizes)",
        "",
        "Each store: every file under it (chunks of every array with their crc32c, padding of the last chunk, "
        "zarr.json). Unpadded sum: every sample's C x h x w bytes of int8 codes plus the per-sample arrays the "
        f"square store also has (float16 scale, int32 label, uint8 valid: {PER_SAMPLE_BYTES} bytes); the bucketed "
        "store's own per-sample arrays (uint16 bucket, float32 x 4 crop box) count on its side only.",
        "",
        _report.markdown_table(["store", "on disk", "unpadded sum", "ratio"], disk_rows),
        "",
        _report.markdown_table(["array", "square", "bucketed"], breakdown),
        "",
        "## Targets (ratios in the same run)",
        "",
        _report.markdown_table(["target", *(f"{t} thr" for t in counts), "verdict"], read_targets),
        "",
        _report.markdown_table(["target", "value", "verdict"], disk_targets),
        "",
    ])


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chunk-samples", type=int, default=None, help="default: the stores' (~32 MiB of latents)")
    parser.add_argument("--work", type=Path, default=None,
                        help="where to build the stores and keep them for reruns (default: a temporary directory)")
    parser.add_argument("--results", type=Path, default=None, help="where to save the table")
    parser.add_argument("--name", default="buckets", help="results file name")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="kernel threads")
    parser.add_argument("--rounds", type=int, default=10, help="alternating timed rounds")
    parser.add_argument("--quick", action="store_true", help="fewer timed batches (smoke runs)")
    args = parser.parse_args(argv)
    command = _report.command_line("buckets.py", parser, args)
    with tempfile.TemporaryDirectory() if args.work is None else contextlib.nullcontext(args.work) as work:
        square, bucketed, record = build(Path(work), args.samples, args.chunk_samples)
        rates, facts = run(square, bucketed, args.batch_size, args.threads, 0.05 if args.quick else 1.0,
                           max(1, args.rounds))
    text = report(args.batch_size, rates, facts, record, command)
    return _report.publish(args.name, text, args.results)


if __name__ == "__main__":
    main()
