"""import-mds: MosaicML MDS shards (Imagenet.int8) into a store, exactly (interop/mds.py)."""

import importlib.util
import json

import numpy as np
import pytest

import latentstore
from latentstore import cli
from latentstore.errors import SourceError
from latentstore.interop import import_mds
from latentstore.interop import mds as mds_module
from tests.interop.sources import (
    IMAGENET_INT8_COLUMNS,
    build_shard,
    imagenet_int8_decode,
    make_int8_samples,
    write_mds,
)


def test_hand_built_shard_matches_the_documented_layout():
    shard = build_shard([{"label": "7", "label_as_text": "ab", "vae_output": b"\x01\x02"}], IMAGENET_INT8_COLUMNS)
    expected = (
        bytes.fromhex("01000000")  # one sample
        + bytes.fromhex("0e000000" "1f000000")  # its offsets: 4 + 8 + len(b"{}") = 14, 14 + 17 = 31
        + b"{}"  # the writer's config
        + bytes.fromhex("01000000" "02000000" "02000000")  # sizes of label, label_as_text, vae_output
        + b"7" + b"ab" + b"\x01\x02"
    )
    assert shard == expected


@pytest.mark.parametrize("compression", [None, "zstd", "gz", "bz2"])
def test_import_mds_round_trip_is_exact(tmp_path, compression):
    q, labels, samples = make_int8_samples(230)
    write_mds(tmp_path / "mds", samples, shard_samples=70, compression=compression)
    report = import_mds(tmp_path / "mds", tmp_path / "s.zarr", latent_shape=(4, 8, 8), chunk_samples=64)

    assert report.samples == 230 and report.source["shards"] == 4
    store = latentstore.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.codes(np.arange(230))[0], q)
    x, read_labels = store.read(np.arange(230))
    np.testing.assert_array_equal(x, imagenet_int8_decode(q, np.float64).astype(np.float32))
    assert np.abs(x.astype(np.float64) - imagenet_int8_decode(q, np.float32)).max() <= np.spacing(np.float32(12))
    np.testing.assert_array_equal(read_labels, labels)
    assert store.classes == tuple(f"class {i}" for i in range(6))


def test_import_mds_with_integer_labels_and_without_classes(tmp_path):
    q, labels, samples = make_int8_samples(40, shape=(2, 4, 4))
    for sample, label in zip(samples, labels):
        sample["label"] = int(label)
    columns = {"vae_output": "bytes", "label": "int", "label_as_text": "str"}
    write_mds(tmp_path / "mds", samples, columns, shard_samples=16)
    argv = ["import-mds", str(tmp_path / "mds"), str(tmp_path / "s.zarr"), "--shape", "2", "4", "4", "--class-column", "", "--no-progress"]
    assert cli.main(argv) == 0
    store = latentstore.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.labels, labels)
    assert store.classes is None
    np.testing.assert_array_equal(store.codes(np.arange(40))[0], q)


def test_import_mds_without_labels_and_requantized(tmp_path):
    q, _, samples = make_int8_samples(30, shape=(2, 4, 4))
    write_mds(tmp_path / "mds", samples, shard_samples=16)
    report = import_mds(tmp_path / "mds", tmp_path / "s.zarr", latent_shape=(2, 4, 4), label_column=None, class_column=None, requantize=True)
    store = latentstore.open(tmp_path / "s.zarr")
    assert (store.labels == -1).all() and store.metadata.quant.scheme == "absmax"
    diff = store.read(np.arange(30))[0].astype(np.float64) - imagenet_int8_decode(q, np.float64).astype(np.float32)
    assert report.requantization["max_abs"] == pytest.approx(np.abs(diff).max(), rel=1e-9)


def truncate_first_shard(directory):
    shard = directory / "shard.00000.mds"
    shard.write_bytes(shard.read_bytes()[:-5])


def corrupt_sample_count(directory):
    shard = directory / "shard.00000.mds"
    shard.write_bytes(np.uint32(99).tobytes() + shard.read_bytes()[4:])


@pytest.mark.parametrize(
    "damage, options, message",
    [
        (lambda d: (d / "index.json").unlink(), {}, "no index.json"),
        (lambda d: (d / "shard.00001.mds").unlink(), {}, "shard file .* is missing"),
        (truncate_first_shard, {}, "damaged or not an MDS shard"),
        (corrupt_sample_count, {}, "holds 99 samples, index.json says 16"),
        (None, {"latent_shape": (4, 4, 4)}, "has 32 bytes of 'vae_output', expected 64; check the latent shape"),
        (None, {"label_column": "class_id"}, "no label column 'class_id'; its columns are"),
        (lambda d: (d / "index.json").write_text('{"version": 2, "shards": [{"format": "json"}]}'), {}, "only MDS version 2"),
        (lambda d: (d / "index.json").write_text('{"version": 2, "shards": [{"format": "mds"}]}'), {}, "not a valid MDS shard entry"),
    ],
    ids=["no-index", "missing-shard", "truncated", "sample-count", "shape", "column", "format", "entry"],
)
def test_import_mds_errors_say_what_is_wrong(tmp_path, damage, options, message):
    _, _, samples = make_int8_samples(30, shape=(2, 4, 4))
    directory = write_mds(tmp_path / "mds", samples, shard_samples=16)
    if damage is not None:
        damage(directory)
    with pytest.raises(SourceError, match=message):
        import_mds(directory, tmp_path / "s.zarr", **{"latent_shape": (2, 4, 4), **options})


def test_import_mds_unsupported_compression(tmp_path):
    _, _, samples = make_int8_samples(5, shape=(2, 4, 4))
    directory = write_mds(tmp_path / "mds", samples, compression="gz")
    index = json.loads((directory / "index.json").read_text())
    index["shards"][0]["compression"] = "br"
    (directory / "index.json").write_text(json.dumps(index))
    with pytest.raises(SourceError, match="'br' are not supported"):
        import_mds(directory, tmp_path / "s.zarr", latent_shape=(2, 4, 4))


@pytest.mark.skipif(importlib.util.find_spec("streaming") is None, reason="mosaicml-streaming is not installed")
def test_import_mds_reads_shards_written_by_mosaicml_streaming(tmp_path):
    from streaming import MDSWriter

    q, labels, samples = make_int8_samples(50, shape=(2, 4, 4))
    with MDSWriter(out=str(tmp_path / "mds"), columns={"vae_output": "bytes", "label": "str", "label_as_text": "str"}, size_limit=1 << 10) as out:
        for sample in samples:
            out.write(sample)
    import_mds(tmp_path / "mds", tmp_path / "s.zarr", latent_shape=(2, 4, 4))
    store = latentstore.open(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.codes(np.arange(50))[0], q)
    np.testing.assert_array_equal(store.labels, labels)


def test_mds_shard_parser_spans(tmp_path):
    _, _, samples = make_int8_samples(3, shape=(1, 2, 2))
    directory = write_mds(tmp_path / "mds", samples)
    shard = mds_module.MDSShard(mds_module.read_index(directory)[0])
    assert shard.strings("label_as_text") == [s["label_as_text"] for s in samples]
    np.testing.assert_array_equal(shard.fixed("vae_output", 4, 1, 3), [list(s["vae_output"]) for s in samples[1:]])
