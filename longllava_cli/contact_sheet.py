"""A contact sheet: the sampled frames of a plan as one grid image, each labelled, so users see
what the model will see.

One cell per planned picture, in prompt order: each video frame (labelled with its timestamp),
each image of a folder (its file name), a lone image (its file name) and a tiled image once,
with its tile grid drawn over it. Cells are `thumb_width` × 3/4 of it plus a label strip, laid
out `columns` to a row, so a sheet of n pictures is `min(n, columns) · thumb_width` wide and
`ceil(n / columns) · (thumb_height + LABEL_HEIGHT)` high. Frames are decoded through sampling's
readers and shrunk at once; only thumbnails are kept. With `workers` > 1, files and the GOPs of a
video are decoded and shrunk side by side (`sampling.parallel`), the cells staying in order.

The output path is checked before anything is decoded (`check_sheet_path`): a PNG, JPEG, WebP or
TIFF name, its folder (created if missing), not one of the inputs, and not a file that longllava
did not write: a sheet carries `Software: longllava contact sheet` in its EXIF, and only such a
file is replaced. It is written to a
temporary file beside it and renamed, so a failure never leaves half a picture.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

from longllava_cli.failures import OutputPathError
from longllava_cli.paths import check_replaceable, replace_atomically
from sampling.errors import display_path
from sampling.images import load_image
from sampling.parallel import Thunk, Unit, iter_units
from sampling.readers import read_video_frames
from sampling.segments import split_video

if TYPE_CHECKING:
    from sampling import InputPlan, SamplingOptions

LABEL_HEIGHT = 16
SOFTWARE = "longllava contact sheet"
_EXIF_SOFTWARE = 0x0131
# Formats that keep EXIF, so that a sheet can be recognised as ours before it is replaced.
SHEET_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}
BACKGROUND = (24, 24, 24)
LABEL_COLOR = (235, 235, 235)
GRID_COLOR = (255, 200, 0)


def check_sheet_path(path: Path, inputs: Sequence[str | os.PathLike[str]]) -> str:
    """The Pillow format to write `path` in, after checking (see the module docstring) and creating
    its folder. Raises OutputPathError naming the path."""
    shown = display_path(path)
    image_format = SHEET_FORMATS.get(path.suffix.lower())
    if image_format is None:
        raise OutputPathError(
            f"{shown}: the contact sheet is written as PNG, JPEG, WebP or TIFF; end its name in .png, .jpg, "
            ".webp or .tif"
        )
    check_replaceable(path, inputs, what="contact sheet", example="sheet.png", ours=is_contact_sheet, shown=shown)
    return image_format


def is_contact_sheet(path: Path) -> bool:
    """True for a picture this module wrote (its Software mark)."""
    try:
        with Image.open(path) as image:
            mark = image.getexif().get(_EXIF_SOFTWARE)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return False
    return isinstance(mark, str) and mark.strip("\0") == SOFTWARE


def save_sheet(sheet: Image.Image, path: Path, image_format: str) -> None:
    """Write `sheet` to `path` in `image_format`, marked as ours, atomically (`paths.replace_atomically`)."""
    exif = Image.Exif()
    exif[_EXIF_SOFTWARE] = SOFTWARE
    replace_atomically(path, lambda f: sheet.save(f, format=image_format, exif=exif.tobytes()))


def sheet_size(num_pictures: int, *, columns: int, thumb_width: int) -> tuple[int, int]:
    """(width, height) in pixels of the sheet for `num_pictures` cells."""
    cols = max(1, min(columns, num_pictures))
    rows = max(1, math.ceil(num_pictures / cols))
    return cols * thumb_width, rows * (thumb_height(thumb_width) + LABEL_HEIGHT)


def thumb_height(thumb_width: int) -> int:
    return max(1, round(thumb_width * 3 / 4))


def format_timestamp(seconds: float) -> str:
    """1:02.35 style (h:mm:ss.ss past an hour)."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:05.2f}" if hours else f"{minutes}:{secs:05.2f}"


Cell = tuple[Image.Image, str]


