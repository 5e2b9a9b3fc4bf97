"""Image grids: layout, tile placement, captions, enlargement of small tiles, bad input."""

import numpy as np
import pytest
from PIL import ImageDraw

from latentstore.inspection import grid as grid_module
from latentstore.inspection.grid import MAX_CAPTION_LINES, interleave, make_grid


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


TILE, PAD, LINE = 128, 4, 12 + 3  # tile size, default padding, line height at font_size=12


def caption_band(grid, index, *, columns, lines=1, top=0):
    """The caption band (and the padding below it) under tile ``index`` of 128-pixel tiles at font_size=12.

    ``top``: the height of the column titles above the first row.
    """
    r, c = divmod(index, columns)
    x, y = PAD + c * (TILE + PAD), top + PAD + r * (TILE + lines * LINE + PAD) + TILE
    return np.asarray(grid)[y : y + lines * LINE + PAD, x : x + TILE]


def grey(n):
    return np.full((n, TILE, TILE, 3), 200, np.uint8)  # no pixel as dark as text


def test_the_grid_grows_by_the_caption_band_and_tiles_stay_put():
    images = tiles(4, size=TILE)
    bare = make_grid(images, columns=2, font_size=12)
    captioned = make_grid(images, ["cat", "coffee", "moon", "retina"], columns=2, font_size=12)
    assert captioned.width == bare.width and captioned.height == bare.height + 2 * LINE  # one line under each of 2 rows
    grid = np.asarray(captioned)
    for i, image in enumerate(images):
        r, c = divmod(i, 2)
        y, x = PAD + r * (TILE + LINE + PAD), PAD + c * (TILE + PAD)
        np.testing.assert_array_equal(grid[y : y + TILE, x : x + TILE], image)
    # blank captions, or None in the list, make no band at all: the same grid as no captions
    blank = make_grid(images, ["", None, " ", "\n"], columns=2, font_size=12)
    np.testing.assert_array_equal(np.asarray(blank), np.asarray(bare))


def test_text_is_drawn_under_captioned_tiles_only():
    grid = make_grid(grey(3), ["a tabby cat", "", None], columns=3, font_size=12)
    assert (caption_band(grid, 0, columns=3) < 128).any()
    for empty in (1, 2):
        assert (caption_band(grid, empty, columns=3) == 255).all()


@pytest.mark.parametrize(
    ("caption", "lines"),
    [
        ("a very long caption that cannot possibly fit under a tile of this width " * 4, MAX_CAPTION_LINES),
        ("W" * 300, 1),  # one word wider than the tile: cut, not wrapped
        ("line one\nline two\nline three\nline four", MAX_CAPTION_LINES),
    ],
    ids=["sentence", "one-word", "many-lines"],
)
def test_long_captions_are_cut_to_their_tile(caption, lines):
    images = grey(4)
    grid = make_grid(images, [caption, "", "", ""], columns=2, font_size=12)
    assert grid.height == PAD + 2 * (TILE + lines * LINE + PAD)
    ink_columns = np.flatnonzero((caption_band(grid, 0, columns=2, lines=lines) < 128).any(axis=(0, 2)))
    assert ink_columns.size and ink_columns.max() < TILE
    # the gap right of the first tile and the neighbour's band stay white; the next row is untouched
    y = PAD + TILE
    assert (np.asarray(grid)[y : y + lines * LINE + PAD, PAD + TILE :] == 255).all()
    for below in (2, 3):
        x = PAD + (below - 2) * (TILE + PAD)
        np.testing.assert_array_equal(np.asarray(grid)[y + lines * LINE + PAD :][:TILE, x : x + TILE], images[below])
    shown = grid_module._wrap(ImageDraw.Draw(grid), caption, grid_module._font(12), TILE)
    assert len(shown) == lines and shown[-1].endswith("…")


@pytest.mark.parametrize(
    ("captions", "match"),
    [
        (["one", "two"], "one caption per image: 3 images, 2 captions"),
        (["one", "two", "three", "four"], "one caption per image: 3 images, 4 captions"),
        ("abc", "a list of captions, one per image, not one string"),
    ],
)
def test_the_wrong_number_of_captions_is_refused(captions, match):
    with pytest.raises(ValueError, match=match):
        make_grid(tiles(3), captions)


NON_ASCII = [
    "café naïve — “quoted” … ő",
    "日本語のキャプション 😀 👩‍👩‍👧",
    "tab\there\r\nline, \x00 and a lone \ud800",
]


def assert_text_under_every_tile(grid, n):
    top = LINE + PAD  # the column titles
    for i in range(n):
        assert (caption_band(grid, i, columns=n, lines=MAX_CAPTION_LINES, top=top) < 128).any(), i
    assert (np.asarray(grid)[:top] < 128).any()


def test_non_ascii_captions_are_drawn():
    grid = make_grid(grey(3), NON_ASCII, columns=3, column_titles=NON_ASCII, font_size=12)
    assert_text_under_every_tile(grid, 3)
    # Pillow's own FreeType font has few glyphs beyond ASCII: the rest become plain letters or "?", not empty boxes
    font = grid_module._font(12)
    assert grid_module._drawable("日本 😀\u200d\x00\ud800", font) == "?? ?"
    assert grid_module._drawable("ő e\u0301", font) in ("ő é", "o e")
    assert grid_module._drawable("tab\there\r\nand\rthere", font) == "tab here\nand\nthere"


