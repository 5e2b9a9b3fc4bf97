"""``latentstore verify``: every planted corruption is found, with its array, chunk and samples; healthy stores pass."""

import json
import os
from pathlib import Path

import google_crc32c
import numpy as np
import pytest

import latentstore
from latentstore import cli
from latentstore.errors import CorruptChunkError, StoreNotFoundError
from latentstore.inspection.verify import verify

N, SHAPE, CHUNK = 200, (4, 4, 4), 64
CLASSES = list("abcde")


def make_store(path, latents, *, chunks=None, finalize=True, **options):
    """Write the chunks listed (all by default) of a store of synthetic latents."""
    n = len(latents)
    writer = latentstore.create(path, n, SHAPE, chunk_samples=CHUNK, classes=CLASSES, **options)
    flip = options.get("flip", False)
    for chunk in range(writer.metadata.num_chunks) if chunks is None else chunks:
        block = slice(chunk * CHUNK, min(n, (chunk + 1) * CHUNK))
        labels = np.arange(block.start, block.stop) % len(CLASSES)
        valid = np.arange(block.start, block.stop) % 17 != 3  # some invalid samples too
        if options.get("quant") is not None:
            q = np.random.default_rng(chunk).integers(0, 256, size=(block.stop - block.start, *SHAPE), dtype=np.uint8)
            writer.write(block.start, codes=q, labels=labels, valid=valid)
        else:
            ids = [f"img_{i}.jpg" for i in range(block.start, block.stop)] if options.get("ids") else None
            writer.write(
                block.start, latents[block], labels=labels, valid=valid, flip_latents=-latents[block] if flip else None, ids=ids
            )
    if finalize:
        writer.finalize()
    return Path(path)


@pytest.fixture
def latents(latents_factory):
    return latents_factory(N, SHAPE, seed=3)


@pytest.fixture(params=["sample", "channel"])
def store(request, tmp_path, latents):
    return make_store(tmp_path / "s.zarr", latents, granularity=request.param)


def array_shape(store: Path, name: str) -> list[int]:
    return json.loads((store / name / "zarr.json").read_text())["shape"]


def chunk_file(store: Path, name: str, chunk: int) -> Path:
    return store.joinpath(name, "c", str(chunk), *["0"] * (len(array_shape(store, name)) - 1))


def scales_per_sample(store: Path) -> int:
    return int(np.prod(array_shape(store, "scales")[1:]))


