"""Per-sample columns (store/columns.py and the column parts of the writer and reader)."""

import json

import numpy as np
import pytest
import zarr
from hypothesis import given
from hypothesis import strategies as st

import latentstore
from latentstore import format as fmt
from latentstore.errors import CorruptChunkError, FormatError, IncompatibleStoreError
from latentstore.quantization import reference as _reference
from latentstore.store.columns import describe_span_problem

N, SHAPE, CHUNK = 50, (2, 2, 2), 16
COLUMNS = {"caption": "text", "width": "int32", "score": "float64", "jpeg": "bytes"}


def caption(i: int) -> str:
    return f"sample {i}: " + "ünïcode ✓ " * (i % 7)


def column_values(start: int, stop: int) -> dict:
    return {
        "caption": [caption(i) for i in range(start, stop)],
        "width": np.arange(start, stop) * 3,
        "score": np.arange(start, stop) / 7,
        "jpeg": [bytes([i % 256]) * (i % 5) for i in range(start, stop)],
    }


def write_captioned(path, *, n=N, chunk=CHUNK, valid=None, **options):
    x = np.random.default_rng(0).normal(size=(n, *SHAPE)).astype(np.float32)
    writer = latentstore.create(path, n, SHAPE, chunk_samples=chunk, columns=COLUMNS, **options)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        writer.write(start, x[start:stop], columns=column_values(start, stop),
                     valid=None if valid is None else valid[start:stop])
    writer.close()
    return x


@pytest.fixture
def store(tmp_path):
    write_captioned(tmp_path / "s.zarr")
    return latentstore.open(tmp_path / "s.zarr")


def expected(name: str, rows) -> list:
    values = column_values(0, N)[name]
    return [values[r] for r in rows]


ROWS = [49, 0, 17, 17, -1, 31, 32, 5]


@pytest.mark.parametrize("name", list(COLUMNS))
def test_columns_read_back_in_the_order_asked(store, name):  # every kernel build: tests/store/conftest.py
    rows = [r % N for r in ROWS]
    got = store.column(name, ROWS)
    if COLUMNS[name] in ("text", "bytes"):
        assert got == expected(name, rows)
    else:
        assert got.dtype == np.dtype(COLUMNS[name])
        np.testing.assert_array_equal(got, np.asarray(expected(name, rows)))
    assert store.column(name, 3) == expected(name, [3])[0]


def test_read_with_columns_returns_them_beside_latents_and_labels(store):
    latents, labels, columns = store.read([4, 40], columns=["caption", "width"])
    plain, plain_labels = store.read([4, 40])
    np.testing.assert_array_equal(latents, plain)
    np.testing.assert_array_equal(labels, plain_labels)
    assert columns["caption"] == [caption(4), caption(40)]
    np.testing.assert_array_equal(columns["width"], [12, 120])
    assert store.columns == COLUMNS
    with pytest.raises(KeyError, match="no column 'nope'.*caption, width, score, jpeg"):
        store.read([0], columns=["nope"])


def test_plain_zarr_python_reads_every_column(store):
    group = zarr.open_group(store.path, mode="r")
    assert [str(v) for v in group["columns/caption"][:]] == expected("caption", range(N))
    np.testing.assert_array_equal(group["columns/width"][:], np.arange(N) * 3)
    np.testing.assert_array_equal(group["columns/score"][:], np.arange(N) / 7)
    jpeg = group["columns/jpeg"][:]
    assert [bytes(v) for v in jpeg] == expected("jpeg", range(N))


def test_compressed_store_reads_the_same_columns_through_zarr(tmp_path, store):
    write_captioned(tmp_path / "z.zarr", compressor="zstd")
    compressed = latentstore.open(tmp_path / "z.zarr")
    assert store.fast and not compressed.fast
    for name in COLUMNS:
        a, b = store.column(name, ROWS), compressed.column(name, ROWS)
        assert a == b if isinstance(a, list) else np.array_equal(a, b)


def test_format_version_is_2_with_columns_and_stays_1_without(tmp_path, store):
    attributes = json.loads((tmp_path / "s.zarr" / "zarr.json").read_text())["attributes"]["latentstore"]
    assert attributes["format_version"] == 2
    assert attributes["columns"][0] == {"name": "caption", "kind": "text"}
    plain = latentstore.create(tmp_path / "v1.zarr", 4, SHAPE)
    document = json.loads((tmp_path / "v1.zarr" / "zarr.json").read_text())["attributes"]["latentstore"]
    assert document["format_version"] == 1 and "columns" not in document
    assert plain.metadata.columns == ()
    # a version-1 document that claims columns is refused
    with pytest.raises(FormatError, match="format_version"):
        fmt.StoreMetadata.from_dict({**attributes, "format_version": 1})
    with pytest.raises(FormatError, match="kind"):
        fmt.StoreMetadata.from_dict({**attributes, "columns": [{"name": "c", "kind": "utf16"}]})
    with pytest.raises(FormatError, match="distinct"):
        fmt.StoreMetadata.from_dict({**attributes, "columns": [{"name": "c", "kind": "text"}] * 2})


