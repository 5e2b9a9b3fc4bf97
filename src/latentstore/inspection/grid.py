"""Image grids with a caption under each tile, for decoded samples and comparisons.

>>> grid = make_grid(images, [f"#{i}" for i in range(len(images))], columns=4)  # doctest: +SKIP
>>> grid.save("grid.png")                                                     # doctest: +SKIP

For rows of related images ("original | float | int8"), :func:`interleave`
the groups and give one column per group with ``column_titles``. Images of
several shapes (a bucketed store's samples) come as a list: each is scaled
to fit one common cell, keeping its aspect ratio, and letterboxed.
"""

import unicodedata
from collections.abc import Callable

import numpy as np

#: Tiles smaller than this are enlarged (by a whole factor, nearest neighbour) so captions fit under them.
MIN_TILE = 128
#: At most this many caption lines under a tile; longer text ends in an ellipsis.
MAX_CAPTION_LINES = 2
#: The colour around a tile that does not fill its cell (images of several shapes).
LETTERBOX = (232, 232, 232)


def interleave(*groups):
    """Images of several equal-length groups, one of each in turn: a0, b0, c0, a1, b1, ...

    With ``make_grid(interleave(a, b, c), columns=3)`` each row holds one triplet.
    Groups given as arrays of one shape give an array; groups given as lists of
    images of several shapes (a bucketed store's) give a list.
    """
    if not groups:
        raise ValueError("pass at least one group of images")
    if not any(isinstance(g, (list, tuple)) for g in groups):
        arrays = [np.asarray(g) for g in groups]
        if any(a.shape != arrays[0].shape for a in arrays):
            raise ValueError(f"every group must have the same shape, got {[a.shape for a in arrays]}")
        return np.stack(arrays, axis=1).reshape(-1, *arrays[0].shape[1:])
    lengths = [len(g) for g in groups]
    if any(length != lengths[0] for length in lengths):
        raise ValueError(f"every group must have the same number of images, got {lengths}")
    return [np.asarray(g[i]) for i in range(lengths[0]) for g in groups]


def _tiles(images) -> list[np.ndarray]:
    """``images`` (an (N, H, W[, C]) array, or a list of (H, W[, C]) arrays) as a list of
    uint8 (H, W) or (H, W, 3) arrays; ValueError naming the first that is neither."""
    if not isinstance(images, (list, tuple)):
        batch = np.asarray(images)
        if batch.dtype != np.uint8 or batch.ndim not in (3, 4) or (batch.ndim == 4 and batch.shape[3] not in (1, 3)):
            raise ValueError(f"images must be uint8 of shape (N, H, W, 3) or (N, H, W), got {batch.dtype} {batch.shape}")
        if batch.ndim == 4 and batch.shape[3] == 1:
            batch = batch[..., 0]
        return list(batch)
    tiles = []
    for i, image in enumerate(images):
        tile = np.asarray(image)
        if tile.dtype != np.uint8 or tile.ndim not in (2, 3) or (tile.ndim == 3 and tile.shape[2] not in (1, 3)) \
                or 0 in tile.shape:
            raise ValueError(f"images must be uint8 of shape (H, W, 3) or (H, W); image {i} is {tile.dtype} {tile.shape}")
        tiles.append(tile[..., 0] if tile.ndim == 3 and tile.shape[2] == 1 else tile)
    return tiles


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: a fixed bitmap font
        return ImageFont.load_default()


def _text_width(draw, text: str, font) -> float:
    return draw.textlength(text, font=font)


#: Plain stand-ins for typographic characters a font may have no glyph for.
_PLAIN = {"…": "...", "–": "-", "—": "-", "‐": "-", "−": "-", "‘": "'", "’": "'", "“": '"', "”": '"', "•": "*"}


