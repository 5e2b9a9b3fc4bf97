import json
import math
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
    MetadataFolderSource,
    UnlabeledFolderSource,
    open_source,
)
from latentstore.errors import SourceError
from tests.encoding.captioned import caption, image_bytes, sample_number, write_metadata_folder, write_parquet
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
    assert photos.classes == sorted(p.name for p in PHOTOS.iterdir() if p.is_dir()) and len(photos.classes) == 9
    assert list(photos.ids) == sorted(p.relative_to(PHOTOS).as_posix() for p in PHOTO_FILES)
    expected = [photos.classes.index(i.split("/")[0]) for i in photos.ids]
    np.testing.assert_array_equal(photos.labels, expected)
    assert photos.labels.dtype == np.int32 and not photos.labels.flags.writeable
    for i in (0, 7, 15):
        raw, label = photos.read(i)
        assert raw == (PHOTOS / photos.ids[i]).read_bytes()
        assert label == expected[i] and type(label) is int


def test_enumeration_is_deterministic_and_fingerprinted(photos, tmp_path):
    again = open_source(str(PHOTOS), kind="imagefolder")
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


# --- metadata.jsonl / metadata.csv folders ----------------------------------


def meta_rows(n=6):
    """Rows with a caption, an int, a float (ints and floats mixed), text, a bool and a list field."""
    return [
        {"file_name": f"{'cats' if k % 2 else 'dogs'}/{k:03d}.png", "caption": caption(k), "width": 16 + k,
         "score": k if k % 3 else k + 0.5, "note": f"n{k}", "flag": bool(k % 2), "tags": ["a"], "image url": "u"}
        for k in reversed(range(n))  # the manifest's order, not the file names'
    ]


def test_metadata_jsonl_with_subfolder_labels_and_inferred_columns(tmp_path):
    rows = meta_rows()
    write_metadata_folder(tmp_path, rows, images={row["file_name"]: int(row["file_name"][-7:-4]) for row in rows})
    source = open_source(str(tmp_path))
    assert isinstance(source, MetadataFolderSource)
    assert list(source.ids) == [row["file_name"] for row in rows]
    assert source.classes == ["cats", "dogs"] and source.labels.tolist() == [0, 1, 0, 1, 0, 1]
    assert source.columns == {"caption": "text", "width": "int64", "score": "float64", "note": "text"}
    description = source.describe()
    skipped = dict(description["skipped_columns"])
    assert skipped.pop("image url").startswith("its name cannot name a store column")
    assert skipped == {"flag": "it holds booleans", "tags": "it holds lists"}
    with pytest.raises(SourceError, match="field 'image url' of .* cannot be stored: its name cannot name a store column"):
        MetadataFolderSource(str(tmp_path), columns="image url")
    assert description["labels_from"] == "folders" and description["columns"] == source.columns
    for i in range(len(source)):
        raw, label = source.read(i)
        k = sample_number(raw)
        assert source.ids[i] == f"{'cats' if k % 2 else 'dogs'}/{k:03d}.png" and label == 1 - k % 2
        fields = source.read_fields(i)
        assert fields == {"caption": caption(k), "width": 16 + k, "score": k if k % 3 else k + 0.5, "note": f"n{k}"}
        assert type(fields["width"]) is int and type(fields["score"]) is float
    copy = pickle.loads(pickle.dumps(source))
    assert copy.describe() == description and copy.read_fields(3) == source.read_fields(3)
    assert copy.read(3) == source.read(3)


