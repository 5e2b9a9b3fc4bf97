"""Hostile image collections: one odd file is one failed sample with its reason, never the end of an encode.

FIFOs, links to devices, symlink loops, extreme aspect ratios, names that are
not UTF-8. The whole encode runs under the deadline; the resize bound is
checked in a memory-limited child.
"""

import os
import shutil

import numpy as np
import pytest
from PIL import Image

import latentstore
from latentstore import cli
from latentstore.encoding.preprocess import MAX_RESIZE_AREA, Preprocessing
from latentstore.encoding.sources import UnlabeledFolderSource
from latentstore.errors import ImageDecodeError
from tests.faults.limits import run_limited
from tests.paths import PHOTOS

pytest.importorskip("torch")
pytest.importorskip("diffusers")

RESOLUTION = 64


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from latentstore.encoding.backends import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("model") / "dc", "dc", seed=1)


def photos(folder, count=3):
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(PHOTOS.glob("*/*.JPEG"))[:count]:
        shutil.copy(path, folder / path.name)
    return folder


def hostile_folder(root):
    """Three photos, then a FIFO, a device link, a self-link, a loop of two links and a 65535 x 1 PNG."""
    folder = photos(root / "hostile")
    os.mkfifo(folder / "fifo.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    (folder / "self.jpg").symlink_to("self.jpg")
    (folder / "loop_a.jpg").symlink_to("loop_b.jpg")
    (folder / "loop_b.jpg").symlink_to("loop_a.jpg")
    Image.new("L", (65535, 1), 128).save(folder / "panorama.png")
    (folder / "subdir").mkdir()
    (folder / "subdir" / "back").symlink_to("..")  # a folder loop
    return folder


EXPECTED_REASONS = {
    "fifo.jpg": "FIFO",
    "zero.jpg": "character device",
    "self.jpg": "symlink loop",
    "loop_a.jpg": "symlink loop",
    "loop_b.jpg": "symlink loop",
    "panorama.png": "aspect ratio",
}


def test_each_hostile_file_is_one_failed_sample_with_its_reason(tmp_path, tiny_model, capsys):
    folder = hostile_folder(tmp_path)
    source = UnlabeledFolderSource(str(folder))
    assert len(source) == 3 + len(EXPECTED_REASONS)  # the folder loop was walked once
    out = tmp_path / "s.zarr"
    summary = latentstore.encode(folder, out, model=tiny_model, resolution=RESOLUTION, chunk_samples=4,
                                 batch_size=2, workers=0, device="cpu", progress=False)
    store = latentstore.open(out)
    assert store.metadata.complete and summary.valid == 3
    reasons = {failure.id: failure.reason for failure in summary.failures}
    assert set(reasons) == set(EXPECTED_REASONS)
    for name, expected in EXPECTED_REASONS.items():
        assert expected in reasons[name], (name, reasons[name])
    print(summary)  # printable whatever the names
    assert "fifo.jpg" in capsys.readouterr().out


@pytest.mark.slow  # a child process
def test_an_extreme_aspect_ratio_is_refused_before_the_resize_allocates(tmp_path):
    path = tmp_path / "panorama.png"
    Image.new("L", (65535, 1), 128).save(path)
    result = run_limited(
        "from latentstore.encoding.preprocess import Preprocessing\n"
        "from latentstore.errors import ImageDecodeError\n"
        "try:\n"
        f"    Preprocessing(resolution=256)({str(path)!r})\n"
        "except ImageDecodeError as exc:\n"
        "    print('refused:', exc.reason)\n",
        memory_mb=1024,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "refused: its aspect ratio (65535x1) is too extreme" in result.stdout


def test_the_widest_allowed_aspect_ratio_still_encodes(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (MAX_RESIZE_AREA * 32, 32), (10, 200, 30)).save(path)
    crop = Preprocessing(resolution=32)(path)
    assert crop.shape == (32, 32, 3) and (crop[..., 1] > 150).all()
    Image.new("RGB", (MAX_RESIZE_AREA * 32 + 32, 32)).save(path)
    with pytest.raises(ImageDecodeError, match="too extreme"):
        Preprocessing(resolution=32)(path)


def test_load_image_refuses_a_fifo_path_instead_of_blocking(tmp_path):
    os.mkfifo(tmp_path / "x.jpg")
    with pytest.raises(ImageDecodeError, match="FIFO") as info:
        Preprocessing(resolution=32)(tmp_path / "x.jpg")
    assert info.value.source == str(tmp_path / "x.jpg")


def test_a_name_that_is_not_utf8_is_kept_escaped_and_printed_safely(tmp_path, tiny_model, capsys):
    folder = photos(tmp_path / "names", count=2)
    raw_name = b"caf\xe9-latin1.JPEG"  # Latin-1, not UTF-8
    shutil.copy(sorted(folder.iterdir())[0], os.path.join(os.fsencode(folder), raw_name))
    (folder / "broken.jpg").write_bytes(b"not an image")
    with open(os.path.join(os.fsencode(folder), b"bad\xff.jpg"), "wb") as f:
        f.write(b"not an image either")
    out = tmp_path / "s.zarr"
    code = cli.main(["encode", str(folder), str(out), "--model", str(tiny_model), "--resolution", str(RESOLUTION),
                     "--chunk-samples", "4", "--batch-size", "2", "--workers", "0", "--device", "cpu", "--no-progress"])
    assert code == 0
    store = latentstore.open(out)
    ids = store.ids(np.arange(len(store)))
    assert "caf\\xe9-latin1.JPEG" in ids and "bad\\xff.jpg" in ids
    assert int(store.valid.sum()) == 3
    printed = capsys.readouterr().out
    assert "bad\\xff.jpg" in printed
    source = UnlabeledFolderSource(str(folder))
    assert os.fsencode(os.path.join(source.root, source.ids[list(map(str, source.ids)).index("caf\udce9-latin1.JPEG")]))\
        .endswith(raw_name)  # the source itself reads the exact bytes back
