"""Importers (torch .pt lists of dicts, MosaicML MDS shards) and the npy exporter.

Every test builds its own small source files. The MDS shards are hand-built
from the layout documented by mosaicml-streaming (checked byte for byte
below); when mosaicml-streaming is installed its MDSWriter writes them too.
"""

import bz2
import gzip
import importlib.util
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import latentstore
from latentstore import cli
from latentstore.errors import SourceError, StoreExistsError
from latentstore.interop import affine_spec, export_npy, import_mds, import_pt
from latentstore.interop import mds as mds_module

# -- the sources' own dequantization -------------------------------------------


def imagenet_3gb_decode(q, dtype):
    """Imagenet.3GB's inverse of round((z + 6.5) / 13 * 255), in ``dtype``."""
    q = q.astype(dtype)
    return q / dtype(255) * dtype(13) - dtype(6.5)


def imagenet_int8_decode(q, dtype):
    """Imagenet.int8's documented decode, (x / 255 - 0.5) * 24, in ``dtype``."""
    q = q.astype(dtype)
    return (q / dtype(255) - dtype(0.5)) * dtype(24)


DECODERS = {(-6.5, 6.5): imagenet_3gb_decode, (-12.0, 12.0): imagenet_int8_decode}


@pytest.mark.parametrize("value_range", sorted(DECODERS))
def test_affine_lookup_table_is_the_sources_decode_in_float64(value_range):
    """The store's affine values equal the source formula in float64 rounded to float32, for all 256 codes.

    The same formula evaluated step by step in float32 (as the datasets' own
    loaders do) rounds three times; it differs by at most 1.5 float32 ulps
    of the range bound (7.2e-7 at 6.5, 9.5e-7 at 12).
    """
    decode = DECODERS[value_range]
    codes = np.arange(256, dtype=np.uint8)
    lut = affine_spec(*value_range).lookup_table()
    np.testing.assert_array_equal(lut, decode(codes, np.float64).astype(np.float32))
    bound_ulp = np.spacing(np.float32(value_range[1]))
    assert np.abs(lut.astype(np.float64) - decode(codes, np.float32)).max() <= 1.5 * bound_ulp


@pytest.mark.parametrize("value_range", [(1.0, 1.0), (2.0, -2.0), (float("nan"), 1.0)])
def test_affine_range_must_be_increasing_and_finite(value_range):
    with pytest.raises(ValueError, match="LOW < HIGH"):
        affine_spec(*value_range)


# -- .pt lists of dicts (Imagenet.3GB) ------------------------------------------


def make_records(n, shape=(32, 8, 8), seed=0, ids=True):
    """Random uint8 codes (not real latents), labels and ids in the Imagenet.3GB layout."""
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    records = []
    for i in range(n):
        record = {"latent": torch.from_numpy(q[i].copy()), "label": int(labels[i])}
        if ids:
            record["id"] = f"n{labels[i]:08d}_{i}"
        records.append(record)
    return q, labels, records


def save_pt(records, path, *, zip_format=True):
    torch.save(records, path, _use_new_zipfile_serialization=zip_format)
    return path


def read_ids(store_path):
    import zarr

    return zarr.open_group(store_path, mode="r")["ids"][:].tolist()


@pytest.mark.parametrize(
    "zip_format, mmap, ids",
    [(True, True, True), (True, False, True), (False, True, False)],
    ids=["zip-mmap", "zip-read", "legacy-no-ids"],
)
def test_import_pt_round_trip_is_exact(tmp_path, zip_format, mmap, ids):
    q, labels, records = make_records(150, shape=(4, 4, 4), ids=ids)
    path = save_pt(records, tmp_path / "latents.pt", zip_format=zip_format)
    report = import_pt(path, tmp_path / "s.zarr", chunk_samples=64, mmap=mmap, classes=[f"c{i}" for i in range(10)])

    assert report.samples == 150 and report.chunks_written == 3 and report.requantization is None
    store = latentstore.open(tmp_path / "s.zarr")
    assert store.metadata.complete and store.metadata.quant.scheme == "affine"
    assert store.metadata.source["affine_range"] == [-6.5, 6.5]
    assert store.metadata.source["bytes"] == os.path.getsize(path)
    codes, scales = store.codes(np.arange(150))
    np.testing.assert_array_equal(codes, q)
    assert scales is None
    x, read_labels = store.read(np.arange(150))
    np.testing.assert_array_equal(x, imagenet_3gb_decode(q, np.float64).astype(np.float32))
    np.testing.assert_array_equal(read_labels, labels)
    assert store.classes == tuple(f"c{i}" for i in range(10))
    if ids:
        assert read_ids(tmp_path / "s.zarr") == [r["id"] for r in records]
    else:
        assert not store.metadata.ids


