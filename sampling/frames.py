"""Plans to model inputs, lazily: one preprocessed picture at a time, in prompt order.

A video is decoded a few frames ahead of the consumer (`batch_size`), never whole; a folder's
images are opened one by one; tiles are cut one by one. Only the pixels of the item being yielded
(plus the decoder's small look-ahead) are alive at any moment.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from PIL import Image

from sampling.gop import DecodeStats
from sampling.images import load_image
from sampling.options import SamplingOptions
from sampling.plan import InputPlan
from sampling.preprocess import iter_tiles, preprocess_image
from sampling.readers import read_video_frames

FrameKind = Literal["image", "frame", "tile"]


@dataclass(frozen=True, eq=False)
class SampledFrame:
    """One model image.

    kind: "image" (a picture, a folder image, or the global view of a tiled picture), "frame" (a
    video frame) or "tile". index/timestamp: as in the plan's `PlannedFrame` (None for a lone
    picture and its tiles). tile: (row, col) of a tile, else None.
    pixels: float32 [3, image_size, image_size], CLIP-normalised.
    """

    source: Path
    kind: FrameKind
    index: int | None
    timestamp: float | None
    tile: tuple[int, int] | None
    pixels: torch.Tensor


def iter_frames(
    plans: InputPlan | Sequence[InputPlan],
    options: SamplingOptions | None = None,
    *,
    batch_size: int = 8,
    stats: DecodeStats | None = None,
) -> Iterator[SampledFrame]:
    """Yield every model image of `plans`, in order: exactly `plan.num_images` per plan.

    batch_size: video frames a backend may decode ahead of the consumer (decord's `get_batch`).
    stats: when given, filled with the frames PyAV decoded and the seeks it made.
    Raises InputError naming the file when media that probed fine fails to decode.
    """
    options = options or SamplingOptions()
    for plan in [plans] if isinstance(plans, InputPlan) else plans:
        if plan.kind == "video":
            yield from _iter_video(plan, options, batch_size, stats)
        elif plan.kind == "tiled":
            yield from _iter_tiled(plan, options)
        else:
            for planned in plan.frames:
                image = load_image(planned.source, min_side=options.image_size)
                index = planned.index if plan.kind == "sequence" else None
                pixels = preprocess_image(image, options.image_size)
                yield SampledFrame(planned.source, "image", index, None, None, pixels)


def _iter_video(
    plan: InputPlan, options: SamplingOptions, batch_size: int, stats: DecodeStats | None
) -> Iterator[SampledFrame]:
    assert plan.video is not None, "a video plan carries its VideoInfo"
    times = {f.index: f.timestamp for f in plan.frames}
    decoded = read_video_frames(plan.video, list(times), backend=options.backend, batch_size=batch_size, stats=stats)
    for index, rgb in decoded:
        pixels = preprocess_image(Image.fromarray(rgb), options.image_size)
        yield SampledFrame(plan.source, "frame", index, times[index], None, pixels)


def load_tiled_picture(plan: InputPlan) -> Image.Image:
    """The picture a "tiled" plan cuts its tiles from: native resolution, or `plan.scaled_size`
    when scaled to fit `max_tiles` (a JPEG then decoded at a reduced DCT scale where it can)."""
    return load_image(plan.source, fit=plan.scaled_size)


def _iter_tiled(plan: InputPlan, options: SamplingOptions) -> Iterator[SampledFrame]:
    image = load_tiled_picture(plan)
    yield SampledFrame(plan.source, "image", None, None, None, preprocess_image(image, options.image_size))
    for row, col, tile in iter_tiles(image, options.tile_side):
        yield SampledFrame(plan.source, "tile", None, None, (row, col), preprocess_image(tile, options.image_size))
