"""Pixels to model input: LongLLaVA's `image_aspect_ratio "pad"` CLIP preprocessing, and tiling.

One image: pad to a square with the CLIP mean colour (the picture centred, as LLaVA's
`expand2square`), resize to `size`² with Pillow bicubic (what `CLIPImageProcessor` does; the
shortest-side resize and centre crop it then applies are no-ops on a square), scale by 1/255 and
normalise with CLIP's mean and std (docs/format.md, Vision). Output: float32 tensor [3, size, size].
A landscape picture takes an exact shortcut that never builds the square (`resize_padded`); the
plain version is `preprocess_image_reference`, and a test keeps the two equal bit for bit.

High resolution (docs/format.md, Prompt): the global image above plus the picture cut into a raster grid of
`tile`² tiles at native resolution, the picture first padded right and down with the mean colour up
to whole tiles (a 1000×1000 image → 3×3 tiles of 336). Each tile is then preprocessed like an image.
A picture whose native grid is over the tile budget is scaled down, aspect ratio kept, to the grid
within the budget that keeps the most of its pixels (`fit_tile_grid`, LLaVA-NeXT's best fit).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# int(255 * CLIP_MEAN), as LLaVA's expand2square background.
PAD_COLOR = (122, 116, 104)

_BICUBIC = Image.Resampling.BICUBIC
_MEAN = np.asarray(CLIP_MEAN, dtype=np.float32)
_STD = np.asarray(CLIP_STD, dtype=np.float32)
# [3, 256]: every uint8 value of each channel, scaled and normalised by the very float32
# operations `normalize` would apply per pixel, so a table lookup gives bit-identical values
# (~3x faster than the arithmetic over a 336² frame).
_NORMALIZED = ((np.arange(256, dtype=np.float32) * np.float32(1 / 255))[None, :] - _MEAN[:, None]) / _STD[:, None]


def pad_to_square(image: Image.Image, color: tuple[int, int, int] = PAD_COLOR) -> Image.Image:
    """The image centred on a `max(width, height)`² canvas of `color` (offset floored, as expand2square)."""
    width, height = image.size
    if width == height:
        return image
    side = max(width, height)
    canvas = Image.new("RGB", (side, side), color)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


if TYPE_CHECKING:
    import torch


def normalize(pixels: np.ndarray) -> torch.Tensor:
    """uint8 [height, width, 3] RGB → float32 [3, height, width], scaled to 0..1 then CLIP-normalised."""
    out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(_NORMALIZED[channel], pixels[:, :, channel], out=out[channel])
    import torch  # here, not at the top: planning (`longllava frames`) never needs it

    return torch.from_numpy(out)


def preprocess_image(image: Image.Image, size: int) -> torch.Tensor:
    """One RGB picture → float32 tensor [3, size, size] ready for the CLIP tower: bit for bit
    `preprocess_image_reference`, without building the padded square of a landscape picture."""
    return normalize(resize_padded(image, size))


def preprocess_image_reference(image: Image.Image, size: int) -> torch.Tensor:
    """`preprocess_image` as written: pad to a square, resize it bicubic, normalise."""
    square = pad_to_square(image)
    if square.size != (size, size):
        square = square.resize((size, size), Image.Resampling.BICUBIC)
    return normalize(np.asarray(square))


def resize_padded(image: Image.Image, size: int) -> np.ndarray:
    """uint8 [size, size, 3]: `pad_to_square(image)` resized bicubic to size², exactly as Pillow
    resizes it, but for a picture wider than tall (a video frame) without the padded square.

    Pillow resizes in two passes, each rounded to 8 bits: horizontal first, every row on its own
    with coefficients that depend only on the widths, then vertical over the columns
    (`ImagingResampleInner`, libImaging/Resample.c). The square's rows are the picture's rows and
    rows of the pad colour, so its horizontal pass is the picture's horizontal resize with one pad
    row's resize repeated above and below; the vertical pass then runs on the same rows. That
    skips the square (W² pixels) and the horizontal pass over its pad rows: ~35 % of a 720p frame.
    """
    width, height = image.size
    if width <= height or width == size:  # nothing to skip: a column of pad, or no resize at all
        square = pad_to_square(image)
        return np.asarray(square if square.size == (size, size) else square.resize((size, size), _BICUBIC))
    top = (width - height) // 2  # as pad_to_square places the picture
    rows = np.empty((width, size, 3), np.uint8)  # the square after the horizontal pass
    rows[top : top + height] = np.asarray(image.resize((size, height), _BICUBIC))
    pad = np.asarray(Image.new("RGB", (width, 1), PAD_COLOR).resize((size, 1), _BICUBIC))
    rows[:top], rows[top + height :] = pad, pad
    return np.asarray(Image.fromarray(rows).resize((size, size), _BICUBIC))


def count_tile_grid(width: int, height: int, tile: int) -> tuple[int, int]:
    """(rows, cols) of `tile`² tiles covering a width×height picture."""
    return math.ceil(height / tile), math.ceil(width / tile)


def fit_tile_grid(width: int, height: int, tile: int, max_tiles: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((rows, cols), (scaled width, scaled height)) for tiling a width×height picture with at most
    `max_tiles` tiles of `tile`².

    At native resolution when its grid fits. Otherwise the best fit of LLaVA-NeXT's
    `select_best_resolution` (`llava/mm_utils.py`) over every grid of at most `max_tiles` tiles:
    the picture scaled (aspect ratio kept) to fit the grid, the grid that keeps the most pixels
    winning, ties going to the one that wastes the least padding. The returned grid is the one the
    scaled picture needs, never larger than the chosen one.
    """
    native = count_tile_grid(width, height, tile)
    if native[0] * native[1] <= max_tiles:
        return native, (width, height)
    best: tuple[float, float, int, int] | None = None  # (kept pixels, -waste, rows, cols)
    for rows in range(1, min(native[0], max_tiles) + 1):
        widest = max_tiles // rows
        # Past the columns the row-limited scale needs, more columns only add padding.
        needed = math.ceil(width * min(rows * tile / height, 1.0) / tile)
        for cols in {min(widest, needed), widest}:
            scale = min(cols * tile / width, rows * tile / height, 1.0)
            kept = width * scale * height * scale
            candidate = (kept, -(rows * cols * tile * tile - kept), rows, cols)
            best = candidate if best is None or candidate[:2] > best[:2] else best
    assert best is not None
    _, _, rows, cols = best
    scale = min(cols * tile / width, rows * tile / height)
    scaled = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
    return count_tile_grid(*scaled, tile), scaled


def iter_tiles(image: Image.Image, tile: int) -> Iterator[tuple[int, int, Image.Image]]:
    """(row, col, tile image) in raster order; edge tiles padded with the mean colour. Tiles are
    cropped one at a time so a large picture is never copied whole."""
    rows, cols = count_tile_grid(image.width, image.height, tile)
    for row in range(rows):
        for col in range(cols):
            box = (col * tile, row * tile, min((col + 1) * tile, image.width), min((row + 1) * tile, image.height))
            piece = image.crop(box)
            if piece.size != (tile, tile):
                canvas = Image.new("RGB", (tile, tile), PAD_COLOR)
                canvas.paste(piece, (0, 0))
                piece = canvas
            yield row, col, piece