def test_import_pt_range_flag_overrides_the_map(tmp_path):
    q, _, records = make_records(20, shape=(2, 2, 2))
    path = save_pt(records, tmp_path / "l.pt")
    assert cli.main(["import-pt", str(path), str(tmp_path / "s.zarr"), "--range", "-4", "4", "--no-progress"]) == 0
    x, _ = latentstore.open(tmp_path / "s.zarr").read(np.arange(20))
    np.testing.assert_array_equal(x, (q.astype(np.float64) * 8 / 255 - 4).astype(np.float32))


@pytest.mark.parametrize("granularity", ["sample", "channel"])
def test_import_pt_requantize_reports_the_error_it_adds(tmp_path, granularity):
    q, labels, records = make_records(70, shape=(4, 4, 4))
    path = save_pt(records, tmp_path / "l.pt")
    report = import_pt(path, tmp_path / "s.zarr", requantize=True, granularity=granularity, chunk_samples=32)

    store = latentstore.open(tmp_path / "s.zarr")
    assert store.metadata.quant.scheme == "absmax" and store.metadata.quant.granularity == granularity
    affine = imagenet_3gb_decode(q, np.float64).astype(np.float32)
    expected_q, expected_scales = latentstore.quantize(affine, granularity)
    codes, scales = store.codes(np.arange(70))
    np.testing.assert_array_equal(codes, expected_q)
    np.testing.assert_array_equal(scales, expected_scales)
    diff = store.read(np.arange(70))[0].astype(np.float64) - affine
    error = report.requantization
    assert error["values"] == diff.size
    assert error["mse"] == pytest.approx(np.mean(diff**2), rel=1e-9)
    assert error["max_abs"] == pytest.approx(np.abs(diff).max(), rel=1e-9)
    # absmax rounds to the nearest step of at most 6.5 / 127.
    assert 0 < error["max_abs"] <= 6.5 / 127 / 2 * 1.001
    assert store.metadata.extra["requantization_error"] == error
    assert "SNR" in report.summary()


