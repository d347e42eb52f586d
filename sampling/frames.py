"""Plans to model inputs, lazily: one preprocessed picture at a time, in prompt order.

A video is decoded a few frames ahead of the consumer (`batch_size`), never whole; a folder's
images are opened one by one; tiles are cut one by one. Only the pixels of the item being yielded
(plus the decoder's small look-ahead) are alive at any moment.

With `workers` > 1 the same pictures come from several threads (`parallel.iter_ordered`): each
GOP of a video holding wanted frames (`segments.split_video`), each image of a folder and each
tiled picture is a unit of work with a decoder of its own, and every picture is preprocessed as a
task of its own, so files, GOPs and preprocessing run side by side. The order, the pixels, indices
and timestamps are those of the sequential loop, errors included (raised at the same place, with
the same message); at most `max(batch_size, WINDOW_PER_WORKER · workers)` pictures are decoded
ahead of the consumer. One difference, on damaged files only: where PyAV fails inside a GOP, the
fallback decoder ("auto") takes over from there, but later GOPs start with PyAV again, whereas the
sequential loop keeps the fallback to the end of the video.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image

from sampling.gop import DecodeStats
from sampling.images import load_image
from sampling.options import SamplingOptions
from sampling.parallel import Thunk, Unit, available_cores, decode_window, iter_ordered
from sampling.plan import InputPlan, PlannedFrame
from sampling.preprocess import iter_tiles, preprocess_image
from sampling.readers import read_video_frames
from sampling.segments import split_video

FrameKind = Literal["image", "frame", "tile"]
# `read_video_frames` with the backend and threads bound: (info, indices, stats=) → (index, RGB)s.
VideoReader = Callable[..., Iterator[tuple[int, np.ndarray]]]


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
    workers: int = 1,
) -> Iterator[SampledFrame]:
    """Yield every model image of `plans`, in order: exactly `plan.num_images` per plan.

    batch_size: video frames a backend may decode ahead of the consumer (decord's `get_batch`).
    stats: when given, filled with the frames PyAV decoded and the seeks it made.
    workers: threads decoding and preprocessing (module docstring); 1 runs in the caller's thread.
    The frames are the same for any number of workers.
    Raises InputError naming the file when media that probed fine fails to decode.
    """
    options = options or SamplingOptions()
    plans = [plans] if isinstance(plans, InputPlan) else list(plans)
    if workers <= 1:
        return _iter_sequential(plans, options, batch_size, stats)
    # FFmpeg's own threads share the cores with the other decoders: one each when they fill them
    # (frame threads cost ~35 % more CPU per frame than one thread, measured on H.264 720p).
    read = partial(read_video_frames, backend=options.backend, batch_size=batch_size, threads=_decoder_threads(workers))
    units = [unit for plan in plans for unit in _units(plan, options, read, stats)]
    return iter_ordered(units, workers=workers, window=decode_window(batch_size, workers))


def _iter_sequential(
    plans: list[InputPlan], options: SamplingOptions, batch_size: int, stats: DecodeStats | None
) -> Iterator[SampledFrame]:
    for plan in plans:
        if plan.kind == "video":
            yield from _iter_video(plan, options, batch_size, stats)
        elif plan.kind == "tiled":
            yield from (thunk() for thunk in _tiled_steps(plan, options))
        else:
            for planned in plan.frames:
                yield from (thunk() for thunk in _image_steps(plan, planned, options))


def _iter_video(
    plan: InputPlan, options: SamplingOptions, batch_size: int, stats: DecodeStats | None
) -> Iterator[SampledFrame]:
    assert plan.video is not None, "a video plan carries its VideoInfo"
    times = {f.index: f.timestamp for f in plan.frames}
    decoded = read_video_frames(plan.video, list(times), backend=options.backend, batch_size=batch_size, stats=stats)
    for index, rgb in decoded:
        yield _video_frame(plan, index, times[index], rgb, options.image_size)


def _video_frame(plan: InputPlan, index: int, timestamp: float | None, rgb: np.ndarray, size: int) -> SampledFrame:
    return SampledFrame(plan.source, "frame", index, timestamp, None, preprocess_image(Image.fromarray(rgb), size))


def _picture(
    source: Path, kind: FrameKind, index: int | None, tile: tuple[int, int] | None, image: Image.Image, size: int
) -> SampledFrame:
    return SampledFrame(source, kind, index, None, tile, preprocess_image(image, size))


def _image_steps(plan: InputPlan, planned: PlannedFrame, options: SamplingOptions) -> Iterator[Thunk[SampledFrame]]:
    """One picture of an "image" or "sequence" plan: opened in the step, preprocessed in the thunk."""
    image = load_image(planned.source, min_side=options.image_size)
    index = planned.index if plan.kind == "sequence" else None
    yield partial(_picture, planned.source, "image", index, None, image, options.image_size)


def _tiled_steps(plan: InputPlan, options: SamplingOptions) -> Iterator[Thunk[SampledFrame]]:
    """The global view, then each tile in raster order: cut in the step, preprocessed in the thunk."""
    image = load_tiled_picture(plan)
    image.load()  # read by several threads at once: loaded once, here
    yield partial(_picture, plan.source, "image", None, None, image, options.image_size)
    for row, col, tile in iter_tiles(image, options.tile_side):
        yield partial(_picture, plan.source, "tile", None, (row, col), tile, options.image_size)


def _decoder_threads(workers: int) -> int:
    return max(1, available_cores() // workers)


def _units(
    plan: InputPlan, options: SamplingOptions, read: VideoReader, stats: DecodeStats | None
) -> Iterator[Unit[SampledFrame]]:
    """The plan's pictures as units of work for `iter_ordered` (module docstring)."""
    if plan.kind == "tiled":
        yield Unit(plan.num_images, partial(_tiled_steps, plan, options))
    elif plan.kind != "video":
        for planned in plan.frames:
            yield Unit(1, partial(_image_steps, plan, planned, options))
    else:
        assert plan.video is not None, "a video plan carries its VideoInfo"
        times = {f.index: f.timestamp for f in plan.frames}
        indices = list(times)
        for segment in split_video(plan.video, indices, options.backend):
            rest = tuple(indices[indices.index(segment[0]) :])
            yield Unit(
                len(segment), partial(_segment_steps, plan, rest, len(segment), times, options.image_size, read, stats)
            )


_stats_lock = threading.Lock()


def _segment_steps(
    plan: InputPlan,
    rest: tuple[int, ...],
    size: int,
    times: dict[int, float | None],
    image_size: int,
    read: VideoReader,
    stats: DecodeStats | None,
) -> Iterator[Thunk[SampledFrame]]:
    """The first `size` frames of `rest` (a segment, then every later wanted frame of the video), by
    a decoder of its own: decoded in the step, preprocessed in the thunk. The reader is handed the
    rest of the video, read lazily and left after the segment, so that when PyAV fails inside the
    segment the fallback decoders are tried on what the sequential loop would try them on, and
    fail with the same message."""
    assert plan.video is not None
    own = DecodeStats()
    decoded = read(plan.video, rest, stats=own)
    try:
        for index, rgb in itertools.islice(decoded, size):
            yield partial(_video_frame, plan, index, times[index], rgb, image_size)
    finally:
        decoded.close()
        if stats is not None:
            with _stats_lock:  # segments end on several threads
                stats.num_decoded += own.num_decoded
                stats.num_seeks += own.num_seeks


def load_tiled_picture(plan: InputPlan) -> Image.Image:
    """The picture a "tiled" plan cuts its tiles from: native resolution, or `plan.scaled_size`
    when scaled to fit `max_tiles` (a JPEG then decoded at a reduced DCT scale where it can)."""
    return load_image(plan.source, fit=plan.scaled_size)
