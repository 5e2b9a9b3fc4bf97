"""import-pt: torch .pt lists of dicts (Imagenet.3GB) into a store, exactly (interop/pt.py)."""

import os
import pickle

import numpy as np
import pytest
import torch

import latentstore
from latentstore import cli
from latentstore.errors import SourceError, StoreExistsError
from latentstore.interop import import_pt
from tests.interop.sources import (
    imagenet_3gb_decode,
    make_records,
    read_ids,
    save_pt,
)


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
