"""Feeding a training loop: LatentLoader against the ways users load latents today.

    python benchmarks/loader.py                        # 1,281,167 samples: ~9 GB in /tmp
    python benchmarks/loader.py --samples 100000       # quicker

On the same SYNTHETIC latents (a pool of synthetic samples, see
``synthetic.py``, repeated to fill the store: read speed does not depend on
the values), every method delivers shuffled batches of float32 latents
(B, 32, 8, 8) and int64 labels into a no-op training step:

(a) ``LatentLoader`` (fused gather + dequantize, prefetch thread);
(b) ``DataLoader(LatentDataset)``, 0 workers, default collate;
(c) the same with ``collate_fn=latentstore.torch.collate`` (no collate copy);
(d) ``DataLoader(LatentDataset)``, 2 workers (fork), default collate;
(e) the Imagenet.3GB way (the reference): ``torch.load`` of one pickled
    list of dicts {'id', 'latent' uint8 (32, 8, 8), 'label'}, index the
    list, ``torch.stack``, dequantize ``q / 255 * 13 - 6.5``;
(f) no library: one int8 tensor and its float16 scales saved with
    ``torch.save``, ``torch.load(mmap=True)``, ``index_select``, dequantize
    in torch.

Each method runs in a fresh process (imports excluded from the clock, page
cache warm): time to first batch (open/load + first batch), then samples/s
over at least ``--seconds`` per thread count, and the process's peak RSS.
Then 4 processes of (a), (e) and (f) hold the data at once (after a full
epoch for (a) and (f)) and their summed PSS is read from /proc. The pickle of
(e) is slow to write and load, so it holds ``--pickle-samples`` samples
(200,000 by default) and its time to first batch and memory are also given
scaled linearly to the full size, labelled as such.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __name__ == "__main__" and not __package__:  # python benchmarks/NAME.py: make the package importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])
import latentstore  # noqa: E402
from benchmarks import (
    _report,  # noqa: E402
    synthetic,  # noqa: E402
)

LATENT_SHAPE = (32, 8, 8)
POOL = 16384
IMAGENET_CLAMP = 6.5
METHODS = {
    "a": "LatentLoader",
    "b": "DataLoader(LatentDataset), 0 workers",
    "c": "DataLoader(LatentDataset), 0 workers, collate_fn=collate",
    "d": "DataLoader(LatentDataset), 2 workers (fork)",
    "e": "Imagenet.3GB way: torch.load list of dicts, stack, dequantize (reference)",
    "f": "no library: torch.load(mmap=True) int8 tensor, index_select, dequantize",
    "g": "Imagenet.3GB through a DataLoader: per-sample __getitem__, default collate, dequantize",
}
PSS_METHODS = ("a", "e", "f")


# -- the data ----------------------------------------------------------------
def build(directory: Path, samples: int, pickle_samples: int, seed: int = 0) -> dict:
    """The store, the no-library .pt file and the Imagenet.3GB-style pickle, from one pool."""
    import torch

    pool = synthetic.synthetic_latents(min(POOL, samples), LATENT_SHAPE, seed=seed)
    q_pool, s_pool = latentstore.quantize(pool)
    affine_pool = np.rint((np.clip(pool, -IMAGENET_CLAMP, IMAGENET_CLAMP) + IMAGENET_CLAMP) / 13 * 255).astype(np.uint8)
    del pool
    labels = np.random.default_rng(seed).integers(0, 1000, samples).astype(np.int32)
    tile = lambda a, n, start=0: a[(np.arange(start, start + n)) % len(a)]  # noqa: E731

    store_path = directory / "loader-bench.zarr"
    with latentstore.create(store_path, samples, LATENT_SHAPE, overwrite=True) as writer:
        step = writer.metadata.chunk_samples
        for start in range(0, samples, step):
            n = min(step, samples - start)
            writer.write(start, codes=(tile(q_pool, n, start), tile(s_pool, n, start)), labels=labels[start : start + n])

    flat_path = directory / "codes.pt"
    codes = np.empty((samples, *LATENT_SHAPE), np.int8)
    for start in range(0, samples, POOL):
        n = min(POOL, samples - start)
        codes[start : start + n] = q_pool[:n]
    torch.save(
        {
            "latents": torch.from_numpy(codes),
            "scales": torch.from_numpy(tile(s_pool, samples)),
            "labels": torch.from_numpy(labels.astype(np.int64)),
        },
        flat_path,
    )
    del codes

    pickle_path = directory / "imagenet3gb-style.pt"
    items = [
        {"id": f"{i:08d}", "latent": torch.from_numpy(affine_pool[i % len(affine_pool)].copy()), "label": int(labels[i])}
        for i in range(pickle_samples)
    ]
    torch.save(items, pickle_path)
    del items
    paths = {"store": store_path, "flat": flat_path, "pickle": pickle_path}
    _report.warm_page_cache(*paths.values())
    return {k: str(v) for k, v in paths.items()}


# -- one method in one process -------------------------------------------------
def open_method(method: str, paths: dict, batch_size: int):
    """Open the data the method's way; return an endless iterator of (latents, labels)."""
    import torch

    if method == "a":
        from latentstore.torch import LatentLoader

        loader = LatentLoader(paths["store"], batch_size, seed=0)

        def batches():
            while True:
                yield from loader

        return batches()
    if method in "bcd":
        from latentstore.torch import LatentDataset, collate

        options = dict(batch_size=batch_size, shuffle=True)
        if method == "c":
            options["collate_fn"] = collate
        if method == "d":
            options.update(num_workers=2, multiprocessing_context="fork", persistent_workers=True)
        loader = torch.utils.data.DataLoader(LatentDataset(paths["store"]), **options)

        def batches():
            while True:
                yield from loader

        return batches()
    if method == "e":
        items = torch.load(paths["pickle"], weights_only=True)

        def batches():
            while True:
                order = torch.randperm(len(items)).tolist()
                for start in range(0, len(order) - batch_size + 1, batch_size):
                    chosen = [items[i] for i in order[start : start + batch_size]]
                    q = torch.stack([item["latent"] for item in chosen])
                    labels = torch.tensor([item["label"] for item in chosen])
                    yield q.float() / 255 * 13 - IMAGENET_CLAMP, labels

        return batches()
    if method == "g":
        items = torch.load(paths["pickle"], weights_only=True)

        class Records(torch.utils.data.Dataset):
            """How training scripts usually serve the list: one record at a time."""

            def __len__(self):
                return len(items)

            def __getitem__(self, i):
                return items[i]["latent"], items[i]["label"]

        loader = torch.utils.data.DataLoader(Records(), batch_size=batch_size, shuffle=True, drop_last=True)

        def batches():
            while True:
                for q, labels in loader:
                    yield q.float() / 255 * 13 - IMAGENET_CLAMP, labels

        return batches()
    if method == "f":
        data = torch.load(paths["flat"], mmap=True, weights_only=True)
        codes, scales, all_labels = data["latents"], data["scales"], data["labels"]

        def batches():
            while True:
                order = torch.randperm(len(codes))
                for start in range(0, len(order) - batch_size + 1, batch_size):
                    idx = order[start : start + batch_size]
                    s = scales.index_select(0, idx).float()[:, None, None, None]
                    yield codes.index_select(0, idx).float() * s, all_labels.index_select(0, idx)

        return batches()
    raise ValueError(f"unknown method {method!r}")


