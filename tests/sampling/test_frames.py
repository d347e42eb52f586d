"""End to end: plans → preprocessed model images, in prompt order, exactly `num_images` per plan,
lazily, with the right pixels."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sampling import DecodeStats, InputError, SamplingOptions, iter_frames, plan_inputs
from sampling.preprocess import CLIP_MEAN, CLIP_STD


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """Undo CLIP normalisation: float32 [3, S, S] → uint8 [S, S, 3]."""
    rgb = pixels.numpy().transpose(1, 2, 0) * np.asarray(CLIP_STD) + np.asarray(CLIP_MEAN)
    return np.clip(rgb * 255 + 0.5, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("backend", ["auto", "pyav", "decord", "opencv"])
def test_video_frames_carry_the_right_pixels(cfr_video: Path, code_of, backend: str) -> None:
    # image_size 64 on a 64×48 video: padding only (8 rows above and below), no resampling.
    options = SamplingOptions(num_frames=7, image_size=64, backend=backend)
    (plan,) = plan_inputs(cfr_video, options)
    frames = list(iter_frames(plan, options))
    assert [f.index for f in frames] == [p.index for p in plan.frames]
    assert [f.timestamp for f in frames] == [p.timestamp for p in plan.frames]
    for frame in frames:
        assert frame.kind == "frame" and frame.tile is None and frame.source == cfr_video
        assert frame.pixels.shape == (3, 64, 64) and frame.pixels.dtype == torch.float32
        assert code_of(to_uint8(frame.pixels)[8:56]) == frame.index


def test_each_plan_yields_exactly_its_num_images_in_order(cfr_video: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.new("RGB", (700, 400), (0, 0, 255)).save(big)
    small = tmp_path / "small.jpg"
    Image.new("RGB", (30, 20)).save(small)
    options = SamplingOptions(num_frames=3, image_size=56, tiles=True, tile_size=336)
    plans = plan_inputs([cfr_video, small, big], options)
    frames = list(iter_frames(plans, options))
    assert len(frames) == sum(p.num_images for p in plans) == 3 + (1 + 1) + (1 + 2 * 3)
    assert [f.kind for f in frames] == ["frame"] * 3 + ["image", "tile"] + ["image"] + ["tile"] * 6
    assert [f.tile for f in frames[6:]] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert all(f.pixels.shape == (3, 56, 56) for f in frames)
    blue = to_uint8(frames[6].pixels)[28, 28]  # tile (0, 0) is all picture, no padding
    assert blue[2] > 240 and blue[:2].max() < 15


def test_folder_sequence_in_order(tmp_path: Path) -> None:
    for i in range(1, 12):
        Image.new("RGB", (16, 16), (i * 20, 0, 0)).save(tmp_path / f"frame{i}.png")
    options = SamplingOptions(num_frames=4, image_size=16)
    frames = list(iter_frames(plan_inputs(tmp_path, options), options))
    assert [f.index for f in frames] == [0, 3, 7, 10]
    assert [f.source.name for f in frames] == ["frame1.png", "frame4.png", "frame8.png", "frame11.png"]
    assert [int(to_uint8(f.pixels)[8, 8, 0]) for f in frames] == [20, 80, 160, 220]


def test_frames_are_decoded_lazily(make_video) -> None:
    path = make_video("long.mp4", 300, gop=30)
    options = SamplingOptions(num_frames=100, image_size=32)
    (plan,) = plan_inputs(path, options)
    stats = DecodeStats()
    first_two = list(itertools.islice(iter_frames(plan, options, stats=stats), 2))
    assert [f.index for f in first_two] == [0, 3]
    assert stats.num_decoded < 30  # only the first GOP so far, not the video


def test_image_that_breaks_after_planning_names_the_file(tmp_path: Path) -> None:
    good, bad = tmp_path / "a.png", tmp_path / "b.png"
    for path in (good, bad):
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    plans = plan_inputs(tmp_path)
    bad.write_bytes(bad.read_bytes()[:200])  # the header still parses; the pixels are gone
    frames = iter_frames(plans)
    assert next(frames).source == good
    with pytest.raises(InputError, match=r"b\.png: the image is damaged"):
        next(frames)
