"""FFmpeg's own log lines: on our logger at DEBUG (`-vv`), never raw on the terminal otherwise.

A process here can hold three copies of FFmpeg, one per wheel, each with its own log settings:
- PyAV's. PyAV switches FFmpeg's logging off by default (`av.logging` level None), so PyAV alone
  prints nothing. While the "sampling.ffmpeg" logger is enabled for DEBUG, `route_pyav_logs`
  turns it on at WARNING and hands PyAV's records (loggers "libav.*") to "sampling.ffmpeg" as
  DEBUG records; once DEBUG is off again, it turns it back off. PyAV's Python callback takes the
  GIL from whichever thread FFmpeg logs on, and a frame-threaded decode deadlocks when a worker
  thread logs while the decoding thread holds the GIL waiting for it: so while the messages are
  routed, video is decoded on the calling thread alone (`pyav_logs_routed`, used by
  `pyav_io.threaded_video_stream`): slower, and only in a run that shows them.
- decord's and OpenCV's. They print through FFmpeg's default callback straight to file
  descriptor 2, which Python cannot route. Their level is set to quiet before they open a file
  (`quiet_decord`, `quiet_opencv`) unless DEBUG is on, when their raw lines are let through.
  These readers are fallbacks: a damaged file is trimmed by the probe to what PyAV decodes, so
  they are not reached for it unless named.
"""

from __future__ import annotations

import logging
import os

import av.logging

log = logging.getLogger("sampling.ffmpeg")

_routed = False


class _ToDebug(logging.Handler):
    """Re-emit a PyAV record on "sampling.ffmpeg" at DEBUG, its FFmpeg component in front."""

    def emit(self, record: logging.LogRecord) -> None:
        component = record.name.removeprefix("libav").lstrip(".") or "ffmpeg"
        log.debug("[%s] %s", component, record.getMessage())


_handler = _ToDebug()


def route_pyav_logs() -> None:
    """Send PyAV's FFmpeg messages to "sampling.ffmpeg" at DEBUG while that level is enabled, and
    stop when it is not (cheap; called before each open). Leaves PyAV alone when an application
    has set PyAV's log level itself."""
    global _routed
    wanted = log.isEnabledFor(logging.DEBUG)
    if wanted == _routed or (not _routed and av.logging.get_level() is not None):
        return
    libav = logging.getLogger("libav")
    if wanted:
        libav.addHandler(_handler)
        libav.propagate = False  # the records arrive at WARNING/ERROR: shown only through our DEBUG copy
        av.logging.set_level(av.logging.WARNING)
    else:
        av.logging.set_level(None)
        libav.removeHandler(_handler)
        libav.propagate = True
    _routed = wanted


def pyav_logs_routed() -> bool:
    """Whether PyAV's Python log callback is installed (decode single-threaded then)."""
    return _routed


def quiet_decord(decord_module: object) -> None:
    """decord's FFmpeg: silent unless DEBUG is on. Cheap; called before each open."""
    levels = decord_module.logging  # type: ignore[attr-defined]  (decord is optional: no import here)
    levels.set_level(levels.WARNING if log.isEnabledFor(logging.DEBUG) else levels.QUIET)


def quiet_opencv() -> None:
    """OpenCV's FFmpeg: silent unless DEBUG is on. OpenCV reads OPENCV_FFMPEG_LOGLEVEL once, when its
    FFmpeg backend opens its first file; a value the user set is kept."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "24" if log.isEnabledFor(logging.DEBUG) else "-8")