def test_a_bitmap_font_without_freetype_replaces_what_it_cannot_draw(monkeypatch):
    from PIL import ImageFont

    if not hasattr(ImageFont, "load_default_imagefont"):
        pytest.skip("Pillow < 10.1 has no separate bitmap default font")
    bitmap = ImageFont.load_default_imagefont()  # what Pillow without FreeType draws with: Latin-1 only
    monkeypatch.setattr(grid_module, "_font", lambda size: bitmap)
    long = "a caption long enough to be cut with an ellipsis under one tile " * 3
    grid = make_grid(grey(4), [*NON_ASCII, long], columns=4, column_titles=[*NON_ASCII, long], font_size=12)
    assert_text_under_every_tile(grid, 4)
    assert grid_module._drawable("naïve – “q” … ő 日\u200b", bitmap) == 'naïve - "q" ... o ?'
    assert grid_module._wrap(ImageDraw.Draw(grid), long, bitmap, TILE)[-1].endswith("...")


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


# -- images of several shapes (a bucketed store's) ------------------------------------------------
def mixed_tiles(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in ((32, 32, 3), (16, 64, 3), (64, 16, 3))]


def test_images_of_several_shapes_are_fitted_to_one_cell_and_letterboxed():
    images = mixed_tiles()
    grid = np.asarray(make_grid(images, columns=3, padding=2, min_tile=0))
    # The cell is as tall as the tallest and as wide as the widest image: 64 x 64.
    assert grid.shape == (2 + 64 + 2, 2 + 3 * (64 + 2), 3)
    cells = [grid[2 : 2 + 64, 2 + c * 66 : 2 + c * 66 + 64] for c in range(3)]
    # 32 x 32 doubles (a whole factor: nearest neighbour, exact) to fill its cell
    np.testing.assert_array_equal(cells[0][::2, ::2], images[0])
    np.testing.assert_array_equal(cells[0][1::2, 1::2], images[0])
    # 16 x 64 keeps its size, centred between letterbox bands above and below
    np.testing.assert_array_equal(cells[1][24:40], images[1])
    assert (cells[1][:24] == grid_module.LETTERBOX).all() and (cells[1][40:] == grid_module.LETTERBOX).all()
    # 64 x 16 likewise, with bands left and right
    np.testing.assert_array_equal(cells[2][:, 24:40], images[2])
    assert (cells[2][:, :24] == grid_module.LETTERBOX).all() and (cells[2][:, 40:] == grid_module.LETTERBOX).all()


def test_a_fractional_fit_keeps_the_aspect_ratio():
    images = [np.full((30, 30, 3), 10, np.uint8), np.full((20, 45, 3), 200, np.uint8)]
    grid = np.asarray(make_grid(images, columns=2, padding=0, min_tile=0))
    assert grid.shape == (30, 90, 3)  # cells of 30 x 45
    first = grid[:, :45]
    dark = np.flatnonzero((first < 100).all(axis=(0, 2)))
    assert (dark.min(), dark.max()) == (7, 36)  # 45x45 scaled 1.0: 30 wide, centred: 7 .. 36
    second = grid[:, 45:]  # 20 x 45 already as wide as the cell: as it is, centred in 30 rows
    np.testing.assert_array_equal(second[5:25], images[1])
    assert (second[:5] == grid_module.LETTERBOX).all()


def test_several_shapes_with_captions_and_enlargement():
    images = mixed_tiles()
    grid = make_grid(images, ["square", "wide", "tall"], columns=2, font_size=12)
    # min_tile 128: the 64-pixel cell is enlarged twice; captions wrap to the cell width
    assert grid.width == PAD + 2 * (TILE + PAD)
    assert grid.height == PAD + 2 * (TILE + LINE + PAD)
    band = caption_band(grid, 2, columns=2)
    assert (band < 128).any()
    np.testing.assert_array_equal(np.asarray(grid)[PAD : PAD + TILE, PAD : PAD + TILE][::4, ::4], images[0])  # 32 -> 128


def test_a_list_of_one_shape_draws_what_the_array_draws():
    images = tiles(5, size=40)
    for kwargs in ({}, {"columns": 2, "min_tile": 0}, {"column_titles": ["a", "b", "c"]}):
        captions = [f"#{i}" for i in range(5)]
        from_array = np.asarray(make_grid(images, captions, **kwargs))
        np.testing.assert_array_equal(np.asarray(make_grid(list(images), captions, **kwargs)), from_array)


def test_interleave_lists_of_several_shapes():
    a, b = mixed_tiles(1), mixed_tiles(2)
    order = interleave(a, b)
    assert isinstance(order, list) and len(order) == 6
    for k, image in enumerate(order):
        np.testing.assert_array_equal(image, (a, b)[k % 2][k // 2])
    assert make_grid(order, columns=2, min_tile=0).size == (4 + 2 * (64 + 4), 4 + 3 * (64 + 4))
    with pytest.raises(ValueError, match="same number of images, got \\[3, 2\\]"):
        interleave(a, b[:2])


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (np.zeros((8, 8, 3), np.float32), "image 1 is float32 \\(8, 8, 3\\)"),
        (np.zeros((8, 8, 4), np.uint8), "image 1 is uint8 \\(8, 8, 4\\)"),
        (np.zeros((0, 8, 3), np.uint8), "image 1 is uint8 \\(0, 8, 3\\)"),
    ],
)
def test_a_bad_image_in_a_list_is_named(bad, match):
    with pytest.raises(ValueError, match=match):
        make_grid([np.zeros((8, 4, 3), np.uint8), bad])
