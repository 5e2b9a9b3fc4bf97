import json
import multiprocessing
import os
import pickle
import shutil

import numpy as np
import pytest

from latentstore.encoding.preprocess import ImageDecodeError
from latentstore.encoding.sources import (
    HFDatasetSource,
    ImageFolderSource,
    LabeledFolderSource,
    UnlabeledFolderSource,
    open_source,
)
from latentstore.errors import SourceError
from tests.paths import PHOTOS

PHOTO_FILES = sorted(PHOTOS.glob("*/*.JPEG"))
SYNSETS = [f"n{k:08d}" for k in range(20)]


@pytest.fixture(scope="module")
def photos():
    return ImageFolderSource(str(PHOTOS))


@pytest.fixture
def val_folder(tmp_path):
    """Five photos named like ImageNet val files, and their synsets (1000 + k)."""
    folder = tmp_path / "val"
    folder.mkdir()
    for k, src in enumerate(PHOTO_FILES[:5], 1):
        shutil.copy(src, folder / f"ILSVRC2012_val_{k:08d}.JPEG")
    return folder


def write(path, text):
    path.write_text(text)
    return str(path)


def test_image_folder_over_the_photos(photos):
    assert len(photos) == 16
    assert photos.classes == sorted(p.name for p in PHOTOS.iterdir()) and len(photos.classes) == 9
    assert list(photos.ids) == sorted(p.relative_to(PHOTOS).as_posix() for p in PHOTO_FILES)
    expected = [photos.classes.index(i.split("/")[0]) for i in photos.ids]
    np.testing.assert_array_equal(photos.labels, expected)
    assert photos.labels.dtype == np.int32 and not photos.labels.flags.writeable
    for i in (0, 7, 15):
        raw, label = photos.read(i)
        assert raw == (PHOTOS / photos.ids[i]).read_bytes()
        assert label == expected[i] and type(label) is int


def test_enumeration_is_deterministic_and_fingerprinted(photos, tmp_path):
    again = open_source(str(PHOTOS))
    assert isinstance(again, ImageFolderSource)
    assert list(again.ids) == list(photos.ids)
    assert again.describe() == photos.describe()
    json.dumps(photos.describe())

    copy = tmp_path / "photos"
    shutil.copytree(PHOTOS, copy)
    before = ImageFolderSource(str(copy)).describe()
    shutil.copy(PHOTO_FILES[0], copy / "texture" / "a_new_one.JPEG")
    after = ImageFolderSource(str(copy)).describe()
    assert after["count"] == before["count"] + 1
    assert after["ids_sha256"] != before["ids_sha256"]


