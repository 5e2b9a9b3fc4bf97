"""Every benchmark runs at smoke size, so none can rot; their verdicts follow their figures."""

import importlib
import subprocess
import sys

import pytest

from tests.paths import REPO


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
    targets = target_rows(text)
    assert [label for label, _, _ in targets][:2] == ["(b) / (a) >= 0.5", "(b) / (d) >= 2"]
    for label, values, verdict in targets:
        assert len(values) == 2  # one ratio per thread count
        goal = float(label.split(">=")[1])
        assert verdict_follows(values, goal, verdict), label
    assert list(tmp_path.iterdir()) == [tmp_path / "read-smoke.md"]  # scratch files cleaned up


def verdict_follows(printed, goal, verdict):
    """Whether ``verdict`` is what ratios printed to 2 decimals imply (a ratio within the rounding of
    the goal may go either way: 0.948 prints as 0.95 and misses 0.95)."""
    if any(abs(value - goal) <= 0.005 for value in printed):
        return verdict in ("met", "NOT met")
    return verdict == ("met" if min(printed) >= goal else "NOT met")


def target_rows(text):
    """(label, ratios, verdict) for each row of a report's targets table."""
    rows = []
    for line in text.split("## Targets")[1].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if ">=" in cells[0]:
            rows.append((cells[0], [float(c.replace(",", "")) for c in cells[1:-1]], cells[-1]))
    return rows


def test_read_report_verdicts_follow_the_ratios():
    read = load("read")
    fast = dict(a=100.0, b=60.0, c=90.0, d=20.0, e=0.5)
    slow_b = dict(fast, b=40.0)  # (b) / (a) = 0.4 < 0.5 at the second thread count
    verdicts = {label: verdict for label, _, verdict in target_rows(read.report(1000, 256, None, [(1, fast), (2, slow_b)]))}
    assert verdicts == {"(b) / (a) >= 0.5": "NOT met", "(b) / (d) >= 2": "met", "(c) / (a) >= 0.8": "met",
                        "(b) / (e) >= 100": "NOT met"}


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


@pytest.mark.slow
def test_import_pt_benchmark_smoke(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "import_pt.py"), "--samples", "3000", "--results-dir", str(tmp_path), "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "peak RSS" in result.stdout and "SYNTHETIC" in result.stdout
    assert (tmp_path / "import_pt_3000.md").exists()


@pytest.mark.slow
def test_loader_benchmark_smoke(tmp_path):
    pytest.importorskip("torch")
    text = load("loader").main([
        "--samples", "2000", "--pickle-samples", "500", "--batch-size", "32", "--threads", "1",
        "--seconds", "0.02", "--pss-processes", "1", "--dir", str(tmp_path), "--results", str(tmp_path / "results"),
    ])
    assert (tmp_path / "results" / "loader.md").read_text() == text
    assert "SYNTHETIC" in text and "scaled linearly by 4.00" in text
    rows = [line for line in text.splitlines() if line.startswith("| (")]
    assert [row[3] for row in rows] == list("abcdefg") + list("aef") + list("aaaa")  # methods, memory, targets
    for row in rows[:7]:
        assert float(row.split("|")[2].replace(",", "")) > 0  # samples/s were measured
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]  # scratch data removed


def test_the_encode_benchmark_runs_at_smoke_size():
    pytest.importorskip("diffusers")
    report = load("encode").main(["--smoke"])
    assert "(a) Preprocessing" in report and "TINY RANDOM DC-AE" in report
    assert report.count("x |") >= 5  # every row carries its ratio to the reference


def test_batches_benchmark_smoke(tmp_path):
    pytest.importorskip("torch")
    text = load("batches").main(["--samples", "4000", "--seconds", "0.05", "--rounds", "2", "--dir", str(tmp_path),
                                 "--results", str(tmp_path / "results")])
    assert (tmp_path / "results" / "batches.md").read_text().strip() == text.strip()
    (label, values, verdict), = target_rows(text)
    assert label == "(pooled) / (new) >= 0.95"
    assert verdict_follows(values, 0.95, verdict)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results"]


@pytest.mark.slow
def test_remote_benchmark_smoke(tmp_path):
    pytest.importorskip("moto")
    pytest.importorskip("s3fs")
    text = load("remote").main(["--samples", "3000", "--zarr-batches", "1", "--results", str(tmp_path)])
    assert (tmp_path / "remote.md").read_text().strip() == text.strip()
    targets = target_rows_text(text)
    assert targets["bytes per batch of (c) after the first epoch = 0"] == "met"
    assert set(targets.values()) <= {"met", "NOT met"} and len(targets) == 3


