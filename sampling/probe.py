"""What a file is and what a video really holds, without decoding its pictures.

`detect_media_kind` sniffs content, not the extension: Pillow's header parsers first (cheap, and
they never claim a video), then FFmpeg's demuxers restricted to real video containers (FFmpeg
would otherwise open a `.txt` file as an ANSI-art "video" through its tty demuxer).

`probe_video` demuxes every packet (no decoding: ~0.2 s for 30K packets of a 20-min 720p file)
to count the frames that are really there, with their presentation timestamps and keyframes.
Container headers over-report frame counts (truncated files, hand-edited AVI headers; decord#373
loops forever on those) and variable-frame-rate phone videos make `index / fps` wrong; the packet
table is the ground truth every plan and reader works from. One frame is then decoded to check the
stream decodes at all and to read the display rotation phone videos carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np
from PIL import Image, UnidentifiedImageError

from sampling.errors import InputError, display_path

MediaKind = Literal["image", "video"]

# FFmpeg demuxer names (components of `container.format.name`) that hold real video.
VIDEO_FORMATS = frozenset(
    {"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "mpegts", "mpeg", "flv", "asf"}
    | {"ogg", "nut", "h264", "hevc", "ivf", "m4v"}
)


@dataclass(frozen=True, eq=False)
class VideoInfo:
    """The decodable frames of a video's first video stream, in presentation order.

    `timestamps` float64 [num_frames] (seconds from the first frame), `pts` int64 [num_frames]
    (stream time base, what decoders stamp on frames), `keyframes` int64 sorted frame indices.
    `width` x `height` is the picture as shown, after `rotation` (degrees counter-clockwise,
    0/90/180/270) is applied. `claimed_frames` is the container header's count (0 if absent).
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

    @property
    def duration(self) -> float:
        """Seconds from the first frame to the end of the last one."""
        return float(self.timestamps[-1]) + 1.0 / self.fps

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


def detect_media_kind(path: Path) -> MediaKind | None:
    """"image", "video", or None for anything else (text, audio-only, unreadable)."""
    try:
        with Image.open(path) as image:
            image.size  # noqa: B018  (the header parse above is the probe)
        return "image"
    except Image.DecompressionBombError:
        return "image"  # an image indeed, too big to decode: `load_image` explains
    except (UnidentifiedImageError, OSError, ValueError):
        pass
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            return "video" if _is_video_container(container) else None
    except (av.FFmpegError, OSError, ValueError, UnicodeError):
        return None


def probe_video(path: Path) -> VideoInfo:
    """Count and time the frames of `path`'s first video stream. Raises InputError for anything
    that is not a decodable video with at least one frame."""
    shown = display_path(path)
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, ValueError, UnicodeError) as e:
        raise InputError(f"{shown}: not a readable video ({_reason(e)}); check the file is a complete video") from e
    with container:
        if not _is_video_container(container):
            what = "has no video stream" if container.format.name.split(",")[0] in VIDEO_FORMATS else "is not a video"
            raise InputError(f"{shown}: {what} (format {container.format.name}); give a file with video frames")
        stream = container.streams.video[0]
        pts, keys = _scan_packets(container, stream)
        info_fields = dict(
            time_base=Fraction(stream.time_base or Fraction(1, 90000)),
            claimed_frames=int(stream.frames or 0),
            format_name=container.format.name,
            codec_name=stream.codec_context.name,
        )
    if len(pts) == 0:
        raise InputError(f"{shown}: the video stream has no frames; the file is empty or cut before the first frame")
    order = np.argsort(pts, kind="stable")
    pts, keys = pts[order], keys[order]
    distinct = np.concatenate([[True], np.diff(pts) > 0])  # a repeated timestamp is not a new frame
    pts, keys = pts[distinct], keys[distinct]
    time_base = info_fields["time_base"]
    timestamps = (pts - pts[0]).astype(np.float64) * float(time_base)
    width, height, rotation = _decode_first_frame(path, shown)
    return VideoInfo(
        path=path,
        num_frames=len(pts),
        width=width,
        height=height,
        rotation=rotation,
        timestamps=_frozen(timestamps),
        pts=_frozen(pts),
        keyframes=_frozen(np.flatnonzero(keys).astype(np.int64)),
        **info_fields,
    )


def _is_video_container(container: av.container.InputContainer) -> bool:
    names = set(container.format.name.split(","))
    return bool(names & VIDEO_FORMATS) and len(container.streams.video) > 0


def _scan_packets(container: av.container.InputContainer, stream: av.VideoStream) -> tuple[np.ndarray, np.ndarray]:
    """Timestamps and keyframe flags of the stream's complete packets, in file order. A read
    error ends the scan: everything before it is real, everything after unreachable."""
    pts: list[int] = []
    keys: list[bool] = []
    try:
        for packet in container.demux(stream):
            # Size 0: end-of-stream marker or an AVI "drop frame" that repeats the previous one.
            # Corrupt: the truncated tail of a cut file.
            if packet.size == 0 or packet.is_corrupt:
                continue
            stamp = packet.pts if packet.pts is not None else packet.dts
            pts.append(stamp if stamp is not None else (pts[-1] + 1 if pts else 0))
            keys.append(packet.is_keyframe)
    except (av.FFmpegError, OSError):
        pass
    return np.asarray(pts, dtype=np.int64), np.asarray(keys, dtype=bool)


def _decode_first_frame(path: Path, shown: str) -> tuple[int, int, int]:
    """Decode one frame: proves the codec works and reads the display rotation (phone videos are
    stored landscape with a rotation matrix). Returns the shown width, height and rotation."""
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            for frame in container.decode(video=0):
                rotation = round(frame.rotation / 90) * 90 % 360
                width, height = frame.width, frame.height
                return (height, width, rotation) if rotation in (90, 270) else (width, height, rotation)
    except (av.FFmpegError, OSError) as e:
        raise InputError(f"{shown}: the video stream cannot be decoded ({_reason(e)}); re-encode it") from e
    raise InputError(f"{shown}: no frame of the video stream decodes; the file is damaged")


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
