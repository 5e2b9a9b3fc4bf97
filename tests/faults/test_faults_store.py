"""Faults planted in stores: races with a writer, missing chunks, out-of-range labels, option traps.

Each case builds its damaged store on the fly. The rule under test: a reader
never hands out zeros or wrong labels for a sample it calls valid; damage it
cannot read through is an error naming the array and chunk.
"""

import json
import multiprocessing
import subprocess
import sys

import numpy as np
import pytest

import latentstore
from latentstore import format as fmt
from latentstore.errors import CorruptChunkError, FormatError
from latentstore.inspection.verify import verify
from latentstore.store import reader as reader_module
from tests.faults.limits import run_limited

SHAPE, CHUNK, N = (2, 2, 2), 8, 40
CHUNKS = N // CHUNK


def sample_values(n, shape=SHAPE):
    """Latents no quantizer maps to all-zero codes: sample i is i + 1 everywhere (sign alternating)."""
    values = np.arange(1, n + 1, dtype=np.float32)[:, None] * np.where(np.arange(int(np.prod(shape))) % 2, 1, -1)
    return values.reshape(n, *shape).astype(np.float32)


def labels_of(n):
    return (np.arange(n) * 7 + 3) % 1000


def writer_for(path, **options):
    return latentstore.create(path, N, SHAPE, chunk_samples=CHUNK, **options)


def write_chunk(writer, chunk, **extra):
    start = chunk * CHUNK
    x = sample_values(N)[start : start + CHUNK]
    writer.write(start, x, labels=labels_of(N)[start : start + CHUNK],
                 flip_latents=-x if writer.metadata.flip else None, **extra)


def assert_valid_rows_are_right(store):
    """Every valid-flagged sample reads as what was written, label included."""
    rows = np.flatnonzero(store.valid)
    if not rows.size:
        return
    latents, labels = store.read(rows)
    expected = sample_values(N)[rows]
    assert np.all(np.abs(latents).reshape(len(rows), -1).min(axis=1) > 0), "valid-flagged zeros"
    np.testing.assert_allclose(latents, expected, rtol=0.01)
    assert labels.tolist() == labels_of(N)[rows].tolist()


# -- 1. a reader that opens while a writer lands chunks ------------------------
def open_with(path, monkeypatch, before_read):
    """Open ``path``, calling ``before_read(k)`` before its k-th chunk-reading step
    (each array loaded whole, and the latents' mapping)."""
    steps = []

    def counted(original):
        def wrapped(*args, **kwargs):
            before_read(len(steps))
            steps.append(1)
            return original(*args, **kwargs)
        return wrapped

    with monkeypatch.context() as patch:
        patch.setattr(reader_module, "load_local_array", counted(reader_module.load_local_array))
        patch.setattr(reader_module, "MappedChunks", counted(reader_module.MappedChunks))
        store = latentstore.open(path)
    return store, len(steps)


@pytest.mark.parametrize("flip", [False, True])
def test_a_chunk_landing_at_any_step_of_opening_is_never_valid_over_zeros(tmp_path, monkeypatch, flip):
    writer = writer_for(tmp_path / "probe.zarr", flip=flip)
    write_chunk(writer, 0)
    _, steps = open_with(tmp_path / "probe.zarr", monkeypatch, lambda k: None)
    assert steps >= 4  # labels, valid, scales and the mapped latents at least
    for landing in range(steps + 1):
        path = tmp_path / f"s{landing}.zarr"
        writer = writer_for(path, flip=flip)
        write_chunk(writer, 0)
        # The writer lands chunk 1 between two of the reader's reads (or after the last).
        store, _ = open_with(path, monkeypatch, lambda k, landing=landing, writer=writer: k == landing and write_chunk(writer, 1))
        assert_valid_rows_are_right(store)
        assert store.valid[:CHUNK].all()
        assert not store.valid[2 * CHUNK :].any()


def _write_slowly(path, order):
    writer = latentstore.create(path, N, SHAPE, chunk_samples=CHUNK)
    for chunk in order:
        write_chunk(writer, chunk)


@pytest.mark.slow
def test_readers_reopening_during_a_real_writer_see_no_valid_zeros(tmp_path):
    context = multiprocessing.get_context("spawn")
    for round in range(3):
        path = tmp_path / f"s{round}.zarr"
        writer_for(path)  # the empty store the writer process resumes
        order = np.random.default_rng(round).permutation(CHUNKS).tolist()
        process = context.Process(target=_write_slowly, args=(str(path), order))
        process.start()
        opened = 0
        while process.is_alive() or opened < 5:
            assert_valid_rows_are_right(latentstore.open(path))
            opened += 1
        process.join(timeout=60)
        assert process.exitcode == 0
        assert latentstore.open(path).valid.all()


