"""OpenCV reader: seek per wanted frame, or one sequential pass, whichever decodes less.

Seeking (`CAP_PROP_POS_FRAMES`) costs each wanted frame's distance to its keyframe; a pass costs
every frame up to the last wanted one (docs/format.md, Video decoding). OpenCV converts a frame number to a time
with the average frame rate, so on variable-frame-rate video only the pass is exact. Rotation is
applied here, as in the other readers, rather than by OpenCV's auto-orientation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import cv2
import numpy as np

from sampling.errors import BackendError
from sampling.ffmpeg_logs import quiet_opencv
from sampling.gop import count_seek_decodes, count_sequential_decodes
from sampling.probe import VideoInfo

Strategy = Literal["auto", "seek", "sequential"]


def choose_strategy(info: VideoInfo, indices: Sequence[int]) -> Literal["seek", "sequential"]:
    """The cheaper of the two in decoded frames; the pass whenever the frame rate varies."""
    if info.is_variable_rate:
        return "sequential"
    seek_cost = count_seek_decodes(indices, info.keyframes)
    return "seek" if seek_cost < count_sequential_decodes(indices) else "sequential"


def read_frames_opencv(
    info: VideoInfo, indices: Sequence[int], *, strategy: Strategy = "auto"
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(index, uint8 RGB [height, width, 3])` for each sorted index, one at a time.
    Raises BackendError when OpenCV cannot open the file or a frame does not come out."""
    capture = _open(info)
    chosen = choose_strategy(info, indices) if strategy == "auto" else strategy
    try:
        next_index = 0  # frame the next `grab` returns, in the sequential pass
        for index in indices:
            if chosen == "seek":
                capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
            else:
                while next_index < index:
                    if not capture.grab():
                        raise BackendError(f"OpenCV stopped at frame {next_index}")
                    next_index += 1
                next_index += 1
            ok, bgr = capture.read()
            if not ok:
                raise BackendError(f"OpenCV could not read frame {index}")
            yield int(index), _to_rgb(bgr, info.rotation)
    finally:
        capture.release()


def _open(info: VideoInfo) -> cv2.VideoCapture:
    try:
        path = str(info.path).encode("utf-8").decode("utf-8")
    except UnicodeError as e:
        # A surrogate-escaped (non-UTF-8) name segfaults cv2.VideoCapture: never pass one.
        raise BackendError("OpenCV cannot open a file name that is not UTF-8") from e
    quiet_opencv()  # its FFmpeg would print straight to the terminal
    capture = cv2.VideoCapture(path, cv2.CAP_FFMPEG)
    if not capture.isOpened():
        raise BackendError("OpenCV cannot open the file")
    capture.set(cv2.CAP_PROP_ORIENTATION_AUTO, 0)
    return capture


def _to_rgb(bgr: np.ndarray, rotation: int) -> np.ndarray:
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation else rgb