def test_metadata_csv_kinds_label_names_and_selection(tmp_path):
    rows = [{"file_name": f"img/{k}.jpg", "label": "bird" if k % 2 else "ant", "text": caption(k), "n": str(k),
             "x": f"{k / 4}" if k != 2 else "", "code": f"{k:02d}" if k != 3 else "A7", "empty": ""}
            for k in range(5)]
    write_metadata_folder(tmp_path, rows, "csv")
    source = open_source(str(tmp_path), caption_key="text", columns="x,n")
    assert source.columns == {"text": "text", "x": "float64", "n": "int64"}
    assert source.classes == ["ant", "bird"] and source.labels.tolist() == [0, 1, 0, 1, 0]
    fields = [source.read_fields(i) for i in range(5)]
    assert [f["n"] for f in fields] == [0, 1, 2, 3, 4] and math.isnan(fields[2]["x"]) and fields[3]["x"] == 0.75
    assert all(f["text"] == caption(sample_number(source.read(i)[0])) for i, f in enumerate(fields))
    everything = MetadataFolderSource(str(tmp_path))
    assert everything.columns == {"text": "text", "n": "int64", "x": "float64", "code": "text"}
    assert everything.read_fields(1)["code"] == "01"  # leading zeros kept: a mixed column is text
    assert everything.describe()["skipped_columns"] == {"empty": "it is empty in every row"}
    assert everything.describe() != source.describe()
    assert MetadataFolderSource(str(tmp_path), columns=["n", "x"]).columns == {"n": "int64", "x": "float64"}
    with pytest.raises(SourceError, match=r"no field 'width' \(fields that can be columns: 'text', 'n', 'x', 'code'\)"):
        open_source(str(tmp_path), columns="n,width")
    with pytest.raises(SourceError, match="field 'empty' of .* cannot be stored: it is empty in every row"):
        MetadataFolderSource(str(tmp_path), columns="empty")
    with pytest.raises(SourceError, match="'label' is the file name or label of each row"):
        MetadataFolderSource(str(tmp_path), columns="label")
    mapped = MetadataFolderSource(str(tmp_path), class_list=["cat", "bird", "ant"])
    assert mapped.labels.tolist() == [2, 1, 2, 1, 2] and mapped.classes == ["cat", "bird", "ant"]
    with pytest.raises(SourceError, match="label names are not in the class list"):
        MetadataFolderSource(str(tmp_path), class_list=["bird"])


def test_metadata_captions_are_required(tmp_path):
    rows = [{"file_name": "0.png", "caption": " first \n"}, {"file_name": "1.png", "caption": "  "},
            {"file_name": "2.png"}, {"file_name": "3.png", "caption": "bad \ud800 text"},
            {"file_name": "4.png", "caption": None}]
    write_metadata_folder(tmp_path, rows)
    source = MetadataFolderSource(str(tmp_path), caption_key="caption", label_column=None)
    assert source.read_fields(0) == {"caption": "first"} and source.labels.tolist() == [-1] * 5
    for i in (1, 2, 4):
        with pytest.raises(ImageDecodeError, match=f"the caption 'caption' is missing or empty on line {i + 1} of metadata.jsonl"):
            source.read_fields(i)
    with pytest.raises(ImageDecodeError, match="not valid Unicode"):
        source.read_fields(3)
    plain = MetadataFolderSource(str(tmp_path))  # not required: missing text reads ""
    assert plain.read_fields(2) == {"caption": ""} and plain.read_fields(1) == {"caption": "  "}
    write_metadata_folder(tmp_path, [{"file_name": "0.png", "caption": 5}], images={})
    with pytest.raises(SourceError, match="caption field 'caption' holds 5, not text"):
        MetadataFolderSource(str(tmp_path), caption_key="caption")


def test_metadata_label_column_and_missing_files(tmp_path):
    rows = [{"file_name": f"{k}.png", "label": [3, None, 0, 1][k], "w": [1, None, 3, 4][k]} for k in range(4)]
    write_metadata_folder(tmp_path, rows, images={"0.png": 0, "2.png": 2, "3.png": 3})
    source = open_source(str(tmp_path))
    assert source.labels.tolist() == [3, -1, 0, 1] and source.classes is None
    assert source.columns == {"w": "float64"} and math.isnan(source.read_fields(1)["w"])  # an int missing: float64
    with pytest.raises(ImageDecodeError, match="the file named on line 2 of metadata.jsonl does not exist"):
        source.read(1)
    assert source.read(3) == ((tmp_path / "3.png").read_bytes(), 1)
    assert len(open_source(str(tmp_path), limit=2)) == 2
    with pytest.raises(SourceError, match="label 3 is out of range for 2 classes"):
        open_source(str(tmp_path), class_list=["a", "b"])
    write_metadata_folder(tmp_path, [{"file_name": "0.png", "label": 1}, {"file_name": "2.png", "label": "x"}], images={})
    with pytest.raises(SourceError, match="metadata.jsonl:2: the 'label' field mixes integers and class names"):
        open_source(str(tmp_path))


