"""Which frames to take: pure functions over frame counts and presentation timestamps.

Everything here works on the frames a probe actually found (`VideoInfo.timestamps`, one per
decodable frame in presentation order), never on the container's claimed frame count or
duration, so a plan cannot ask for a frame that does not exist. Variable frame rate is handled
by working on the real timestamps rather than on `index / fps`: both modes are even in time
(`--frames` takes the frames nearest to evenly spaced instants, `--fps` the frame on screen at
each tick), so a phone video whose first third is dense is not sampled mostly from that third.

Dimension letters: docs/glossary.md. Sampling names its counts instead of lettering them:
`num_available` frames, `num_wanted` frames; `timestamps` in seconds, increasing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

# Fractional positions this close to a half are rounded up, as `spread_evenly`'s floor(x + 0.5):
# a constant-rate timeline then gives exactly the frames index spreading gives, float noise aside.
_HALF_TIE = 1e-9


@dataclass(frozen=True)
class FrameSelection:
    """The frames a plan takes. indices: int64, sorted, distinct. num_in_window: frames between
    start and end. num_at_rate: frames the `fps` rate alone would take (before `max_frames`
    thins them), None in uniform mode."""

    indices: np.ndarray
    num_in_window: int
    num_at_rate: int | None = None


def spread_evenly(num_available: int, num_wanted: int) -> np.ndarray:
    """`min(num_wanted, num_available)` distinct positions in `0..num_available-1`, evenly spread,
    first and last included.

    `round(linspace(0, num_available-1, num_wanted))` as LLaVA-NeXT and qwen-vl-utils do: with
    num_wanted <= num_available the step is >= 1, so rounding never merges two positions. Returns
    int64 [min(num_wanted, num_available)].
    """
    count = min(num_wanted, num_available)
    if count <= 1:
        return np.zeros(max(count, 0), dtype=np.int64)
    # floor(x + 0.5) rather than np.round: half-to-even would make the spacing depend on parity.
    # In integers, x = j·(num_available-1)/(count-1): exact, so a position on a half is never float
    # noise away.
    j = np.arange(count, dtype=np.int64)
    return (2 * j * (num_available - 1) + (count - 1)) // (2 * (count - 1))


def spread_evenly_in_time(timestamps: np.ndarray, num_wanted: int) -> np.ndarray:
    """`min(num_wanted, len(timestamps))` distinct positions of `timestamps`, first and last
    included, whose times are the nearest to num_wanted instants spaced evenly from the first frame
    to the last.

    timestamps: float [num_available], increasing. Each instant takes its nearest frame (the
    interpolated position rounded); where the frames are sparser than the instants, two instants
    can share a frame, and later ones move to the following frames (never past the ones the last
    instants need), so the count stays exact. On a constant-rate timeline this equals `spread_evenly`.
    Returns int64 [min(num_wanted, num_available)].
    """
    num_available = len(timestamps)
    count = min(num_wanted, num_available)
    if count <= 1:
        return np.zeros(count, dtype=np.int64)
    instants = np.linspace(timestamps[0], timestamps[-1], count)
    positions = np.interp(instants, timestamps, np.arange(num_available, dtype=np.float64))
    nearest = np.floor(positions + 0.5 + _HALF_TIE).astype(np.int64)
    nearest[0], nearest[-1] = 0, num_available - 1
    # Distinct and sorted: with slack[j] = index[j] - j, index[j] > index[j - 1] is slack[j] >=
    # slack[j - 1] (a running maximum), and room for the frames after j is
    # slack[j] <= num_available - count.
    offsets = np.arange(count, dtype=np.int64)
    slack = np.minimum(np.maximum.accumulate(nearest - offsets), num_available - count)
    return slack + offsets


def select_window(timestamps: np.ndarray, start: float | None, end: float | None) -> tuple[int, int]:
    """The half-open index range `[lo, hi)` of frames shown between `start` and `end` seconds.

    A frame belongs to the window when its presentation time lies in `[start, end]`; with no frame
    inside, the frame on screen at `start` (the last one before it) is used so that a window
    shorter than one frame still yields a frame. Empty (`lo == hi`) only when `start` is past the
    last frame.
    """
    n = len(timestamps)
    lo = 0 if start is None else int(np.searchsorted(timestamps, start, side="left"))
    hi = n if end is None else int(np.searchsorted(timestamps, end, side="right"))
    if lo >= n:
        return n, n
    if hi <= lo:  # window falls between two frames: take the one on screen at `start`
        lo = max(int(np.searchsorted(timestamps, start, side="right")) - 1, 0)
        hi = lo + 1
    return lo, hi


def select_frames(
    timestamps: np.ndarray,
    *,
    num_frames: int,
    fps: float | None = None,
    max_frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> FrameSelection:
    """The frames to decode, with what the window and the rate held before the caps.

    timestamps: float [num_available] presentation times in seconds, increasing.
    Uniform mode (`fps` None): `min(num_frames, max_frames)` frames spread evenly in time over the
    window (`spread_evenly_in_time`). Rate mode: the frame on screen at every multiple of `1/fps`
    from the window's first frame, thinned evenly to `max_frames`.
    """
    lo, hi = select_window(timestamps, start, end)
    cap = max_frames if max_frames is not None else num_frames
    window = timestamps[lo:hi]
    if fps is None:
        return FrameSelection(lo + spread_evenly_in_time(window, min(num_frames, cap)), hi - lo)
    if len(window) == 0:
        return FrameSelection(np.zeros(0, dtype=np.int64), 0, 0)
    num_ticks = int(np.floor((window[-1] - window[0]) * fps + 1e-9)) + 1
    if num_ticks > 16 * len(window):  # far above the video's rate: every frame, without a huge tick array
        picked = np.arange(len(window), dtype=np.int64)
    else:
        ticks = window[0] + np.arange(num_ticks) / fps
        # The frame on screen at a tick is the last one whose timestamp is <= the tick.
        picked = np.unique(np.searchsorted(window, ticks + 1e-9, side="right") - 1)
    return FrameSelection(lo + picked[spread_evenly(len(picked), cap)], hi - lo, len(picked))


def select_frame_indices(timestamps: np.ndarray, **options: Any) -> np.ndarray:
    """`select_frames(timestamps, **options).indices`: int64, sorted and distinct, all in
    `0..len(timestamps)-1`."""
    return select_frames(timestamps, **options).indices
