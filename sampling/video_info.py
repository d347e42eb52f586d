"""`VideoInfo`: what a probe found in a video or an animated picture, the one description every
plan and reader works from (see `probe` for how it is made)."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np

VideoKind = Literal["video", "animation"]


@dataclass(frozen=True, eq=False)
class VideoInfo:
    """The decodable frames of a video's first video stream, in presentation order.

    `timestamps` float64 [num_frames] (seconds from the first frame), `pts` int64 [num_frames]
    (stream time base, what decoders stamp on frames), `keyframes` int64 sorted frame indices
    (where decoding may start). `width` x `height` is the picture as shown, after `rotation`
    (degrees counter-clockwise, 0/90/180/270) is applied. `claimed_frames` / `claimed_duration`:
    what the container header says (0 / None if absent). kind: "video" (decoded by FFmpeg) or
    "animation" (an animated picture decoded by Pillow: pts in milliseconds, one keyframe, the
    first frame, since each frame is drawn over the previous one). damage: one line (no path)
    saying which part of a damaged file is left out, None for a sound file. end_time: seconds
    from the first frame to the end of the last, where the file says (animations).
    """

    path: Path
    num_frames: int
    width: int
    height: int
    rotation: int
    time_base: Fraction
    timestamps: np.ndarray
    pts: np.ndarray
    keyframes: np.ndarray
    claimed_frames: int
    format_name: str
    codec_name: str
    kind: VideoKind = "video"
    claimed_duration: float | None = None
    damage: str | None = None
    end_time: float | None = None

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last one."""
        return self.end_time if self.end_time is not None else float(self.timestamps[-1]) + 1.0 / self.fps

    @property
    def fps(self) -> float:
        """Average frame rate over the frames present (25.0 for a single frame: any is right)."""
        span = float(self.timestamps[-1])
        return (self.num_frames - 1) / span if self.num_frames > 1 and span > 0 else 25.0

    @property
    def is_variable_rate(self) -> bool:
        """True when frame durations differ by more than 10 % (index/fps is then not a time)."""
        steps = np.diff(self.timestamps)
        return len(steps) > 1 and float(steps.max() - steps.min()) > 0.1 * float(np.median(steps))
