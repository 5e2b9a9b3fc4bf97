"""One node, many processes: readers that share the cores, DataLoader workers at full speed.

    python benchmarks/node.py                    # 1,281,167 samples of (32, 8, 8): ~5 GB in /tmp
    python benchmarks/node.py --samples 200000   # quicker

Every figure is samples/s of float32 batches of 256 fresh random rows (or
int8 codes for (e)), warm page cache, each measured in its own process
started for it (so no run inherits another's threads or forks):

(a) one process: ``LatentLoader(store, 256)``, the default thread budget;
(b) 2 and 4 such processes started together, as torchrun starts ranks
    (``LOCAL_WORLD_SIZE`` set; each gets its share of the cores): the total;
(c) the same with every process forced to all cores
    (``LATENTSTORE_NUM_THREADS``), the behaviour before the budget;
(d) ``DataLoader(LatentDataset(store), batch_size=256, shuffle=True,
    num_workers=W)`` for W = 0, 1, 2, 4, default collate; and W = 2 with
    ``read_in="worker"`` (the workers read and send tensors) for contrast;
    (d0) the same DataLoader over a dataset that reads nothing and returns
    the row numbers: the ceiling DataLoader's own per-batch work sets;
(e) ``store.codes`` against ``torch.load(mmap=True)`` + ``index_select`` of
    the same int8 codes, at 1 and 2 threads;
(f) where a second thread starts to pay: ``store.read`` and ``store.codes``
    at batch sizes 16 to 1,024 on 1 and 2 threads (in one process).

Targets, ratios within the run: (b) total >= 0.9 x (a); (d) with 2 workers
>= 0.5 x (a); (e) >= 1.0 at equal threads.
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
from benchmarks import _report  # noqa: E402
from benchmarks import read as read_bench  # noqa: E402

BATCH = 256


# -- what one child process measures -------------------------------------------
def _timed(step, seconds: float, start_at: float) -> dict:
    """Run ``step() -> samples`` from ``start_at`` (wall clock) for ``seconds``; samples/s."""
    step()  # warm: the first batch, thread teams, the pages of the index arrays
    time.sleep(max(0.0, start_at - time.time()))
    samples, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        samples += step()
    return {"rate": samples / elapsed, "budget": list(latentstore.thread_budget())}


def _endless(loader):
    while True:
        yield from loader


def child(method: str, store: str, torch_file: str, seconds: float, start_at: float) -> dict:
    """One measurement (``method`` as in the module docstring), in this process."""
    import torch

    kind, _, arg = method.partition(":")
    if kind == "loader":
        from latentstore.torch import LatentLoader

        batches = _endless(LatentLoader(store, BATCH, seed=int(time.time())))
        return _timed(lambda: len(next(batches)[0]), seconds, start_at)
    if kind == "dataloader-ceiling":
        class RowNumbers(torch.utils.data.Dataset):
            """Reads nothing: what DataLoader's own per-batch machinery allows."""

            def __len__(self):
                return 1_000_000

            def __getitems__(self, positions):
                return np.asarray(positions)

        loader = torch.utils.data.DataLoader(RowNumbers(), batch_size=BATCH, shuffle=True, num_workers=int(arg),
                                             persistent_workers=True, collate_fn=lambda rows: rows)
        batches = _endless(loader)
        return _timed(lambda: len(next(batches)), seconds, start_at)
    if kind in ("dataloader", "dataloader-worker-reads"):
        from latentstore.torch import LatentDataset

        workers = int(arg)
        dataset = LatentDataset(store, read_in="worker" if kind == "dataloader-worker-reads" else "consumer")
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=BATCH, shuffle=True, num_workers=workers, persistent_workers=workers > 0
        )
        batches = _endless(loader)
        return _timed(lambda: len(next(batches)[0]), seconds, start_at)
    threads = int(arg)
    rng = np.random.default_rng(int(time.time()))
    if kind == "codes":
        opened = latentstore.open(store)
        rows = rng.integers(0, len(opened), (1 << 14, BATCH))
        counter = iter(range(1 << 62))
        return _timed(lambda: len(opened.codes(rows[next(counter) % len(rows)], num_threads=threads)[0]), seconds, start_at)
    if kind == "torch":
        torch.set_num_threads(threads)
        codes = torch.load(torch_file, mmap=True, weights_only=True)["latents"]
        rows = torch.from_numpy(rng.integers(0, len(codes), (1 << 14, BATCH)))
        counter = iter(range(1 << 62))
        return _timed(lambda: len(codes.index_select(0, rows[next(counter) % len(rows)])), seconds, start_at)
    raise ValueError(f"unknown method {method!r}")


