"""End to end: plans → preprocessed model images, in prompt order, exactly `num_images` per plan,
lazily, with the right pixels."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, JpegImagePlugin

from sampling import DecodeStats, InputError, SamplingOptions, iter_frames, plan_inputs
from sampling.errors import SamplingNotice
from sampling.preprocess import CLIP_MEAN, CLIP_STD, PAD_COLOR


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


def test_tiles_come_from_the_picture_scaled_to_fit_max_tiles(tmp_path: Path, monkeypatch) -> None:
    # An 8000×6000 photo, red left half and blue right half: natively 18×24 = 432 tiles of 336.
    path = tmp_path / "photo.jpg"
    photo = Image.new("RGB", (8000, 6000), (255, 0, 0))
    photo.paste((0, 0, 255), (4000, 0, 8000, 6000))
    photo.save(path, quality=90)
    del photo
    drafted: list[tuple[int, int]] = []
    original_draft = JpegImagePlugin.JpegImageFile.draft

    def recording_draft(self, mode, size):
        result = original_draft(self, mode, size)
        drafted.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", recording_draft)
    options = SamplingOptions(tiles=True, tile_size=336, image_size=32)
    with pytest.warns(SamplingNotice, match=r"8000×6000 scaled to 3696×2772 for 9×11 = 99 tiles of 336 px"):
        (plan,) = plan_inputs(path, options)
    assert (plan.grid, plan.scaled_size, plan.num_images) == ((9, 11), (3696, 2772), 100)
    frames = list(iter_frames(plan, options))
    assert drafted == [(4000, 3000)]  # decoded at half scale (DCT), not at 8000×6000
    assert len(frames) == 100 and [f.tile for f in frames[1:3]] == [(0, 0), (0, 1)]
    tiles = {f.tile: to_uint8(f.pixels) for f in frames[1:]}
    # The halves meet at x = 1848 of the scaled picture: 168 px into column 5 (16 of 32 after resizing).
    assert tiles[(0, 4)][:, :, 0].min() > 200 and tiles[(0, 6)][:, :, 2].min() > 200
    boundary = tiles[(0, 5)][16]
    assert boundary[:14, 0].min() > 200 and boundary[18:, 2].min() > 200
    # The last row holds 2772 - 8·336 = 84 rows of picture (8 of 32), then the mean-colour padding.
    assert tiles[(8, 0)][:7, :, 0].min() > 200 and np.abs(tiles[(8, 0)][10:].astype(int) - PAD_COLOR).max() <= 2
