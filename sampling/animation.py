"""Animated GIF, WebP and PNG (APNG): frame count and timing from the file's structure, without
decoding a pixel.

An animated picture is a video whose frames carry durations instead of timestamps: frame k is
shown from the sum of the durations before it. Pillow reports a frame's duration only after
decoding it (and every frame before it), so the timing is read here from the container itself,
the way FFmpeg's demuxers read a video's packet table:
- GIF (GIF89a spec): each image descriptor (0x2C) is a frame, its delay in the graphic control
  extension (0x21 0xF9) before it, in 1/100 s; data in length-prefixed sub-blocks.
- WebP (RIFF container spec): one ANMF chunk per frame, its duration a 24-bit millisecond count.
- APNG (APNG spec): one fcTL chunk per frame, delay = delay_num / delay_den s (den 0 means 100);
  an IDAT before the first fcTL is a default image shown by viewers without APNG support, and
  not a frame of the animation.
Durations of 10 ms or less are shown as 100 ms, as browsers do (many files say 0 and mean
"fast"); every frame then has a distinct start. A frame whose data the file cuts short is not
counted (`complete` False).
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

from sampling.errors import LongLLaVAError

# Browsers show frames of 10 ms or less for 100 ms (WebKit/Blink/Gecko image decoders).
MIN_SHOWN_MS = 10
DEFAULT_SHOWN_MS = 100


@dataclass(frozen=True)
class AnimationTiming:
    """width × height: the canvas. durations_ms: as shown (clamped), one per complete frame.
    claimed_frames: the count the header states (APNG's acTL), 0 where the format has none."""

    format_name: str
    width: int
    height: int
    durations_ms: tuple[float, ...]
    claimed_frames: int
    complete: bool


class AnimationFormatError(LongLLaVAError, ValueError):
    """The file's structure cannot be read as the format Pillow recognised."""


def read_animation_timing(path: Path, pillow_format: str) -> AnimationTiming:
    """Timing of an animated picture whose format Pillow recognised ("GIF", "WEBP" or "PNG")."""
    parse = {"GIF": _parse_gif, "WEBP": _parse_webp, "PNG": _parse_apng}.get(pillow_format)
    if parse is None:
        raise AnimationFormatError(f"{pillow_format} is not an animated format read here")
    with open(path, "rb") as file, mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as data:
        try:
            return parse(data)
        except (IndexError, struct.error) as e:  # a header field cut off by the end of the file
            raise AnimationFormatError(f"the {pillow_format} header is cut short") from e


def shown_ms(duration_ms: float) -> float:
    return DEFAULT_SHOWN_MS if duration_ms <= MIN_SHOWN_MS else duration_ms


def _skip_sub_blocks(data: mmap.mmap, pos: int) -> int | None:
    """Position after a GIF sub-block chain (ended by a 0 size), None when the file ends first."""
    while pos < len(data):
        size = data[pos]
        pos += 1 + size
        if size == 0:
            return pos
    return None


def _parse_gif(data: mmap.mmap) -> AnimationTiming:
    width, height, flags = struct.unpack_from("<HHB", data, 6)
    pos = 13 + (3 * (2 << (flags & 7)) if flags & 0x80 else 0)  # global colour table
    durations: list[float] = []
    delay = 0.0
    complete = False
    while pos < len(data):
        introducer = data[pos]
        pos += 1
        if pos + (9 if introducer == 0x2C else 0) >= len(data) and introducer in (0x21, 0x2C):
            break  # a block header cut off by the end of the file
        if introducer == 0x3B:  # trailer
            complete = True
            break
        if introducer == 0x21:  # extension: label, then sub-blocks
            label = data[pos]
            if label == 0xF9 and pos + 4 < len(data) and data[pos + 1] >= 4:
                delay = struct.unpack_from("<H", data, pos + 3)[0] * 10.0
            end = _skip_sub_blocks(data, pos + 1)
        elif introducer == 0x2C:  # image descriptor: 9 bytes, local colour table, LZW code size
            local = data[pos + 8]
            end = _skip_sub_blocks(data, pos + 9 + (3 * (2 << (local & 7)) if local & 0x80 else 0) + 1)
            if end is not None:
                durations.append(shown_ms(delay))
                delay = 0.0
        else:  # stray byte: Pillow skips it too, so frame numbers stay Pillow's
            continue
        if end is None:
            break
        pos = end
    return AnimationTiming("gif", width, height, tuple(durations), 0, complete)


def _parse_webp(data: mmap.mmap) -> AnimationTiming:
    riff_size = struct.unpack_from("<I", data, 4)[0]
    end = min(len(data), 8 + riff_size)
    pos, width, height = 12, 0, 0
    durations: list[float] = []
    while pos + 8 <= end:
        fourcc = bytes(data[pos : pos + 4])
        size = struct.unpack_from("<I", data, pos + 4)[0]
        payload = pos + 8
        if payload + size > end:
            break
        if fourcc == b"VP8X":
            width = 1 + int.from_bytes(data[payload + 4 : payload + 7], "little")
            height = 1 + int.from_bytes(data[payload + 7 : payload + 10], "little")
        elif fourcc == b"ANMF":
            durations.append(shown_ms(int.from_bytes(data[payload + 12 : payload + 15], "little")))
        pos = payload + size + (size & 1)  # chunks are padded to an even size
    complete = pos >= end and 8 + riff_size <= len(data)
    return AnimationTiming("webp", width, height, tuple(durations), 0, complete)


def _parse_apng(data: mmap.mmap) -> AnimationTiming:
    pos, width, height, claimed = 8, 0, 0, 0
    durations: list[float] = []
    frame_has_data = False  # the current fcTL's frame has image data (IDAT or fdAT) so far
    complete = False
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        payload, end = pos + 8, pos + 12 + length
        if end > len(data):
            break
        if kind == b"IHDR":
            width, height = struct.unpack_from(">II", data, payload)
        elif kind == b"acTL":
            claimed = struct.unpack_from(">I", data, payload)[0]
        elif kind == b"fcTL":
            delay_num, delay_den = struct.unpack_from(">HH", data, payload + 20)
            durations.append(shown_ms(1000.0 * delay_num / (delay_den or 100)))
            frame_has_data = False
        elif kind in (b"IDAT", b"fdAT"):
            frame_has_data = True
        elif kind == b"IEND":
            complete = True
            break
        pos = end
    if durations and not (complete and frame_has_data):
        durations.pop()  # the last frame's data may be cut: only frames closed by the next chunk count
        complete = False
    return AnimationTiming("apng", width, height, tuple(durations), claimed, complete)
