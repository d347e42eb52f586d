"""Media made at test time: small videos and animated pictures whose frames carry their own index,
images, and broken media of each kind.

Every video frame shows its index as a 2×8 grid of black/white blocks (16 bits, 8×12-px blocks at
64×48): far coarser than any codec's error at these settings, so a decoded frame says which frame
it is. `read_code` reads it back; a test then knows the exact frame a reader returned.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

WIDTH, HEIGHT = 64, 48
BLOCK_W, BLOCK_H, BITS_PER_ROW = 8, 12, 8


def draw_code(index: int, width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """uint8 RGB [height, width, 3]: bit b of `index` as block (b // 8, b % 8) in the top-left
    16×64 px region, white for 1; a grey bar in the bottom-left corner marks "up and left"."""
    frame = np.zeros((height, width, 3), np.uint8)
    for bit in range(2 * BITS_PER_ROW):
        if index >> bit & 1:
            row, col = divmod(bit, BITS_PER_ROW)
            frame[row * BLOCK_H : (row + 1) * BLOCK_H, col * BLOCK_W : (col + 1) * BLOCK_W] = 255
    frame[height - 8 :, :8] = (0, 200, 0)
    return frame


def read_code(frame: np.ndarray) -> int:
    """Inverse of draw_code: the index from the block centres (threshold at mid grey)."""
    value = 0
    for bit in range(2 * BITS_PER_ROW):
        row, col = divmod(bit, BITS_PER_ROW)
        y, x = row * BLOCK_H + BLOCK_H // 2, col * BLOCK_W + BLOCK_W // 2
        if frame[y, x].mean() > 128:
            value |= 1 << bit
    return value


def write_video(
    path: Path,
    num_frames: int,
    *,
    codec: str = "libx264",
    gop: int = 10,
    fps: int = 25,
    times_ms: Sequence[int] | None = None,
    rotation: int = 0,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
) -> Path:
    """A video of `num_frames` coded frames (frame i shows i). `times_ms`: presentation time of each
    frame in milliseconds for variable frame rate (time base 1/1000)."""
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = WIDTH, HEIGHT
        stream.pix_fmt = "yuv420p" if codec != "mjpeg" else "yuvj420p"
        defaults = {"libx264": {"preset": "ultrafast"}, "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"}}
        stream.options = {"g": str(gop), **defaults.get(codec, {}), **(options or {})}
        if times_ms is not None:
            stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(draw_code(i), format="rgb24")
            frame.pts = times_ms[i] if times_ms is not None else i
            if times_ms is not None:
                frame.time_base = Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_animation(path: Path, durations_ms: Sequence[int], **save_options) -> Path:
    """An animated picture (format from the suffix: .gif, .webp, .png) whose frame i shows i and
    lasts durations_ms[i]. WebP is lossless so the codes survive exactly."""
    frames = [Image.fromarray(draw_code(i)) for i in range(len(durations_ms))]
    extra = {"lossless": True} if path.suffix == ".webp" else {}
    frames[0].save(
        path, save_all=True, append_images=frames[1:], duration=list(durations_ms), loop=0, **extra, **save_options
    )
    return path


def cut_inside_packet(path: Path, packet_number: int) -> Path:
    """Truncate a video in the middle of its `packet_number`-th video packet (file order), as a
    copy or download stopped there: that packet is left partial, the ones after it gone."""
    with av.open(str(path)) as container:
        packets = [p for p in container.demux(video=0) if p.size]
    packet = packets[packet_number]
    data = path.read_bytes()
    path.write_bytes(data[: packet.pos + packet.size // 2])
    return path


def write_audio_only(path: Path, seconds: float = 0.5) -> Path:
    """An AAC audio file (M4A) with no video stream."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=44100)
        for i in range(int(seconds * 44100 / 1024)):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 44100, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def write_png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of width×height whose pixels are all zero: tiny on disk however large,
    written chunk by chunk so the test never holds the picture in memory."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def patch_avi_frame_count(path: Path, claimed: int) -> None:
    """Make an AVI lie: overwrite the main header's total frames and the video stream's length."""
    data = bytearray(path.read_bytes())
    avih = data.find(b"avih")
    struct.pack_into("<I", data, avih + 8 + 16, claimed)  # dwTotalFrames
    strh = data.find(b"strh")
    struct.pack_into("<I", data, strh + 8 + 32, claimed)  # dwLength
    path.write_bytes(bytes(data))


@pytest.fixture
def code_of() -> Callable[[np.ndarray], int]:
    return read_code


@pytest.fixture
def make_video(tmp_path: Path) -> Callable[..., Path]:
    """`make_video(name, num_frames, **write_video options)` → path under tmp_path."""

    def make(name: str, num_frames: int, **kwargs) -> Path:
        return write_video(tmp_path / name, num_frames, **kwargs)

    return make


@pytest.fixture
def cfr_video(make_video) -> Path:
    """60 frames at 25 fps, H.264, a keyframe every 10 frames."""
    return make_video("cfr.mp4", 60)


@pytest.fixture
def vfr_video(make_video) -> Path:
    """40 frames whose durations alternate 20 ms and 60 ms (phone-camera style variable rate)."""
    times = np.cumsum([0] + [20 if i % 2 else 60 for i in range(39)]).tolist()
    return make_video("vfr.mp4", 40, times_ms=times)


@pytest.fixture
def rotated_video(make_video) -> Path:
    """A phone-style clip stored landscape (64×48) with a 90° display rotation."""
    return make_video("phone.mp4", 12, rotation=90)


@pytest.fixture
def lying_avi(make_video) -> Path:
    """An MJPEG AVI of 20 frames whose headers claim 500 (decord#373 hangs on such files)."""
    path = make_video("lying.avi", 20, codec="mjpeg")
    patch_avi_frame_count(path, 500)
    return path


@pytest.fixture
def truncated_video(make_video) -> Path:
    """An MP4 with its index up front (faststart), cut at 60 %: the header claims frames the
    file no longer holds."""
    path = make_video("cut.mp4", 60, container_options={"movflags": "faststart"})
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    return path


@pytest.fixture
def cut_bframes_video(make_video) -> Path:
    """60 H.264 frames with B-frames (frames leave the decoder out of file order, several in flight
    in its threads), index first, cut in the middle of packet 35: FFmpeg flags that packet corrupt."""
    faststart = {"movflags": "faststart"}
    path = make_video("cut_b.mp4", 60, options={"preset": "veryfast", "bf": "3"}, container_options=faststart)
    return cut_inside_packet(path, 35)


@pytest.fixture
def moov_less_video(make_video) -> Path:
    """An MP4 whose index (moov atom, written last) never made it: a recording stopped mid-way."""
    path = make_video("rec.mp4", 60)
    data = path.read_bytes()
    path.write_bytes(data[: data.find(b"moov") - 4])
    return path


@pytest.fixture
def non_utf8_dir(tmp_path: Path) -> Path:
    """A folder whose name is not valid UTF-8 (Latin-1 é), as `os.listdir` would return it."""
    folder = Path(os.fsdecode(bytes(tmp_path) + b"/caf\xe9"))
    folder.mkdir()
    return folder


@pytest.fixture
def huge_png(tmp_path: Path) -> Path:
    """A 20000×20000 PNG (400 megapixels) of ~50 KB."""
    return write_png_header_only(tmp_path / "huge.png", 20000, 20000)
