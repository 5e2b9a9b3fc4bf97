"""The per-process thread budget: its rules, its caps, and the fork rule."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import latentstore
from latentstore.quantization import threads as _threads


@pytest.fixture(autouse=True)
def fresh_budget(monkeypatch):
    """Every test starts from the environment it sets, with no cached budget."""
    for name in ("LATENTSTORE_NUM_THREADS", "OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE",
                 "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(name, raising=False)
    latentstore.set_num_threads(None)
    yield
    latentstore.set_num_threads(None)


def budget_in_fresh_interpreter(env: dict, code: str = "") -> list:
    """The budget a new interpreter (no torch imported unless ``code`` does) reports."""
    script = f"import json, latentstore\n{code}\nprint(json.dumps(list(latentstore.thread_budget())))"
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LOCAL_WORLD_SIZE", "LATENTSTORE_NUM_THREADS")}
    result = subprocess.run([sys.executable, "-c", script], env={**clean, **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


CORES = _threads.available_cores()


def test_without_torch_the_budget_is_the_cores_shared_by_the_local_ranks():
    assert budget_in_fresh_interpreter({}) == [CORES, f"{CORES} cores"]
    threads, reason = budget_in_fresh_interpreter({"LOCAL_WORLD_SIZE": "2"})
    assert threads == max(1, CORES // 2) and "LOCAL_WORLD_SIZE" in reason
    threads, _ = budget_in_fresh_interpreter({"LOCAL_WORLD_SIZE": str(4 * CORES)})
    assert threads == 1  # never below one


def test_omp_num_threads_counts_and_is_capped_by_the_node_share():
    assert budget_in_fresh_interpreter({"OMP_NUM_THREADS": "1"}) == [1, "OMP_NUM_THREADS"]
    threads, reason = budget_in_fresh_interpreter({"OMP_NUM_THREADS": f"{CORES + 3},2"})
    assert threads == CORES and "capped" in reason


@pytest.mark.slow
def test_torch_thread_setting_counts_once_torch_is_imported():
    pytest.importorskip("torch")
    assert budget_in_fresh_interpreter({}, "import torch; torch.set_num_threads(1)") == [1, "torch.get_num_threads()"]


def test_the_user_overrides_the_environment_and_torch(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("LATENTSTORE_NUM_THREADS", "3")
    latentstore.set_num_threads(None)  # re-read the environment
    assert latentstore.thread_budget() == (3, "LATENTSTORE_NUM_THREADS")
    latentstore.set_num_threads(2)
    assert latentstore.thread_budget() == (2, "set_num_threads()")
    assert latentstore.get_num_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 100_000, 2.0, True, "4"])
def test_nonsense_thread_counts_are_refused(bad, tmp_path):
    with pytest.raises(ValueError, match="num_threads must be an integer from 1 to 1024"):
        latentstore.set_num_threads(bad)
    writer = latentstore.create(tmp_path / "s.zarr", 4, (2, 2), chunk_samples=4)
    writer.write(0, np.ones((4, 2, 2), np.float32), labels=np.zeros(4, np.int32))
    writer.close()
    with pytest.raises(ValueError, match="num_threads"):
        latentstore.open(tmp_path / "s.zarr").read([0, 1], num_threads=bad)


@pytest.mark.parametrize("value", ["0", "100000", "many", "-2"])
def test_nonsense_in_the_environment_is_refused_with_the_variable_named(monkeypatch, value):
    monkeypatch.setenv("LATENTSTORE_NUM_THREADS", value)
    latentstore.set_num_threads(None)
    with pytest.raises(ValueError, match="LATENTSTORE_NUM_THREADS must be an integer from 1 to 1024"):
        latentstore.get_num_threads()


def test_a_call_gets_no_more_threads_than_its_work_or_the_cores():
    per_thread = _threads.PARALLEL_MIN_BYTES_PER_THREAD
    latentstore.set_num_threads(8)
    assert _threads.threads_for(per_thread - 1) == 1
    assert _threads.threads_for(2 * per_thread) == min(2, CORES)
    assert _threads.threads_for(1 << 30) == min(8, CORES)
    assert _threads.threads_for(1 << 30, requested=1024) == CORES


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_starts_a_thread_team():
    latentstore.set_num_threads(2)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            budget = latentstore.thread_budget()
            result = f"{budget.threads}|{budget.reason}|{_threads.threads_for(1 << 30, requested=2)}"
            os.write(write, result.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as f:
        threads, reason, requested = f.read().split("|")
    os.waitpid(pid, 0)
    assert (threads, requested) == ("1", "1") and "fork" in reason


def test_the_version_line_names_the_budget_and_why():
    result = subprocess.run(
        [sys.executable, "-m", "latentstore", "--version"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    if latentstore.quantization._native.kernels.OPENMP:
        assert "up to 1 thread: OMP_NUM_THREADS" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "latentstore", "--version"],
        env={**os.environ, "LATENTSTORE_NUM_THREADS": "100000"}, capture_output=True, text=True, timeout=120,
    )
    assert "LATENTSTORE_NUM_THREADS must be an integer" in bad.stdout + bad.stderr
    assert "Traceback" not in bad.stderr


TORCHRUN_SCRIPT = textwrap.dedent(
    """
    import json, os
    import latentstore
    print(json.dumps([os.environ["LOCAL_RANK"], *latentstore.thread_budget()]), flush=True)
    """
)


@pytest.mark.slow
def test_two_ranks_under_torchrun_each_get_their_share(tmp_path):
    pytest.importorskip("torch")
    script = tmp_path / "rank.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "LATENTSTORE_NUM_THREADS")}
    for torchrun_env in ({}, {"OMP_NUM_THREADS": "1"}):
        result = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "0", str(script)],
            env={**env, **torchrun_env}, capture_output=True, text=True, timeout=300,
        )
        assert result.returncode == 0, result.stderr
        lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("[")]
        assert sorted(rank for rank, _, _ in lines) == ["0", "1"]
        for _, threads, reason in lines:
            assert threads == max(1, CORES // 2), reason
            if CORES <= 2:
                assert threads == 1