def rewrite_values(path: Path, dtype, mutate) -> None:
    """Change a chunk's values and write a matching crc32c, so only value checks can object."""
    raw = bytearray(path.read_bytes())
    values = np.frombuffer(raw, dtype=dtype, count=(len(raw) - 4) // np.dtype(dtype).itemsize).copy()
    mutate(values)
    data = values.tobytes()
    path.write_bytes(data + google_crc32c.value(data).to_bytes(4, "little"))


def flip_bit(path: Path, offset: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x10
    path.write_bytes(bytes(raw))


def only_error(report):
    assert not report.ok, str(report)
    assert len(report.errors) == 1, str(report)
    return report.errors[0]


# -- healthy stores ---------------------------------------------------------------------
@pytest.mark.parametrize(
    "options",
    [{}, {"granularity": "channel"}, {"flip": True}, {"ids": True}, {"compressor": "zstd"}, {"checksum": False},
     {"quant": latentstore.QuantSpec.affine(13 / 255, -6.5)}],
    ids=["sample", "channel", "flip", "ids", "zstd", "no-checksum", "affine"],
)
def test_healthy_stores_pass(tmp_path, latents, options):
    path = make_store(tmp_path / "s.zarr", latents, **options)
    report = verify(path)
    assert report.ok and not report.problems, str(report)
    assert report.samples == N and report.valid == sum(i % 17 != 3 for i in range(N))
    assert report.complete and report.chunks_pending == []
    arrays = 6 if options.get("flip") else 3 if "quant" in options else 4  # affine: no scales
    assert report.chunks_checked == arrays * 4 + (4 if options.get("ids") else 0)
    # Compressed chunks are checked by zarr's own codec while decoding.
    plain = options.get("checksum") is not False and "compressor" not in options
    assert report.checksummed_chunks == (arrays * 4 if plain else 0)
    assert str(report).endswith("OK")


def test_incomplete_but_consistent_store_passes_with_warnings(tmp_path, latents):
    path = make_store(tmp_path / "s.zarr", latents, chunks=[0, 2], finalize=False)
    report = verify(path)
    assert report.ok, str(report)
    assert report.chunks_pending == [1, 3]
    messages = " ".join(p.message for p in report.warnings)
    assert "not finalized" in messages and "2 of 4 chunks are not written yet (1, 3)" in messages


def test_remote_store_is_verified_through_zarr(tmp_path, latents):
    pytest.importorskip("fsspec")
    url = "memory://latentstore-verify/remote.zarr"
    make_store(url, latents)
    report = verify(url)
    assert report.ok and report.chunks_checked == 16, str(report)


def test_missing_store_is_not_found(tmp_path):
    with pytest.raises(StoreNotFoundError, match="no latent store"):
        verify(tmp_path / "nope")


# -- planted corruption ---------------------------------------------------------------------
def truncate(store, name, chunk):
    with open(chunk_file(store, name, chunk), "r+b") as f:
        f.truncate(100)


@pytest.mark.parametrize(
    ("plant", "array", "chunk", "message"),
    [
        (lambda s: truncate(s, "latents", 1), "latents", 1, "is 100 bytes, expected 4100 (truncated)"),
        (lambda s: chunk_file(s, "scales", 2).unlink(), "scales", 2, "is missing"),
        (lambda s: chunk_file(s, "valid", 3).unlink(), "valid", 3, "is missing"),
        (lambda s: flip_bit(chunk_file(s, "latents", 3), 17), "latents", 3, "crc32c checksum mismatch"),
        (lambda s: flip_bit(chunk_file(s, "labels", 0), -2), "labels", 0, "crc32c checksum mismatch"),
        (lambda s: flip_bit(chunk_file(s, "scales", 1), 5), "scales", 1, "crc32c checksum mismatch"),
    ],
    ids=["truncated", "deleted-scales", "deleted-valid", "latents-bit", "crc-bit", "scales-bit"],
)
def test_damaged_chunk_files_are_found(store, plant, array, chunk, message):
    plant(store)
    problem = only_error(verify(store))
    assert (problem.array, problem.chunk) == (array, chunk)
    assert message in problem.message
    assert problem.sample_range == (chunk * CHUNK, min(N, (chunk + 1) * CHUNK))


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan, -1.0])
def test_non_finite_or_negative_scale_of_a_valid_sample(store, bad):
    channels = scales_per_sample(store)

    def poison(values):
        values[(70 - CHUNK) * channels] = bad  # sample 70, first channel

    rewrite_values(chunk_file(store, "scales", 1), np.float16, poison)
    problem = only_error(verify(store))
    assert (problem.array, problem.chunk, problem.samples, problem.sample_count) == ("scales", 1, (70,), 1)
    assert "finite and non-negative" in problem.message


def test_scale_of_an_invalid_sample_is_not_checked(store):
    # Sample 3 is invalid (3 % 17 == 3): readers never use its scale.
    channels = scales_per_sample(store)
    rewrite_values(chunk_file(store, "scales", 0), np.float16, lambda v: v.__setitem__(3 * channels, np.nan))
    assert verify(store).ok


def test_bad_valid_flags(store):
    rewrite_values(chunk_file(store, "valid", 2), np.uint8, lambda v: v.__setitem__([1, 5], [2, 255]))
    problem = only_error(verify(store))
    assert (problem.array, problem.chunk, problem.samples) == ("valid", 2, (129, 133))
    assert "0 or 1" in problem.message and "[2, 255]" in problem.message


@pytest.mark.parametrize("label", [5, -2, 1 << 30])
def test_label_out_of_range(store, label):
    rewrite_values(chunk_file(store, "labels", 3), np.int32, lambda v: v.__setitem__(0, label))
    problem = only_error(verify(store))
    assert (problem.array, problem.chunk, problem.samples) == ("labels", 3, (192,))
    assert "[-1, 5)" in problem.message


def test_code_minus_128_in_latents(store):
    rewrite_values(chunk_file(store, "latents", 0), np.int8, lambda v: v.__setitem__([64 * 10 + 5, 64 * 10 + 9, 64 * 12], -128))
    problem = only_error(verify(store))
    assert (problem.array, problem.chunk, problem.samples, problem.sample_count) == ("latents", 0, (10, 12), 2)