# -- 2. a missing chunk in a complete store is damage ---------------------------
@pytest.mark.parametrize("array", [fmt.LATENTS, fmt.SCALES, fmt.LABELS, fmt.VALID, fmt.FLIP_LATENTS])
def test_a_missing_chunk_of_a_complete_store_is_an_error_naming_it(tmp_path, array):
    path = tmp_path / "s.zarr"
    writer = writer_for(path, flip=True)
    for chunk in range(CHUNKS):
        write_chunk(writer, chunk)
    writer.close()
    assert latentstore.open(path).metadata.complete
    chunk_file = path / array / latentstore.open(path)._layouts[array].chunk_key(2)
    chunk_file.unlink()
    with pytest.raises(CorruptChunkError, match=rf"{array}.*chunk 2.*missing") as info:
        latentstore.open(path)
    assert info.value.array == array and info.value.chunk == 2
    assert not verify(path).ok


def test_an_incomplete_store_reads_its_missing_chunks_as_invalid(tmp_path):
    path = tmp_path / "s.zarr"
    writer = writer_for(path)
    write_chunk(writer, 1)
    write_chunk(writer, 3)
    store = latentstore.open(path)
    assert np.flatnonzero(store.valid).tolist() == list(range(8, 16)) + list(range(24, 32))
    assert_valid_rows_are_right(store)


def test_a_chunk_whose_valid_flags_landed_without_its_latents_is_invalid(tmp_path):
    """A damaged incomplete store: valid/ says done, latents/ has no file. Never valid zeros."""
    path = tmp_path / "s.zarr"
    writer = writer_for(path)
    write_chunk(writer, 0)
    write_chunk(writer, 1)
    (path / fmt.LATENTS / latentstore.open(path)._layouts[fmt.LATENTS].chunk_key(1)).unlink()
    store = latentstore.open(path)
    assert np.flatnonzero(store.valid).tolist() == list(range(8))
    assert_valid_rows_are_right(store)


# -- 3. labels: one range rule, applied when writing ----------------------------
@pytest.mark.parametrize("label", [2**31, 2**32 + 5, -2, -7, -(2**31)])
def test_labels_outside_the_int32_range_or_below_minus_one_are_refused(tmp_path, label):
    writer = writer_for(tmp_path / "s.zarr")
    labels = labels_of(N)[:CHUNK].copy()
    labels[3] = label
    with pytest.raises(ValueError, match=r"labels must lie in \[-1, 2147483647\]") as info:
        writer.write(0, sample_values(CHUNK), labels=labels)
    assert str(label) in str(info.value)


def test_the_extreme_allowed_labels_round_trip_and_verify(tmp_path):
    path = tmp_path / "s.zarr"
    writer = writer_for(path)
    for chunk in range(CHUNKS):
        labels = labels_of(N)[chunk * CHUNK : (chunk + 1) * CHUNK].copy()
        labels[:2] = [-1, 2**31 - 1]
        writer.write(chunk * CHUNK, sample_values(N)[chunk * CHUNK : (chunk + 1) * CHUNK], labels=labels)
    writer.close()
    assert latentstore.open(path).labels[:2].tolist() == [-1, 2**31 - 1]
    assert verify(path).ok


def test_labels_beyond_the_classes_are_refused(tmp_path):
    writer = writer_for(tmp_path / "s.zarr", classes=["a", "b"])
    with pytest.raises(ValueError, match=r"\[-1, 2\).*2 classes"):
        writer.write(0, sample_values(CHUNK), labels=np.full(CHUNK, 2))


@pytest.mark.parametrize("labels", [np.full(CHUNK, 1.0), np.full(CHUNK, True), ["1"] * CHUNK])
def test_labels_must_be_integers(tmp_path, labels):
    with pytest.raises(ValueError, match="integers"):
        writer_for(tmp_path / "s.zarr").write(0, sample_values(CHUNK), labels=labels)


@pytest.mark.parametrize("valid", [[2] * CHUNK, [0.5] * CHUNK, ["yes"] * CHUNK])
def test_valid_flags_must_be_booleans_or_zero_and_one(tmp_path, valid):
    with pytest.raises(ValueError, match="valid"):
        writer_for(tmp_path / "s.zarr").write(0, sample_values(CHUNK), valid=valid)


# -- 4. options take exactly their documented values ----------------------------
@pytest.fixture(scope="module")
def complete_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("options") / "s.zarr"
    writer = writer_for(path, flip=True)
    for chunk in range(CHUNKS):
        write_chunk(writer, chunk)
    writer.close()
    return latentstore.open(path)


@pytest.mark.parametrize("normalize", [0, 1, 0.0, 1.0, "yes", "", None, [True]])
def test_normalize_refuses_values_that_merely_compare_equal(complete_store, normalize):
    with pytest.raises(ValueError, match="normalize must be one of"):
        complete_store.read([0], normalize=normalize)