def set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    latentstore.set_num_threads(threads)


def pss_bytes(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:")) * 1024


def status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":")) * 1024


def reset_peak_rss() -> None:
    """Make VmHWM (peak RSS) start again from the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def worker(method: str, paths: dict, batch_size: int, threads: list[int], seconds: float, hold: bool) -> None:
    """Measure one method in this process; print one JSON line."""
    import torch  # noqa: F401 - imported before the clock starts

    set_threads(threads[0])
    reset_peak_rss()  # the import of torch peaks higher than where it settles
    baseline = {"baseline_pss": pss_bytes(), "baseline_rss": status_bytes("VmRSS")}
    start = time.perf_counter()
    batches = open_method(method, paths, batch_size)
    latents, labels = next(batches)
    first = time.perf_counter() - start
    assert latents.dtype.is_floating_point and latents.shape == (batch_size, *LATENT_SHAPE) and len(labels) == batch_size
    result = {"ttfb": first, **baseline}
    if hold:
        # Touch what training touches: a full epoch (the pickle is all in RAM already).
        if method in "af":
            for _ in range(-(-len(latentstore.open(paths["store"])) // batch_size)):
                next(batches)
        result["ready"] = True
        print(json.dumps(result), flush=True)
        sys.stdin.readline()
        return
    rates = {}
    for t in threads:
        set_threads(t)
        next(batches)
        count, begin = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - begin) < seconds or count < 5:
            next(batches)  # the no-op training step
            count += 1
        rates[t] = count * batch_size / elapsed
    result["rates"] = rates
    result["peak_rss"] = status_bytes("VmHWM")
    batches.close()  # shuts DataLoader workers down, which hold our stdout open
    print(json.dumps(result), flush=True)
    os._exit(0)  # skip tearing down the pickle's million objects


def spawn(method: str, paths: dict, args, hold: bool = False) -> subprocess.Popen:
    command = [
        sys.executable, __file__, "--worker", method, "--paths", json.dumps(paths),
        "--batch-size", str(args.batch_size), "--seconds", str(args.seconds),
        "--threads", *map(str, args.threads),
    ] + (["--hold"] if hold else [])
    return subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def measure(paths: dict, args) -> tuple[dict, dict]:
    single = {}
    for method in METHODS:
        process = spawn(method, paths, args)
        out, _ = process.communicate()
        if process.returncode:
            raise RuntimeError(f"method ({method}) failed with exit status {process.returncode}")
        single[method] = json.loads(out.strip().splitlines()[-1])
    pss = {}
    for method in PSS_METHODS:
        processes = [spawn(method, paths, args, hold=True) for _ in range(args.pss_processes)]
        try:
            baseline = sum(json.loads(p.stdout.readline())["baseline_pss"] for p in processes)
            pss[method] = sum(pss_bytes(p.pid) for p in processes) - baseline
        finally:
            for p in processes:
                p.communicate("\n")
    return single, pss


# -- the report --------------------------------------------------------------
def report(samples: int, pickle_samples: int, store_bytes: int, single: dict, pss: dict, args, command: str) -> str:
    scale = samples / pickle_samples
    scaled = scale != 1
    threads = args.threads
    ref, ours, nolib = single["e"], single["a"], single["f"]
    ttfb_ref = ref["ttfb"] * scale
    header = ["method"] + [f"samples/s, {t} thr" for t in threads] + ["x (e)", "first batch", "(e) / this", "peak RSS growth"]
    rows = []
    for key, name in METHODS.items():
        r = single[key]
        rates = [r["rates"][str(t)] for t in threads]
        ratio = " / ".join(f"{r['rates'][str(t)] / ref['rates'][str(t)]:,.1f}" for t in threads)
        rss = (r["peak_rss"] - r["baseline_rss"]) / 2**20
        pickled = key in ("e", "g")
        rss_cell = f"{rss:,.0f} MiB" + (f" ({rss * scale:,.0f} MiB scaled)" if pickled and scaled else "")
        first = f"{r['ttfb'] * 1e3:,.1f} ms" + (f" ({r['ttfb'] * scale:,.1f} s scaled)" if pickled and scaled else "")
        first_ratio = "—" if pickled else f"{ttfb_ref / r['ttfb']:,.0f}"
        rows.append([f"({key}) {name}", *(f"{x:,.0f}" for x in rates), ratio, first, first_ratio, rss_cell])
    pss_rows = []
    for key in PSS_METHODS:
        total = pss[key] / 2**20
        cell = f"{total:,.0f} MiB" + (f" ({total * scale:,.0f} MiB scaled)" if key == "e" and scaled else "")
        pss_rows.append([f"({key}) {METHODS[key]}", cell, f"{pss[key] / store_bytes:.2f}"])

    def verdict(values, goal):
        return _report.verdict(all(v >= goal for v in values))

    speed = [ours["rates"][str(t)] / ref["rates"][str(t)] for t in threads]
    speed_per_record = [ours["rates"][str(t)] / single["g"]["rates"][str(t)] for t in threads]
    versus_nolib = [ours["rates"][str(t)] / nolib["rates"][str(t)] for t in threads]
    first_ratio = ttfb_ref / ours["ttfb"]
    targets = [
        ["(a) samples/s >= 40 x (e)", " / ".join(f"{v:,.1f}" for v in speed), verdict(speed, 40)],
        ["(a) samples/s >= 40 x (g)", " / ".join(f"{v:,.1f}" for v in speed_per_record), verdict(speed_per_record, 40)],
        ["(a) first batch >= 1000 x sooner than (e)", f"{first_ratio:,.0f}", verdict([first_ratio], 1000)],
        ["(a) samples/s >= (f), same threads", " / ".join(f"{v:,.2f}" for v in versus_nolib), verdict(versus_nolib, 1)],
        [f"{args.pss_processes} x (a) summed PSS <= 1.25 x store", f"{pss['a'] / store_bytes:.2f}", verdict([1.25 - pss["a"] / store_bytes], 0)],
    ]
    scaling_note = (
        f"The pickle of (e) and (g) holds {pickle_samples:,} samples, not {samples:,}: its samples/s is measured; "
        f"its time to first batch, peak RSS and PSS are measured at {pickle_samples:,} samples and "
        f"**scaled linearly by {scale:.2f}** to the full size (marked \"scaled\"); ratios use the scaled first batch."
        if scaled else "Every method holds all samples."
    )
    return "\n".join([
        f"# Feeding a training loop: {samples:,} samples of {LATENT_SHAPE}, batches of {args.batch_size}",
        "",
        f"Machine: {_report.machine_line()}; {latentstore.kernels_info()}; torch {__import__('torch').__version__}. "
        f"Data: {synthetic.DESCRIPTION}; a pool of {min(POOL, samples):,} such samples repeated (read speed does not "
        f"depend on the values). Store: {store_bytes / 2**30:.2f} GiB of latents, page cache warm. "
        f"Each method in a fresh process, imports excluded; samples/s over at least {args.seconds} s of a no-op "
        f"training step. Command: `{command}`.",
        "",
        scaling_note,
        "",
        _report.markdown_table(header, rows),
        "",
        f"## Memory of {args.pss_processes} processes holding the data at once (summed PSS)",
        "",
        "PSS (proportional set size: shared pages split between the processes mapping them) from "
        "/proc/<pid>/smaps_rollup, summed over the processes, minus their summed PSS after imports (torch, numpy, "
        "latentstore) and before opening the data. (a) and (f) after a full epoch each (every page touched), (e) after "
        "loading. Peak RSS growth above: the process's peak RSS minus its RSS after imports.",
        "",
        _report.markdown_table(["method", "summed PSS growth", "x store size"], pss_rows),
        "",
        "## Targets (ratios within this run)",
        "",
        _report.markdown_table(["target", "value", "verdict"], targets),
        "",
    ])


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_281_167)
    parser.add_argument("--pickle-samples", type=int, default=200_000, help="samples in the Imagenet.3GB-style pickle")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per method and thread count")
    parser.add_argument("--pss-processes", type=int, default=4)
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temporary one in /tmp)")
    parser.add_argument("--results", type=Path, default=None, help="where to save the table")
    parser.add_argument("--name", default="loader", help="results file name")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    parser.add_argument("--hold", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, json.loads(args.paths), args.batch_size, args.threads, args.seconds, args.hold)
        return ""
    pickle_samples = min(args.pickle_samples, args.samples)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        started = time.perf_counter()
        paths = build(Path(tmp), args.samples, pickle_samples)
        print(f"built the data in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        single, pss = measure(paths, args)
    store_bytes = args.samples * int(np.prod(LATENT_SHAPE))
    text = report(args.samples, pickle_samples, store_bytes, single, pss, args, _report.command_line("loader.py", parser, args))
    return _report.publish(args.name, text, args.results)


if __name__ == "__main__":
    main()