@pytest.mark.parametrize(
    "manifest, match",
    [
        ('{"file_name": "a.png"}\n{"file_name": "b.png"}\n\n{"file_name": "./a.png"}\n',
         "metadata.jsonl:4: file_name 'a.png' repeats line 1; remove the duplicate row"),
        ('{"file_name": "../outside.png"}\n', "metadata.jsonl:1: file_name '../outside.png' is not a path inside"),
        ('{"file_name": "/etc/passwd"}\n', "is not a path inside the folder"),
        ('{"file_name": 7}\n', "file_name 7 is not a path inside"),
        ('{"file_name": "a.png"}\n{"file_name": "b.png",\n', r"metadata.jsonl:2: not JSON"),
        ('["a.png"]\n', "expected a JSON object with a file_name, got list"),
        ('{"name": "a.png"}\n', r"has no file_name field \(fields: 'name'\)"),
        ("\n\n", "has no file_name field"),
        ("[" * 100000 + "\n", "not JSON|nested too deeply"),
    ],
)
def test_metadata_jsonl_problems(tmp_path, manifest, match):
    (tmp_path / "metadata.jsonl").write_text(manifest)
    with pytest.raises(SourceError, match=match):
        open_source(str(tmp_path))


@pytest.mark.parametrize(
    "manifest, match",
    [
        ("file_name,a\nx.png,1\ny.png\n", "metadata.csv:3: 1 cells where the header has 2"),
        ("file_name,a,a\nx.png,1,2\n", "the header names 'a' more than once"),
        ("file_name,a\n", "has no rows"),
        (b"file_name,a\nx.png,caf\xe9\n", r"metadata.csv:2: not valid UTF-8"),
    ],
)
def test_metadata_csv_problems(tmp_path, manifest, match):
    path = tmp_path / "metadata.csv"
    path.write_bytes(manifest if isinstance(manifest, bytes) else manifest.encode())
    with pytest.raises(SourceError, match=match):
        MetadataFolderSource(str(tmp_path))


def test_metadata_manifest_is_read_within_a_cap(tmp_path, monkeypatch):
    import latentstore.encoding.sources as sources

    write_metadata_folder(tmp_path, [{"file_name": "a.png"}])
    monkeypatch.setattr(sources, "MAX_MANIFEST_BYTES", 10)
    with pytest.raises(SourceError, match=r"cannot read .*metadata.jsonl: is \d+ bytes, more than the 10"):
        MetadataFolderSource(str(tmp_path))
    monkeypatch.undo()
    (tmp_path / "metadata.jsonl").unlink()
    os.mkfifo(tmp_path / "metadata.jsonl")
    with pytest.raises(SourceError, match="is a FIFO"):
        open_source(str(tmp_path))
    (tmp_path / "metadata.csv").write_text("file_name\na.png\n")
    with pytest.raises(SourceError, match="has both metadata.jsonl and metadata.csv"):
        MetadataFolderSource(str(tmp_path))


def test_metadata_detection_comes_before_image_folders(tmp_path):
    rows = [{"file_name": "a/0.png", "c": "zero"}, {"file_name": "b/1.png", "c": "one"}]
    write_metadata_folder(tmp_path, rows)
    assert isinstance(open_source(str(tmp_path)), MetadataFolderSource)
    assert isinstance(open_source(str(tmp_path), kind="imagefolder"), ImageFolderSource)
    with pytest.raises(SourceError, match="has no metadata.jsonl or metadata.csv"):
        open_source(str(tmp_path / "a"), kind="metadata")
    with pytest.raises(SourceError, match="json_fields applies to 'webdataset' sources, not to a 'metadata'"):
        open_source(str(tmp_path), json_fields="w")
    with pytest.raises(SourceError, match="image_column applies to 'hf' sources, not to a 'metadata'"):
        open_source(str(tmp_path), image_column="img")
    with pytest.raises(SourceError, match="caption_key applies to .*, not to a 'imagefolder'"):
        open_source(str(PHOTOS), kind="imagefolder", caption_key="txt")
    with pytest.raises(SourceError, match="columns applies to 'metadata' and 'hf' sources, not to a 'unlabeled'"):
        open_source(str(PHOTOS), kind="unlabeled", columns="a")


def test_the_photos_are_a_metadata_folder_with_captions(photos):
    source = open_source(str(PHOTOS))
    assert isinstance(source, MetadataFolderSource) and source.describe()["labels_from"] == "folders"
    assert list(source.ids) == list(photos.ids) and source.classes == photos.classes
    np.testing.assert_array_equal(source.labels, photos.labels)
    assert source.columns["caption"] == "text"
    assert all(source.read_fields(i)["caption"] for i in range(len(source)))
    assert source.read(5) == photos.read(5)


