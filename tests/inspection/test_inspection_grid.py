"""Image grids: layout, tile placement, captions, enlargement of small tiles, bad input."""

import numpy as np
import pytest

from latentstore.inspection.grid import interleave, make_grid


def tiles(n, size=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


@pytest.mark.parametrize(("n", "columns", "grid_shape"), [(1, None, (1, 1)), (5, None, (2, 3)), (7, 2, (4, 2)), (3, 5, (1, 5))])
def test_layout_and_tile_placement(n, columns, grid_shape):
    images = tiles(n, size=40)
    grid = np.asarray(make_grid(images, columns=columns, padding=3, min_tile=0))
    rows, cols = grid_shape
    assert grid.shape == (3 + rows * 43, 3 + cols * 43, 3)
    for i in range(n):
        r, c = divmod(i, cols)
        y, x = 3 + r * 43, 3 + c * 43
        np.testing.assert_array_equal(grid[y : y + 40, x : x + 40], images[i])


def test_small_tiles_are_enlarged_by_a_whole_factor():
    images = tiles(2, size=30)
    grid = np.asarray(make_grid(images, columns=2, padding=0, min_tile=100))
    assert grid.shape == (120, 240, 3)  # factor 4
    np.testing.assert_array_equal(grid[:120:4, :120:4], images[0])


def test_captions_add_at_most_two_lines_under_the_tiles():
    images = tiles(2, size=128)
    bare = make_grid(images, columns=2, font_size=12)
    one = make_grid(images, ["cat", "dog"], columns=2, font_size=12)
    long = "a very long caption that cannot possibly fit under a tile of this width " * 4
    two = make_grid(images, [long, "x"], columns=2, font_size=12)
    assert bare.width == one.width == two.width
    line = one.height - bare.height
    assert line > 12 and two.height - bare.height == 2 * line
    caption = np.asarray(two)[4 + 128 :, 4 : 4 + 128]
    assert (caption < 128).any()  # dark text drawn under the first tile


def test_column_titles_and_interleaved_triplets():
    a, b, c = tiles(2, seed=1), tiles(2, seed=2), tiles(2, seed=3)
    order = interleave(a, b, c)
    np.testing.assert_array_equal(order, [a[0], b[0], c[0], a[1], b[1], c[1]])
    plain = make_grid(order, columns=3, min_tile=0)
    titled = make_grid(order, columns=3, column_titles=["original", "float", "int8"], min_tile=0)
    assert titled.width == plain.width and titled.height > plain.height


def test_greyscale_images():
    images = tiles(2)[..., 0]
    grid = np.asarray(make_grid(images, min_tile=0, padding=0, columns=2))
    np.testing.assert_array_equal(grid[:32, :32, 1], images[0])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": np.zeros((2, 8, 8, 3), np.float32)}, "uint8"),
        ({"images": np.zeros((0, 8, 8, 3), np.uint8)}, "no images"),
        ({"captions": ["one"]}, "one caption per image"),
        ({"columns": 0}, "at least 1"),
        ({"columns": 2, "column_titles": ["a"]}, "one title per column"),
    ],
)
def test_bad_arguments(kwargs, match):
    arguments = {"images": tiles(2), **kwargs}
    with pytest.raises(ValueError, match=match):
        make_grid(arguments.pop("images"), **arguments)


def test_interleave_needs_equal_groups():
    with pytest.raises(ValueError, match="same shape"):
        interleave(tiles(2), tiles(3))
