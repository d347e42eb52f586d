"""Probing counts the frames that are really there, whatever the container claims, and sniffs
content rather than extensions."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from sampling.errors import InputError
from sampling.probe import detect_media_kind, probe_video


def test_constant_rate_video(cfr_video: Path) -> None:
    info = probe_video(cfr_video)
    assert (info.num_frames, info.width, info.height, info.rotation) == (60, 64, 48, 0)
    assert info.fps == pytest.approx(25.0)
    assert info.duration == pytest.approx(2.4)
    assert info.keyframes.tolist() == [0, 10, 20, 30, 40, 50]
    assert np.allclose(info.timestamps, np.arange(60) / 25)
    assert not info.is_variable_rate


def test_variable_rate_video_keeps_real_timestamps(vfr_video: Path) -> None:
    info = probe_video(vfr_video)
    assert info.num_frames == 40
    assert info.is_variable_rate
    assert np.allclose(np.diff(info.timestamps)[:4], [0.06, 0.02, 0.06, 0.02], atol=1e-3)


def test_rotation_swaps_the_shown_size(rotated_video: Path) -> None:
    info = probe_video(rotated_video)
    assert (info.width, info.height, info.rotation) == (48, 64, 90)


@pytest.mark.parametrize(
    ("name", "codec", "format_part"),
    [
        ("a.mkv", "libx264", "matroska"),
        ("a.webm", "libvpx-vp9", "webm"),
        ("a.mov", "libx264", "mov"),
        ("a.avi", "mpeg4", "avi"),
    ],
)
def test_common_containers(make_video, name: str, codec: str, format_part: str) -> None:
    path = make_video(name, 20, codec=codec)
    info = probe_video(path)
    assert info.num_frames == 20 and format_part in info.format_name
    assert detect_media_kind(path) == "video"


def test_one_frame_video(make_video) -> None:
    info = probe_video(make_video("one.mp4", 1))
    assert info.num_frames == 1 and info.timestamps.tolist() == [0.0]


def test_zero_frame_video_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(InputError, match=r"empty\.mp4: .*no (video stream|frames)"):
        probe_video(path)


def test_truncated_file_counts_only_frames_present(truncated_video: Path) -> None:
    info = probe_video(truncated_video)
    assert info.claimed_frames == 60
    assert 0 < info.num_frames < 60


def test_lying_frame_count_is_ignored(lying_avi: Path) -> None:
    info = probe_video(lying_avi)
    assert (info.claimed_frames, info.num_frames) == (500, 20)


def test_text_renamed_mp4_is_not_media(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("not a video at all\n" * 50)
    assert detect_media_kind(path) is None
    with pytest.raises(InputError) as caught:
        probe_video(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    assert isinstance(caught.value.__cause__, Exception)  # chained to FFmpeg's own error


def test_text_file_is_not_taken_for_an_ansi_art_video(tmp_path: Path) -> None:
    path = tmp_path / "readme.txt"  # FFmpeg's tty demuxer would open this as a video
    path.write_text("hello\n")
    assert detect_media_kind(path) is None


def test_content_beats_extension(cfr_video: Path, tmp_path: Path) -> None:
    disguised = tmp_path / "holiday.jpg"
    shutil.copy(cfr_video, disguised)
    assert detect_media_kind(disguised) == "video"
    assert probe_video(disguised).num_frames == 60
