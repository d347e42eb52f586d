"""What a video really holds, without decoding its pictures (bar one, or one GOP when damaged).

`probe_video` demuxes every packet (no decoding: ~0.2 s for 30K packets of a 20-min 720p file)
to count the frames that are really there, with their presentation timestamps and keyframes.
Container headers over-report frame counts (truncated files, hand-edited AVI headers; decord#373
loops forever on those) and variable-frame-rate phone videos make `index / fps` wrong; the packet
table is the ground truth every plan and reader works from. One frame is then decoded to check the
stream decodes at all and to read the display rotation phone videos carry.

Damaged files are used as far as they decode. A packet whose data is cut by the end of the file
(FFmpeg flags it corrupt) is not a frame. When the scan meets such a packet, a read error, or
fewer frames than the header claims, the probe decodes the last GOP the way the reader will
(`pyav_io.decode_video`) and keeps the frames up to the first that does not come out; if none of
that GOP does, it bisects over the earlier GOPs. The cost stays one GOP for a cut file, a few for
worse, nothing for a sound one. `VideoInfo.damage` then says what was left out.

Animated GIF, WebP and PNG are videos too (`animation`): timing from their headers, frames
decoded by Pillow (`video_pillow`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from sampling.errors import InputError, display_path
from sampling.pyav_io import AV_ERRORS, decode_video, open_input, threaded_video_stream
from sampling.sniff import VIDEO_FORMATS, animated_format, describe_unusable, detect_media_kind, is_video_container
from sampling.video_info import VideoInfo
from sampling.video_pillow import probe_animation

__all__ = ["VideoInfo", "detect_media_kind", "probe_video"]


@dataclass(frozen=True)
class _PacketScan:
    pts: np.ndarray  # int64 [num_packets], file order
    keys: np.ndarray  # bool [num_packets]
    suspect: bool  # a cut packet or a read error: the tail may not decode


def probe_video(path: Path) -> VideoInfo:
    """Count and time the frames of `path`'s first video stream (or of an animated picture). Raises
    InputError for anything that is not a decodable video with at least one frame."""
    if animated_format(path) is not None:
        return probe_animation(path)
    shown = display_path(path)
    try:
        container = open_input(path)
    except AV_ERRORS as e:
        raise InputError(f"{shown}: {describe_unusable(path)}") from e
    with container:
        if not is_video_container(container):
            if set(container.format.name.split(",")) & VIDEO_FORMATS or container.streams.audio:
                raise InputError(f"{shown}: {describe_unusable(path)}")
            raise InputError(f"{shown}: is not a video (format {container.format.name}); give a file with video frames")
        stream = container.streams.video[0]
        scan = _scan_packets(container, stream, _file_size(path))
        time_base = Fraction(stream.time_base or Fraction(1, 90000))
        header = dict(
            time_base=time_base,
            claimed_frames=int(stream.frames or 0),
            claimed_duration=_claimed_duration(container, stream, time_base),
            format_name=container.format.name,
            codec_name=stream.codec_context.name,
        )
    if len(scan.pts) == 0:
        raise InputError(f"{shown}: the video stream has no frames; the file is empty or cut before the first frame")
    order = np.argsort(scan.pts, kind="stable")
    pts, keys = scan.pts[order], scan.keys[order]
    distinct = np.concatenate([[True], np.diff(pts) > 0])  # a repeated timestamp is not a new frame
    pts, keys = pts[distinct], keys[distinct]
    width, height, rotation = _decode_first_frame(path, shown)
    info = VideoInfo(
        path=path,
        num_frames=len(pts),
        width=width,
        height=height,
        rotation=rotation,
        timestamps=_frozen((pts - pts[0]).astype(np.float64) * float(time_base)),
        pts=_frozen(pts),
        keyframes=_frozen(np.flatnonzero(keys).astype(np.int64)),
        **header,
    )
    if scan.suspect or info.claimed_frames > info.num_frames:
        info = _keep_decodable(info, shown)
    return info


def _scan_packets(container: av.container.InputContainer, stream: av.VideoStream, file_size: int) -> _PacketScan:
    """Timestamps and keyframe flags of the stream's complete packets, in file order. A read
    error ends the scan: everything before it is real, everything after unreachable."""
    pts: list[int] = []
    keys: list[bool] = []
    suspect = False
    try:
        for packet in container.demux(stream):
            # Size 0: end-of-stream marker or an AVI "drop frame" that repeats the previous one.
            # Discard: outside an MP4 edit list; decoders drop those frames.
            if packet.size == 0 or packet.is_discard:
                continue
            # Corrupt, or data past the end of the file: the cut tail of a truncated file.
            if packet.is_corrupt or (packet.pos is not None and packet.pos + packet.size > file_size):
                suspect = True
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            pts.append(stamp if stamp is not None else (pts[-1] + 1 if pts else 0))
            keys.append(packet.is_keyframe)
    except (av.FFmpegError, OSError):
        suspect = True
    return _PacketScan(np.asarray(pts, dtype=np.int64), np.asarray(keys, dtype=bool), suspect)


def _keep_decodable(info: VideoInfo, shown: str) -> VideoInfo:
    """`info` cut to the frames that decode, with `damage` saying what is left out."""
    try:
        with open_input(info.path) as container:
            num_frames = _count_decodable(container, info)
    except AV_ERRORS as e:
        raise InputError(f"{shown}: the video stream cannot be decoded ({_reason(e)}); re-encode it") from e
    if num_frames == 0:
        raise InputError(f"{shown}: no frame of the video stream decodes; the file is damaged")
    return _cut(info, num_frames)


def _count_decodable(container: av.container.InputContainer, info: VideoInfo) -> int:
    """Length of the run of frames from the first that decode: the last GOP is decoded; only if
    none of it comes out, a bisection over GOPs finds the last one that yields frames."""
    stream = threaded_video_stream(container)
    starts = info.keyframes if len(info.keyframes) and info.keyframes[0] == 0 else np.r_[0, info.keyframes]
    last = len(starts) - 1
    count = _count_decoded_gop(container, stream, info, starts, last)
    if count:
        return int(starts[last]) + count
    good, bad = 0, last  # GOP 0 yields frames: the probe decoded the first one
    while bad - good > 1:
        middle = (good + bad) // 2
        good, bad = (middle, bad) if _count_decoded_gop(container, stream, info, starts, middle) else (good, middle)
    return int(starts[good]) + _count_decoded_gop(container, stream, info, starts, good)


def _count_decoded_gop(
    container: av.container.InputContainer, stream: av.VideoStream, info: VideoInfo, starts: np.ndarray, g: int
) -> int:
    """How many frames of GOP `g` decode in a row from its keyframe (frames up to the next one)."""
    first = int(starts[g])
    end = int(starts[g + 1]) if g + 1 < len(starts) else info.num_frames
    container.seek(int(info.pts[first]), stream=stream, backward=True, any_frame=False)
    expected = first
    for frame in decode_video(container, stream):
        stamp = frame.pts if frame.pts is not None else frame.dts
        index = int(np.searchsorted(info.pts, stamp, side="right")) - 1 if stamp is not None else -1
        if index < expected:
            continue  # before the GOP (open-GOP leading frames) or a repeat
        if index > expected or index >= end:
            break
        expected += 1
        if expected == end:
            break
    return expected - first


def _cut(info: VideoInfo, num_frames: int) -> VideoInfo:
    """The first `num_frames` frames of `info`, with the damage described."""
    cut = dataclasses.replace(
        info,
        num_frames=num_frames,
        timestamps=_frozen(np.array(info.timestamps[:num_frames])),
        pts=_frozen(np.array(info.pts[:num_frames])),
        keyframes=_frozen(np.array(info.keyframes[info.keyframes < num_frames])),
    )
    span, claimed, dropped = cut.duration, cut.claimed_duration, info.num_frames - num_frames
    if claimed is not None and claimed - span > max(1.0 / cut.fps, 0.05):
        note = f"only {span:.1f} s of {claimed:.1f} s decodable; sampling from that part"
    elif claimed is None and cut.claimed_frames > num_frames:
        note = f"only {num_frames} of {cut.claimed_frames} frames decodable; sampling from those"
    elif dropped:
        note = f"the last {dropped} frames do not decode; sampling from the {span:.1f} s before them"
    else:
        return cut
    return dataclasses.replace(cut, damage=note)


def _claimed_duration(
    container: av.container.InputContainer, stream: av.VideoStream, time_base: Fraction
) -> float | None:
    if stream.duration:
        return float(stream.duration * time_base)
    if container.duration:
        return container.duration / av.time_base
    return None


def _decode_first_frame(path: Path, shown: str) -> tuple[int, int, int]:
    """Decode one frame: proves the codec works and reads the display rotation (phone videos are
    stored landscape with a rotation matrix). Returns the shown width, height and rotation."""
    try:
        with open_input(path) as container:
            for frame in container.decode(video=0):
                rotation = round(frame.rotation / 90) * 90 % 360
                width, height = frame.width, frame.height
                return (height, width, rotation) if rotation in (90, 270) else (width, height, rotation)
    except AV_ERRORS as e:
        raise InputError(f"{shown}: the video stream cannot be decoded ({_reason(e)}); re-encode it") from e
    raise InputError(f"{shown}: no frame of the video stream decodes; the file is damaged")


def _file_size(path: Path) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 1 << 62


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array


def _reason(error: BaseException) -> str:
    """The library's message on one line, without the path it usually repeats."""
    text = str(getattr(error, "strerror", None) or error)
    filename = getattr(error, "filename", None)
    if isinstance(filename, str) and filename:
        text = text.replace(filename, "")
    return " ".join(text.split()) or type(error).__name__
