"""One entry point over the video backends, with fallback for "auto".

"auto" starts with PyAV, whose keyframe-aware reader decodes the fewest frames, measured fastest and
returned the right frames where decord did not (benchmarks/RESULTS.md); decord and OpenCV follow.
When a backend cannot serve a file (BackendError: not installed, distrusted, a frame missing), the
next one takes over from the first frame not yet delivered, so frames already yielded are never
repeated. A backend named explicitly is the only one used: if it cannot serve the file, that is an
InputError naming it, never a silent switch to another decoder.

Animated pictures (`VideoInfo.kind == "animation"`) are always decoded by Pillow, whatever the
backend: the video backends name FFmpeg-based decoders, and only Pillow composites GIF, WebP and
APNG frames the way viewers show them (FFmpeg has no animated WebP decoder here).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from sampling.errors import BackendError, InputError, display_path
from sampling.gop import DecodeStats
from sampling.options import Backend
from sampling.video_info import VideoInfo

log = logging.getLogger(__name__)

Reader = Callable[[VideoInfo, Sequence[int]], Iterator[tuple[int, np.ndarray]]]
FALLBACK_ORDER: tuple[str, ...] = ("pyav", "decord", "opencv")


def backend_order(backend: Backend) -> tuple[str, ...]:
    """The backends to try, in order, for the `backend` option: all for "auto", else just the one."""
    return FALLBACK_ORDER if backend == "auto" else (backend,)


def read_video_frames(
    info: VideoInfo,
    indices: Sequence[int],
    *,
    backend: Backend = "auto",
    batch_size: int = 8,
    stats: DecodeStats | None = None,
    threads: int | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(index, uint8 RGB [height, width, 3])` for every sorted index, upright, lazily.
    threads: PyAV's decoding threads (None: FFmpeg's choice; see `pyav_io.threaded_video_stream`).

    Raises InputError naming the file when no backend can decode a wanted frame, or naming the
    backend when one was named and cannot.
    """
    shown = display_path(info.path)
    if info.kind == "animation":
        try:
            yield from read_frames_pillow(info, indices, stats=stats)
        except BackendError as e:
            raise InputError(f"{shown}: {e}; the animated image may be damaged, try re-saving it") from e
        return
    readers = _readers(batch_size, stats, threads)
    remaining = [int(i) for i in indices]
    failures: list[str] = []
    for name in backend_order(backend):
        if not remaining:
            return
        try:
            for index, frame in readers[name](info, remaining):
                yield index, frame
                remaining = remaining[remaining.index(index) + 1 :]
        # Not only BackendError: a decoder library failing on bad media in a way we did not foresee
        # (av.FFmpegError, cv2.error, ...) must still end in the next backend or an InputError.
        except Exception as e:
            failures.append(f"{name}: {' '.join(str(e).split())}")  # one line, whatever the library said
            log.info("%s: %s cannot serve this video (%s)", shown, name, e)
        else:
            if remaining:
                failures.append(f"{name}: stopped before frame {remaining[0]}")
    if not remaining:
        return
    if backend != "auto":
        reason = failures[0].partition(": ")[2]
        raise InputError(f"{shown}: the {backend} backend cannot read this video ({reason}); use --backend auto")
    raise InputError(
        f"{shown}: frame {remaining[0]} cannot be decoded ({'; '.join(failures)}); "
        "the file may be damaged, try re-encoding it"
    )


def _readers(batch_size: int, stats: DecodeStats | None, threads: int | None) -> dict[str, Reader]:
    return {
        "pyav": lambda i, idx: read_frames_pyav(i, idx, stats=stats, threads=threads),
        "decord": lambda i, idx: read_frames_decord(i, idx, batch_size=batch_size),
        "opencv": lambda i, idx: read_frames_opencv(i, idx),
    }


# Each backend's reader, its decoder library (PyAV, decord, OpenCV) imported only when it first
# reads a file, so that importing `sampling` (or `model`) loads none of them.


def read_frames_pyav(
    info: VideoInfo, indices: Sequence[int], *, stats: DecodeStats | None = None, threads: int | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    from sampling.video_pyav import read_frames_pyav as read

    return read(info, indices, stats=stats, threads=threads)


def read_frames_decord(
    info: VideoInfo, indices: Sequence[int], *, batch_size: int = 8
) -> Iterator[tuple[int, np.ndarray]]:
    from sampling.video_decord import read_frames_decord as read

    return read(info, indices, batch_size=batch_size)


def read_frames_opencv(info: VideoInfo, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    from sampling.video_opencv import read_frames_opencv as read

    return read(info, indices)


def read_frames_pillow(
    info: VideoInfo, indices: Sequence[int], *, stats: DecodeStats | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    from sampling.video_pillow import read_frames_pillow as read

    return read(info, indices, stats=stats)
