"""PyAV reader: decode only from the keyframe before each wanted frame (the decode floor).

For each GOP holding wanted frames (`gop.plan_decode_runs`): seek to its keyframe, decode forward
until the GOP's last wanted frame is out, convert only the wanted ones to RGB. Consecutive GOPs
continue without a seek. Decoded frames are matched to plan indices by their presentation
timestamp, so B-frame reordering and variable frame rate cannot shift the result. Packets are
read and decoded as the probe's decode check does (`pyav_io.decode_video`: the cut packet of a
truncated file is never fed), so every frame the probe counted comes out.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import av
import numpy as np

from sampling.errors import BackendError, display_path
from sampling.gop import DecodeStats, plan_decode_runs
from sampling.probe import VideoInfo
from sampling.pyav_io import AV_ERRORS, decode_video, open_input, threaded_video_stream


def read_frames_pyav(
    info: VideoInfo, indices: Sequence[int], *, stats: DecodeStats | None = None, threads: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(index, uint8 RGB [height, width, 3])` for each sorted index, upright, lazily.
    threads: FFmpeg's decoding threads (`pyav_io.threaded_video_stream`).
    Raises BackendError naming the first index that could not be decoded."""
    stats = stats if stats is not None else DecodeStats()
    try:
        container = open_input(info.path)
    except AV_ERRORS as e:
        raise BackendError(f"PyAV cannot open {display_path(info.path)}: {e}") from e
    with container:
        stream = threaded_video_stream(container, threads)
        position = -1  # plan index of the last frame the decoder gave us
        frames = decode_video(container, stream)
        for run in plan_decode_runs(indices, info.keyframes):
            # Continue when the decoder is already inside this GOP before its first wanted frame,
            # or just before its keyframe; otherwise jump.
            if not (run.keyframe - 1 <= position < run.wanted[0]):
                container.seek(int(info.pts[run.keyframe]), stream=stream, backward=True, any_frame=False)
                frames = decode_video(container, stream)
                stats.num_seeks += 1
            pending = list(run.wanted)
            for frame in frames:
                stats.num_decoded += 1
                position = _index_of(info, frame)
                if position < pending[0]:
                    continue
                if position > pending[0]:  # frames come out in presentation order: it was lost
                    break
                yield position, _to_rgb(frame, info.rotation)
                pending.pop(0)
                if not pending:
                    break
            if pending:
                raise BackendError(f"PyAV did not decode frame {pending[0]} of {display_path(info.path)}")


def _index_of(info: VideoInfo, frame: av.VideoFrame) -> int:
    """Plan index of a decoded frame: the probed frame with the same presentation timestamp."""
    stamp = frame.pts if frame.pts is not None else frame.dts
    if stamp is None:
        return -1
    return int(np.searchsorted(info.pts, stamp, side="right")) - 1


def _to_rgb(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """Upright RGB: `rotation` is counter-clockwise, like `np.rot90`."""
    rgb = frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, rotation // 90)) if rotation else rgb
