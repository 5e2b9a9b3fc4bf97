"""The README's first command: `latentstore demo`, offline, with the tiny stand-in model."""

import numpy as np
import pytest
from PIL import Image

from latentstore import cli
from latentstore.cli.demo import sample_photos

pytestmark = pytest.mark.slow  # the whole demo, twice

@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_demo_runs_offline_and_says_the_model_is_random(tmp_path, capsys):
    assert cli.main(["demo", "--out", str(tmp_path), "--resolution", "64"]) == 0
    out = capsys.readouterr().out
    assert "Could not load mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers" in out
    assert "huggingface-cli download" in out and "MEANINGLESS" in out
    assert "RANDOMLY INITIALISED" in out.split("3. what an image costs")[1]
    assert "16 valid of 16" in out
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.mode == "RGB" and grid.width > grid.height / 16 * 2  # 3 columns, 16 rows
    rows = [line for line in out.splitlines() if "bytes" in line and "smaller than the JPEG" in line]
    assert len(rows) == 4


def test_demo_result_figures(tmp_path):
    from latentstore.cli.demo import run_demo

    result = run_demo(tmp_path, resolution=64)
    assert result.random_model and len(result.psnr_int8) == 16
    # int8 quantization is far below the decoder's own error, even for a random decoder.
    assert min(result.psnr_int8_vs_float) > max(result.psnr_float)
    costs = result.bytes_per_image
    assert costs["int8 store (codes + scale)"] == 32 * 2 * 2 + 2
    assert costs["float32 latents"] == 32 * 2 * 2 * 4
    assert costs["int8 store (on disk, all arrays)"] < costs["source JPEG"]


def test_sample_photos_ship_with_the_package():
    files = sorted(p for p in sample_photos().rglob("*.JPEG"))
    assert len(files) == 16 and len({p.parent.name for p in files}) == 9
    with Image.open(files[0]) as image:
        assert np.asarray(image).ndim in (2, 3)
