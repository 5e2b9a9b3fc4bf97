import gzip
import json
import math
import multiprocessing
import os
import pickle

import numpy as np
import pytest

from latentstore.encoding.preprocess import load_image
from latentstore.encoding.shards import WebDatasetSource, parse_json_fields
from latentstore.encoding.sources import open_source
from latentstore.errors import ImageDecodeError, SourceError
from tests.encoding.captioned import (
    caption,
    image_bytes,
    member_offset,
    sample_members,
    sample_number,
    tar_bytes,
    write_shard,
    write_shards,
)

FIELDS = "width:int64,aesthetic,url:text,number:int64"


@pytest.fixture
def shards(tmp_path):
    """Three shards of 4, 3 and 5 samples (12 in all), with captions, .json and .cls members."""
    numbers = write_shards(tmp_path / "shards", [4, 3, 5])
    return tmp_path / "shards", numbers


def check_every_sample_is_its_own(source, numbers):
    """Image, caption, json fields and label of every sample belong to the same sample number."""
    assert len(source) == len(numbers)
    for i, k in enumerate(numbers):
        raw, label = source.read(i)
        assert sample_number(raw) == k, f"sample {i}: image of {sample_number(raw)}, expected {k}"
        assert label == k % 3 and type(label) is int
        fields = source.read_fields(i)
        assert fields["caption"] == caption(k)
        if "number" in fields:
            assert fields["number"] == k and fields["width"] == 16 and fields["url"] == f"https://x/{k}"
            assert fields["aesthetic"] == k / 10 and type(fields["aesthetic"]) is float


@pytest.mark.parametrize("spec", ["shards/{00000..00002}.tar", "shards", "shards/*.tar"])
def test_shards_in_order_with_captions_fields_and_labels(shards, spec):
    folder, numbers = shards
    source = open_source(str(folder.parent / spec), json_fields=FIELDS)
    assert isinstance(source, WebDatasetSource)
    assert source.columns == {"caption": "text", "width": "int64", "aesthetic": "float64", "url": "text",
                              "number": "int64"}
    assert list(source.ids)[:5] == [f"00000.tar/{k:09d}" for k in range(4)] + ["00001.tar/000000004"]
    assert source.root == str(folder) and source.classes is None
    np.testing.assert_array_equal(source.labels, [k % 3 for k in numbers])
    check_every_sample_is_its_own(source, numbers)
    # out of order, as DataLoader workers read
    assert source.read_fields(11)["number"] == 11 and sample_number(source.read(2)[0]) == 2


def test_order_is_deterministic_and_pickles(shards):
    folder, numbers = shards
    first = WebDatasetSource(str(folder), json_fields=FIELDS)
    second = WebDatasetSource(str(folder / "{00000..00002}.tar"), json_fields=FIELDS)
    assert list(first.ids) == list(second.ids) and first.describe() == second.describe()
    json.dumps(first.describe())
    copy = pickle.loads(pickle.dumps(first))
    check_every_sample_is_its_own(copy, numbers)
    assert len(pickle.dumps(first)) < 4000  # flat arrays, no open files


def test_describe_changes_with_the_options(shards):
    folder, _ = shards
    base = WebDatasetSource(str(folder)).describe()
    assert base["caption_key"] == "txt" and base["columns"] == {"caption": "text"} and base["json_fields"] is None
    assert WebDatasetSource(str(folder), caption_key="txt").describe() == base
    others = [
        WebDatasetSource(str(folder), caption_key="").describe(),
        WebDatasetSource(str(folder), json_fields="width:int64").describe(),
        WebDatasetSource(str(folder), json_fields="width").describe(),
        WebDatasetSource(str(folder), limit=3).describe(),
    ]
    assert all(d != base for d in others) and others[1] != others[2]
    assert "columns" not in others[0] and others[0]["caption_key"] is None


def test_limit_stops_the_index_pass_after_the_shard_that_reaches_it(shards):
    folder, _ = shards
    source = WebDatasetSource(str(folder), limit=2)
    assert len(source) == 2 and source.describe()["shards"] == 1
    assert len(WebDatasetSource(str(folder), limit=5)) == 5


def test_no_caption_without_txt_members_and_png_images(tmp_path):
    members = sample_members(0, image="PNG", text=False) + sample_members(1, image="webp", text=False)
    members[-2] = ("000000001.webp", image_bytes(1, "WEBP"))
    write_shard(tmp_path / "a.tar", members)
    source = open_source(str(tmp_path / "a.tar"))
    assert isinstance(source, WebDatasetSource) and source.columns == {} and source.read_fields(0) == {}
    assert [sample_number(source.read(i)[0]) for i in range(2)] == [0, 1]
    assert source.labels.tolist() == [-1, -1]