def _glyph_test(font) -> Callable[[str], bool]:
    """Whether ``font`` draws a character as itself, rather than raising or drawing its empty box."""
    from PIL import ImageFont

    if isinstance(font, ImageFont.FreeTypeFont):

        def signature(char: str):
            mask = font.getmask(char)
            return mask.size, mask.getprojection()

        box = signature("\U0010ffff")  # a noncharacter: what the font draws for a character it lacks
        known: dict[str, bool] = {}

        def has_glyph(char: str) -> bool:  # printable ASCII is taken as there, as in every default font
            if char not in known:
                known[char] = (char.isascii() and char.isprintable()) or signature(char) != box
            return known[char]

        return has_glyph
    if isinstance(font, ImageFont.ImageFont):  # Pillow's bitmap font encodes text as Latin-1, raising on the rest
        return lambda char: ord(char) < 256
    return lambda char: True


def _stand_in(char: str, has_glyph: Callable[[str], bool]) -> str:
    """What to draw for a character the font has no glyph for: a plain equivalent, its base letter or "?"."""
    for candidate in (_PLAIN.get(char), unicodedata.normalize("NFKC", char), unicodedata.normalize("NFKD", char)[:1]):
        if candidate and candidate != char and all(map(has_glyph, candidate)):
            return candidate  # "—" -> "-", "…" -> "...", "ő" -> "o"
    return "" if unicodedata.category(char) in ("Mn", "Mc", "Me", "Cf") else "?"  # accents, zero-width joiners: nothing