def iter_cells(
    plans: Sequence[InputPlan], options: SamplingOptions, *, thumb_width: int, workers: int = 1
) -> Iterator[Cell]:
    """(thumbnail, label) for every cell of the sheet, in prompt order, made by `workers` threads."""
    box = (thumb_width, thumb_height(thumb_width))
    units = [unit for plan in plans for unit in _cell_units(plan, options, box, workers)]
    return iter_units(units, workers=workers, window=8 * workers)


def _cell_units(plan: InputPlan, options: SamplingOptions, box: tuple[int, int], workers: int) -> Iterator[Unit[Cell]]:
    if plan.kind == "video":
        assert plan.video is not None
        times = {f.index: f.timestamp for f in plan.frames}
        # One decoder for the whole video when alone (it continues from GOP to GOP), else one per GOP.
        indices = list(times)
        segments = split_video(plan.video, indices, options.backend) if workers > 1 else [tuple(indices)]
        for segment in segments:
            rest = tuple(indices[indices.index(segment[0]) :])  # read lazily, left after the segment
            yield Unit(len(segment), partial(_video_cells, plan, rest, len(segment), times, options, box))
    elif plan.kind == "tiled":
        yield Unit(1, partial(_tiled_cell, plan, options, box))
    else:
        for frame in plan.frames:
            yield Unit(1, partial(_image_cell, frame.source, box))


def _video_cells(
    plan: InputPlan, rest: tuple[int, ...], size: int, times: dict, options: SamplingOptions, box: tuple[int, int]
) -> Iterator[Thunk[Cell]]:
    """The first `size` frames of `rest`: the rest of the video is handed to the reader so that a
    failure names what the sequential loop would (`sampling.frames._segment_steps`)."""
    assert plan.video is not None
    decoded = read_video_frames(plan.video, rest, backend=options.backend)
    try:
        for index, rgb in itertools.islice(decoded, size):
            yield partial(_cell, Image.fromarray(rgb), format_timestamp(times[index] or 0.0), box)
    finally:
        decoded.close()


def _tiled_cell(plan: InputPlan, options: SamplingOptions, box: tuple[int, int]) -> Iterator[Thunk[Cell]]:
    assert plan.grid is not None
    image = _draw_grid(load_image(plan.source, fit=plan.scaled_size), options.tile_side)  # as the tiles are cut
    yield partial(_cell, image, f"{plan.source.name} {plan.grid[0]}x{plan.grid[1]} tiles", box)


def _image_cell(source: Path, box: tuple[int, int]) -> Iterator[Thunk[Cell]]:
    yield partial(_cell, load_image(source), display_path(source.name), box)


def _cell(picture: Image.Image, label: str, box: tuple[int, int]) -> Cell:
    return ImageOps.contain(picture, box, Image.Resampling.BILINEAR), label


def render_contact_sheet(
    plans: Sequence[InputPlan], options: SamplingOptions, *, columns: int = 8, thumb_width: int = 192, workers: int = 1
) -> Image.Image:
    """The sheet of every picture the plans will feed the model (see the module docstring)."""
    num_pictures = sum(1 if p.kind == "tiled" else len(p.frames) for p in plans)
    width, height = sheet_size(num_pictures, columns=columns, thumb_width=thumb_width)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    cols = max(1, min(columns, num_pictures))
    box = (thumb_width, thumb_height(thumb_width))
    for position, (thumb, label) in enumerate(iter_cells(plans, options, thumb_width=thumb_width, workers=workers)):
        row, col = divmod(position, cols)
        x, y = col * thumb_width, row * (box[1] + LABEL_HEIGHT)
        sheet.paste(thumb, (x + (box[0] - thumb.width) // 2, y + (box[1] - thumb.height) // 2))
        draw.text((x + 3, y + box[1] + 2), _fit(draw, label, font, thumb_width - 6), fill=LABEL_COLOR, font=font)
    return sheet


def _draw_grid(image: Image.Image, tile: int) -> Image.Image:
    """A copy of the picture with the tile boundaries drawn on it."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    line = max(1, min(image.size) // 200)
    for x in range(tile, image.width, tile):
        draw.line([(x, 0), (x, image.height)], fill=GRID_COLOR, width=line)
    for y in range(tile, image.height, tile):
        draw.line([(0, y), (image.width, y)], fill=GRID_COLOR, width=line)
    return image


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """`text`, shortened with "..." from the left until it fits `width` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength("..." + text, font=font) > width:
        text = text[1:]
    return "..." + text