def test_numpy_booleans_mean_what_they_say(complete_store):
    plain, _ = complete_store.read([0, 1])
    np.testing.assert_array_equal(complete_store.read([0, 1], normalize=np.False_)[0], plain)
    np.testing.assert_array_equal(complete_store.read([0, 1], normalize=np.True_)[0],
                                  complete_store.read([0, 1], normalize=True)[0])
    np.testing.assert_array_equal(complete_store.read([0, 1], flip=np.False_)[0], plain)


@pytest.mark.parametrize("flip", ["yes", 0.5, 1, [1, 0], np.array([0.5, 1.0])])
def test_read_flip_takes_booleans_only(complete_store, flip):
    with pytest.raises(TypeError, match="flip must be"):
        complete_store.read([0, 1], flip=flip)


@pytest.mark.parametrize("option", ["flip", "ids", "failures", "checksum", "overwrite"])
@pytest.mark.parametrize("value", ["yes", 0.5, 1, None])
def test_create_flags_take_booleans_only(tmp_path, option, value):
    with pytest.raises(TypeError, match=f"{option} must be True or False"):
        latentstore.create(tmp_path / "s.zarr", N, SHAPE, **{option: value})
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(num_samples=4.7), TypeError, "num_samples must be an integer"),
        (dict(num_samples=-1), ValueError, "num_samples must be >= 0"),
        (dict(chunk_samples=4.0), TypeError, "chunk_samples must be an integer"),
        (dict(chunk_samples=0), ValueError, "chunk_samples must be >= 1"),
        (dict(latent_shape=(2, 2.5)), TypeError, "latent_shape"),
        (dict(latent_shape=(2, 0)), ValueError, "latent_shape"),
        (dict(classes="abc"), TypeError, "classes must be a list of strings"),
        (dict(classes=[1, 2]), TypeError, "classes must be a list of strings"),
    ],
)
def test_create_refuses_numbers_that_are_not_what_they_should_be(tmp_path, kwargs, error, match):
    arguments = dict(num_samples=N, latent_shape=SHAPE) | kwargs
    with pytest.raises(error, match=match):
        latentstore.create(tmp_path / "s.zarr", arguments.pop("num_samples"), arguments.pop("latent_shape"), **arguments)


@pytest.mark.parametrize("option", ["shuffle", "drop_last"])
def test_batches_flags_take_booleans_only(complete_store, option):
    with pytest.raises(TypeError, match=f"{option} must be True or False"):
        next(iter(complete_store.batches(4, **{option: "no"})))


@pytest.mark.parametrize("allow_invalid", ["no", 0])
def test_allow_invalid_takes_booleans_only(complete_store, allow_invalid):
    with pytest.raises(TypeError, match="allow_invalid must be True or False"):
        complete_store.read([0], allow_invalid=allow_invalid)


def test_out_with_a_scalar_index_is_refused(complete_store):
    out = np.empty((1, *SHAPE), np.float32)
    with pytest.raises(ValueError, match="out= needs an array of indices"):
        complete_store.read(0, out=out)


# -- 10. malformed metadata: FormatError, never a raw TypeError -----------------
def metadata_variants():
    """(name, change to the latentstore attribute)."""
    yield "latent_shape int", lambda m: m.update(latent_shape=5)
    yield "latent_shape null", lambda m: m.update(latent_shape=None)
    yield "latent_shape floats", lambda m: m.update(latent_shape=[2.0, 2, 2])
    yield "classes int", lambda m: m.update(classes=5)
    yield "classes huge", lambda m: m.update(classes=["c"] * (fmt.MAX_CLASSES + 1))
    yield "stats list", lambda m: m.update(stats=[1, 2])
    yield "stats string", lambda m: m.update(stats="mean")
    yield "format_version true", lambda m: m.update(format_version=True)
    yield "format_version float", lambda m: m.update(format_version=1.0)
    yield "chunk_samples float", lambda m: m.update(chunk_samples=8.0)
    yield "num_samples float", lambda m: m.update(num_samples=1e18)
    yield "num_samples bool", lambda m: m.update(num_samples=True)
    yield "quant list", lambda m: m.update(quant=[1])
    yield "quant unknown key", lambda m: m["quant"].update(bits=8.0)
    yield "quant scheme unknown", lambda m: m["quant"].update(scheme="fp4")
    yield "complete string", lambda m: m.update(complete="yes")
    yield "flip string", lambda m: m.update(flip="yes")
    yield "encoder list", lambda m: m.update(encoder=[1])


def plant_metadata(path, change):
    document = json.loads((path / "zarr.json").read_text())
    change(document["attributes"][fmt.ATTRIBUTE_KEY])
    (path / "zarr.json").write_text(json.dumps(document))


