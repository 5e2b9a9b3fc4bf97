"""Two torchrun processes (gloo, CPU) write the same store as one process.

The ranks take alternate pending chunks; rank 0 creates the store and
finalizes it. The stores are compared file by file, metadata included:
nothing in a store records how many processes wrote it.
"""

import sys

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from test_encode_resume import assert_same_store, encode_command, run, setup, straight  # noqa: E402, F401

TORCHRUN = (sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2")


def test_two_processes_write_the_store_of_one(setup, straight, tmp_path):
    model, tree = setup
    out = tmp_path / "two.zarr"
    done = run(encode_command(tree, out, model), launcher=TORCHRUN)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 processes" in done.stdout and done.stdout.count("RANDOM WEIGHTS") == 1
    assert_same_store(straight, out)


def test_a_refusal_on_rank_0_stops_every_rank(setup, straight, tmp_path):
    model, tree = setup
    done = run(encode_command(tree, straight, model), launcher=TORCHRUN)
    assert done.returncode != 0
    assert "complete store" in done.stderr and "rank 0: " in done.stderr