def test_image_folder_skips_hidden_and_non_images(tmp_path):
    jpeg = PHOTO_FILES[0].read_bytes()
    for rel in ["b/w.TIFF", "a/x.JPG", "a/sub/y.png", "a/.hidden.jpg", "a/.cache/z.jpg", "a/notes.txt", ".git/q.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(jpeg)
    (tmp_path / "c_empty").mkdir()
    source = open_source(str(tmp_path))
    assert isinstance(source, ImageFolderSource)
    assert source.classes == ["a", "b", "c_empty"]
    assert list(source.ids) == ["a/sub/y.png", "a/x.JPG", "b/w.TIFF"]
    np.testing.assert_array_equal(source.labels, [0, 0, 1])


def test_image_folder_with_a_class_list(tmp_path):
    for name in ["n00000003", "n00000011"]:
        (tmp_path / name).mkdir()
        shutil.copy(PHOTO_FILES[0], tmp_path / name / "img.JPEG")
    source = ImageFolderSource(str(tmp_path), class_list=SYNSETS)
    assert source.classes == SYNSETS
    np.testing.assert_array_equal(source.labels, [3, 11])
    with pytest.raises(SourceError, match="'n00000011'"):
        ImageFolderSource(str(tmp_path), class_list=SYNSETS[:5])


def test_labeled_folder_with_synsets_mapped_through_a_class_list(val_folder, tmp_path):
    # Kaggle's LOC_val_solution.csv: unsorted rows, names without extension,
    # a synset followed by box coordinates.
    labels = {5: 7, 2: 3, 1: 19, 4: 0, 3: 3}
    rows = "".join(f"ILSVRC2012_val_{k:08d},{SYNSETS[v]} 10 20 30 40 {SYNSETS[v]} 1 2 3 4\n" for k, v in labels.items())
    csv = write(tmp_path / "val.csv", "ImageId,PredictionString\n" + rows)
    source = open_source(str(val_folder), labels=csv, class_list=SYNSETS)
    assert isinstance(source, LabeledFolderSource)
    assert list(source.ids) == [f"ILSVRC2012_val_{k:08d}.JPEG" for k in range(1, 6)]
    np.testing.assert_array_equal(source.labels, [labels[k] for k in range(1, 6)])
    assert source.classes == SYNSETS
    assert source.read(1) == ((val_folder / source.ids[1]).read_bytes(), 3)
    assert source.describe()["labels_file"] == csv


def test_labeled_folder_without_class_list_numbers_names_in_sorted_order(val_folder, tmp_path):
    csv = write(tmp_path / "v.csv", "".join(f"ILSVRC2012_val_{k:08d}.JPEG,{n}\n" for k, n in enumerate("dbdac", 1)))
    source = LabeledFolderSource(str(val_folder), csv)
    assert source.classes == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(source.labels, [3, 1, 3, 0, 2])


def test_labeled_folder_with_int_labels_whitespace_and_glob(val_folder, tmp_path):
    txt = write(tmp_path / "val.txt", "".join(f"ILSVRC2012_val_{k:08d}.JPEG {k * 10}\n\n" for k in range(1, 6)))
    source = LabeledFolderSource(str(val_folder / "*.JPEG"), txt)
    np.testing.assert_array_equal(source.labels, [10, 20, 30, 40, 50])
    assert source.classes is None and source.root == str(val_folder)
    with pytest.raises(SourceError, match="val.txt:3: label 20 is out of range for 20 classes"):
        LabeledFolderSource(str(val_folder), txt, SYNSETS)


def test_labeled_folder_unknown_class(val_folder, tmp_path):
    csv = write(tmp_path / "v.csv", "".join(f"ILSVRC2012_val_{k:08d},n00000001\n" for k in range(1, 5)) + "ILSVRC2012_val_00000005,n99999999\n")
    with pytest.raises(SourceError, match=r"1 label names are not in the class list.*'n99999999'"):
        LabeledFolderSource(str(val_folder), csv, SYNSETS)


def test_labeled_folder_missing_files_are_listed(val_folder, tmp_path):
    names = [f"ILSVRC2012_val_{k:08d}" for k in range(1, 10)]
    csv = write(tmp_path / "v.csv", "".join(f"{n},1\n" for n in names))
    with pytest.raises(SourceError, match=r"4 files named in .* are not in .*'ILSVRC2012_val_00000006'") as info:
        LabeledFolderSource(str(val_folder), csv)
    assert "ILSVRC2012_val_00000005'" not in str(info.value)


def test_labeled_folder_duplicate_rows_and_unlisted_files(val_folder, tmp_path):
    dup = write(tmp_path / "dup.csv", "ILSVRC2012_val_00000001,1\nILSVRC2012_val_00000001.JPEG,2\n")
    with pytest.raises(SourceError, match="same file as the row on line 1"):
        LabeledFolderSource(str(val_folder), dup)
    part = write(tmp_path / "part.csv", "filename,label\nILSVRC2012_val_00000002.JPEG,4\n")
    with pytest.warns(UserWarning, match="4 image files .* are left out"):
        source = LabeledFolderSource(str(val_folder), part)
    assert list(source.ids) == ["ILSVRC2012_val_00000002.JPEG"] and source.labels.tolist() == [4]


def test_labels_file_problems(val_folder, tmp_path):
    with pytest.raises(SourceError, match="cannot read labels file"):
        LabeledFolderSource(str(val_folder), str(tmp_path / "nope.csv"))
    with pytest.raises(SourceError, match="is empty"):
        LabeledFolderSource(str(val_folder), write(tmp_path / "e.csv", "\n\n"))
    with pytest.raises(SourceError, match=r"e2.csv:2: expected 'filename,label'"):
        LabeledFolderSource(str(val_folder), write(tmp_path / "e2.csv", "a.jpg,1\nlonely\n"))


def test_unlabeled_folder(tmp_path):
    for rel in ["z.png", "deep/er/a.jpg", "m.webp"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PHOTO_FILES[0], tmp_path / rel)
    source = open_source(str(tmp_path))
    assert isinstance(source, UnlabeledFolderSource)
    assert list(source.ids) == ["deep/er/a.jpg", "m.webp", "z.png"]
    assert source.classes is None and source.labels.tolist() == [-1, -1, -1]
    assert source.read(-1)[1] == -1


@pytest.mark.parametrize("limit", [1, 5, 16, 100])
def test_limit_takes_the_first_samples(photos, limit):
    source = open_source(str(PHOTOS), limit=limit)
    n = min(limit, 16)
    assert len(source) == n
    assert list(source.ids) == list(photos.ids)[:n]
    np.testing.assert_array_equal(source.labels, photos.labels[:n])
    assert source.classes == photos.classes
    assert source.describe()["limit"] == limit


@pytest.mark.parametrize("limit", [0, -1, 2.5])
def test_bad_limit(limit):
    with pytest.raises(SourceError, match="limit must be a positive int"):
        open_source(str(PHOTOS), limit=limit)


def test_read_index_checks_and_unreadable_files(tmp_path):
    shutil.copy(PHOTO_FILES[0], tmp_path / "a.JPEG")
    source = UnlabeledFolderSource(str(tmp_path))
    with pytest.raises(IndexError, match="out of range for a source of 1 samples"):
        source.read(1)
    (tmp_path / "a.JPEG").unlink()
    with pytest.raises(ImageDecodeError, match="the file is gone") as info:
        source.read(0)
    assert info.value.source == str(tmp_path / "a.JPEG")


def test_missing_and_empty_paths(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "nowhere"))
    with pytest.raises(SourceError, match="no images found"):
        open_source(str(tmp_path))
    (tmp_path / "cls").mkdir()
    (tmp_path / "cls" / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="no images found"):
        open_source(str(tmp_path))
    with pytest.raises(SourceError, match="is a file"):
        open_source(str(PHOTO_FILES[0]))