@pytest.fixture
def finished(tmp_path):
    path = tmp_path / "s.zarr"
    writer = writer_for(path)
    for chunk in range(CHUNKS):
        write_chunk(writer, chunk)
    writer.close()
    return path


@pytest.mark.parametrize("change", [c for _, c in metadata_variants()], ids=[n for n, _ in metadata_variants()])
def test_malformed_metadata_is_a_format_error_and_verify_reports_it(finished, change):
    plant_metadata(finished, change)
    with pytest.raises(FormatError):
        latentstore.open(finished)
    report = verify(finished)
    assert not report.ok and report.problems


def array_variants():
    yield "shape floats", lambda a: a.update(shape=[float(d) for d in a["shape"]])
    yield "chunk_shape floats", lambda a: a["chunk_grid"]["configuration"].update(chunk_shape=[8.0, 2, 2, 2])
    yield "data_type object", lambda a: a.update(data_type={"name": "int8"})
    yield "data_type unknown", lambda a: a.update(data_type="int3")
    yield "codecs empty", lambda a: a.update(codecs=[])
    yield "codecs reversed", lambda a: a.update(codecs=list(reversed(a["codecs"])))
    yield "codecs unknown", lambda a: a.update(codecs=[{"name": "nonesuch"}])
    yield "codecs not a list", lambda a: a.update(codecs="bytes")
    yield "not an object", lambda a: a.clear() or a.update(x=1)


@pytest.mark.parametrize("change", [c for _, c in array_variants()], ids=[n for n, _ in array_variants()])
def test_malformed_array_metadata_is_a_format_error_and_verify_reports_it(finished, change):
    target = finished / fmt.LATENTS / "zarr.json"
    document = json.loads(target.read_text())
    change(document)
    target.write_text(json.dumps(document))
    with pytest.raises(FormatError, match="latents"):
        latentstore.open(finished)
    assert not verify(finished).ok


@pytest.mark.parametrize("document", ["[1, 2]", '"text"', "null", "[" * 100_000 + "]" * 100_000])
def test_a_group_document_that_is_not_an_object(finished, document):
    (finished / "zarr.json").write_text(document)
    with pytest.raises(FormatError, match="zarr.json"):
        latentstore.open(finished)
    assert not verify(finished).ok


# -- 13. a full disk while writing ---------------------------------------------
@pytest.mark.slow  # a child process
def test_a_full_disk_is_a_clear_error_and_the_store_resumes(tmp_path):
    """The child's file size limit (RLIMIT_FSIZE, SIGXFSZ ignored) fails writes as a full disk would."""
    path = tmp_path / "s.zarr"
    code = (
        "import resource, signal\n"
        "import numpy as np\n"
        "import latentstore\n"
        "from tests.faults.test_faults_store import sample_values\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        f"writer = latentstore.create({str(path)!r}, 48, (32, 8, 8), chunk_samples=16)\n"
        "x = sample_values(48, (32, 8, 8))\n"
        "writer.write(0, x[:16]); writer.write(16, x[16:32])\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))\n"
        "try:\n"
        "    writer.write(32, x[32:])\n"
        "except latentstore.errors.StoreWriteError as exc:\n"
        "    print('refused:', exc)\n"
    )
    result = run_limited(code, memory_mb=4096)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused: cannot write chunk 2 of" in result.stdout and "rerun" in result.stdout
    store = latentstore.open(path)
    assert np.flatnonzero(store.valid).tolist() == list(range(32))
    writer = latentstore.create(path, 48, (32, 8, 8), chunk_samples=16)
    assert writer.pending_chunks() == [2]
    writer.write(32, sample_values(48, (32, 8, 8))[32:])
    writer.close()
    store = latentstore.open(path)
    assert store.valid.all()
    np.testing.assert_allclose(store.read(np.arange(48))[0], sample_values(48, (32, 8, 8)), rtol=0.01)


# -- 8. a store that claims many samples it does not have -----------------------
@pytest.mark.slow  # a child process
def test_opening_a_mostly_unwritten_huge_store_touches_no_placeholder_pages(tmp_path):
    """500 M samples claimed, one chunk written: the reader's memory stays that of one chunk."""
    path = tmp_path / "s.zarr"
    n, chunk = 500_000_000, 1 << 16
    writer = latentstore.create(path, n, SHAPE, chunk_samples=chunk)
    writer.write(0, sample_values(chunk), labels=np.zeros(chunk, int))
    code = (
        "import resource, numpy as np, latentstore\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"store = latentstore.open({str(path)!r})\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "assert int(store.valid[:70000].sum()) == 65536 and not store.valid[-1]\n"
        "print((after - before) // 1024)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    grown_mib = int(result.stdout.split()[-1])
    # Placeholders touched would be labels 2 GB + valid 0.5 GB + scales 1 GB; one chunk is < 2 MiB.
    assert grown_mib < 100, f"opening grew the process by {grown_mib} MiB"