def test_keys_with_folders_and_dots(tmp_path):
    members = [("train/a/000.jpg", image_bytes(5, "JPEG")), ("train/a/000.txt", b"five"),
               ("train/b/000.hi.PNG", image_bytes(6)), ("train/._000.jpg", b"resource fork"),
               ("train/b/000.txt", b"  six \n"), ("train/b/000.lo.png", image_bytes(7))]
    write_shard(tmp_path / "s" / "x.tar", members)
    source = WebDatasetSource(str(tmp_path / "s" / "x.tar"))
    assert list(source.ids) == ["x.tar/train/a/000", "x.tar/train/b/000"]
    assert [source.read_fields(i)["caption"] for i in range(2)] == ["five", "six"]
    assert sample_number(source.read(1)[0]) == 6


def test_broken_members_are_failed_samples(tmp_path):
    good = image_bytes(0, "JPEG")
    members = [
        ("0.jpg", good), ("0.txt", caption(0).encode()),
        ("1.jpg", good[: len(good) // 2]), ("1.txt", b"truncated image"),  # truncated image
        ("2.jpg", good),  # no caption
        ("3.jpg", good), ("3.txt", b"caf\xe9 latin-1"),  # not UTF-8
        ("4.txt", b"only a caption"),  # no image member
        ("5.jpg", b"this is text, not a JPEG"), ("5.txt", b"not an image"),
        ("6.jpg", good), ("6.txt", b" \n\t"),  # blank caption
        ("7.jpg", good), ("7.txt", b"bad label"), ("7.cls", b"seven"),
        ("8.jpg", good), ("8.txt", b"big label"), ("8.cls", b"4294967296"),
        ("9.JPEG", good), ("9.TXT", b"upper case"), ("9.cls", b" 7\n"),
    ]
    write_shard(tmp_path / "b.tar", members)
    source = open_source(str(tmp_path / "b.tar"))
    assert len(source) == 10 and source.columns == {"caption": "text"}
    assert load_image(source.read(0)[0]).size == (16, 16)
    with pytest.raises(ImageDecodeError):
        load_image(source.read(1)[0])
    with pytest.raises(ImageDecodeError, match="no .txt caption member") as info:
        source.read_fields(2)
    assert info.value.source.endswith("b.tar/2")
    with pytest.raises(ImageDecodeError, match=r"caption is not valid UTF-8 \(byte 3\)"):
        source.read_fields(3)
    with pytest.raises(ImageDecodeError, match=r"no image member \(it has .txt\)"):
        source.read(4)
    assert source.read_fields(4) == {"caption": "only a caption"}
    with pytest.raises(ImageDecodeError):
        load_image(source.read(5)[0])
    with pytest.raises(ImageDecodeError, match="caption is empty"):
        source.read_fields(6)
    with pytest.raises(ImageDecodeError, match="the .cls member holds b'seven', not an integer label"):
        source.read(7)
    with pytest.raises(ImageDecodeError, match="label 4294967296 is out of range"):
        source.read(8)
    assert source.read(9)[1] == 7 and source.read_fields(9) == {"caption": "upper case"}
    assert source.labels.tolist() == [-1] * 9 + [7]


def test_json_fields_with_missing_and_wrong_values(tmp_path):
    docs = [
        b'{"w": 3, "score": 0.5, "url": "u0"}',
        b'{"w": 4}',  # score missing: NaN; url missing: invalid
        None,  # no .json member
        b'{"w": "4", "score": 1, "url": "u3"}',  # w not an int
        b'{"w": 4.0, "score": null, "url": "u4"}',  # 4.0 is not an int64
        b'{"w": 5, "score": true, "url": "u5"}',  # a bool is not a number
        b'[1, 2]',  # not an object
        b'{"w": 7, "score": ',  # not JSON
        b'{"w": 9223372036854775808, "score": 1, "url": "u8"}',  # beyond int64
        b'{"w": 9, "score": 1e999, "url": "\\ud800"}',  # lone surrogate
    ]
    members = []
    for k, doc in enumerate(docs):
        members += [(f"{k}.png", image_bytes(k)), (f"{k}.txt", caption(k).encode())]
        if doc is not None:
            members.append((f"{k}.json", doc))
    write_shard(tmp_path / "j.tar", members)
    source = WebDatasetSource(str(tmp_path / "j.tar"), json_fields="w:int64,score")
    assert source.read_fields(0) == {"caption": caption(0), "w": 3, "score": 0.5}
    assert math.isnan(source.read_fields(1)["score"])
    with pytest.raises(ImageDecodeError, match=r"json field 'w' is missing \(there is no .json member\)"):
        source.read_fields(2)
    with pytest.raises(ImageDecodeError, match="json field 'w' holds '4', not an int64 integer"):
        source.read_fields(3)
    with pytest.raises(ImageDecodeError, match="holds 4.0, not an int64"):
        source.read_fields(4)
    with pytest.raises(ImageDecodeError, match="json field 'score' holds True, not a number"):
        source.read_fields(5)
    with pytest.raises(ImageDecodeError, match="holds list, not an object"):
        source.read_fields(6)
    with pytest.raises(ImageDecodeError, match="is not JSON"):
        source.read_fields(7)
    with pytest.raises(ImageDecodeError, match="not an int64 integer"):
        source.read_fields(8)
    assert source.read_fields(9)["score"] == math.inf

    floats = WebDatasetSource(str(tmp_path / "j.tar"), json_fields=["score"])
    assert math.isnan(floats.read_fields(2)["score"]) and math.isnan(floats.read_fields(4)["score"])
    texts = WebDatasetSource(str(tmp_path / "j.tar"), json_fields="url:text", caption_key="")
    assert texts.columns == {"url": "text"} and texts.read_fields(0) == {"url": "u0"}
    with pytest.raises(ImageDecodeError, match=r"json field 'url' is missing \(absent or null"):
        texts.read_fields(1)
    with pytest.raises(ImageDecodeError, match="not valid Unicode"):
        texts.read_fields(9)


def test_a_shard_cut_inside_a_member_keeps_the_complete_samples(tmp_path):
    members = sample_members(0) + sample_members(1) + sample_members(2)
    data = tar_bytes(members)
    cut = member_offset(data, "000000002.jpg") + 100  # inside the last image
    (tmp_path / "cut.tar").write_bytes(data[:cut])
    write_shard(tmp_path / "next.tar", sample_members(3))
    with pytest.warns(UserWarning, match=r"1 of 2 shards are truncated or damaged \(first: cut.tar: it ends early"):
        source = open_source(str(tmp_path / "{cut,next}.tar"))
    assert list(source.ids) == ["cut.tar/000000000", "cut.tar/000000001", "cut.tar/000000002", "next.tar/000000003"]
    assert [sample_number(source.read(i)[0]) for i in (0, 1, 3)] == [0, 1, 3]
    with pytest.raises(ImageDecodeError, match=r"the shard ends inside member '000000002.jpg' \(100 of [\d,]+ bytes\)"):
        source.read(2)


def test_a_shard_cut_inside_a_header_keeps_what_precedes(tmp_path):
    data = tar_bytes(sample_members(0) + sample_members(1))
    header = member_offset(data, "000000001.jpg") - 512
    (tmp_path / "h.tar").write_bytes(data[: header + 200])
    with pytest.warns(UserWarning, match="tar reading stopped at byte"):
        source = WebDatasetSource(str(tmp_path / "h.tar"))
    assert list(source.ids) == ["h.tar/000000000"] and source.read_fields(0)["caption"] == caption(0)
    # a caption member cut off: the sample's fields fail, not the index pass
    cut = member_offset(data, "000000001.txt") + 5
    (tmp_path / "h.tar").write_bytes(data[:cut])
    with pytest.warns(UserWarning, match="ends early"):
        source = WebDatasetSource(str(tmp_path / "h.tar"))
    with pytest.raises(ImageDecodeError, match=r"the shard ends inside the .txt caption member \(5 of"):
        source.read_fields(1)
    assert sample_number(source.read(0)[0]) == 0


def test_files_that_are_not_shards(tmp_path):
    (tmp_path / "text.tar").write_bytes(b"hello, I am not a tar archive\n" * 40)
    with pytest.raises(SourceError, match=r"shard .*text.tar is not a tar file"):
        open_source(str(tmp_path / "text.tar"))
    (tmp_path / "z.tar").write_bytes(gzip.compress(tar_bytes(sample_members(0))))
    with pytest.raises(SourceError, match="decompress a .tar.gz first"):
        open_source(str(tmp_path / "z.tar"))
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.warns(UserWarning, match="empty.tar: it is empty"), pytest.raises(SourceError, match="hold no samples"):
        open_source(str(tmp_path / "empty.tar"))
    write_shard(tmp_path / "s" / "00000.tar", sample_members(0))
    with pytest.raises(SourceError, match=r"shard '.*00001.tar' does not exist"):
        open_source(str(tmp_path / "s" / "{00000..00002}.tar"))
    with pytest.raises(SourceError, match="listed more than once"):
        open_source(str(tmp_path / "s" / "{00000,00000}.tar"))


def test_a_folder_without_shards_and_a_fifo(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("x")
    with pytest.raises(SourceError, match="holds no .tar shards"):
        WebDatasetSource(str(tmp_path / "d"))
    os.mkfifo(tmp_path / "fifo.tar")
    with pytest.raises(SourceError, match="is a FIFO"):
        WebDatasetSource(str(tmp_path / "fifo.tar"))


def test_a_shard_that_vanishes_is_a_failed_read(tmp_path):
    write_shard(tmp_path / "a.tar", sample_members(0))
    source = WebDatasetSource(str(tmp_path / "a.tar"))
    (tmp_path / "a.tar").unlink()
    with pytest.raises(ImageDecodeError, match="the shard is gone"):
        source.read(0)


def test_shards_on_an_fsspec_filesystem(tmp_path):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    numbers = write_shards(tmp_path, [2, 3, 1])
    for s in range(3):
        fs.pipe(f"/wds-test/shards/{s:05d}.tar", (tmp_path / f"{s:05d}.tar").read_bytes())
    try:
        for spec in ["memory://wds-test/shards/{00000..00002}.tar", "memory://wds-test/shards",
                     "memory://wds-test/shards/*.tar"]:
            source = open_source(spec, json_fields=FIELDS)
            assert isinstance(source, WebDatasetSource) and source.root == "memory:///wds-test/shards"
            assert list(source.ids)[:3] == ["00000.tar/000000000", "00000.tar/000000001", "00001.tar/000000002"]
            check_every_sample_is_its_own(source, numbers)
        local = WebDatasetSource(str(tmp_path), json_fields=FIELDS)
        assert source.describe()["ids_sha256"] == local.describe()["ids_sha256"]
        assert source.describe()["shards_sha256"] == local.describe()["shards_sha256"]
        copy = pickle.loads(pickle.dumps(source))
        check_every_sample_is_its_own(copy, numbers)
        # a remote shard cut short: complete samples kept, as locally
        data = (tmp_path / "00001.tar").read_bytes()
        fs.pipe("/wds-test/cut/a.tar", data[: member_offset(data, "000000003.jpg") + 10])
        with pytest.warns(UserWarning, match="ends early"):
            cut = open_source("memory://wds-test/cut/a.tar")
        assert len(cut) == 2 and cut.read_fields(0)["caption"] == caption(2)
        with pytest.raises(ImageDecodeError, match="the shard ends inside member"):
            cut.read(1)
        fs.pipe("/wds-test/bad/a.tar", b"not a tar" * 100)
        with pytest.raises(SourceError, match="memory:///wds-test/bad/a.tar is not a tar file"):
            open_source("memory://wds-test/bad/a.tar")
        with pytest.raises(SourceError, match="does not exist"):
            open_source("memory://wds-test/none/{0..1}.tar")
        fs.rm("/wds-test/shards/00002.tar")
        with pytest.raises(ImageDecodeError, match="the shard is gone"):
            copy.read(len(copy) - 1)
    finally:
        fs.rm("/wds-test", recursive=True)


def test_option_errors():
    assert parse_json_fields("a, b:INT64 ,c:text") == [("a", "float64"), ("b", "int64"), ("c", "text")]
    for bad, match in [("a:int32", "kind 'int32' is not one of"), ("a,a:text", "more than once"),
                       (":int64", "has no field name"), (5, "must be a string"),
                       ("image url:text", "json field 'image url' cannot name a store column")]:
        with pytest.raises(SourceError, match=match):
            parse_json_fields(bad)
    with pytest.raises(SourceError, match="caption_key 'jpg' cannot name the caption member"):
        WebDatasetSource("x.tar", caption_key="jpg")


def test_json_field_named_caption_and_open_source_options(shards):
    folder, _ = shards
    with pytest.raises(SourceError, match="has the caption column's name"):
        WebDatasetSource(str(folder), json_fields="caption:text")
    assert WebDatasetSource(str(folder), json_fields="caption:text", caption_key="").columns == {"caption": "text"}
    with pytest.raises(SourceError, match=r"columns applies to 'metadata' and 'hf' sources, not to a 'webdataset'"):
        open_source(str(folder), columns="width")
    with pytest.raises(SourceError, match="class list applies"):
        open_source(str(folder), class_list=["a"])
    with pytest.raises(SourceError, match="image_column applies to 'hf' sources"):
        open_source(str(folder), image_column="jpg")
    with pytest.raises(SourceError, match="only WebDataset shards can be read from"):
        open_source("memory://x/y", kind="imagefolder")


def test_progress_on_many_shards(tmp_path, capsys):
    for s in range(16):
        write_shard(tmp_path / f"{s:02d}.tar", sample_members(s))
    source = WebDatasetSource(str(tmp_path))
    assert len(source) == 16 and sample_number(source.read(15)[0]) == 15
    assert "indexing shards" in capsys.readouterr().err


def test_shards_in_a_spawned_worker(shards):
    folder, numbers = shards
    source = WebDatasetSource(str(folder), json_fields=FIELDS)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        results = pool.map(source.read_fields, [0, 11])
    assert results == [source.read_fields(0), source.read_fields(11)]