def _drawable(text: str, font) -> str:
    """``text`` as ``font`` can draw it, never raising.

    Control characters go (a tab becomes a space, a carriage return a line
    break); a character with no glyph in ``font`` becomes a plain equivalent
    ("—" -> "-", "é" -> "e") or "?". Pillow's bitmap font (no FreeType) has
    only Latin-1 and raises on anything else; its FreeType default font has
    few glyphs beyond ASCII and would draw the others as empty boxes.
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " "))
    has_glyph = _glyph_test(font)
    drawn = []
    for char in text:
        if char in " \n":
            drawn.append(char)
        elif unicodedata.category(char) not in ("Cc", "Cs"):  # control characters, lone surrogates: dropped
            drawn.append(char if has_glyph(char) else _stand_in(char, has_glyph))
    return "".join(drawn)


def _wrap(draw, text: str, font, width: int) -> list[str]:
    """Break ``text`` into at most MAX_CAPTION_LINES lines of at most ``width`` pixels.

    Blank text gives no lines; characters ``font`` cannot draw are replaced
    (:func:`_drawable`); a line cut short ends in an ellipsis.
    """
    text, ellipsis = _drawable(text, font), _drawable("…", font)
    if not text.strip():
        return []
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            candidate = f"{current} {word}" if current else word
            if _text_width(draw, candidate, font) <= width or not current:
                current = candidate
            else:
                lines.append(current)
                current = word
        lines.append(current)
    fitted = []
    for i, line in enumerate(lines[:MAX_CAPTION_LINES]):
        last = i == MAX_CAPTION_LINES - 1 and len(lines) > MAX_CAPTION_LINES
        if last or _text_width(draw, line, font) > width:
            cut = line
            while cut and _text_width(draw, cut + ellipsis, font) > width:
                cut = cut[:-1]
            if cut != line and line[len(cut)] != " " and " " in cut.rstrip():  # end on a whole word where one fits
                cut = cut[: cut.rstrip().rindex(" ")]
            line = cut.rstrip()
            if _text_width(draw, line + ellipsis, font) <= width:  # on a tiny tile not even "…" may fit
                line += ellipsis
        fitted.append(line)
    return fitted


def make_grid(
    images,
    captions=None,
    *,
    columns: int | None = None,
    column_titles=None,
    padding: int = 4,
    font_size: int | None = None,
    min_tile: int = MIN_TILE,
):
    """One PIL image of ``images`` in a grid, captions under the tiles.

    ``images``: uint8, an (N, H, W, 3) or (N, H, W) array, or a list of (H, W, 3)
    or (H, W) arrays of any shapes. Every tile gets a cell as tall as the
    tallest image and as wide as the widest; an image of another shape is
    scaled to fit its cell keeping its aspect ratio (nearest neighbour for a
    whole factor, else Lanczos) and centred on a light grey letterbox.

    ``captions``: one string per image, drawn under its tile (``None`` for no
    caption band; an empty string or ``None`` item leaves that tile's band
    blank). Text is wrapped to the tile width and cut to MAX_CAPTION_LINES
    lines with an ellipsis; ``"\\n"`` breaks a line; characters the font
    cannot draw are replaced, never raised on. ``columns`` defaults to a near-square
    grid. ``column_titles`` puts a title above each column. Tiles narrower
    than ``min_tile`` pixels are enlarged by a whole factor so their captions
    stay readable. ``font_size`` defaults to about 1/14 of the tile width,
    between 11 and 20 pixels.
    """
    from PIL import Image, ImageDraw

    images = _tiles(images)
    n = len(images)
    if n == 0:
        raise ValueError("no images to put in a grid")
    if isinstance(captions, str):
        raise ValueError(f"pass a list of captions, one per image, not one string ({captions[:40]!r})")
    if captions is not None and len(captions) != n:
        raise ValueError(f"pass one caption per image: {n} images, {len(captions)} captions")
    if columns is None:
        columns = int(np.ceil(np.sqrt(n)))
    if columns < 1:
        raise ValueError(f"columns must be at least 1, got {columns}")
    if column_titles is not None and len(column_titles) != columns:
        raise ValueError(f"pass one title per column: {columns} columns, {len(column_titles)} titles")
    rows = -(-n // columns)

    # The cell holds the tallest and the widest image; narrow cells are enlarged by a whole factor.
    height, width = max(image.shape[0] for image in images), max(image.shape[1] for image in images)
    factor = max(1, -(-min_tile // width))
    tile_h, tile_w = height * factor, width * factor
    font_size = font_size or int(np.clip(round(tile_w / 14), 11, 20))
    font = _font(font_size)
    line_height = font_size + max(2, font_size // 4)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    wrapped = (
        None if captions is None else [_wrap(measure, "" if c is None else str(c), font, tile_w) for c in captions]
    )
    caption_h = max((len(lines) for lines in wrapped), default=0) * line_height if wrapped else 0
    title_h = line_height + padding if column_titles is not None else 0

    cell_w, cell_h = tile_w + padding, tile_h + caption_h + padding
    canvas = Image.new("RGB", (columns * cell_w + padding, title_h + rows * cell_h + padding), "white")
    draw = ImageDraw.Draw(canvas)
    if column_titles is not None:
        for c, title in enumerate(column_titles):
            text = next(iter(_wrap(draw, str(title), font, tile_w)), "")
            x = padding + c * cell_w + (tile_w - _text_width(draw, text, font)) / 2
            draw.text((x, padding), text, fill="black", font=font)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        x, y = padding + c * cell_w, title_h + padding + r * cell_h
        tile = Image.fromarray(image)
        size, offset = _fit(image.shape[0], image.shape[1], tile_h, tile_w)
        if size != (tile_w, tile_h):
            canvas.paste(Image.new("RGB", (tile_w, tile_h), LETTERBOX), (x, y))
        if size != tile.size:
            scale = size[0] / tile.width
            exact = scale == int(scale) and size[1] == tile.height * int(scale)
            tile = tile.resize(size, Image.Resampling.NEAREST if exact else Image.Resampling.LANCZOS)
        canvas.paste(tile, (x + offset[0], y + offset[1]))
        # on a band as wide as the tile (and down to the next row), so no glyph spills into a neighbour
        if wrapped and wrapped[i]:
            band = Image.new("RGB", (tile_w, caption_h + padding), "white")
            band_draw = ImageDraw.Draw(band)
            for k, line in enumerate(wrapped[i]):
                band_draw.text((0, k * line_height + 1), line, fill="black", font=font)
            canvas.paste(band, (x, y + tile_h))
    return canvas


def _fit(height: int, width: int, cell_h: int, cell_w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The (width, height) of an image scaled to fit a cell keeping its aspect ratio, and its
    (x, y) offset in the cell (centred)."""
    scale = min(cell_w / width, cell_h / height)
    size = (min(cell_w, max(1, round(width * scale))), min(cell_h, max(1, round(height * scale))))
    return size, ((cell_w - size[0]) // 2, (cell_h - size[1]) // 2)
