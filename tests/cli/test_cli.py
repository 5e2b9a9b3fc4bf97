"""The command line: dispatch, --version, info."""

import json
import subprocess
import sys

import numpy as np
import pytest

import latentstore
from latentstore import cli


@pytest.fixture
def small_store(tmp_path, latents_factory):
    x = latents_factory(40, (4, 2, 2))
    writer = latentstore.create(
        tmp_path / "s.zarr", 40, (4, 2, 2), chunk_samples=16, classes=["a", "b"],
        encoder={"backend": "diffusers.AutoencoderDC", "model": "/models/tiny", "random_init": True, "scaling_factor": 0.5},
    )
    for start in range(0, 40, 16):
        writer.write(start, x[start : start + 16], labels=np.arange(start, min(start + 16, 40)) % 2)
    writer.close()
    return tmp_path / "s.zarr"


def test_version_names_the_kernels(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"latentstore {latentstore.__version__}: compiled Cython kernels")


def test_no_command_prints_help_and_unknown_command_fails(capsys):
    assert cli.main([]) == 0
    assert "info" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2


def test_info_text_and_json(small_store, capsys):
    assert cli.main(["info", str(small_store)]) == 0
    text = capsys.readouterr().out
    assert "40 valid of 40" in text and "(4, 2, 2) int8" in text
    assert "RANDOM WEIGHTS" in text and "1,281,167" in text
    assert cli.main(["info", "--json", str(small_store)]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["samples"] == 40 and facts["chunks"] == 3 and facts["bytes_per_sample"] > 16


def test_info_leaves_the_last_chunks_padding_out_of_the_per_sample_bytes(small_store, capsys):
    assert cli.main(["info", "--json", str(small_store)]) == 0
    facts = json.loads(capsys.readouterr().out)
    # 40 samples in 3 chunks of 16: 8 unused rows of 16 code bytes, a 2-byte scale, a 4-byte label, a valid byte.
    assert facts["padding_bytes"] == 8 * (16 + 2 + 4 + 1)
    assert facts["bytes_per_sample"] * 40 + facts["padding_bytes"] == pytest.approx(facts["bytes_on_disk"])
    assert facts["projected_imagenet_bytes"] == pytest.approx(facts["bytes_per_sample"] * 1_281_167)


@pytest.mark.parametrize("array", ["latents", "labels"])
def test_info_on_an_array_of_a_store_names_the_store(small_store, capsys, array):
    assert cli.main(["info", str(small_store / array)]) == 1
    err = capsys.readouterr().err
    assert f"is the '{array}' array of the latent store at {small_store}" in err


def test_an_option_before_the_command_is_named(small_store, capsys):
    assert cli.main(["--verbose", "info", str(small_store)]) == 2
    err = capsys.readouterr().err
    assert "--verbose" in err and "before the command" in err and "unrecognized arguments" not in err


def test_info_on_a_missing_store_is_one_clear_line(tmp_path, capsys):
    assert cli.main(["info", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("latentstore info: error: no latent store") and "\n" not in err


def test_module_entry_point(small_store):
    result = subprocess.run([sys.executable, "-m", "latentstore", "info", str(small_store)], capture_output=True, text=True)
    assert result.returncode == 0 and "memory-mapped" in result.stdout


def test_closed_pipe_exits_quietly(small_store):
    code = (
        "import sys, latentstore.cli\n"
        "sys.stdout.close = lambda: None\n"
        "class Closed:\n"
        "    def write(self, text): raise BrokenPipeError(32, 'Broken pipe')\n"
        "    def flush(self): pass\n"
        "sys.stdout = Closed()\n"
        f"sys.exit(latentstore.cli.main(['info', {str(small_store)!r}]))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and "Traceback" not in result.stderr


def test_info_lists_the_columns_with_their_kind_and_size(tmp_path, capsys):
    from latentstore.format import ColumnSpec

    columns = [ColumnSpec("caption", "text"), ColumnSpec("image", "bytes", media_type="image/jpeg")]
    with latentstore.create(tmp_path / "c.zarr", 4, (2, 2, 2), columns=columns) as writer:
        writer.write(0, np.zeros((4, 2, 2, 2), np.float32),
                     columns={"caption": ["a cat", "a dog", "", "a car"], "image": [b"x" * 1000] * 4})
    assert cli.main(["info", str(tmp_path / "c.zarr")]) == 0
    text = capsys.readouterr().out
    assert "format           v2" in text
    assert "columns          caption: text, " in text and "\n                 image: bytes (image/jpeg), 4." in text
    assert cli.main(["info", "--json", str(tmp_path / "c.zarr")]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in facts["columns"]] == ["caption", "image"]
    assert facts["columns"][1]["bytes_on_disk"] > 4000


def test_info_shows_the_bucket_histogram(tmp_path, capsys):
    from latentstore.format import BucketTable
    from latentstore.store.writer import pack_buckets

    table = BucketTable.from_base(64, 16, max_aspect=2.0)  # 4 x 4 tokens at most, aspect ratios up to 2:1
    assert table.shapes == ((3, 5), (4, 4), (5, 3))
    rng = np.random.default_rng(0)
    buckets = [0] * 6 + [1] * 6  # 6 wide, 6 square (the last invalid), no tall
    rows, indices = pack_buckets([rng.standard_normal((2, *table.shapes[b])).astype(np.float32) for b in buckets], table)
    with latentstore.create(tmp_path / "b.zarr", len(buckets), (2,), buckets=table) as writer:
        writer.write(0, rows, buckets=indices, valid=np.arange(12) != 11)
    assert cli.main(["info", str(tmp_path / "b.zarr")]) == 0
    text = capsys.readouterr().out
    assert "buckets          3 shapes, base 64 px, 16x compression; 2 hold valid samples" in text
    lines = text.splitlines()
    row = next(line for line in lines if line.split()[:4] == ["0", "3", "x", "5"])
    assert row.split()[4:7] == ["48x80", "6", "54.55%"] and row.endswith("#" * 24)
    row = next(line for line in lines if line.split()[:4] == ["1", "4", "x", "4"])
    assert row.split()[4:7] == ["64x64", "5", "45.45%"] and row.endswith(" " + "#" * 20)
    assert "(1 empty buckets not shown)" in text
    assert cli.main(["info", "--json", str(tmp_path / "b.zarr")]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["bucket_table"] == {"shapes": [[3, 5], [4, 4], [5, 3]], "base": 64, "compression": 16}
    assert [(b["shape"], b["pixels"], b["count"]) for b in facts["buckets"]] == [
        ([3, 5], [48, 80], 6), ([4, 4], [64, 64], 5), ([5, 3], [80, 48], 0)]
    assert facts["buckets"][0]["share"] == pytest.approx(6 / 11)


def test_info_of_a_store_of_one_shape_has_no_buckets(small_store, capsys):
    assert cli.main(["info", "--json", str(small_store)]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["buckets"] is None and facts["bucket_table"] is None
    assert cli.main(["info", str(small_store)]) == 0
    assert "buckets" not in capsys.readouterr().out
