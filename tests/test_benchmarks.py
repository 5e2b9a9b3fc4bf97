"""The read and quantization benchmarks run at smoke size, so they cannot rot."""

import importlib
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def load(name):
    return importlib.import_module(f"benchmarks.{name}")


def test_read_benchmark_smoke(tmp_path, capsys):
    text = load("read").main(
        ["--samples", "3000", "--chunk-samples", "1024", "--threads", "1", "2", "--quick",
         "--dir", str(tmp_path), "--results", str(tmp_path), "--name", "read-smoke"]
    )
    assert (tmp_path / "read-smoke.md").read_text().strip() == text.strip()
    for method in ("(a) numpy memmap", "(b) store.read", "(c) store.codes", "(d) numpy gather", "(e) zarr-python"):
        assert method in text
    assert "(b) / (a) >= 0.5" in text and "1 thr" in text and "2 thr" in text
    assert list(tmp_path.iterdir()) == [tmp_path / "read-smoke.md"]  # scratch files cleaned up


def test_quant_benchmark_smoke(tmp_path):
    text = load("quant").main(["--samples", "256", "--calls", "1", "--threads", "1", "--results", str(tmp_path)])
    assert "Cython kernels, 1 thread" in text and "plain numpy" in text and "numpy reference" in text
    assert (tmp_path / "quant.md").exists()


def test_numpy_baseline_of_the_quant_benchmark_is_the_same_math(latents_factory):
    import numpy as np

    import latentstore

    quant = load("quant")
    x = latents_factory(100, (32, 8, 8))
    q, s = latentstore.quantize(x)
    for block in (None, 7):
        q2, s2 = quant.numpy_quantize(x, block)
        assert q2.tobytes() == q.tobytes() and s2.tobytes() == s.tobytes()
    np.testing.assert_array_equal(quant.numpy_dequantize(q, s), latentstore.dequantize(q, s))


@pytest.mark.parametrize("name", ["read", "quant"])
def test_benchmark_help(name, capsys):
    with pytest.raises(SystemExit) as info:
        load(name).main(["--help"])
    assert info.value.code == 0 and "usage" in capsys.readouterr().out


@pytest.mark.slow
def test_node_benchmark_smoke(tmp_path):
    text = load("node").main(
        ["--samples", "6000", "--chunk-samples", "2048", "--seconds", "0.2", "--calls", "5",
         "--dir", str(tmp_path), "--results", str(tmp_path)]
    )
    assert (tmp_path / "node.md").read_text().strip() == text.strip()
    for row in ("(a) one process", "(b) 2 processes", "(b) 4 processes", "(c) 4 processes",
                "(d) DataLoader(LatentDataset), 2 workers", "read_in='worker'", "(e) store.codes, 2 threads",
                "(e) torch.load(mmap=True) + index_select, 1 thread"):
        assert row in text
    # Each target has a verdict, whichever it is at this size.
    assert text.count("| met |") + text.count("| NOT met |") == 5
    assert list(tmp_path.iterdir()) == [tmp_path / "node.md"]
