"""Where one video may be split between decoders: GOP-aligned segments of the wanted frames.

A compressed video can only be entered at a keyframe (`gop`), so the wanted frames are cut where a
new GOP starts: each segment is the wanted frames of one GOP, decoded from its keyframe by a
decoder of its own, and together they decode exactly the floor, as the sequential reader does. Only
the keyframe-aware PyAV reader ("auto" or "pyav") is split: decord indexes the whole file when it
opens one, OpenCV seeks unreliably, and Pillow composites an animation from its first frame on.
"""

from __future__ import annotations

from collections.abc import Sequence

from sampling.gop import plan_decode_runs
from sampling.options import Backend
from sampling.video_info import VideoInfo

SPLIT_BACKENDS: tuple[Backend, ...] = ("auto", "pyav")


def split_video(info: VideoInfo, indices: Sequence[int], backend: Backend) -> list[tuple[int, ...]]:
    """Sorted `indices` cut into segments decodable independently: one per GOP holding wanted
    frames, or the whole when the video cannot be split for `backend` (module docstring)."""
    wanted = tuple(int(i) for i in indices)
    if not wanted:
        return []
    if info.kind == "animation" or backend not in SPLIT_BACKENDS:
        return [wanted]
    return [run.wanted for run in plan_decode_runs(wanted, info.keyframes)]
