"""What a file is, by content rather than by extension: an image, a video, or why it is neither.

Pillow's header parsers go first (cheap, and they never claim a video); an animated GIF, WebP or
PNG is a video (`animation`), any other picture an image, a multi-page TIFF or an MPO photo
included (their first page is the picture). Then FFmpeg's demuxers, restricted to real video
containers: FFmpeg would otherwise open a `.txt` file as an ANSI-art "video" through its tty
demuxer. For a file that is neither, `describe_unusable` says what it is instead: empty, an MP4
whose index never got written, audio only, text, or something else.
"""

from __future__ import annotations

import codecs
import os
from pathlib import Path
from typing import Literal

import av
from PIL import Image, UnidentifiedImageError

from sampling.pyav_io import AV_ERRORS, open_input

MediaKind = Literal["image", "video"]

# FFmpeg demuxer names (components of `container.format.name`) that hold real video.
VIDEO_FORMATS = frozenset(
    {"mov", "mp4", "m4a", "3gp", "3g2", "mj2", "matroska", "webm", "avi", "mpegts", "mpeg", "flv", "asf"}
    | {"ogg", "nut", "h264", "hevc", "ivf", "m4v"}
)
# Pillow formats whose animated files are read as videos (frames with durations).
ANIMATED_FORMATS = frozenset({"GIF", "WEBP", "PNG"})
# Box types an ISO media file (MP4, MOV, 3GP) starts with, at byte 4.
_ISO_BOXES = frozenset({b"ftyp", b"mdat", b"moov", b"free", b"skip", b"wide", b"pnot"})
_TEXT_SAMPLE = 8192
_PILLOW_ERRORS = (UnidentifiedImageError, OSError, ValueError, EOFError, SyntaxError)


def animated_format(path: Path) -> str | None:
    """Pillow's format name ("GIF", "WEBP", "PNG") when `path` is an animated picture, else None."""
    try:
        with Image.open(path) as image:
            if image.format in ANIMATED_FORMATS and getattr(image, "is_animated", False):
                return image.format
    except (Image.DecompressionBombError, *_PILLOW_ERRORS):
        pass
    return None


def detect_media_kind(path: Path) -> MediaKind | None:
    """ "image", "video" (animated pictures included), or None for anything else."""
    try:
        with Image.open(path) as image:
            animated = image.format in ANIMATED_FORMATS and getattr(image, "is_animated", False)
        return "video" if animated else "image"
    except Image.DecompressionBombError:
        return "image"  # an image indeed, too big to decode: `load_image` explains
    except _PILLOW_ERRORS:
        pass
    try:
        with open_input(path) as container:
            return "video" if is_video_container(container) else None
    except AV_ERRORS:
        return None


def is_video_container(container: av.container.InputContainer) -> bool:
    """A real video container with a video stream that is not just a cover picture."""
    names = set(container.format.name.split(","))
    return bool(names & VIDEO_FORMATS) and bool(moving_video_streams(container))


def moving_video_streams(container: av.container.InputContainer) -> list[av.VideoStream]:
    """Video streams other than attached pictures (an MP3's or M4A's cover art)."""
    return [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]


def describe_unusable(path: Path) -> str:
    """Why `path` is neither an image nor a video, with what to do: one line without the path."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as file:
            head = file.read(_TEXT_SAMPLE)
    except OSError as e:
        return f"cannot read the file ({e.strerror or e}); check the path and permissions"
    if size == 0:
        return "the file is empty (0 bytes); it may still be downloading or being copied"
    try:
        with open_input(path) as container:
            if not moving_video_streams(container):
                if container.streams.audio:
                    return f"audio only, no video stream (format {container.format.name}); give a video or an image"
                if set(container.format.name.split(",")) & VIDEO_FORMATS:
                    return (
                        f"has no video stream (format {container.format.name}): no frame was ever written, "
                        "as when a recording stops before its first frame; record or export it again"
                    )
    except AV_ERRORS:
        if head[4:8] in _ISO_BOXES:
            return (
                "damaged or incomplete video: its index (the MP4 'moov' atom) is missing, as when a recording "
                "is interrupted; re-export the video, or rebuild the index with a repair tool such as untrunc"
            )
    if _looks_like_text(head):
        return "a text file, not an image or a video; give a video, an image or a folder of them"
    return "not an image or a video (by content, whatever its extension); give a video, an image or a folder"


def _looks_like_text(head: bytes) -> bool:
    """UTF-8 (ASCII included) without NUL or other control bytes but tab, newline and return."""
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # a cut last character is fine
    except UnicodeDecodeError:
        return False
    return bool(text) and not any(ord(c) < 32 and c not in "\t\n\r\f" for c in text)
