"""Quantize and dequantize throughput: the compiled kernels against numpy.

    python benchmarks/quant.py [--samples 32768] [--threads 1 2]

Figures are GB/s of float32 latents (input of quantize, output of
dequantize) on synthetic heavy-tailed latents (Student-t, std about 2.4: a
stand-in for DC-AE latents, not real ones). Three implementations of the
same bit-exact math are timed:

- the Cython kernels (``latentstore.quantize`` / ``dequantize``), both
  allocating their output and filling preallocated ``out=`` buffers (page
  faults on fresh output memory are a large share of the cost here);
- plain numpy, the way one would write it by hand over the whole array
  (the baseline the target refers to), and the same processed in blocks
  of 4096 samples so that temporaries stay in cache; both are checked to
  produce identical bytes;
- ``latentstore.quantization.reference``, the test oracle (written for clarity).

Target: Cython quantize >= 4 x plain numpy, in the same run.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

if __name__ == "__main__" and not __package__:  # python benchmarks/NAME.py: make the package importable
    sys.path[0] = str(Path(__file__).resolve().parents[1])
import latentstore  # noqa: E402
from benchmarks import _report  # noqa: E402
from latentstore.quantization import reference as _reference  # noqa: E402

LATENT_SHAPE = (32, 8, 8)
BLOCK = 4096


def numpy_quantize(x, block_samples=None):
    """Per-sample absmax int8 with numpy alone, in blocks of ``block_samples`` (None: all at once)."""
    n = x.shape[0]
    flat = x.reshape(n, -1)
    q = np.empty(flat.shape, np.int8)
    scales = np.empty(n, np.float16)
    step = block_samples or max(n, 1)
    for start in range(0, n, step):
        block = flat[start : start + step]
        s = (np.abs(block).max(axis=1) / np.float32(127)).astype(np.float16)
        s32 = s.astype(np.float32)
        with np.errstate(divide="ignore", invalid="ignore"):
            r = block / s32[:, None]
        np.rint(r, out=r)
        np.clip(r, -127, 127, out=r)
        r[s32 == 0] = 0
        q[start : start + step] = r
        scales[start : start + step] = s
    return q.reshape(x.shape), scales


def numpy_dequantize(q, scales):
    return q.astype(np.float32) * scales.astype(np.float32).reshape(-1, *([1] * (q.ndim - 1)))


def reference_quantize(x):
    n = x.shape[0]
    q = np.empty((n, 1, x[0].size), np.int8)
    bits = np.zeros((n, 1), np.uint16)
    _reference.quantize_absmax(x.reshape(n, 1, -1), q, bits, np.zeros(n, np.uint8))
    return q.reshape(x.shape), bits.view(np.float16)[:, 0]


def reference_dequantize(q, scales):
    n = q.shape[0]
    bits = scales.view(np.uint16).reshape(n, 1)
    return _reference.dequantize_codes(q.reshape(n, 1, -1), bits, None, np.float32, False, 1.0, None, None)


def run(samples: int, thread_counts: list[int], calls: int):
    rng = np.random.default_rng(0)
    x = (rng.standard_t(4, size=(samples, *LATENT_SHAPE)) * 1.7).astype(np.float32)
    gigabytes = x.nbytes / 1e9
    q, s = latentstore.quantize(x)
    blocked = lambda x: numpy_quantize(x, BLOCK)  # noqa: E731
    for name, fn in (("numpy", numpy_quantize), ("blocked numpy", blocked), ("reference", reference_quantize)):
        q2, s2 = fn(x)
        if q2.tobytes() != q.tobytes() or s2.tobytes() != s.tobytes():
            raise AssertionError(f"{name} quantization differs from the kernels")
    q_out, s_out, x_out = np.empty_like(q), np.empty_like(s), np.empty_like(x)
    rows = []
    for threads in thread_counts:
        plural = "s" if threads > 1 else ""
        rows.append(
            (
                f"Cython kernels, {threads} thread{plural}",
                _report.best_rate(lambda: latentstore.quantize(x, num_threads=threads), gigabytes, calls=calls),
                _report.best_rate(lambda: latentstore.dequantize(q, s, num_threads=threads), gigabytes, calls=calls),
            )
        )
        rows.append(
            (
                f"Cython kernels, {threads} thread{plural}, into out=",
                _report.best_rate(
                    lambda: latentstore.quantize(x, out=(q_out, s_out), num_threads=threads), gigabytes, calls=calls
                ),
                _report.best_rate(
                    lambda: latentstore.dequantize(q, s, out=x_out, num_threads=threads), gigabytes, calls=calls
                ),
            )
        )
    rows.append(
        (
            "plain numpy",
            _report.best_rate(lambda: numpy_quantize(x), gigabytes, calls=calls),
            _report.best_rate(lambda: numpy_dequantize(q, s), gigabytes, calls=calls),
        )
    )
    rows.append(
        (
            "plain numpy, blocked",
            _report.best_rate(lambda: blocked(x), gigabytes, calls=calls),
            _report.best_rate(lambda: numpy_dequantize(q, s), gigabytes, calls=calls),
        )
    )
    rows.append(
        (
            "numpy reference (test oracle)",
            _report.best_rate(lambda: reference_quantize(x), gigabytes, calls=max(1, calls // 2), repeats=2),
            _report.best_rate(lambda: reference_dequantize(q, s), gigabytes, calls=max(1, calls // 2), repeats=2),
        )
    )
    return x.nbytes, rows


def report(nbytes: int, samples: int, rows) -> str:
    numpy_row = next(r for r in rows if r[0] == "plain numpy")
    blocked_row = next(r for r in rows if r[0] == "plain numpy, blocked")
    table = [
        [name, f"{quant:.2f}", f"{quant / numpy_row[1]:.1f}x", f"{dequant:.2f}", f"{dequant / numpy_row[2]:.1f}x"]
        for name, quant, dequant in rows
    ]
    kernel_rows = [r for r in rows if r[0].startswith("Cython")]
    verdicts = [
        [
            r[0],
            f"{r[1] / numpy_row[1]:.1f}",
            _report.verdict(r[1] >= 4 * numpy_row[1]),
            f"{r[1] / blocked_row[1]:.1f}",
        ]
        for r in kernel_rows
    ]
    return "\n".join(
        [
            f"# Quantization throughput: {samples:,} samples of {LATENT_SHAPE} float32 ({nbytes / 1e6:.0f} MB)",
            "",
            f"Machine: {_report.machine_line()}; {latentstore.kernels_info()}. Synthetic Student-t latents "
            "(std ~2.4). GB/s of float32, best of 3 runs; outputs allocated by each call. "
            f"Command: `python benchmarks/quant.py --samples {samples}`.",
            "",
            _report.markdown_table(["implementation", "quantize GB/s", "x numpy", "dequantize GB/s", "x numpy"], table),
            "",
            "## Target: Cython quantize >= 4 x plain numpy",
            "",
            _report.markdown_table(["kernels", "x plain numpy", "verdict", "x blocked numpy"], verdicts),
            "",
        ]
    )


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=32768)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--results", type=Path, default=None)
    parser.add_argument("--name", default="quant")
    args = parser.parse_args(argv)
    nbytes, rows = run(args.samples, args.threads, args.calls)
    return _report.publish(args.name, report(nbytes, args.samples, rows), args.results)


if __name__ == "__main__":
    main()
