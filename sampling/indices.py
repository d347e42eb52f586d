"""Which frames to take: pure functions over frame counts and presentation timestamps.

Everything here works on the frames a probe actually found (`VideoInfo.timestamps`, one per
decodable frame in presentation order), never on the container's claimed frame count or
duration, so a plan cannot ask for a frame that does not exist. Variable frame rate is handled
by working on the real timestamps rather than on `index / fps`.

Glossary: n = frames available, k = frames wanted, t = timestamps in seconds (sorted, t[0] = 0).
"""

from __future__ import annotations

import numpy as np


def spread_evenly(num_available: int, num_wanted: int) -> np.ndarray:
    """`min(k, n)` distinct positions in `0..n-1`, evenly spread, first and last included.

    `round(linspace(0, n-1, k))` as LLaVA-NeXT and qwen-vl-utils do: with k <= n the step is >= 1,
    so rounding never merges two positions. Returns int64 [min(k, n)].
    """
    count = min(num_wanted, num_available)
    if count <= 0:
        return np.zeros(0, dtype=np.int64)
    # floor(x + 0.5) rather than np.round: half-to-even would make the spacing depend on parity.
    return np.floor(np.linspace(0, num_available - 1, count) + 0.5).astype(np.int64)


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


def select_frame_indices(
    timestamps: np.ndarray,
    *,
    num_frames: int,
    fps: float | None = None,
    max_frames: int | None = None,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Indices of the frames to decode, sorted and distinct, all in `0..len(timestamps)-1`.

    timestamps: float [n] presentation times in seconds, non-decreasing.
    Uniform mode (`fps` None): `min(num_frames, max_frames)` frames spread evenly over the window.
    Rate mode: the frame on screen at every multiple of `1/fps` from the window's first frame,
    thinned evenly to `max_frames`. Returns int64 [k].
    """
    lo, hi = select_window(timestamps, start, end)
    cap = max_frames if max_frames is not None else num_frames
    if fps is None:
        return lo + spread_evenly(hi - lo, min(num_frames, cap))
    window = timestamps[lo:hi]
    if len(window) == 0:
        return np.zeros(0, dtype=np.int64)
    num_ticks = int(np.floor((window[-1] - window[0]) * fps + 1e-9)) + 1
    if num_ticks > 16 * len(window):  # far above the video's rate: every frame, without a huge tick array
        picked = np.arange(len(window), dtype=np.int64)
    else:
        ticks = window[0] + np.arange(num_ticks) / fps
        # The frame on screen at tick t is the last one whose timestamp is <= t.
        picked = np.unique(np.searchsorted(window, ticks + 1e-9, side="right") - 1)
    return lo + picked[spread_evenly(len(picked), cap)]