# -- the parent: starting children together --------------------------------------
def run_together(methods: list[str], paths: tuple[str, str], seconds: float, env: dict) -> list[dict]:
    """Start one child per method at once; each starts timing at the same instant."""
    start_at = time.time() + 3.0 + 0.5 * len(methods)  # after every child has imported torch
    children = []
    for method in methods:
        command = [sys.executable, __file__, "--child", method, "--store", paths[0], "--torch-file", paths[1],
                   "--seconds", str(seconds), "--start-at", repr(start_at)]
        children.append(subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, **env}))
    results = []
    for process in children:
        out, _ = process.communicate(timeout=120 + 4 * seconds)
        if process.returncode != 0:
            raise RuntimeError(f"benchmark child {command} failed with exit code {process.returncode}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def thread_crossover(store_path: Path, calls: int) -> list[list]:
    """(f): read and codes speed on 2 threads over 1 thread, by batch size."""
    store = latentstore.open(store_path)
    rng = np.random.default_rng(2)
    rows = []
    for batch in (16, 32, 64, 128, 256, 1024):
        indices = rng.integers(0, len(store), (4 * calls + 8, batch))
        counter = iter(range(1 << 62))
        out = np.empty((batch, *store.latent_shape), np.float32)
        rate = {}
        for threads in (1, 2):
            next_rows = lambda: indices[next(counter) % len(indices)]  # noqa: E731
            rate["read", threads] = _report.best_rate(
                lambda: store.read(next_rows(), out=out, num_threads=threads), batch, calls=calls)
            rate["codes", threads] = _report.best_rate(
                lambda: store.codes(next_rows(), num_threads=threads), batch, calls=calls)
        rows.append([f"{batch:,}", f"{batch * int(np.prod(store.latent_shape)) // 1024:,} KiB",
                     f"{rate['read', 2] / rate['read', 1]:.2f}", f"{rate['codes', 2] / rate['codes', 1]:.2f}"])
    return rows


def run(samples: int, seconds: float, directory: Path, chunk_samples: int | None, calls: int) -> str:
    store_path, _, _, torch_path = read_bench.build(directory, samples, chunk_samples)
    _report.warm_page_cache(store_path, torch_path)
    paths = (str(store_path), str(torch_path))
    cores = latentstore.quantization.threads.available_cores()
    alone = lambda env=None: run_together(["loader"], paths, seconds, {"LOCAL_WORLD_SIZE": "1", **(env or {})})  # noqa: E731

    def stage(text):
        print(f"node benchmark: {text}", file=sys.stderr, flush=True)

    stage("(a) one process")
    a = alone()[0]
    table = [["(a) one process, LatentLoader", f"{a['rate']:,.0f}", "1.00", _budget(a)]]
    totals = {}
    for forced in (False, True):
        for k in (2, 4):
            label = "(c)" if forced else "(b)"
            stage(f"{label} {k} processes")
            env = {"LOCAL_WORLD_SIZE": str(k)} | ({"LATENTSTORE_NUM_THREADS": str(cores)} if forced else {})
            results = run_together(["loader"] * k, paths, seconds, env)
            total = sum(r["rate"] for r in results)
            totals[label, k] = total
            what = "every process forced to all cores" if forced else "default budget"
            table.append([f"{label} {k} processes at once, {what}: total", f"{total:,.0f}",
                          f"{total / a['rate']:.2f}", _budget(results[0])])
    dataloader = {}
    for method in ["dataloader:0", "dataloader:1", "dataloader:2", "dataloader:4", "dataloader-worker-reads:2",
                   "dataloader-ceiling:2"]:
        stage(f"(d) {method}")
        result = alone_method(method, paths, seconds)
        dataloader[method] = result["rate"]
        workers = method.partition(":")[2]
        name = f"(d) DataLoader(LatentDataset), {workers} workers"
        if method.startswith("dataloader-worker-reads"):
            name += ", read_in='worker' (workers send tensors)"
        if method.startswith("dataloader-ceiling"):
            name = f"(d0) DataLoader of a dataset that reads nothing, {workers} workers: its own per-batch ceiling"
        table.append([name, f"{result['rate']:,.0f}", f"{result['rate'] / a['rate']:.2f}", _budget(result)])
    codes_rows = []
    for threads in (1, 2):
        stage(f"(e) codes vs torch, {threads} threads")
        ours = alone_method(f"codes:{threads}", paths, seconds)["rate"]
        theirs = alone_method(f"torch:{threads}", paths, seconds)["rate"]
        codes_rows.append((threads, ours, theirs))
        table.append([f"(e) store.codes, {threads} thread{'s' if threads > 1 else ''}", f"{ours:,.0f}",
                      f"{ours / a['rate']:.2f}", f"num_threads={threads}"])
        table.append([f"(e) torch.load(mmap=True) + index_select, {threads} thread{'s' if threads > 1 else ''}",
                      f"{theirs:,.0f}", f"{theirs / a['rate']:.2f}", f"torch.set_num_threads({threads})"])
    stage("(f) thread crossover")
    crossover = thread_crossover(store_path, calls)

    targets = [[f"(b) {k} processes: total / (a) >= 0.9", f"{totals['(b)', k] / a['rate']:.2f}",
                _report.verdict(totals["(b)", k] / a["rate"] >= 0.9)] for k in (2, 4)]
    d2 = dataloader["dataloader:2"] / a["rate"]
    targets.append(["(d) 2 workers / (a) >= 0.5", f"{d2:.2f}", _report.verdict(d2 >= 0.5)])
    for threads, ours, theirs in codes_rows:
        targets.append([f"(e) store.codes / torch index_select at {threads} thread{'s' if threads > 1 else ''} >= 1.0",
                        f"{ours / theirs:.2f}", _report.verdict(ours >= theirs)])
    return "\n".join([
        f"# One node, many processes: {samples:,} samples of {read_bench.LATENT_SHAPE} int8, batches of {BATCH}",
        "",
        f"Machine: {_report.machine_line()}; {latentstore.kernels_info()}. Synthetic random codes; warm page cache; "
        f"fresh random rows every batch; each figure from its own process(es), timed for {seconds:g} s. "
        "Command: `python benchmarks/node.py" + (f" --samples {samples}" if samples != 1_281_167 else "") + "`.",
        "",
        _report.markdown_table(["method", "samples/s", "x (a)", "thread budget (first process)"], table),
        "",
        "## Targets (ratios in the same run)",
        "",
        _report.markdown_table(["target", "ratio", "verdict"], targets),
        "",
        "## (f) Where a second thread pays: speed on 2 threads / 1 thread",
        "",
        _report.markdown_table(["batch", "int8 rows touched", "store.read -> float32", "store.codes"], crossover),
        "",
        f"`latentstore.quantization.threads.PARALLEL_MIN_BYTES_PER_THREAD` = "
        f"{latentstore.quantization.threads.PARALLEL_MIN_BYTES_PER_THREAD // 1024} KiB of output per thread.",
        "",
    ])


def alone_method(method: str, paths, seconds: float) -> dict:
    return run_together([method], paths, seconds, {"LOCAL_WORLD_SIZE": "1"})[0]


def _budget(result: dict) -> str:
    threads, reason = result["budget"]
    return f"{threads} ({reason})"




def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=1_281_167)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per measurement")
    parser.add_argument("--calls", type=int, default=300, help="timed calls per crossover figure")
    parser.add_argument("--chunk-samples", type=int, default=None)
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory (default: a temporary one)")
    parser.add_argument("--results", type=Path, default=None, help="where to save the table")
    parser.add_argument("--name", default="node", help="results file name")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--store", help=argparse.SUPPRESS)
    parser.add_argument("--torch-file", help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = child(args.child, args.store, args.torch_file, args.seconds, args.start_at)
        print(json.dumps(result))
        return ""
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        text = run(args.samples, args.seconds, Path(tmp), args.chunk_samples, args.calls)
    return _report.publish(args.name, text, args.results)


if __name__ == "__main__":
    main()