def test_open_source_argument_conflicts(tmp_path):
    csv = write(tmp_path / "l.csv", "a,1\n")
    with pytest.raises(SourceError, match="unknown source kind 'zip'"):
        open_source(str(PHOTOS), kind="zip")
    with pytest.raises(SourceError, match="applies only to a labelled folder"):
        open_source(str(PHOTOS), labels=csv, kind="imagefolder")
    with pytest.raises(SourceError, match="a labels file is needed"):
        open_source(str(PHOTOS), kind="labeled")
    with pytest.raises(SourceError, match="class list applies"):
        open_source(str(PHOTOS), class_list=SYNSETS, kind="unlabeled")
    with pytest.raises(SourceError, match="only together with a labels file"):
        open_source(str(PHOTOS / "*" / "*.JPEG"))


def test_forced_kind_overrides_detection(photos):
    source = open_source(str(PHOTOS), kind="unlabeled")
    assert isinstance(source, UnlabeledFolderSource)
    assert list(source.ids) == list(photos.ids) and (source.labels == -1).all()


def test_sources_pickle(photos, val_folder, tmp_path):
    csv = write(tmp_path / "v.csv", "".join(f"ILSVRC2012_val_{k:08d},{k}\n" for k in range(1, 6)))
    for source in [photos, LabeledFolderSource(str(val_folder), csv), UnlabeledFolderSource(str(val_folder))]:
        copy = pickle.loads(pickle.dumps(source))
        assert type(copy) is type(source) and copy.describe() == source.describe()
        assert copy.read(2) == source.read(2)


def test_sources_work_in_spawned_workers(photos):
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        results = pool.map(photos.read, [0, 15])
    assert results == [photos.read(0), photos.read(15)]


