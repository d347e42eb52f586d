"""Opening and decoding with PyAV, shared by the probe and the PyAV reader so that what the probe
calls decodable is exactly what the reader will return.

Two rules of decoding a damaged file: a packet FFmpeg flags corrupt (the cut tail of a truncated
file, its data partly past the end) is never fed to the decoder, and a packet that fails to decode
is skipped (the decoder conceals what it can). Feeding the cut packet to a frame-threaded decoder
raises an error that also loses the frames still in flight in the other threads: the last frames
before the cut, which decode fine on their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av

from sampling.ffmpeg_logs import pyav_logs_routed, route_pyav_logs

# What opening or reading a file through PyAV may raise for bad media or a bad path.
AV_ERRORS = (av.FFmpegError, OSError, ValueError, UnicodeError)


def open_input(path: Path) -> av.container.InputContainer:
    """`av.open` for reading, FFmpeg's messages routed to our logger (see `ffmpeg_logs`)."""
    route_pyav_logs()
    return av.open(str(path), metadata_errors="ignore")


def threaded_video_stream(container: av.container.InputContainer, threads: int | None = None) -> av.VideoStream:
    """The first video stream, decoded with frame and slice threads (~2x on 2 cores, a few frames
    of delay): the reader's setting, which the probe's decode check must share. threads: FFmpeg's
    threads for this decoder, None for its own choice (one per core); 1 decodes on the calling
    thread, what each of several decoders running side by side does best (`sampling.frames`).
    While FFmpeg's messages are routed to our logger (-vv), on the calling thread alone: PyAV's log
    callback can deadlock a threaded decode (`ffmpeg_logs`)."""
    stream = container.streams.video[0]
    if pyav_logs_routed() or threads == 1:
        stream.codec_context.thread_count = 1  # no FFmpeg worker threads
    else:
        stream.thread_type = "AUTO"
        if threads is not None:
            stream.codec_context.thread_count = threads
    return stream


def decode_video(container: av.container.InputContainer, stream: av.VideoStream) -> Iterator[av.VideoFrame]:
    """Frames in presentation order from the current read position (see the module docstring).
    A read error ends the input like its end would: the frames in flight are still delivered."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except (av.FFmpegError, OSError):
            yield from _drain(stream)
            return
        if packet.is_corrupt:
            continue
        try:
            yield from packet.decode()
        except av.InvalidDataError:
            continue


def _drain(stream: av.VideoStream) -> Iterator[av.VideoFrame]:
    try:
        yield from stream.codec_context.decode(None)
    except av.FFmpegError:
        return
