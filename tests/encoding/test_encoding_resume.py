"""Killed runs resume to a store byte-identical to an uninterrupted one; torchrun ranks write the same store.

Each run is a real ``python -m latentstore encode`` process. The kill is a
SIGKILL the process sends itself right after a chunk lands (the
``LATENTSTORE_TEST_KILL_AFTER_CHUNKS`` hook); a chunk torn by a kill in the
middle of its write is simulated by garbling its files, without its
``valid`` chunk, as such a kill leaves them. The stores are compared file
by file, metadata included: nothing in them depends on time or on the run.
"""

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.encoding.captioned import caption, sample_members, sample_number, write_shard
from tests.paths import IMAGES, PHOTOS

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytestmark = pytest.mark.slow  # real encode processes, killed and resumed, and torchrun

import latentstore  # noqa: E402
from latentstore.encoding.backends import save_tiny_model  # noqa: E402

DATA = IMAGES
KILL_ENV = "LATENTSTORE_TEST_KILL_AFTER_CHUNKS"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(tiny model, an ImageFolder tree of the photos and the broken files)."""
    root = tmp_path_factory.mktemp("resume")
    tree = root / "tree"
    shutil.copytree(PHOTOS, tree, ignore=shutil.ignore_patterns("metadata.jsonl"))  # an ImageFolder tree
    shutil.copytree(DATA / "broken", tree / "broken")
    return save_tiny_model(root / "model", "dc", seed=4), tree


def encode_command(tree, out, model, *extra) -> list[str]:
    """A small flip store: 20 images (4 broken) in chunks of 4, batches of 2."""
    return [
        "-m", "latentstore", "encode", str(tree), str(out), "--model", model, "--resolution", "64",
        "--chunk-samples", "4", "--batch-size", "2", "--workers", "1", "--device", "cpu", "--flip",
        "--no-progress", *extra,
    ]


def run(args, *, kill_after=None, launcher=(sys.executable,)) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(KILL_ENV, None)
    if kill_after is not None:
        env[KILL_ENV] = str(kill_after)
    return subprocess.run([*launcher, *args], env=env, capture_output=True, text=True, timeout=120)


def store_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def assert_same_store(a: Path, b: Path) -> None:
    files_a, files_b = store_files(a), store_files(b)
    assert sorted(files_a) == sorted(files_b)
    differ = [name for name in files_a if files_a[name] != files_b[name]]
    assert not differ, f"files differ: {differ}"


@pytest.fixture(scope="module")
def straight(setup, tmp_path_factory):
    model, tree = setup
    out = tmp_path_factory.mktemp("straight") / "s.zarr"
    done = run(encode_command(tree, out, model))
    assert done.returncode == 0, done.stderr
    assert "16 valid of 20, 4 failed" in done.stdout and "RANDOM WEIGHTS" in done.stdout
    return out


def test_killed_and_torn_runs_resume_to_identical_bytes(setup, straight, tmp_path):
    model, tree = setup
    out = tmp_path / "k.zarr"
    killed = run(encode_command(tree, out, model), kill_after=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert sorted(p.name for p in (out / "valid" / "c").iterdir()) == ["0", "1"]
    assert not latentstore.open(out).metadata.complete

    # A kill in the middle of chunk 2's write: some of its files, no valid chunk.
    for name in ("latents", "flip/latents"):
        torn = out / name / "c" / "2" / "0" / "0" / "0"
        torn.parent.mkdir(parents=True, exist_ok=True)
        torn.write_bytes(b"\x7f" * 100)
    (out / "failures" / "c").mkdir(exist_ok=True)
    (out / "failures" / "c" / "2").write_bytes(b"garbage")

    resumed = run(encode_command(tree, out, model))
    assert resumed.returncode == 0, resumed.stderr
    assert "2 of 5 chunks were already done" in resumed.stdout
    assert_same_store(straight, out)


# -- torchrun: ranks take disjoint chunks -------------------------------------
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
    assert "complete store" in done.stderr and "(raised on rank 0, which creates the store)" in done.stderr



# -- a captioned collection: every caption stays beside its own latent ------------------
@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """3 WebDataset shards of 7 samples; sample 4 has no caption, sample 9 a truncated image,
    sample 15 non-UTF-8 text: 18 valid of 21."""
    folder = tmp_path_factory.mktemp("shards")
    for s in range(3):
        members = []
        for k in range(7 * s, 7 * s + 7):
            sample = sample_members(k, meta={"number": k, "width": 100 + k})
            if k == 4:
                sample = [m for m in sample if not m[0].endswith(".txt")]
            if k == 9:
                sample[0] = (sample[0][0], sample[0][1][:40])
            if k == 15:
                sample[1] = (sample[1][0], b"caf\xe9 au lait")
            members += sample
        write_shard(folder / f"{s:05d}.tar", members)
    return str(folder / "{00000..00002}.tar")


def captioned_command(spec, out, model):
    return [
        "-m", "latentstore", "encode", spec, str(out), "--model", model, "--resolution", "64", "--chunk-samples", "4",
        "--batch-size", "2", "--workers", "1", "--device", "cpu", "--no-progress", "--json-fields", "width:int64,number:int64",
        "--store-images", "jpeg:95",
    ]


@pytest.fixture(scope="module")
def captioned(setup, shards, tmp_path_factory):
    model, _ = setup
    out = tmp_path_factory.mktemp("captioned") / "c.zarr"
    done = run(captioned_command(shards, out, model))
    assert done.returncode == 0, done.stderr
    assert "18 valid of 21, 3 failed" in done.stdout
    return out


def check_captions_beside_their_latents(path):
    store = latentstore.open(path)
    assert store.columns == {"caption": "text", "width": "int64", "number": "int64", "image": "bytes"}
    valid = [i for i in range(len(store)) if store.valid[i]]
    assert [i for i in range(21) if i not in valid] == [4, 9, 15]
    numbers = store.column("number", valid).tolist()
    assert numbers == valid  # the shard order is the store order
    assert store.column("caption", valid) == [caption(k) for k in valid]
    assert store.column("width", valid).tolist() == [100 + k for k in valid]
    # the stored crop is the image this latent was encoded from
    assert [sample_number(crop) for crop in store.column("image", valid)] == valid
    assert store.ids(valid) == [f"{k // 7:05d}.tar/{k:09d}" for k in valid]
    failures = {f["index"]: f["reason"] for f in store.metadata.extra["failures"]}
    assert set(failures) == {4, 9, 15} and "UTF-8" in failures[15]


def test_a_captioned_collection_resumes_and_runs_on_two_ranks_to_the_same_store(setup, shards, captioned, tmp_path):
    check_captions_beside_their_latents(captioned)
    model, _ = setup
    killed_out = tmp_path / "k.zarr"
    killed = run(captioned_command(shards, killed_out, model), kill_after=2)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (killed_out / "columns" / "caption" / "c").mkdir(parents=True, exist_ok=True)
    (killed_out / "columns" / "caption" / "c" / "2").write_bytes(b"torn")  # chunk 2 died mid-write
    resumed = run(captioned_command(shards, killed_out, model))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_store(captioned, killed_out)
    two = tmp_path / "two.zarr"
    done = run(captioned_command(shards, two, model), launcher=TORCHRUN)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_store(captioned, two)


def test_a_bucketed_encode_resumes_after_kill_9_to_identical_bytes(setup, tmp_path):
    model, tree = setup
    mixed = tmp_path / "mixed"
    shutil.copytree(tree, mixed)
    shutil.copytree(DATA / "odd", mixed / "odd")  # a panorama, a tall portrait, a tiny image, odd modes
    command = lambda out: [*encode_command(mixed, out, model), "--buckets", "base=128"]  # noqa: E731
    straight_out, killed_out = tmp_path / "s.zarr", tmp_path / "k.zarr"
    done = run(command(straight_out))
    assert done.returncode == 0, done.stderr
    store = latentstore.open(straight_out)
    assert len({b["shape"] for b in store.buckets if b["count"]}) >= 3
    killed = run(command(killed_out), kill_after=3)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (killed_out / "buckets" / "c").mkdir(parents=True, exist_ok=True)
    (killed_out / "buckets" / "c" / "3").write_bytes(b"torn")  # chunk 3 died mid-write
    resumed = run(command(killed_out))
    assert resumed.returncode == 0, resumed.stderr
    assert_same_store(straight_out, killed_out)
