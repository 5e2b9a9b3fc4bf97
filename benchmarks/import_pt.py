"""Peak memory of ``latentstore import-pt`` on a file in the Imagenet.3GB layout.

    python benchmarks/import_pt.py [--samples 1281167] [--workdir DIR] [--keep]

Makes a ``torch.save``d list of ``--samples`` dicts ``{'id', 'latent',
'label'}``, each latent a uint8 (32, 8, 8) tensor with its own storage, as
in Imagenet.3GB. The latents are SYNTHETIC (``benchmarks/synthetic.py``:
heavy-tailed, std about 2.4, not from any autoencoder), quantized with the
dataset's global affine map: clamp to [-6.5, 6.5], round((z + 6.5) / 13 * 255).

Then, each in a fresh subprocess that reports its own peak RSS (``VmHWM``)
as it exits:

- the reference: ``torch.load(weights_only=True)`` of the file and nothing
  else, the least any reader of this format pays (with and without mmap);
- ``latentstore import-pt`` with tensors memory-mapped (the default) and
  with ``--no-mmap``.

Target: the import's peak RSS below 2 x the file size. Times are reported
as ratios to the plain ``torch.load`` of the same run. The store is checked
against the codes regenerated from the seed.
"""

import argparse
import os
import shutil
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

FULL_SAMPLES = 1_281_167
LATENT_SHAPE = (32, 8, 8)
LOW, HIGH = -6.5, 6.5
BLOCK = 65536
TARGET_RATIO = 2.0


