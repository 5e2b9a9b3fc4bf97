"""Hostile files where a store keeps its metadata and chunks: FIFOs, devices, directories, loops, huge files.

Opening names the file and what is wrong with it; ``verify`` reports it and
exits 1; nothing blocks (the deadline fixture fails a hang) and nothing reads
/dev/zero until memory runs out (the memory-limited child).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import latentstore
from latentstore import cli
from latentstore import format as fmt
from latentstore.errors import CorruptChunkError, FormatError
from latentstore.inspection.verify import verify
from tests.faults.limits import run_limited

SHAPE, CHUNK, N = (2, 2, 2), 8, 24


@pytest.fixture
def finished(tmp_path):
    path = tmp_path / "s.zarr"
    writer = latentstore.create(path, N, SHAPE, chunk_samples=CHUNK)
    for start in range(0, N, CHUNK):
        writer.write(start, np.ones((CHUNK, *SHAPE), np.float32), labels=np.arange(CHUNK))
    writer.close()
    return path


def chunk_path(store_path, array, chunk=1):
    layout = latentstore.open(store_path)._layouts[array]
    return store_path / array / layout.chunk_key(chunk)


def replace_with(target, kind):
    target.unlink()
    if kind == "directory":
        target.mkdir()
    elif kind == "fifo":
        os.mkfifo(target)
    elif kind == "device":
        target.symlink_to("/dev/zero")
    elif kind == "loop":
        target.symlink_to(target.name)  # a link to itself
    elif kind == "dangling":
        target.symlink_to("nowhere")


CHUNK_KINDS = {"directory": "is a directory", "fifo": "FIFO", "device": "character device",
               "loop": "symlink loop", "dangling": "missing"}


@pytest.mark.parametrize("array", [fmt.LATENTS, fmt.SCALES, fmt.LABELS, fmt.VALID])
@pytest.mark.parametrize("kind", sorted(CHUNK_KINDS))
def test_a_chunk_that_is_not_a_regular_file_is_named_at_open_and_by_verify(finished, array, kind, capsys):
    target = chunk_path(finished, array)
    replace_with(target, kind)
    with pytest.raises(CorruptChunkError, match=CHUNK_KINDS[kind]) as info:
        latentstore.open(finished)
    assert (info.value.array, info.value.chunk) == (array, 1)
    report = verify(finished)
    assert not report.ok
    assert any(p.array == array and p.chunk == 1 for p in report.errors), report
    assert cli.main(["verify", str(finished)]) == 1
    assert f"{array}" in capsys.readouterr().out


def world_readable(path: Path) -> bool:
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [*path.parents, path])


def test_a_chunk_the_system_refuses_to_open_is_named(finished, monkeypatch):
    """The permission error an unprivileged user gets (planted: root reads every file)."""
    target = str(chunk_path(finished, fmt.LATENTS))
    real_open = os.open

    def refusing_open(path, *args, **kwargs):
        if os.fspath(path) == target:
            raise PermissionError(13, "Permission denied", target)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", refusing_open)
    with pytest.raises(CorruptChunkError, match="Permission denied") as info:
        latentstore.open(finished)
    assert target in str(info.value)
    report = verify(finished)
    assert [(p.array, p.chunk) for p in report.errors] == [(fmt.LATENTS, 1)]
    assert "Permission denied" in report.errors[0].message


@pytest.mark.slow  # a child process
def test_an_unreadable_chunk_is_named(tmp_path):
    """Run as an unprivileged user (root reads every file): as ``nobody`` when the tests run as root."""
    shared = Path(tempfile.mkdtemp(prefix="latentstore-unreadable-"))
    try:
        path = shared / "s.zarr"
        writer = latentstore.create(path, N, SHAPE, chunk_samples=CHUNK)
        for start in range(0, N, CHUNK):
            writer.write(start, np.ones((CHUNK, *SHAPE), np.float32))
        writer.close()
        for directory, _, files in os.walk(shared):
            os.chmod(directory, 0o755)
            for name in files:
                os.chmod(os.path.join(directory, name), 0o644)
        chunk_path(path, fmt.LATENTS).chmod(0)
        as_nobody = os.geteuid() == 0
        if as_nobody and not world_readable(Path(sys.executable).resolve()):
            pytest.skip(f"{Path(sys.executable).resolve()} is not readable by an unprivileged user")
        if not as_nobody and os.access(chunk_path(path, fmt.LATENTS), os.R_OK):
            pytest.skip("this user can read a file with mode 000")
        result = run_limited(
            "import latentstore\n"
            "from latentstore.inspection.verify import verify\n"
            f"print(verify({str(path)!r}))\n"
            "try:\n"
            f"    latentstore.open({str(path)!r})\n"
            "except latentstore.errors.CorruptChunkError as exc:\n"
            "    print('refused:', exc)\n",
            user=65534 if as_nobody else None,
        )
        assert result.returncode == 0, result.stderr
        assert "cannot be read" in result.stdout and "Permission denied" in result.stdout
        assert "refused: 'latents' chunk 1" in result.stdout
    finally:
        shutil.rmtree(shared)


@pytest.mark.parametrize("kind", ["directory", "fifo", "device"])
def test_group_metadata_that_is_not_a_regular_file(finished, kind):
    replace_with(finished / "zarr.json", kind)
    with pytest.raises(FormatError, match="zarr.json.*not a regular file"):
        latentstore.open(finished)
    report = verify(finished)
    assert not report.ok and "not a regular file" in str(report)


def test_array_metadata_that_is_a_fifo(finished):
    replace_with(finished / fmt.LABELS / "zarr.json", "fifo")
    with pytest.raises(FormatError, match="labels/zarr.json.*FIFO"):
        latentstore.open(finished)
    assert not verify(finished).ok


def test_metadata_larger_than_the_cap_is_refused_unread(finished):
    document = json.loads((finished / "zarr.json").read_text())
    document["attributes"]["padding"] = "x" * (fmt.MAX_METADATA_BYTES + 1)
    (finished / "zarr.json").write_text(json.dumps(document))
    with pytest.raises(FormatError, match="more than the"):
        latentstore.open(finished)
    assert not verify(finished).ok


@pytest.mark.slow  # a child process
def test_a_store_of_devices_never_exhausts_memory(finished):
    """Every chunk and document a link to /dev/zero: a bounded child opens and verifies, and fails cleanly."""
    for target in [finished / "zarr.json", *[chunk_path(finished, a, k) for a in (fmt.LATENTS, fmt.SCALES) for k in range(3)]]:
        replace_with(target, "device")
    result = run_limited(
        "import latentstore, sys\n"
        "from latentstore.inspection.verify import verify\n"
        f"report = verify({str(finished)!r})\n"
        "print('ok' if report.ok else 'damaged')\n"
        "try:\n"
        f"    latentstore.open({str(finished)!r})\n"
        "except latentstore.errors.FormatError as exc:\n"
        "    print('refused:', exc)\n",
        memory_mb=1024,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "damaged"
    assert "refused:" in result.stdout and "not a regular file" in result.stdout


def test_verify_reports_a_claim_of_a_billion_chunks_without_allocating(finished):
    document = json.loads((finished / "zarr.json").read_text())
    document["attributes"][fmt.ATTRIBUTE_KEY].update(num_samples=10**18, chunk_samples=8)
    (finished / "zarr.json").write_text(json.dumps(document))
    with pytest.raises(FormatError, match="chunks"):
        latentstore.open(finished)
    report = verify(finished)
    assert not report.ok and "chunks" in str(report)


@pytest.mark.parametrize("array", [fmt.LATENTS, fmt.LABELS])
def test_zstd_listed_on_raw_chunks_names_the_chunk(finished, array):
    target = finished / array / "zarr.json"
    document = json.loads(target.read_text())
    document["codecs"].insert(1, {"name": "zstd", "configuration": {"level": 0, "checksum": False}})
    target.write_text(json.dumps(document))
    with pytest.raises(CorruptChunkError, match=f"{array}.*chunk 0.*cannot be decoded"):
        latentstore.open(finished).read(np.arange(N))
    report = verify(finished)
    assert not report.ok and {p.array for p in report.errors} == {array}


# -- 9. a chunk file changed under a reader ---------------------------------------
SIGBUS_READER = (
    "import os, sys\n"
    "import numpy as np\n"
    "import latentstore\n"
    "store = latentstore.open(sys.argv[1])\n"
    "store.read(np.arange({n}))\n"
    "{change}\n"
    "latents, _ = store.read(np.arange({n}))\n"
    "print('read', float(latents.sum()))\n"
)


def run_reader(finished, change):
    code = SIGBUS_READER.format(n=N, change=change)
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", code, str(finished)],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow  # a child process
def test_a_chunk_replaced_by_rename_under_a_reader_is_safe(finished):
    target = chunk_path(finished, fmt.LATENTS)
    replacement = f"{target}.new"
    result = run_reader(finished, f"open({replacement!r}, 'wb').write(b'x' * os.path.getsize({str(target)!r})); "
                                  f"os.replace({replacement!r}, {str(target)!r})")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("read ")  # the reader keeps the file it mapped


@pytest.mark.slow  # a child process
def test_a_chunk_truncated_in_place_under_a_reader_dies_with_a_recognisable_bus_error(finished):
    """Documented in docs/faults.md: SIGBUS with the read in latentstore's reader on the stack."""
    target = chunk_path(finished, fmt.LATENTS)
    result = run_reader(finished, f"os.truncate({str(target)!r}, 0)")
    assert result.returncode == -signal.SIGBUS
    assert "Bus error" in result.stderr and "latentstore/store/reader.py" in result.stderr


@pytest.mark.parametrize("kind, match", [("fifo", "not a regular file"), ("dangling", "missing")])
def test_a_compressed_store_is_checked_before_zarr_reads_it(tmp_path, kind, match):
    """zarr-python would block on a FIFO and read a missing chunk as zeros: open checks first."""
    path = tmp_path / "z.zarr"
    writer = latentstore.create(path, N, SHAPE, chunk_samples=CHUNK, compressor="zstd")
    for start in range(0, N, CHUNK):
        writer.write(start, np.ones((CHUNK, *SHAPE), np.float32), labels=np.arange(CHUNK))
    writer.close()
    replace_with(path / fmt.LABELS / "c" / "1", kind)
    with pytest.raises(CorruptChunkError, match=match) as info:
        latentstore.open(path)
    assert (info.value.array, info.value.chunk) == (fmt.LABELS, 1)