def test_folder_sources_have_no_columns(photos):
    assert photos.columns == {} and photos.read_fields(3) == {}
    assert "columns" not in photos.describe()
    with pytest.raises(IndexError):
        photos.read_fields(16)


# --- Hugging Face text and pass-through columns -----------------------------


@pytest.fixture
def hf_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    n = 7
    write_parquet(
        tmp_path / "d.parquet",
        {
            "image": [image_bytes(k) for k in range(n)],
            "label": [k % 2 for k in range(n)],
            "text": [caption(k) if k not in (3, 5) else [None, None, None, "  ", None, None][k] for k in range(n)],
            "alt": pa.array([f"alt {k}" if k != 4 else None for k in range(n)], pa.large_string()),
            "count": pa.array([k * 10 if k != 6 else None for k in range(n)], pa.int32()),
            "big": pa.array([(1 << 64) - 1 if k == 1 else k for k in range(n)], pa.uint64()),
            "score": pa.array([k / 2 if k != 2 else None for k in range(n)], pa.float32()),
            "blob": [bytes([k]) * k for k in range(n)],
            "tags": [["x"] * k for k in range(n)],
        },
        row_group_size=3,
    )
    return tmp_path / "d.parquet"


def test_hf_text_column_and_columns(hf_columns):
    source = open_source(str(hf_columns), caption_key="text", columns="alt,count,score,blob")
    assert isinstance(source, HFDatasetSource)
    assert source.columns == {"text": "text", "alt": "text", "count": "int64", "score": "float64", "blob": "bytes"}
    for i in (0, 1, 2, 4):  # across row groups
        raw, label = source.read(i)
        fields = source.read_fields(i)
        assert sample_number(raw) == i and label == i % 2 and fields["text"] == caption(i)
        assert fields["count"] == i * 10 and fields["blob"] == bytes([i]) * i
    assert math.isnan(source.read_fields(2)["score"]) and source.read_fields(4)["alt"] == ""
    assert source.read_fields(1)["score"] == 0.5 and type(source.read_fields(1)["count"]) is int
    with pytest.raises(ImageDecodeError, match="text column 'text' is blank"):
        source.read_fields(3)
    with pytest.raises(ImageDecodeError, match="text column 'text' is null"):
        source.read_fields(5)
    description = source.describe()
    assert description["text_column"] == "text" and description["columns"] == source.columns
    assert HFDatasetSource(str(hf_columns)).describe() != description
    assert "columns" not in HFDatasetSource(str(hf_columns)).describe()
    copy = pickle.loads(pickle.dumps(source))
    assert copy.read_fields(4) == source.read_fields(4) and copy.describe() == description


def test_hf_null_and_out_of_range_integers(hf_columns):
    source = HFDatasetSource(str(hf_columns), columns=["count", "big"])
    assert source.read_fields(0) == {"count": 0, "big": 0}
    with pytest.raises(ImageDecodeError, match="integer column 'count' is null"):
        source.read_fields(6)
    with pytest.raises(ImageDecodeError, match="integer column 'big' is 18446744073709551615, beyond int64"):
        source.read_fields(1)


def test_hf_column_errors(hf_columns):
    with pytest.raises(SourceError, match=r"has no column 'caption' \(columns: image, label, text"):
        HFDatasetSource(str(hf_columns), text_column="caption")
    with pytest.raises(SourceError, match="text_column 'count' holds int32, not strings"):
        HFDatasetSource(str(hf_columns), text_column="count")
    with pytest.raises(SourceError, match="column 'tags' holds list<.*>; only string, integer"):
        HFDatasetSource(str(hf_columns), columns="tags")
    with pytest.raises(SourceError, match="'image' is the dataset's image or label column"):
        HFDatasetSource(str(hf_columns), columns="image")
    write_parquet(hf_columns.parent / "e.parquet", {"image": [b"x"], "label": [0], "a b": ["t"]})
    with pytest.raises(SourceError, match="column 'a b' cannot name a store column"):
        HFDatasetSource(str(hf_columns.parent / "e.parquet"), columns="a b")
    with pytest.raises(SourceError, match="names 'alt' more than once"):
        open_source(str(hf_columns), columns="alt, alt")
    unlabeled = open_source(str(hf_columns), label_column=None)
    assert unlabeled.labels.tolist() == [-1] * 7