@pytest.mark.parametrize("name", ["", "1abc", "a/b", "../x", "a b", "x" * 129])
def test_bad_column_names_are_refused(tmp_path, name):
    with pytest.raises(FormatError, match="column name"):
        latentstore.create(tmp_path / "s.zarr", 4, SHAPE, columns={name: "text"})


@pytest.mark.parametrize(
    ("values", "error", "match"),
    [
        ({"caption": ["a", None, "c", "d"]}, TypeError, "value 1 is NoneType.*''"),
        ({"caption": "abcd"}, ValueError, "needs 4 values"),
        ({"width": [1, 2, 3, 2**40]}, ValueError, "value 3 .* does not fit"),
        ({"width": [1.5, 2, 3, 4]}, ValueError, "value 0 .*1.5.* does not fit"),
        ({"width": ["1", "2", "3", "4"]}, ValueError, "needs 4 numbers"),
        ({"jpeg": ["a", "b", "c", "d"]}, TypeError, "b''"),
    ],
)
def test_bad_column_values_are_refused(tmp_path, values, error, match):
    writer = latentstore.create(tmp_path / "s.zarr", 4, SHAPE, columns=COLUMNS)
    good = column_values(0, 4)
    with pytest.raises(error, match=match):
        writer.write(0, np.zeros((4, *SHAPE), np.float32), columns={**good, **values})
    with pytest.raises(ValueError, match="exactly this store's columns"):
        writer.write(0, np.zeros((4, *SHAPE), np.float32), columns={"caption": good["caption"]})
    assert writer.pending_chunks() == [0]  # nothing of a refused block was marked written


def test_append_carries_columns_across_any_block_sizes(tmp_path):
    x = np.random.default_rng(1).normal(size=(N, *SHAPE)).astype(np.float32)
    writer = latentstore.create(tmp_path / "a.zarr", N, SHAPE, chunk_samples=CHUNK, columns=COLUMNS)
    for start, stop in [(0, 3), (3, 20), (20, 21), (21, 50)]:
        writer.append(x[start:stop], columns=column_values(start, stop))
    writer.close()
    store = latentstore.open(tmp_path / "a.zarr")
    assert store.column("caption", slice(None)) == expected("caption", range(N))
    np.testing.assert_array_equal(store.column("width", slice(None)), np.arange(N) * 3)


def test_resume_with_other_columns_is_refused(tmp_path):
    latentstore.create(tmp_path / "s.zarr", N, SHAPE, chunk_samples=CHUNK, columns=COLUMNS)
    with pytest.raises(IncompatibleStoreError, match="columns"):
        latentstore.create(tmp_path / "s.zarr", N, SHAPE, chunk_samples=CHUNK, columns={"caption": "text"})


def test_a_missing_column_chunk_is_named_in_a_complete_store_and_invalid_in_an_unfinished_one(tmp_path):
    write_captioned(tmp_path / "s.zarr")
    (tmp_path / "s.zarr" / "columns" / "caption" / "c" / "1").unlink()
    with pytest.raises(CorruptChunkError, match="columns/caption.*chunk 1"):
        latentstore.open(tmp_path / "s.zarr")
    writer = latentstore.create(tmp_path / "u.zarr", N, SHAPE, chunk_samples=CHUNK, columns=COLUMNS)
    writer.write(0, np.zeros((CHUNK, *SHAPE), np.float32), columns=column_values(0, CHUNK))
    writer.write(CHUNK, np.zeros((CHUNK, *SHAPE), np.float32), columns=column_values(CHUNK, 2 * CHUNK))
    (tmp_path / "u.zarr" / "columns" / "jpeg" / "c" / "1").unlink()  # a torn write
    unfinished = latentstore.open(tmp_path / "u.zarr")
    np.testing.assert_array_equal(np.flatnonzero(unfinished.valid), np.arange(CHUNK))
    assert unfinished.column("jpeg", [CHUNK], allow_invalid=True) == [b""]