def test_many_bad_samples_are_counted_and_listed_in_part(store):
    rewrite_values(chunk_file(store, "labels", 1), np.int32, lambda v: v.__setitem__(slice(None), 9))
    problem = only_error(verify(store))
    assert problem.sample_count == CHUNK and problem.samples == tuple(range(CHUNK, CHUNK + 20))
    assert "... (64 in all)" in str(problem)


@pytest.mark.parametrize("document", ["zarr.json", "scales/zarr.json"])
def test_corrupted_zarr_json(store, document):
    path = store / document
    path.write_bytes(path.read_bytes()[:-40])
    problem = only_error(verify(store))
    assert problem.array == ("(group)" if document == "zarr.json" else "scales")
    assert "not valid JSON" in problem.message


def test_inconsistent_array_metadata(store):
    path = store / "labels" / "zarr.json"
    meta = json.loads(path.read_text())
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [32]
    path.write_text(json.dumps(meta))
    problem = only_error(verify(store))
    assert problem.array == "labels" and "chunk shape" in problem.message


def test_newer_format_version(store):
    path = store / "zarr.json"
    meta = json.loads(path.read_text())
    meta["attributes"]["latentstore"]["format_version"] = latentstore.FORMAT_VERSION + 1
    path.write_text(json.dumps(meta))
    problem = only_error(verify(store))
    assert problem.array == "(group)" and "upgrade latentstore" in problem.message


def test_missing_chunk_of_a_finished_chunk_in_an_incomplete_store(tmp_path, latents):
    path = make_store(tmp_path / "s.zarr", latents, chunks=[0, 2], finalize=False)
    chunk_file(path, "latents", 2).unlink()
    problem = only_error(verify(path))
    assert (problem.array, problem.chunk) == ("latents", 2) and "missing" in problem.message


def test_damaged_compressed_chunk_is_found_through_zarr(tmp_path, latents):
    path = make_store(tmp_path / "s.zarr", latents, compressor="zstd")
    flip_bit(chunk_file(path, "latents", 1), 40)
    problem = only_error(verify(path))
    assert (problem.array, problem.chunk) == ("latents", 1) and "cannot be decoded" in problem.message


def test_store_reader_refuses_a_truncated_chunk_on_open(store):
    truncate(store, "latents", 2)
    with pytest.raises(CorruptChunkError, match="'latents' chunk 2: chunk file is 100 bytes.*latentstore verify"):
        latentstore.open(store)