# --- Hugging Face datasets ---------------------------------------------------


@pytest.fixture(scope="module")
def hf_dataset(tmp_path_factory):
    datasets = pytest.importorskip("datasets")
    pytest.importorskip("pyarrow")
    root = tmp_path_factory.mktemp("hf")
    raws = [p.read_bytes() for p in PHOTO_FILES[:7]]
    labels = [2, 0, 1, 1, 0, 2, 1]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["x", "y", "z"])})
    ds = datasets.Dataset.from_dict(
        {"image": [{"bytes": r, "path": None} for r in raws], "label": labels}, features=features
    )
    ds.save_to_disk(str(root / "disk"), num_shards=2)
    datasets.DatasetDict({"train": ds, "validation": ds}).save_to_disk(str(root / "dict"))
    (root / "pq").mkdir()
    ds.select(range(4)).to_parquet(str(root / "pq" / "train-00000.parquet"), batch_size=3)
    ds.select(range(4, 7)).to_parquet(str(root / "pq" / "train-00001.parquet"), batch_size=2)
    return root, raws, labels


@pytest.mark.parametrize("spec", ["disk", "pq", "pq/*.parquet", "pq/train-00000.parquet"])
def test_hf_sources(hf_dataset, spec):
    root, raws, labels = hf_dataset
    source = open_source(str(root / spec))
    assert isinstance(source, HFDatasetSource)
    n = 4 if spec.endswith("00000.parquet") else 7
    assert len(source) == n and source.classes == ["x", "y", "z"]
    np.testing.assert_array_equal(source.labels, labels[:n])
    assert list(source.ids) == [str(i) for i in range(n)]
    for i in [0, n - 1, 3, 1]:  # out of order, across files and row groups
        assert source.read(i) == (raws[i], labels[i])
    copy = pickle.loads(pickle.dumps(source))
    assert copy.read(n - 2) == source.read(n - 2) and copy.describe() == source.describe()


def test_parquet_row_groups_are_what_is_read(hf_dataset):
    import pyarrow.parquet as pq

    root, _, _ = hf_dataset
    assert pq.ParquetFile(root / "pq" / "train-00000.parquet").metadata.num_row_groups == 2
    source = HFDatasetSource(str(root / "pq"))
    assert [n for _, _, n in source._units] == [3, 1, 2, 1]


def test_hf_limit_unlabeled_and_column_errors(hf_dataset):
    root, raws, _ = hf_dataset
    source = HFDatasetSource(str(root / "disk"), label_column=None, limit=3)
    assert len(source) == 3 and source.classes is None and source.labels.tolist() == [-1] * 3
    assert source.read(2) == (raws[2], -1)
    with pytest.raises(SourceError, match=r"no column 'caption' \(columns: image, label\)"):
        HFDatasetSource(str(root / "pq"), label_column="caption")
    with pytest.raises(SourceError, match="not integers"):
        HFDatasetSource(str(root / "pq"), label_column="image")
    with pytest.raises(SourceError, match="several splits \\(train, validation\\)"):
        open_source(str(root / "dict"))
    assert len(open_source(str(root / "dict" / "validation"))) == 7
    with pytest.raises(SourceError, match="no parquet files"):
        open_source(str(root / "pq" / "*.nothing.parquet"))


def test_hf_image_paths_instead_of_bytes(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    shutil.copy(PHOTO_FILES[0], tmp_path / "one.jpg")
    table = pa.table(
        {
            "image": [{"bytes": None, "path": "one.jpg"}, {"bytes": None, "path": None}],
            "label": [5, None],
        }
    )
    pq.write_table(table, tmp_path / "d.parquet")
    source = open_source(str(tmp_path / "d.parquet"))
    assert source.classes is None and source.labels.tolist() == [5, -1]
    assert source.read(0) == (PHOTO_FILES[0].read_bytes(), 5)
    with pytest.raises(ImageDecodeError, match="row 1 of .* has no image data"):
        source.read(1)
    assert os.path.isabs(source.root)