def block_codes(start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 codes and labels of samples [start, stop), deterministic per block of BLOCK (start is a multiple)."""
    z = synthetic.synthetic_latents(stop - start, LATENT_SHAPE, seed=start // BLOCK)
    q = np.rint((np.clip(z, LOW, HIGH) - LOW) / (HIGH - LOW) * 255).astype(np.uint8)
    labels = np.random.default_rng([start // BLOCK, 1]).integers(0, 1000, stop - start)
    return q, labels


def make_file(path: Path, samples: int) -> None:
    import torch

    records = []
    for start in range(0, samples, BLOCK):
        q, labels = block_codes(start, min(start + BLOCK, samples))
        # clone(): every latent gets its own storage, as in the real file.
        for i, (row, label) in enumerate(zip(torch.from_numpy(q), labels.tolist())):
            records.append({"id": f"n{label:08d}_{start + i}", "latent": row.clone(), "label": label})
    torch.save(records, path)


#: Runs a body of code, then writes the process's VmHWM (peak RSS, KiB) to
#: the file named by its first argument. Not ru_maxrss: Linux carries the
#: spawning parent's high-water mark over into the child's ru_maxrss.
CHILD = """
import sys
report = sys.argv.pop(1)
try:
    {body}
finally:
    status = open("/proc/self/status").read()
    open(report, "w").write(next(l.split()[1] for l in status.splitlines() if l.startswith("VmHWM:")))
"""
LOAD_BODY = "import torch; torch.load(sys.argv[1], weights_only=True, mmap={mmap})"
IMPORT_BODY = "from latentstore.cli import main; sys.exit(main(sys.argv[1:]))"


def measure(body: str, args: list[str], workdir: Path) -> tuple[float, int]:
    """(wall seconds, peak RSS bytes) of ``body`` run in a fresh Python process with ``args``."""
    report = workdir / "vmhwm.txt"
    argv = [sys.executable, "-c", CHILD.format(body=body), str(report), *args]
    quiet = [(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)]  # the import's own summary
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=quiet)
    _, status = os.waitpid(pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{body} {' '.join(args)} failed with status {os.waitstatus_to_exitcode(status)}")
    return seconds, int(report.read_text()) * 1024


def check_store(store_path: Path, samples: int) -> None:
    store = latentstore.open(store_path)
    if len(store) != samples or not store.metadata.complete:
        raise AssertionError(f"the store holds {len(store)} samples (complete: {store.metadata.complete}), expected {samples}")
    for start in sorted({0, (samples - 1) // BLOCK * BLOCK}):
        stop = min(start + BLOCK, samples)
        q, labels = block_codes(start, stop)
        codes, _ = store.codes(np.arange(start, stop))
        if not (np.array_equal(codes, q) and np.array_equal(store.labels[start:stop], labels)):
            raise AssertionError(f"the store differs from the source in samples [{start}, {stop})")


def run(samples: int, workdir: Path, keep: bool, results_dir=None) -> str:
    workdir.mkdir(parents=True, exist_ok=True)
    pt_path = workdir / f"imagenet3gb_{samples}.pt"
    store_path = workdir / f"imagenet3gb_{samples}.zarr"
    started = time.perf_counter()
    made = "reused from an earlier run (--keep)"
    if not pt_path.exists():
        make_file(pt_path, samples)
        made = f"made in {time.perf_counter() - started:.0f} s"
    file_bytes = pt_path.stat().st_size

    cli = ["import-pt", str(pt_path), str(store_path), "--overwrite", "--no-progress"]
    runs = [
        ("torch.load(weights_only=True), reference", LOAD_BODY.format(mmap=False), [str(pt_path)]),
        ("torch.load(weights_only=True, mmap=True)", LOAD_BODY.format(mmap=True), [str(pt_path)]),
        ("latentstore import-pt (mmap, default)", IMPORT_BODY, cli),
        ("latentstore import-pt --no-mmap", IMPORT_BODY, cli + ["--no-mmap"]),
    ]
    rows, reference_seconds = [], None
    for name, body, args in runs:
        seconds, peak = measure(body, args, workdir)
        reference_seconds = reference_seconds or seconds
        if "import-pt" in name:
            check_store(store_path, samples)
        rows.append(
            [
                name,
                f"{seconds:.1f}",
                f"{seconds / reference_seconds:.2f}",
                f"{peak / 1e9:.2f}",
                f"{peak / file_bytes:.2f}",
                ("yes" if peak < TARGET_RATIO * file_bytes else "NO") if "import-pt" in name else "",
            ]
        )
    store_bytes = sum(f.stat().st_size for f in store_path.rglob("*") if f.is_file())
    if not keep:
        pt_path.unlink()
        shutil.rmtree(store_path)

    text = "\n".join(
        [
            f"# import-pt: peak RSS on {samples:,} samples in the Imagenet.3GB layout",
            "",
            f"{_report.machine_line()}; torch {__import__('torch').__version__}, latentstore {latentstore.__version__}",
            "",
            f"Data: {synthetic.DESCRIPTION}; quantized with Imagenet.3GB's global affine map "
            f"(clamp to [{LOW}, {HIGH}], round((z + 6.5) / 13 * 255)); a torch.save'd list of "
            "{'id', 'latent' uint8 (32, 8, 8), 'label'} dicts, one storage per latent.",
            "",
            f"File: {file_bytes / 1e9:.3f} GB ({file_bytes / samples:,.0f} bytes per sample; {made}). "
            f"Store written: {store_bytes / 1e9:.3f} GB. Each row is a fresh subprocess; peak RSS is its VmHWM "
            f"(file-backed mapped pages included). Target: import peak RSS < {TARGET_RATIO:g} x file size.",
            "",
            _report.markdown_table(["run", "seconds", "time vs torch.load", "peak RSS (GB)", "peak RSS / file size", "below target"], rows),
            "",
            f"Command: python benchmarks/import_pt.py --samples {samples}",
        ]
    )
    print(text)
    suffix = "" if samples == FULL_SAMPLES else f"_{samples}"
    _report.save(f"import_pt{suffix}", text, results_dir)
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=FULL_SAMPLES, help=f"samples in the .pt file (default {FULL_SAMPLES:,})")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the .pt file and the store (default: a temporary directory)")
    parser.add_argument("--keep", action="store_true", help="keep the .pt file and the store (a rerun then reuses the file)")
    parser.add_argument("--results-dir", type=Path, default=None, help="where to save the markdown (default benchmarks/results)")
    args = parser.parse_args(argv)
    if args.workdir is None:
        with tempfile.TemporaryDirectory(prefix="import_pt_") as tmp:
            run(args.samples, Path(tmp), False, args.results_dir)
    else:
        run(args.samples, args.workdir, args.keep, args.results_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