# -- command line -------------------------------------------------------------------------------------
def test_cli_exit_codes_and_json(store, capsys):
    assert cli.main(["verify", str(store)]) == 0
    assert capsys.readouterr().out.strip().endswith("OK")
    flip_bit(chunk_file(store, "latents", 1), 0)
    os.remove(chunk_file(store, "labels", 2))
    assert cli.main(["verify", "--json", str(store)]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert [(p["array"], p["chunk"], p["sample_range"]) for p in report["problems"]] == [
        ("labels", 2, [128, 192]),
        ("latents", 1, [64, 128]),
    ]


def test_cli_text_lists_each_problem(store, capsys):
    truncate(store, "valid", 0)
    assert cli.main(["verify", str(store)]) == 1
    out = capsys.readouterr().out
    assert "ERROR: 'valid' chunk 0 samples [0, 64): chunk file valid/c/0 is 100 bytes" in out
    assert out.strip().endswith("DAMAGED: 1 problems")


# -- per-sample columns ----------------------------------------------------------------
COLUMNS = {"caption": "text", "jpeg": "bytes", "width": "int32"}


def make_captioned(path, n=40, chunk=16, **options):
    with latentstore.create(path, n, (2, 2, 2), chunk_samples=chunk, columns=COLUMNS, **options) as writer:
        for start in range(0, n, chunk):
            rows = range(start, min(start + chunk, n))
            writer.write(start, np.ones((len(rows), 2, 2, 2), np.float32), columns={
                "caption": [f"caption {i} ✓" for i in rows], "jpeg": [bytes([i]) * i for i in rows],
                "width": np.asarray(rows)})
    return Path(str(path).removeprefix("file://")) if "://" not in str(path) else path


@pytest.mark.parametrize("options", [{}, {"compressor": "zstd"}, {"checksum": False}], ids=["plain", "zstd", "no-crc"])
def test_healthy_columns_pass(tmp_path, options):
    report = verify(make_captioned(tmp_path / "s.zarr", **options))
    assert report.ok and not report.problems, str(report)
    assert {"columns/caption", "columns/jpeg", "columns/width"} <= set(report.arrays)
    assert report.chunks_checked == 7 * 3  # 4 arrays + 3 columns, 3 chunks each


def _rewrite(path, transform):
    path.write_bytes(transform(path.read_bytes()))


def _fixed_crc(data: bytes) -> bytes:
    return data + google_crc32c.value(data).to_bytes(4, "little")


@pytest.mark.parametrize(
    ("column", "damage", "message"),
    [
        ("caption", lambda d: d[:-9] + d[-4:], "checksum mismatch"),
        ("caption", lambda d: _fixed_crc(d[:-14]), "runs past the end"),
        ("jpeg", lambda d: _fixed_crc((3).to_bytes(4, "little") + d[4:-4]), "exactly 16 variable-length items"),
        ("caption", lambda d: _fixed_crc(d[:8] + b"\xff" + d[9:-4]), "not UTF-8"),
    ],
    ids=["crc", "truncated", "header", "utf8"],
)
def test_damaged_column_chunks_are_found(tmp_path, column, damage, message):
    path = make_captioned(tmp_path / "s.zarr")
    _rewrite(path / "columns" / column / "c" / "1", damage)
    problem = only_error(verify(path))
    assert problem.array == f"columns/{column}" and problem.chunk == 1 and message in problem.message, str(problem)
    if message == "not UTF-8":
        assert problem.samples == (16,)


def test_a_missing_column_array_or_chunk_is_found(tmp_path):
    path = make_captioned(tmp_path / "s.zarr")
    (path / "columns" / "width" / "c" / "2").unlink()
    problem = only_error(verify(path))
    assert problem.array == "columns/width" and problem.chunk == 2 and "missing" in problem.message
    (path / "columns" / "jpeg" / "zarr.json").unlink()
    assert any(p.array == "columns/jpeg" and "missing" in p.message for p in verify(path).errors)


# -- bucketed stores -----------------------------------------------------------------------------
from latentstore.format import BucketTable  # noqa: E402
from latentstore.store.writer import pack_buckets  # noqa: E402

TABLE = BucketTable(((2, 2), (1, 3), (3, 1)), compression=8)  # max_tokens 4: (1, 3) and (3, 1) pad one token
BUCKET_CHUNK, BUCKET_N = 16, 40


def bucket_of(i: int) -> int:
    return i * 7 % 3


def make_bucketed(path, *, flip=False, **options):
    """40 samples of three buckets in chunks of 16, some invalid, with crop boxes recorded for some."""
    rng = np.random.default_rng(5)
    latents = [rng.standard_normal((4, *TABLE.shapes[bucket_of(i)])).astype(np.float32) for i in range(BUCKET_N)]
    rows, buckets = pack_buckets(latents, TABLE)
    boxes = np.full((BUCKET_N, 4), np.nan, np.float32)
    boxes[::2] = [0, 0, 64, 48]
    with latentstore.create(path, BUCKET_N, (4,), chunk_samples=BUCKET_CHUNK, buckets=TABLE, flip=flip, **options) as writer:
        for start in range(0, BUCKET_N, BUCKET_CHUNK):
            block = slice(start, start + BUCKET_CHUNK)
            writer.write(start, rows[block], buckets=buckets[block], crop_boxes=boxes[block],
                         valid=np.arange(block.start, min(block.stop, BUCKET_N)) % 11 != 4,
                         flip_latents=-rows[block] if flip else None)
    return Path(path)


@pytest.mark.parametrize("options", [{}, {"flip": True}, {"compressor": "zstd"}, {"granularity": "channel"}],
                         ids=["plain", "flip", "zstd", "channel"])
def test_healthy_bucketed_stores_pass(tmp_path, options):
    report = verify(make_bucketed(tmp_path / "b.zarr", **options))
    assert report.ok and not report.problems, str(report)
    assert {"buckets", "crop_boxes"} <= set(report.arrays)
    arrays = 8 if options.get("flip") else 6  # valid, labels, scales, latents, buckets, crop_boxes (+ flip/*)
    assert report.chunks_checked == arrays * 3


def test_a_bucket_index_outside_the_table(tmp_path):
    path = make_bucketed(tmp_path / "b.zarr")
    rewrite_values(chunk_file(path, "buckets", 1), np.uint16, lambda v: v.__setitem__([2, 9], [3, 65535]))
    problem = only_error(verify(path))
    assert (problem.array, problem.chunk, problem.samples) == ("buckets", 1, (18, 25))
    assert "[0, 3)" in problem.message and "[3, 65535]" in problem.message


def plant_padding(path: Path, sample: int, channel: int, token: int, value: int, name: str = "latents") -> None:
    """A nonzero code in a sample's padding, with a matching crc32c, so only the padding check can object."""
    chunk, row = divmod(sample, BUCKET_CHUNK)
    rewrite_values(chunk_file(path, name, chunk), np.int8,
                   lambda v: v.__setitem__(row * 4 * TABLE.max_tokens + channel * TABLE.max_tokens + token, value))


@pytest.mark.parametrize("block_bytes", [None, 7], ids=["whole", "rows-split-across-blocks"])
def test_nonzero_padding_is_a_row_written_for_another_shape(tmp_path, monkeypatch, block_bytes):
    if block_bytes is not None:
        from latentstore.store import files

        monkeypatch.setattr(files, "BLOCK_BYTES", block_bytes)
    path = make_bucketed(tmp_path / "b.zarr")
    assert bucket_of(17) == 2 and bucket_of(20) == 2 and bucket_of(18) == 0  # (3, 1): token 3 is padding
    plant_padding(path, 17, 3, 3, 5)
    plant_padding(path, 20, 0, 3, -1)
    plant_padding(path, 18, 0, 3, 9)  # a (2, 2) sample has no padding: token 3 is its own
    problem = only_error(verify(path))
    assert (problem.array, problem.chunk, problem.samples, problem.sample_count) == ("latents", 1, (17, 20), 2)
    assert "past the bucket's h*w tokens" in problem.message and "another shape" in problem.message


def test_nonzero_padding_of_flip_latents_and_through_zarr(tmp_path):
    import zarr

    path = make_bucketed(tmp_path / "b.zarr", flip=True)
    assert bucket_of(39) == 0 and bucket_of(38) == 2 and bucket_of(5) == 2
    plant_padding(path, 39, 1, 3, 4, name="flip/latents")  # a (2, 2) sample: its token 3 is its own
    assert verify(path).ok
    plant_padding(path, 38, 1, 3, 4, name="flip/latents")  # a (3, 1) sample: token 3 is padding
    problem = only_error(verify(path))
    assert (problem.array, problem.chunk, problem.samples) == ("flip/latents", 2, (38,))

    compressed = make_bucketed(tmp_path / "z.zarr", compressor="zstd")
    zarr.open_array(compressed / "latents", mode="r+")[5, 2, 3] = 7
    problem = only_error(verify(compressed))
    assert (problem.array, problem.chunk, problem.samples) == ("latents", 0, (5,))


def test_padding_is_not_judged_where_the_bucket_is_unknown(tmp_path):
    path = make_bucketed(tmp_path / "b.zarr")
    plant_padding(path, 17, 3, 3, 5)
    rewrite_values(chunk_file(path, "buckets", 1), np.uint16, lambda v: v.__setitem__(1, 7))  # sample 17's bucket
    problem = only_error(verify(path))
    assert (problem.array, problem.samples) == ("buckets", (17,))
    chunk_file(path, "buckets", 1).unlink()  # no indices at all for chunk 1: its rows are not checked
    problem = only_error(verify(path))
    assert (problem.array, problem.chunk) == ("buckets", 1) and "missing" in problem.message


@pytest.mark.parametrize("bad", [np.inf, -np.inf])
def test_crop_boxes_are_finite_or_nan(tmp_path, bad):
    path = make_bucketed(tmp_path / "b.zarr")
    rewrite_values(chunk_file(path, "crop_boxes", 2), np.float32, lambda v: v.__setitem__([4 * 3 + 2, 4 * 4], bad))
    problem = only_error(verify(path))
    assert (problem.array, problem.chunk, problem.samples) == ("crop_boxes", 2, (35, 36))
    assert "finite (or NaN where not recorded)" in problem.message
