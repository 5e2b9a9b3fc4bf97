"""Random-batch read throughput: latentstore against the ways users read latents today.

    python benchmarks/read.py                    # 1,281,167 samples, (32, 8, 8): ~8 GB in /tmp
    python benchmarks/read.py --samples 100000   # quicker

Every method reads batches of 256 random indices out of the same int8 codes
(synthetic random codes and scales: read speed does not depend on the values)
with a warm page cache, and is checked to return the same values:

(a) numpy memmap fancy-index gather of the raw int8 bytes (the reference);
(b) ``store.read`` to float32 (the fused gather + dequantize);
(c) ``store.codes`` (int8 codes and float16 scales);
(d) numpy gather, then dequantize in numpy;
(e) zarr-python orthogonal selection on the same store, then dequantize;
(f) no library: one int8 tensor saved with ``torch.save``, opened with
    ``torch.load(mmap=True)``, ``index_select``, dequantized in torch.

Figures are samples/s; the targets are ratios within one run:
(b) >= 0.5 x (a), >= 2 x (d), >= (f) at the same thread count;
(c) >= 0.8 x (a); (b) >= 100 x (e).
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

if __name__ == "__main__" and not __package__:  # python benchmarks/NAME.py: make the package importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])
import latentstore  # noqa: E402
from benchmarks import _report  # noqa: E402

LATENT_SHAPE = (32, 8, 8)


def build(directory: Path, samples: int, chunk_samples: int | None, seed: int = 0):
    """A store of random codes, the same codes as one flat file, and as a torch file."""
    rng = np.random.default_rng(seed)
    store_path = directory / "read-bench.zarr"
    writer = latentstore.create(store_path, samples, LATENT_SHAPE, chunk_samples=chunk_samples, overwrite=True)
    flat = np.lib.format.open_memmap(directory / "codes.npy", mode="w+", dtype=np.int8, shape=(samples, *LATENT_SHAPE))
    all_scales = np.empty(samples, np.float16)
    step = writer.metadata.chunk_samples
    for start in range(0, samples, step):
        n = min(step, samples - start)
        q = rng.integers(-127, 128, size=(n, *LATENT_SHAPE), dtype=np.int8)
        s = rng.uniform(0.01, 0.1, size=n).astype(np.float16)
        writer.write(start, codes=(q, s), labels=rng.integers(0, 1000, n))
        flat[start : start + n] = q
        all_scales[start : start + n] = s
    writer.close()
    flat.flush()
    del flat
    torch_path = None
    try:
        import torch
    except ImportError:
        print("torch is not installed: method (f) is skipped", file=sys.stderr)
    else:
        torch_path = directory / "codes.pt"
        codes = torch.from_numpy(np.load(directory / "codes.npy", mmap_mode="c"))  # copy-on-write: writable, nothing copied
        torch.save({"latents": codes, "scales": torch.from_numpy(all_scales)}, torch_path)
        del codes
    return store_path, directory / "codes.npy", all_scales, torch_path


def run(samples: int, batch_size: int, thread_counts: list[int], directory: Path, chunk_samples=None, seconds_scale=1.0):
    store_path, flat_path, scales, torch_path = build(directory, samples, chunk_samples)
    _report.warm_page_cache(store_path, flat_path, torch_path)
    store = latentstore.open(store_path)
    flat = np.load(flat_path, mmap_mode="r")
    scales32 = scales.astype(np.float32)
    calls = max(20, int(400 * seconds_scale))
    # Fresh random rows for every batch of a timed run (a method makes
    # 4 * calls + 1 calls): cycling through a few batches would keep their
    # pages in the CPU caches and flatter every method.
    rng = np.random.default_rng(1)
    batches = rng.integers(0, samples, (4 * calls + 8, batch_size))
    sorted_batches = np.sort(batches[:64], axis=1)
    counter = iter(range(1 << 62))

    def next_batch():
        return batches[next(counter) % len(batches)]

    out = np.empty((batch_size, *LATENT_SHAPE), np.float32)

    # Every method must agree before anything is timed.
    check = batches[0]
    expected = flat[check].astype(np.float32) * scales32[check][:, None, None, None]
    np.testing.assert_array_equal(store.read(check)[0], expected)
    np.testing.assert_array_equal(store.codes(check)[0], flat[check])

    import zarr

    zarr_latents = zarr.open_group(store_path, mode="r")["latents"]
    np.testing.assert_array_equal(zarr_latents.oindex[sorted_batches[0]], flat[sorted_batches[0]])

    torch_data = None
    if torch_path is not None:
        import torch

        torch_data = torch.load(torch_path, mmap=True, weights_only=True)
        got = torch_data["latents"].index_select(0, torch.from_numpy(check)).float() * torch_data["scales"].index_select(
            0, torch.from_numpy(check)
        ).float()[:, None, None, None]
        np.testing.assert_array_equal(got.numpy(), expected)

    rows = []
    for threads in thread_counts:
        rate = {}
        rate["a"] = _report.best_rate(lambda: flat[next_batch()], batch_size, calls=calls)
        rate["b"] = _report.best_rate(lambda: store.read(next_batch(), out=out, num_threads=threads), batch_size, calls=calls)
        rate["c"] = _report.best_rate(lambda: store.codes(next_batch(), num_threads=threads), batch_size, calls=calls)

        def numpy_way():
            idx = next_batch()
            return flat[idx].astype(np.float32) * scales32[idx][:, None, None, None]

        rate["d"] = _report.best_rate(numpy_way, batch_size, calls=calls)

        def zarr_way():
            idx = sorted_batches[next(counter) % len(sorted_batches)]
            return zarr_latents.oindex[idx].astype(np.float32) * scales32[idx][:, None, None, None]

        rate["e"] = _report.best_rate(zarr_way, batch_size, calls=max(3, calls // 100), repeats=2)
        if torch_data is not None:
            import torch

            torch.set_num_threads(threads)
            codes, torch_scales = torch_data["latents"], torch_data["scales"]

            def torch_way():
                idx = torch.from_numpy(next_batch())
                return codes.index_select(0, idx).float() * torch_scales.index_select(0, idx).float()[:, None, None, None]

            def torch_gather_only():
                return codes.index_select(0, torch.from_numpy(next_batch()))

            rate["f"] = _report.best_rate(torch_way, batch_size, calls=calls)
            rate["f0"] = _report.best_rate(torch_gather_only, batch_size, calls=calls)
        rows.append((threads, rate))
    return store, rows


METHODS = [
    ("a", "numpy memmap gather of int8 bytes (reference)"),
    ("b", "store.read -> float32"),
    ("c", "store.codes -> int8 + scales"),
    ("d", "numpy gather, then numpy dequantize"),
    ("e", "zarr-python oindex, then dequantize"),
    ("f", "torch.load(mmap=True) + index_select + dequantize"),
    ("f0", "torch.load(mmap=True) + index_select, int8 only"),
]

TARGETS = [
    ("(b) / (a) >= 0.5", "b", "a", 0.5),
    ("(b) / (d) >= 2", "b", "d", 2.0),
    ("(b) / (f) >= 1", "b", "f", 1.0),
    ("(c) / (a) >= 0.8", "c", "a", 0.8),
    ("(b) / (e) >= 100", "b", "e", 100.0),
]


def report(samples: int, batch_size: int, store, rows) -> str:
    header = ["method"] + [f"{t} thread{'s' if t > 1 else ''}: samples/s" for t, _ in rows] + ["x reference (a)"]
    table = []
    for key, name in METHODS:
        if key not in rows[0][1]:
            continue
        cells = [f"{rate[key]:,.0f}" for _, rate in rows]
        ratios = " / ".join(f"{rate[key] / rate['a']:.2f}" for _, rate in rows)
        table.append([f"({key}) {name}", *cells, ratios])
    target_rows = []
    for label, num, den, goal in TARGETS:
        if num not in rows[0][1] or den not in rows[0][1]:
            continue
        values = [rate[num] / rate[den] for _, rate in rows]
        verdict = _report.verdict(all(v >= goal for v in values))
        target_rows.append([label, *(f"{v:,.2f}" for v in values), verdict])
    return "\n".join(
        [
            f"# Random-batch reads: {samples:,} samples of {LATENT_SHAPE} int8, batches of {batch_size}",
            "",
            f"Machine: {_report.machine_line()}; {latentstore.kernels_info()}. "
            "Synthetic random codes (read speed does not depend on values); warm page cache; "
            "fresh random indices for every batch; best of 3 timed runs. Command: `python benchmarks/read.py"
            + (f" --samples {samples}" if samples != 1_281_167 else "")
            + "`.",
            "",
            _report.markdown_table(header, table),
            "",
            "## Targets (ratios in the same run, per thread count)",
            "",
            _report.markdown_table(["target"] + [f"{t} thr" for t, _ in rows] + ["verdict"], target_rows),
            "",
        ]
    )


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_281_167)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--chunk-samples", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--results", type=Path, default=None, help="where to save the table")
    parser.add_argument("--name", default="read", help="results file name")
    parser.add_argument("--quick", action="store_true", help="fewer timed batches (smoke runs)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        store, rows = run(
            args.samples, args.batch_size, args.threads, Path(tmp), args.chunk_samples, 0.05 if args.quick else 1.0
        )
        text = report(args.samples, args.batch_size, store, rows)
    return _report.publish(args.name, text, args.results)


if __name__ == "__main__":
    main()
