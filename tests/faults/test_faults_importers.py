"""Hostile and damaged importer inputs: MDS indexes and shards, torch .pt files.

Every count, offset and size read from a file is checked before use; a bomb
is refused without being inflated (the memory-limited child); a label
beyond int32 is an error, never stored modulo 2**32.
"""

import json
import os
import zlib

import numpy as np
import pytest
import torch

from latentstore import cli
from latentstore.errors import SourceError
from latentstore.interop import import_mds, import_pt
from tests.faults.limits import run_limited
from tests.interop.sources import make_int8_samples, make_records, save_pt, write_mds


def edit_index(directory, change):
    index = json.loads((directory / "index.json").read_text())
    change(index["shards"][0])
    (directory / "index.json").write_text(json.dumps(index))


@pytest.fixture
def mds(tmp_path):
    _, _, samples = make_int8_samples(20)
    return write_mds(tmp_path / "mds", samples, shard_samples=20)


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda e: e.update(samples=-5), "samples is -5"),
        (lambda e: e.update(samples=5.0), "samples is 5.0"),
        (lambda e: e.update(samples=True), "samples is True"),
        (lambda e: e.update(samples=2**40), "samples is 1099511627776"),
        (lambda e: e["raw_data"].update(bytes=-1), "raw_data.bytes is -1"),
        (lambda e: e.update(column_sizes=[-3, None, None]), "column_sizes"),
        (lambda e: e.update(column_names=[1, 2, 3]), "must be strings"),
    ],
)
def test_every_count_in_an_mds_index_is_checked(mds, tmp_path, change, message, capsys):
    edit_index(mds, change)
    with pytest.raises(SourceError, match=message):
        import_mds(mds, tmp_path / "s.zarr", latent_shape=(4, 8, 8))
    assert cli.main(["import-mds", str(mds), str(tmp_path / "t.zarr"), "--shape", "4", "8", "8", "--no-progress"]) == 1
    assert message.split()[0] in capsys.readouterr().err


def test_a_shard_header_that_disagrees_with_the_index(mds, tmp_path):
    edit_index(mds, lambda e: e.update(samples=19))
    with pytest.raises(SourceError, match="holds 20 samples, index.json says 19"):
        import_mds(mds, tmp_path / "s.zarr", latent_shape=(4, 8, 8))


@pytest.mark.parametrize("kind", ["fifo", "device", "directory"])
def test_a_shard_that_is_not_a_regular_file(mds, tmp_path, kind):
    shard = mds / "shard.00000.mds"
    shard.unlink()
    {"fifo": lambda: os.mkfifo(shard), "device": lambda: shard.symlink_to("/dev/zero"), "directory": shard.mkdir}[kind]()
    with pytest.raises(SourceError, match="not a regular file|is a directory"):
        import_mds(mds, tmp_path / "s.zarr", latent_shape=(4, 8, 8))


def test_an_index_that_is_a_fifo(mds, tmp_path):
    (mds / "index.json").unlink()
    os.mkfifo(mds / "index.json")
    with pytest.raises(SourceError, match="FIFO"):
        import_mds(mds, tmp_path / "s.zarr", latent_shape=(4, 8, 8))


@pytest.mark.slow
@pytest.mark.parametrize("compression", ["gz", "zstd"])
def test_a_compression_bomb_is_refused_without_inflating_it(tmp_path, compression):
    """A shard of zeros far beyond its declared size (4 GiB gz, 256 MiB zstd) squeezed into a few MB:
    the child stays under 1.5 GB and says why."""
    directory = tmp_path / "bomb"
    _, _, samples = make_int8_samples(4)
    write_mds(directory, samples, shard_samples=4, compression=compression)
    zipped = directory / f"shard.00000.mds.{compression}"
    size = 4 << 30
    if compression == "gz":
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = bytes(64 << 20)
        with open(zipped, "wb") as f:
            for _ in range(size // len(block)):
                f.write(compressor.compress(block))
            f.write(compressor.flush())
    else:
        import numcodecs

        zipped.write_bytes(numcodecs.Zstd(level=1).encode(np.zeros(256 << 20, np.uint8)))  # declares 256 MiB
    code = (
        "from latentstore.interop import import_mds\n"
        "from latentstore.errors import SourceError\n"
        "try:\n"
        f"    import_mds({str(directory)!r}, {str(tmp_path / 's.zarr')!r}, latent_shape=(4, 8, 8))\n"
        "except SourceError as exc:\n"
        "    print('refused:', exc)\n"
    )
    result = run_limited(code, memory_mb=1536, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused:" in result.stdout and ("beyond its declared size" in result.stdout or "inflates to more than" in result.stdout)


def test_a_class_column_with_a_huge_label_is_refused_before_writing(tmp_path):
    _, _, samples = make_int8_samples(10)
    samples[3]["label"] = str(10**7)
    directory = write_mds(tmp_path / "mds", samples, shard_samples=10)
    with pytest.raises(SourceError, match="class names"):
        import_mds(directory, tmp_path / "s.zarr", latent_shape=(4, 8, 8))
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("label", [2**31, 2**32 + 5])
def test_labels_beyond_int32_are_refused_not_wrapped(tmp_path, label):
    _, _, samples = make_int8_samples(10)
    samples[3]["label"] = str(label)
    directory = write_mds(tmp_path / "mds", samples, shard_samples=10)
    with pytest.raises((SourceError, ValueError), match="labels must lie in"):
        import_mds(directory, tmp_path / "s.zarr", latent_shape=(4, 8, 8), class_column=None)
    _, _, records = make_records(10, shape=(2, 2, 2))
    records[3]["label"] = label
    path = save_pt(records, tmp_path / "l.pt")
    with pytest.raises((SourceError, ValueError), match="labels must lie in"):
        import_pt(path, tmp_path / "p.zarr")


def test_a_zero_size_latent_in_a_pt_file(tmp_path):
    records = [{"latent": torch.zeros((0, 4, 4), dtype=torch.uint8), "label": 0}] * 3
    path = save_pt(records, tmp_path / "l.pt")
    with pytest.raises(SourceError, match="no empty axis"):
        import_pt(path, tmp_path / "s.zarr")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_pt_path_that_is_not_a_regular_file(tmp_path, kind):
    path = tmp_path / "l.pt"
    os.mkfifo(path) if kind == "fifo" else path.symlink_to("/dev/zero")
    with pytest.raises(SourceError, match="not a regular file"):
        import_pt(path, tmp_path / "s.zarr")

