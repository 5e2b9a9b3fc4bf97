"""export-npy: a store out to plain .npy files, exactly (interop/npy.py)."""

import json

import numpy as np
import pytest

import latentstore
from latentstore import cli
from latentstore.interop import affine_spec, export_npy
from tests.interop.sources import (
    read_ids,
)


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


def test_export_npy_carries_every_column(tmp_path):
    import json

    from latentstore.format import ColumnSpec

    columns = [ColumnSpec("caption", "text"), ColumnSpec("width", "int32"), ColumnSpec("image", "bytes", "image/jpeg")]
    n = 20
    with latentstore.create(tmp_path / "s.zarr", n, (2, 2, 2), chunk_samples=8, columns=columns) as writer:
        for start in range(0, n, 8):
            rows = range(start, min(start + 8, n))
            writer.write(start, np.zeros((len(rows), 2, 2, 2), np.float32), columns={
                "caption": [f'line "{i}"\nnext ✓' for i in rows], "width": np.asarray(rows) * 5,
                "image": [b"\xff\xd8" + bytes([i]) for i in rows]})
    metadata = export_npy(tmp_path / "s.zarr", tmp_path / "out")
    out = tmp_path / "out"
    np.testing.assert_array_equal(np.load(out / "columns_width.npy"), np.arange(n) * 5)
    lines = (out / "columns_caption.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [f'line "{i}"\nnext ✓' for i in range(n)]
    assert (out / "columns_image" / "000000013.jpg").read_bytes() == b"\xff\xd8\x0d"
    assert len(list((out / "columns_image").iterdir())) == n
    assert metadata["arrays"]["columns/image"] == {"folder": "columns_image", "kind": "bytes", "media_type": "image/jpeg"}
