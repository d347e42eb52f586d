"""`SamplingOptions`: every knob of frame sampling in one frozen object, checked on creation.

Defaults follow LongLLaVA: 128 frames per video, 336-px CLIP inputs, tiles of the same side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Backend = Literal["auto", "pyav", "decord", "opencv"]
BACKENDS: tuple[Backend, ...] = ("auto", "pyav", "decord", "opencv")

# LongLLaVA-9B fits ~1173 images on an 80 GB GPU (docs/format.md, Published figures); more frames than this is a typo.
MAX_FRAMES = 1024
DEFAULT_NUM_FRAMES = 128
DEFAULT_IMAGE_SIZE = 336
# 100 tiles of 144 tokens is 14.4K visual tokens for one image: a 3360×3360 scan at 336 px.
DEFAULT_MAX_TILES = 100


@dataclass(frozen=True, kw_only=True)
class SamplingOptions:
    """How to turn paths into model inputs.

    Videos and image folders: `num_frames` spread evenly over the clip (or over the folder's
    images), or, when `fps` is set, one frame every `1/fps` seconds capped at `max_frames`
    (thinned evenly when over the cap). `start` / `end` (seconds) cut a window of each video.
    Images: one `image_size`² input, or with `tiles` the global image plus a raster grid of
    `tile_size`² tiles (at most `max_tiles`); tiling applies to image files named directly, not
    to the images of a folder (those form a sequence). `backend` picks the video decoder; "auto" uses
    PyAV's keyframe-aware reader and falls back to the others if it cannot read a file.
    """

    num_frames: int = DEFAULT_NUM_FRAMES
    fps: float | None = None
    max_frames: int = MAX_FRAMES
    start: float | None = None
    end: float | None = None
    recursive: bool = False
    tiles: bool = False
    tile_size: int | None = None
    max_tiles: int = DEFAULT_MAX_TILES
    image_size: int = DEFAULT_IMAGE_SIZE
    backend: Backend = "auto"

    def __post_init__(self) -> None:
        _check(1 <= self.num_frames <= MAX_FRAMES, f"num_frames must be in 1..{MAX_FRAMES}, got {self.num_frames}")
        _check(1 <= self.max_frames <= MAX_FRAMES, f"max_frames must be in 1..{MAX_FRAMES}, got {self.max_frames}")
        for name in ("fps", "start", "end"):  # inf and nan pass every comparison below or none
            value = getattr(self, name)
            _check(value is None or math.isfinite(value), f"{name} must be finite ({_UNITS[name]}), got {value}")
        _check(self.fps is None or self.fps > 0, f"fps must be positive, got {self.fps}")
        _check(self.start is None or self.start >= 0, f"start must be >= 0 seconds, got {self.start}")
        _check(self.end is None or self.end > 0, f"end must be > 0 seconds, got {self.end}")
        if self.start is not None and self.end is not None:
            _check(self.start < self.end, f"start ({self.start} s) must be before end ({self.end} s)")
        _check(self.image_size >= 1, f"image_size must be positive, got {self.image_size}")
        _check(self.tile_size is None or self.tile_size >= 1, f"tile_size must be positive, got {self.tile_size}")
        _check(self.max_tiles >= 1, f"max_tiles must be positive, got {self.max_tiles}")
        _check(self.backend in BACKENDS, f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")

    @property
    def tile_side(self) -> int:
        """Side of a tile in pixels: `tile_size`, else the model's `image_size`."""
        return self.tile_size or self.image_size

    @property
    def frame_budget(self) -> int:
        """Most frames one video or folder may contribute."""
        return self.max_frames if self.fps is not None else min(self.num_frames, self.max_frames)


_UNITS = {"fps": "frames per second", "start": "seconds", "end": "seconds"}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)