class _RunsShell:
    """Unpickling this runs a shell command: what a malicious .pt file does."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("kind", ["pickle", "torch-zip"])
def test_import_pt_refuses_a_file_that_needs_arbitrary_unpickling(tmp_path, kind, capsys):
    marker = tmp_path / "pwned"
    payload = [{"latent": torch.zeros(2, 2, 2, dtype=torch.uint8), "label": 0, "id": _RunsShell(f"touch {marker}")}]
    path = tmp_path / "evil.pt"
    if kind == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)

    with pytest.raises(SourceError, match="refusing to load .*arbitrary unpickling") as info:
        import_pt(path, tmp_path / "s.zarr")
    assert "weights_only" in str(info.value)
    assert cli.main(["import-pt", str(path), str(tmp_path / "s2.zarr"), "--no-progress"]) == 1
    assert "refusing to load" in capsys.readouterr().err
    assert not marker.exists()
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"latents": torch.zeros(3, 2, 2, 2, dtype=torch.uint8)}, "holds dict"),
        ([], "empty"),
        ([{"latent": torch.zeros(2, 2, 2), "label": 0}], "expected a uint8 tensor"),
        ([{"latent": torch.zeros(2, 2, 2, dtype=torch.uint8), "label": 0}, {"label": 1}], "record 1 .* not a dict with a 'latent'"),
        (
            [{"latent": torch.zeros(2, 2, 2, dtype=torch.uint8), "label": 0}, {"latent": torch.zeros(2, 2, 3, dtype=torch.uint8), "label": 0}],
            r"record 1 .* torch.uint8 \(2, 2, 3\)",
        ),
        ([{"latent": torch.zeros(2, 2, 2, dtype=torch.uint8), "label": "cat"}], "not an integer"),
    ],
    ids=["dict", "empty", "float", "no-latent", "shape", "label"],
)
def test_import_pt_rejects_other_layouts_clearly(tmp_path, payload, message):
    path = tmp_path / "l.pt"
    torch.save(payload, path)
    with pytest.raises(SourceError, match=message):
        import_pt(path, tmp_path / "s.zarr")


@pytest.mark.parametrize("content", [None, b"not a torch file"], ids=["missing", "garbage"])
def test_import_pt_unreadable_file(tmp_path, content):
    path = tmp_path / "l.pt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SourceError, match="no file at" if content is None else "refusing|cannot read"):
        import_pt(path, tmp_path / "s.zarr")


def test_import_pt_refuses_to_replace_a_complete_store(tmp_path):
    _, _, records = make_records(10, shape=(2, 2, 2))
    path = save_pt(records, tmp_path / "l.pt")
    import_pt(path, tmp_path / "s.zarr")
    with pytest.raises(StoreExistsError):
        import_pt(path, tmp_path / "s.zarr")
    assert import_pt(path, tmp_path / "s.zarr", overwrite=True).samples == 10


# -- MDS shards (Imagenet.int8) -------------------------------------------------

IMAGENET_INT8_COLUMNS = {"vae_output": "uint8", "label": "str", "label_as_text": "str"}
#: Bytes of a fixed-size encoding (None: variable size), as mosaicml-streaming records them.
FIXED_SIZES = {"int": 8}


def encode_value(encoding, value):
    if encoding == "int":
        return np.int64(value).tobytes()
    if encoding == "str":
        return value.encode("utf-8")
    return bytes(value)


def build_shard(samples, columns, config=b"{}"):
    """One MDS shard file, from the layout of streaming/base/format/mds/writer.py.

    [num_samples uint32][num_samples + 1 absolute offsets uint32][config][samples];
    a sample is the uint32 sizes of its variable-size columns, then every
    column's bytes, columns in sorted name order.
    """
    names = sorted(columns)
    encoded = []
    for sample in samples:
        data = [encode_value(columns[name], sample[name]) for name in names]
        sizes = [len(d) for name, d in zip(names, data) if FIXED_SIZES.get(columns[name]) is None]
        encoded.append(np.array(sizes, dtype="<u4").tobytes() + b"".join(data))
    header = 4 + 4 * (len(samples) + 1) + len(config)
    offsets = (header + np.concatenate([[0], np.cumsum([len(e) for e in encoded])])).astype("<u4")
    return np.uint32(len(samples)).astype("<u4").tobytes() + offsets.tobytes() + config + b"".join(encoded)


COMPRESSORS = {
    None: lambda data: data,
    "zstd": lambda data: bytes(__import__("numcodecs").Zstd(level=3).encode(data)),
    "gz": gzip.compress,
    "bz2": bz2.compress,
}


def write_mds(directory, samples, columns=IMAGENET_INT8_COLUMNS, *, shard_samples=100, compression=None):
    """Hand-built MDS dataset: index.json and shard.NNNNN.mds[.ext] files."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(columns)
    entries = []
    for k, start in enumerate(range(0, len(samples), shard_samples)):
        raw = build_shard(samples[start : start + shard_samples], columns)
        raw_name = f"shard.{k:05}.mds"
        zip_info = None
        if compression:
            zip_name = f"{raw_name}.{compression.split(':')[0]}"
            zipped = COMPRESSORS[compression.split(":")[0]](raw)
            (directory / zip_name).write_bytes(zipped)
            zip_info = {"basename": zip_name, "bytes": len(zipped), "hashes": {}}
        else:
            (directory / raw_name).write_bytes(raw)
        entries.append(
            {
                "column_encodings": [columns[n] for n in names],
                "column_names": names,
                "column_sizes": [FIXED_SIZES.get(columns[n]) for n in names],
                "compression": compression,
                "format": "mds",
                "hashes": [],
                "raw_data": {"basename": raw_name, "bytes": len(raw), "hashes": {}},
                "samples": len(samples[start : start + shard_samples]),
                "size_limit": 1 << 26,
                "version": 2,
                "zip_data": zip_info,
            }
        )
    (directory / "index.json").write_text(json.dumps({"version": 2, "shards": entries}, sort_keys=True))
    return directory


def make_int8_samples(n, shape=(4, 8, 8), seed=0):
    """Random uint8 codes (not real latents) with Imagenet.int8's columns."""
    rng = np.random.default_rng(seed)
    q = rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)
    labels = rng.integers(0, 6, size=n)
    samples = [{"vae_output": q[i].tobytes(), "label": str(labels[i]), "label_as_text": f"class {labels[i]}"} for i in range(n)]
    return q, labels, samples


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