def target_rows_text(text):
    """target -> verdict, for targets whose values are not all numbers."""
    rows = {}
    for line in text.split("## Targets")[1].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("target", "---"):
            rows[cells[0]] = cells[-1]
    return rows


def test_captions_benchmark_smoke(tmp_path):
    captions = load("captions")
    work = tmp_path / "work"
    text = captions.main(["--samples", "3000", "--chunk-samples", "1024", "--quick", "--zarr-batches", "1",
                          "--work", str(work), "--results", str(tmp_path), "--name", "captions-smoke"])
    assert (tmp_path / "captions-smoke.md").read_text().strip() == text.strip()
    assert "SYNTHETIC" in text and "not DC-AE" in text and "Store built in" in text
    for method in ("(a) store.read", "(b) store.read(columns=", "(c) store.column", "(d) zarr-python"):
        assert method in text
    targets = target_rows(text)
    assert [label for label, _, _ in targets] == ["(b) / (a) >= 0.5", "(c) / (d) >= 100"]
    for label, values, verdict in targets:
        assert verdict_follows(values, float(label.split(">=")[1]), verdict), label
    # The kept store is reused as long as its parameters match.
    path, built, stats = captions.build(work, 3000, 1024)
    assert built is None and stats["count"] == 3000 and 50 <= stats["min"] <= stats["max"] <= 400
    assert captions.build(work, 3000, 512)[1] is not None  # another chunk size: rebuilt
    first = captions.captions(0, 1024)
    assert first == captions.captions(0, 1024) and len(first) == 1024
    assert all(50 <= len(c) <= 400 and c.endswith(".") for c in first)


def test_buckets_benchmark_smoke(tmp_path):
    import numpy as np

    buckets = load("buckets")
    work = tmp_path / "work"
    text = buckets.main(["--samples", "3000", "--chunk-samples", "1024", "--quick", "--rounds", "2",
                         "--work", str(work), "--results", str(tmp_path), "--name", "buckets-smoke"])
    assert (tmp_path / "buckets-smoke.md").read_text().strip() == text.strip()
    assert "SYNTHETIC" in text and "not DC-AE" in text and "Stores built in this run" in text
    assert "Command: `python benchmarks/buckets.py --samples 3000 --chunk-samples 1024 --rounds 2 --quick`" in text
    for method in ("(a) square store", "(b) bucketed store"):
        assert method in text
    histogram = text.split("## Buckets")[1].split("## Random")[0]
    assert sum(int(line.split("|")[6].replace(",", "")) for line in histogram.splitlines()
               if line.startswith("| ") and line[2].isdigit()) == 3000  # every sample in one bucket
    targets = target_rows(text)
    assert [label for label, _, _ in targets] == ["(b) / (a) samples/s >= 0.8"]
    (label, values, verdict), = targets
    assert len(values) == 2 and verdict_follows(values, 0.8, verdict)
    (label, value, verdict), = at_most_rows(text)
    assert label == "bucketed bytes on disk / unpadded sum <= 1.15"
    if abs(value - 1.15) > 0.0005:  # printed to 3 decimals: only a ratio within their rounding may go either way
        assert verdict == ("met" if value <= 1.15 else "NOT met")
    # The kept stores are reused as long as their parameters match.
    assert buckets.build(work, 3000, 1024)[2]["built"] is False
    assert buckets.build(work, 3000, 512)[2]["built"] is True  # another chunk size: rebuilt
    width, height = buckets.image_sizes(1000)
    assert np.array_equal(buckets.assign(buckets.table(), width, height),
                          [buckets.table().nearest(int(w), int(h)) for w, h in zip(width, height)])


def at_most_rows(text):
    """(label, value, verdict) for each "<=" row of a report's targets tables."""
    rows = []
    for line in text.split("## Targets")[1].splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if "<=" in cells[0]:
            rows.append((cells[0], float(cells[1].replace(",", "")), cells[-1]))
    return rows


def test_the_command_line_names_only_the_options_that_differ_from_their_defaults(tmp_path):
    import argparse

    from benchmarks import _report

    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--work", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    assert _report.command_line("x.py", parser, parser.parse_args([])) == "python benchmarks/x.py"
    args = parser.parse_args(["--threads", "4", "--quick", "--work", str(tmp_path), "--worker", "w", "--samples", "100"])
    assert _report.command_line("x.py", parser, args) == "python benchmarks/x.py --threads 4 --quick"
