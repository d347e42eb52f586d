"""Animated GIF, WebP and PNG are videos: frames timed by their durations, sampled like any video,
decoded in order only as far as the last wanted frame. One-frame files stay images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import GifImagePlugin, Image

from sampling import SamplingOptions, iter_frames, plan_inputs
from sampling.errors import DamagedMediaWarning
from sampling.gop import DecodeStats
from sampling.probe import probe_video
from sampling.readers import read_video_frames
from sampling.sniff import detect_media_kind

from .conftest import draw_code, write_animation

FORMATS = ["gif", "webp", "png"]
# 12 frames; 0 ms means "as fast as it goes" and is shown for 100 ms, as browsers do.
DURATIONS = [40, 80, 40, 0, 100, 60, 40, 40, 200, 40, 40, 100]
STARTS = [0.0, 0.04, 0.12, 0.16, 0.26, 0.36, 0.42, 0.46, 0.50, 0.70, 0.74, 0.78]


@pytest.mark.parametrize("suffix", FORMATS)
def test_animation_is_a_video_with_timed_frames(tmp_path: Path, code_of, suffix: str) -> None:
    path = write_animation(tmp_path / f"anim.{suffix}", DURATIONS)
    assert detect_media_kind(path) == "video"
    info = probe_video(path)
    assert (info.kind, info.num_frames, info.width, info.height, info.damage) == ("animation", 12, 64, 48, None)
    assert info.timestamps.tolist() == pytest.approx(STARTS)
    assert info.duration == pytest.approx(0.88)
    (plan,) = plan_inputs(path, SamplingOptions(num_frames=4))
    assert plan.kind == "video" and plan.num_available == 12
    # Even in time over 0..0.78 s (0, 0.26, 0.52, 0.78), not over frame numbers (0, 4, 7, 11).
    assert [f.index for f in plan.frames] == [0, 4, 8, 11]
    frames = list(iter_frames(plan, SamplingOptions(num_frames=4, image_size=64)))
    assert [f.timestamp for f in frames] == pytest.approx([0.0, 0.26, 0.50, 0.78])
    every = list(range(12))
    assert [(i, code_of(rgb)) for i, rgb in read_video_frames(info, every)] == [(i, i) for i in every]


@pytest.mark.parametrize("suffix", FORMATS)
def test_rate_and_window_apply_to_animations(tmp_path: Path, suffix: str) -> None:
    path = write_animation(tmp_path / f"anim.{suffix}", DURATIONS)
    (plan,) = plan_inputs(path, SamplingOptions(fps=5.0, start=0.1, end=0.8))
    # Window starts at the frame shown at 0.12 s; ticks every 0.2 s take the frame on screen.
    assert [f.timestamp for f in plan.frames] == pytest.approx([0.12, 0.26, 0.50, 0.70])


def test_frames_are_decoded_only_up_to_the_last_wanted(tmp_path: Path, monkeypatch) -> None:
    path = write_animation(tmp_path / "long.gif", [40] * 50)
    decoded: list[int] = []
    original = GifImagePlugin.GifImageFile._seek

    def counting_seek(self, frame: int, update_image: bool = True) -> None:
        if update_image:
            decoded.append(frame)
        original(self, frame, update_image)

    info = probe_video(path)
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek", counting_seek)
    stats = DecodeStats()
    frames = read_video_frames(info, [3, 7, 12], stats=stats)
    assert next(frames)[0] == 3 and max(decoded) == 3  # lazily: nothing past the frame yielded
    assert [i for i, _ in frames] == [7, 12]
    assert max(decoded) == 12 and stats.num_decoded == 13


def test_single_frame_pictures_stay_images(tmp_path: Path) -> None:
    for suffix in FORMATS:
        path = tmp_path / f"still.{suffix}"
        Image.fromarray(draw_code(5)).save(path)
        assert detect_media_kind(path) == "image"
        assert plan_inputs(path)[0].kind == "image"
    tiff = tmp_path / "pages.tiff"
    Image.new("RGB", (8, 8)).save(tiff, save_all=True, append_images=[Image.new("RGB", (8, 8), "red")])
    assert detect_media_kind(tiff) == "image"  # a multi-page document, not an animation


def test_apng_default_image_is_not_a_frame(tmp_path: Path, code_of) -> None:
    # The default image (shown by viewers without APNG support) is frame 0 of Pillow, not of the animation.
    path = write_animation(tmp_path / "default.png", [50, 50, 50, 50], default_image=True)
    info = probe_video(path)
    assert info.num_frames == 3 and info.timestamps.tolist() == pytest.approx([0.0, 0.05, 0.1])
    assert [code_of(rgb) for _, rgb in read_video_frames(info, [0, 1, 2])] == [1, 2, 3]


def test_a_cut_gif_keeps_its_complete_frames(tmp_path: Path, code_of) -> None:
    path = write_animation(tmp_path / "cut.gif", [100] * 10)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 3 // 4])
    info = probe_video(path)
    assert 1 <= info.num_frames < 10
    expected = f"only {info.num_frames} frames ({info.duration:.1f} s) decodable; sampling from those"
    assert info.damage == f"the file is cut short: {expected}"
    with pytest.warns(DamagedMediaWarning, match="cut.gif: the file is cut short"):
        (plan,) = plan_inputs(path, SamplingOptions(num_frames=10))
    assert [code_of(rgb) for _, rgb in read_video_frames(info, [f.index for f in plan.frames])] == list(
        range(info.num_frames)
    )


def test_a_named_video_backend_does_not_apply_to_animations(tmp_path: Path, code_of) -> None:
    path = write_animation(tmp_path / "anim.webp", [40] * 6)
    info = probe_video(path)
    for backend in ("pyav", "decord", "opencv"):  # all FFmpeg-based; Pillow decodes animations
        assert [code_of(rgb) for _, rgb in read_video_frames(info, [1, 5], backend=backend)] == [1, 5]


def test_transparent_gif_frames_are_composited_on_white(tmp_path: Path) -> None:
    path = tmp_path / "alpha.gif"
    frames = [Image.new("RGBA", (16, 16), (0, 0, 0, 0)), Image.new("RGBA", (16, 16), (255, 0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, disposal=2)
    info = probe_video(path)
    first, second = (rgb for _, rgb in read_video_frames(info, [0, 1]))
    assert np.all(first == 255) and tuple(second[8, 8]) == (255, 0, 0)
