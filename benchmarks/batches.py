"""What batches you can keep cost: LatentLoader's pooled buffers against a new buffer per batch.

    python benchmarks/batches.py                   # 300,000 samples (0.6 GB in /tmp)

LatentLoader hands out CPU batches that stay valid while they are held: a
buffer is refilled only once no tensor of a batch made from it is alive
(reference counts). The alternative that is safe without that bookkeeping
allocates a new buffer for every batch. Both deliver shuffled batches of 256
float32 (32, 8, 8) latents from the same SYNTHETIC store into a no-op step, in
one process, alternating rounds (best round of each), so the ratio is measured
within one run on a shared machine.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # python benchmarks/NAME.py: make the package importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])
import latentstore  # noqa: E402
from benchmarks import _report, synthetic  # noqa: E402

LATENT_SHAPE = (32, 8, 8)


def loaders(store, batch_size: int) -> dict:
    from latentstore.torch import LatentLoader

    class NewBufferPerBatch(LatentLoader):
        def _idle_host_buffer(self):
            return self._new_buffer()

    return {
        "pooled": ("LatentLoader: pooled buffers, refilled only when no batch uses them", LatentLoader(store, batch_size)),
        "new": ("a new buffer for every batch", NewBufferPerBatch(store, batch_size)),
    }


def rate(loader, seconds: float) -> float:
    batches, count, start = iter(loader), 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            latents, labels = next(batches)
        except StopIteration:
            batches = iter(loader)
            continue
        count += len(labels)
    return count / (time.perf_counter() - start)


def report(samples: int, batch_size: int, names: dict, rates: dict, seconds: float, rounds: int) -> str:
    best = {key: max(values) for key, values in rates.items()}
    ratio = best["pooled"] / best["new"]
    rows = [[f"({key}) {names[key]}", f"{best[key]:,.0f}", " / ".join(f"{v:,.0f}" for v in rates[key])]
            for key in rates]
    return "\n".join([
        f"# Batches you can keep: {samples:,} samples of {LATENT_SHAPE} int8, batches of {batch_size}",
        "",
        f"Machine: {_report.machine_line()}; {latentstore.kernels_info()}. SYNTHETIC latents; page cache warm; "
        f"{rounds} alternating rounds of {seconds:g} s each; no-op training step; CPU, prefetch=0. "
        "Command: `python benchmarks/batches.py" + (f" --samples {samples}" if samples != 300_000 else "") + "`.",
        "",
        _report.markdown_table(["method", "best samples/s", "every round"], rows),
        "",
        "## Targets",
        "",
        _report.markdown_table(["target", "value", "verdict"],
                               [["(pooled) / (new) >= 0.95", f"{ratio:.2f}", _report.verdict(ratio >= 0.95)]]),
        "",
    ])


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=300_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds per round and method")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--name", default="batches")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        path = Path(scratch) / "store.zarr"
        synthetic.write_store(path, args.samples, LATENT_SHAPE)
        _report.warm_page_cache(path)
        store = latentstore.open(path)
        methods = loaders(store, args.batch_size)
        rates: dict = {key: [] for key in methods}
        for _ in range(args.rounds):
            for key, (_, loader) in methods.items():
                rates[key].append(rate(loader, args.seconds))
        store.close()
    names = {key: name for key, (name, _) in methods.items()}
    return _report.publish(args.name, report(args.samples, args.batch_size, names, rates, args.seconds, args.rounds),
                           args.results)


if __name__ == "__main__":
    main()