def _rewrite_chunk(path, transform):
    data = path.read_bytes()
    path.write_bytes(transform(data))


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: d[: len(d) // 2], "runs past the end"),
        (lambda d: (99).to_bytes(4, "little") + d[4:], "exactly 16 variable-length items"),
        (lambda d: d[:-4] + b"xx" + d[-4:], "exactly 16"),
        (lambda d: b"\x01", "too short"),
    ],
)
def test_a_damaged_text_chunk_is_named_never_read_past(tmp_path, damage, match):
    write_captioned(tmp_path / "s.zarr")
    _rewrite_chunk(tmp_path / "s.zarr" / "columns" / "caption" / "c" / "2", damage)
    try:
        store = latentstore.open(tmp_path / "s.zarr")
    except CorruptChunkError as exc:  # too short to map
        assert "columns/caption" in str(exc) and match in str(exc)
        return
    assert store.column("caption", [0]) == [caption(0)]  # other chunks read
    with pytest.raises(CorruptChunkError, match=f"columns/caption.*chunk 2.*{match}"):
        store.column("caption", [40])
    with pytest.raises(CorruptChunkError):  # still damaged on a second try, not cached as fine
        store.column("caption", [33])


def test_text_that_is_not_utf8_is_named(tmp_path):
    write_captioned(tmp_path / "s.zarr")
    path = tmp_path / "s.zarr" / "columns" / "caption" / "c" / "0"
    data = bytearray(path.read_bytes())
    data[8] = 0xFF  # the first byte of sample 0's text; the layout stays intact
    path.write_bytes(bytes(data))
    store = latentstore.open(tmp_path / "s.zarr")
    assert store.column("caption", [1]) == [caption(1)]
    with pytest.raises(CorruptChunkError, match="columns/caption.*chunk 0.*sample 0's text is not UTF-8"):
        store.column("caption", [1, 0])


items = st.lists(st.binary(max_size=40), max_size=12)


def _vlen_chunk(values: list[bytes]) -> bytes:
    return len(values).to_bytes(4, "little") + b"".join(len(v).to_bytes(4, "little") + v for v in values)


@given(values=items, cut=st.integers(0, 600), extra=st.binary(max_size=3), count_delta=st.integers(-1, 1))
def test_vlen_spans_matches_the_reference(values, cut, extra, count_delta):  # every kernel build
    from latentstore.store import columns as module

    chunk = _vlen_chunk(values)
    for data in (chunk, chunk[: cut % (len(chunk) + 1)], chunk + extra):
        count = max(len(values) + count_delta, 0)
        buffer = np.frombuffer(data, np.uint8)
        results = []
        for spans in (module._kernels.vlen_spans, _reference.vlen_spans):
            starts, lengths = np.full(count, -7, np.int64), np.full(count, -7, np.int64)
            problem = spans(buffer, count, starts, lengths)
            results.append((problem, starts if problem < 0 else None, lengths if problem < 0 else None))
        (p1, s1, l1), (p2, s2, l2) = results
        assert p1 == p2, describe_span_problem(p1, count)
        if p1 < 0:
            np.testing.assert_array_equal(s1, s2)
            np.testing.assert_array_equal(l1, l2)
            addresses = (buffer.ctypes.data + s1).astype(np.uintp)
            order = np.arange(len(values), dtype=np.int64)[::-1].copy()
            assert module._kernels.gather_vlen(addresses, l1, order, False) == values[::-1]
            assert _reference.gather_vlen([data], [(0, s, n) for s, n in zip(s1, l1)], False) == values


def test_vlen_spans_reads_the_chunks_zarr_writes(tmp_path):
    """The layout the kernels parse is the one zarr-python's vlen-utf8 codec writes."""
    from latentstore.quantization._native import kernels

    write_captioned(tmp_path / "s.zarr", checksum=False)
    data = (tmp_path / "s.zarr" / "columns" / "caption" / "c" / "3").read_bytes()
    starts, lengths = np.empty(CHUNK, np.int64), np.empty(CHUNK, np.int64)
    assert kernels.vlen_spans(np.frombuffer(data, np.uint8), CHUNK, starts, lengths) == -1
    texts = [data[s : s + n].decode() for s, n in zip(starts, lengths)]
    assert texts[: N - 3 * CHUNK] == expected("caption", range(3 * CHUNK, N))
    assert texts[N - 3 * CHUNK :] == [""] * (4 * CHUNK - N)  # the edge chunk is padded with the fill value


def test_append_takes_an_empty_columns_mapping_on_a_store_without_columns(tmp_path):
    writer = latentstore.create(tmp_path / "plain.zarr", 4, SHAPE)
    writer.append(np.zeros((4, *SHAPE), np.float32), columns={})
    writer.close()
    assert latentstore.open(tmp_path / "plain.zarr").metadata.complete