# -- export to npy --------------------------------------------------------------


def make_store(path, *, flip=False, ids=False, quant=None, n=50, chunk=16, seed=0):
    rng = np.random.default_rng(seed)
    shape = (3, 2, 2)
    valid = rng.random(n) > 0.2
    writer = latentstore.create(path, n, shape, chunk_samples=chunk, quant=quant, flip=flip, ids=ids, classes=["a", "b", "c"])
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        k = stop - start
        kwargs = {"labels": rng.integers(-1, 3, k), "valid": valid[start:stop]}
        if quant is not None:
            kwargs["codes"] = rng.integers(0, 256, (k, *shape), dtype=np.uint8)
        else:
            kwargs["latents"] = (rng.standard_t(4, (k, *shape)) * 1.7).astype(np.float32)  # synthetic
        if flip:
            kwargs["flip_latents"] = (rng.standard_t(4, (k, *shape)) * 1.7).astype(np.float32)
        if ids:
            kwargs["ids"] = [f"img{i:0{1 + i % 7}d}" for i in range(start, stop)]
        writer.write(start, **kwargs)
    writer.close()
    return latentstore.open(path)


@pytest.mark.parametrize("variant", ["absmax-flip-ids", "affine"])
def test_export_npy_round_trip_is_exact(tmp_path, variant):
    if variant == "affine":
        store = make_store(tmp_path / "s.zarr", quant=affine_spec(-6.5, 6.5))
    else:
        store = make_store(tmp_path / "s.zarr", flip=True, ids=True)
    metadata = export_npy(tmp_path / "s.zarr", tmp_path / "npy")

    load = lambda name: np.load(tmp_path / "npy" / name, mmap_mode="r")  # noqa: E731
    everything = np.arange(len(store))
    q, scales = store.codes(everything, allow_invalid=True)
    np.testing.assert_array_equal(load("latents.npy"), q)
    np.testing.assert_array_equal(load("labels.npy"), store.labels)
    np.testing.assert_array_equal(load("valid.npy").astype(bool), store.valid)
    saved = json.loads((tmp_path / "npy" / "metadata.json").read_text())
    assert saved == metadata and saved["classes"] == ["a", "b", "c"] and saved["num_samples"] == 50
    if variant == "affine":
        assert not (tmp_path / "npy" / "scales.npy").exists() and scales is None
        lut = affine_spec(-6.5, 6.5).lookup_table()
        np.testing.assert_array_equal(lut[load("latents.npy")], store.read(everything, allow_invalid=True)[0])
    else:
        np.testing.assert_array_equal(load("scales.npy"), scales)
        flip_q, flip_scales = store.codes(everything, allow_invalid=True, flip=True)
        np.testing.assert_array_equal(load("flip_latents.npy"), flip_q)
        np.testing.assert_array_equal(load("flip_scales.npy"), flip_scales)
        assert load("ids.npy").tolist() == read_ids(tmp_path / "s.zarr")
        x = load("latents.npy").astype(np.float32) * load("scales.npy").astype(np.float32)[:, None, None, None]
        np.testing.assert_array_equal(x, store.read(everything, allow_invalid=True)[0])
    for name, entry in saved["arrays"].items():
        array = load(entry["file"])
        assert [array.dtype.str, list(array.shape)] == [entry["dtype"], entry["shape"]], name


def test_export_npy_refuses_a_non_empty_directory(tmp_path, capsys):
    make_store(tmp_path / "s.zarr")
    (tmp_path / "npy").mkdir()
    (tmp_path / "npy" / "keep.txt").write_text("x")
    assert cli.main(["export-npy", str(tmp_path / "s.zarr"), str(tmp_path / "npy"), "--no-progress"]) == 1
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["export-npy", str(tmp_path / "s.zarr"), str(tmp_path / "npy"), "--overwrite", "--no-progress"]) == 0
    assert not (tmp_path / "npy" / "keep.txt").exists()
    assert "exported 50 samples" in capsys.readouterr().out


# -- the benchmark --------------------------------------------------------------


def test_import_pt_benchmark_smoke(tmp_path):
    root = Path(__file__).parent.parent
    result = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "import_pt.py"), "--samples", "3000", "--results-dir", str(tmp_path), "--workdir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "peak RSS" in result.stdout and "SYNTHETIC" in result.stdout
    assert (tmp_path / "import_pt_3000.md").exists()
