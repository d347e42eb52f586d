"""decord reader (the `decord2` wheel): `get_batch` on small batches of wanted frames.

decord is used only where it is known to be right. It trusts the container's frame count and
loops forever, holding the GIL, when that count is too high (decord#373): a hung C loop cannot be
timed out from Python, so the count is validated first against the probed packet table and a
disagreement sends the file to another backend. decord2 3.4 also returns garbled 4-channel frames
for rotated (phone) videos and mis-times variable-frame-rate files; those go elsewhere too.
Not the default: on the 20-minute benchmark video it returned the wrong frame for 60 of 128 indices
("Failed to skip frames effectively"), which no cheap check here can catch (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from sampling.errors import BackendError
from sampling.ffmpeg_logs import quiet_decord
from sampling.probe import VideoInfo

# Frame times may differ from PyAV's by rounding; half a frame at 240 fps is the tolerance.
TIMESTAMP_TOLERANCE_S = 0.002


def read_frames_decord(
    info: VideoInfo, indices: Sequence[int], *, batch_size: int = 8
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield `(index, uint8 RGB [height, width, 3])` for each sorted index, `batch_size` decoded
    at a time. Raises BackendError when decord is missing or cannot be trusted with this file."""
    reader = _open_checked(info)
    for start in range(0, len(indices), batch_size):
        batch = [int(i) for i in indices[start : start + batch_size]]
        try:
            frames = reader.get_batch(batch).asnumpy()
        except Exception as e:  # decord raises its own DECORDError (no common base to catch)
            raise BackendError(f"decord failed on frames {batch[0]}..{batch[-1]}: {e}") from e
        yield from zip(batch, frames, strict=True)


def _open_checked(info: VideoInfo):  # -> decord.VideoReader (import is optional)
    try:
        import decord
    except ImportError as e:
        raise BackendError("decord is not installed (pip install decord2)") from e
    quiet_decord(decord)  # its FFmpeg would print straight to the terminal
    if info.rotation:
        raise BackendError(f"decord garbles rotated videos (rotation {info.rotation})")
    try:
        path = str(info.path).encode("utf-8").decode("utf-8")
    except UnicodeError as e:
        raise BackendError("decord cannot open a file name that is not UTF-8") from e
    try:
        reader = decord.VideoReader(path, ctx=decord.cpu(0))
    except Exception as e:  # DECORDError
        raise BackendError(f"decord cannot open the file: {e}") from e
    if len(reader) != info.num_frames:
        raise BackendError(f"decord counts {len(reader)} frames where the file has {info.num_frames} (decord#373)")
    starts = reader.get_frame_timestamp(range(info.num_frames))[:, 0]
    if not np.allclose(starts - starts[0], info.timestamps, atol=TIMESTAMP_TOLERANCE_S):
        raise BackendError("decord's frame times disagree with the file's timestamps")
    return reader
