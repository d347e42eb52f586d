"""Pillow reader for animated GIF, WebP and PNG: frames decoded in order, up to the last wanted one.

Each frame of an animated picture is drawn over what the previous ones left (disposal, blending),
so frame k exists only once frames 0..k-1 are decoded: Pillow's `seek` moves forward one frame at
a time and keeps only the current canvas, never the frames behind it. Sorted indices never seek
back. Frames leave as 8-bit RGB like still pictures (`images.to_rgb`: transparency on white).
EXIF orientation is not applied to animations (no viewer agrees on it for them).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from sampling.animation import AnimationFormatError, read_animation_timing
from sampling.errors import BackendError, InputError, display_path
from sampling.gop import DecodeStats
from sampling.images import to_rgb
from sampling.video_info import VideoInfo

_PILLOW_ERRORS = (OSError, ValueError, EOFError, SyntaxError, Image.DecompressionBombError)


def probe_animation(path: Path) -> VideoInfo:
    """Frames and timing of an animated picture, from its headers; the first frame is decoded to
    prove the pixels decode. Raises InputError naming the file otherwise."""
    shown = display_path(path)
    try:
        with Image.open(path) as image:
            pillow_format, size = image.format, image.size
            image.load()
        timing = read_animation_timing(path, pillow_format)
    except (AnimationFormatError, *_PILLOW_ERRORS) as e:
        raise InputError(f"{shown}: the animated image is damaged ({' '.join(str(e).split())}); re-save it") from e
    durations = np.asarray(timing.durations_ms, dtype=np.float64)
    if len(durations) == 0:
        raise InputError(f"{shown}: no frame of the animation is complete; the file is damaged or cut short")
    starts = np.concatenate([[0.0], np.cumsum(durations[:-1])])
    pts = np.round(starts).astype(np.int64)  # frames last >= 10 ms: rounding to ms keeps them distinct
    total = float(durations.sum()) / 1000
    damage = None
    if not timing.complete:
        damage = f"the file is cut short: only {len(pts)} frames ({total:.1f} s) decodable; sampling from those"
    return VideoInfo(
        path=path,
        num_frames=len(pts),
        width=size[0],
        height=size[1],
        rotation=0,
        time_base=Fraction(1, 1000),
        timestamps=_frozen(pts / 1000.0),
        pts=_frozen(pts),
        keyframes=_frozen(np.zeros(1, dtype=np.int64)),
        claimed_frames=timing.claimed_frames,
        format_name=timing.format_name,
        codec_name=timing.format_name,
        kind="animation",
        damage=damage,
        end_time=total,
    )


def read_frames_pillow(
    info: VideoInfo, indices: Sequence[int], *, stats: DecodeStats | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(index, uint8 RGB [height, width, 3])` for each sorted index, lazily. Raises
    BackendError naming the first frame Pillow could not decode."""
    stats = stats if stats is not None else DecodeStats()
    try:
        image = Image.open(info.path)
    except _PILLOW_ERRORS as e:
        raise BackendError(f"Pillow cannot open the file: {e}") from e
    with image:
        # APNG: a default image before the animation is Pillow's frame 0 but not part of it.
        offset = 1 if image.format == "PNG" and image.info.get("default_image") else 0
        for index in indices:
            try:
                image.seek(int(index) + offset)
                rgb = np.asarray(to_rgb(image))
            except _PILLOW_ERRORS as e:
                raise BackendError(f"Pillow cannot decode frame {index}: {' '.join(str(e).split())}") from e
            stats.num_decoded = int(index) + offset + 1
            yield int(index), rgb


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
