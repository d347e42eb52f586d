"""LongLLaVA's "pad" preprocessing and high-resolution tiling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from sampling.preprocess import (
    CLIP_MEAN,
    CLIP_STD,
    PAD_COLOR,
    count_tile_grid,
    fit_tile_grid,
    iter_tiles,
    normalize,
    pad_to_square,
    preprocess_image,
    preprocess_image_reference,
)


def random_image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), np.uint8))


def test_pad_to_square_centres_the_picture_on_the_mean_colour() -> None:
    padded = np.asarray(pad_to_square(Image.new("RGB", (40, 10), (255, 255, 255))))
    assert padded.shape == (40, 40, 3)
    assert padded[:15].reshape(-1, 3).tolist() == [list(PAD_COLOR)] * (15 * 40)
    assert (padded[15:25] == 255).all() and (padded[25:] == PAD_COLOR).all()


@pytest.mark.parametrize("size", [336, 224, 17])
def test_output_shape_and_dtype(size: int) -> None:
    pixels = preprocess_image(random_image(64, 48), size)
    assert pixels.shape == (3, size, size) and pixels.dtype == torch.float32


def test_mean_colour_normalises_to_about_zero() -> None:
    pixels = preprocess_image(Image.new("RGB", (10, 10), PAD_COLOR), 8)
    expected = (np.asarray(PAD_COLOR) / 255 - np.asarray(CLIP_MEAN)) / np.asarray(CLIP_STD)
    assert torch.allclose(pixels[:, 0, 0], torch.tensor(expected, dtype=torch.float32), atol=1e-6)
    assert pixels.abs().max() < 0.02


def test_normalize_is_channel_first() -> None:
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[..., 0] = 255
    out = normalize(rgb)
    assert out.shape == (3, 2, 3)
    assert torch.allclose(out[0], torch.full((2, 3), (1 - CLIP_MEAN[0]) / CLIP_STD[0]))


def test_normalize_lookup_equals_the_arithmetic_for_every_value() -> None:
    values = np.arange(256, dtype=np.uint8)
    rgb = np.stack([values, values[::-1], np.roll(values, 7)], -1).reshape(16, 16, 3)
    for pixels in (rgb, rgb[:, ::2], rgb.transpose(1, 0, 2)):  # contiguous and strided views
        scaled = pixels.astype(np.float32) * np.float32(1 / 255)
        mean, std = np.asarray(CLIP_MEAN, np.float32), np.asarray(CLIP_STD, np.float32)
        expected = torch.from_numpy(((scaled - mean) / std).transpose(2, 0, 1).copy())
        assert torch.equal(normalize(pixels), expected)  # bit for bit


def test_matches_transformers_clip_image_processor() -> None:
    transformers = pytest.importorskip("transformers")
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}, do_convert_rgb=True
    )
    image = random_image(200, 120, seed=3)
    reference = processor(pad_to_square(image), return_tensors="pt")["pixel_values"][0]
    assert torch.allclose(preprocess_image(image, 336), reference, atol=1e-5)


@given(st.integers(1, 900), st.integers(1, 900), st.sampled_from([336, 28, 224, 500]), st.integers(0, 2**32 - 1))
def test_the_shortcut_equals_padding_then_resizing_bit_for_bit(width: int, height: int, size: int, seed: int) -> None:
    # Landscape, portrait, square, up- and downscaling, odd pad offsets, any content.
    image = random_image(width, height, seed)
    assert torch.equal(preprocess_image(image, size), preprocess_image_reference(image, size))


def test_the_shortcut_equals_the_reference_on_a_720p_frame_and_flat_colours() -> None:
    for image in (random_image(1280, 720, seed=4), Image.new("RGB", (1280, 720), PAD_COLOR)):
        assert torch.equal(preprocess_image(image, 336), preprocess_image_reference(image, 336))
    for level in (0, 1, 127, 254, 255):  # pad rows next to extreme values
        image = Image.new("RGB", (641, 97), (level, 255 - level, level))
        assert torch.equal(preprocess_image(image, 336), preprocess_image_reference(image, 336))


def test_tile_grid_is_ceil_division() -> None:
    assert count_tile_grid(1000, 1000, 336) == (3, 3)  # docs/format.md, Prompt: 9 tiles + 1 global
    assert count_tile_grid(336, 336, 336) == (1, 1)
    assert count_tile_grid(337, 100, 336) == (1, 2)


def test_tiles_are_raster_order_and_padded_at_the_edges() -> None:
    image = random_image(50, 30)
    tiles = list(iter_tiles(image, 20))
    assert [(r, c) for r, c, _ in tiles] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    source = np.asarray(image)
    first = np.asarray(tiles[0][2])
    assert (first == source[:20, :20]).all()
    corner = np.asarray(tiles[-1][2])  # rows 20..29 and cols 40..49 exist, the rest is padding
    assert (corner[:10, :10] == source[20:30, 40:50]).all()
    assert (corner[10:] == PAD_COLOR).all() and (corner[:, 10:] == PAD_COLOR).all()


def test_fit_keeps_native_resolution_when_the_grid_fits() -> None:
    assert fit_tile_grid(1000, 1000, 336, 9) == ((3, 3), (1000, 1000))


def test_fit_scales_an_8000_by_6000_photo_to_the_best_grid_within_the_cap() -> None:
    # Natively 18×24 = 432 tiles. 9×11 keeps more of the picture than 10×10 or 8×12.
    assert fit_tile_grid(8000, 6000, 336, 100) == ((9, 11), (3696, 2772))
    assert fit_tile_grid(6000, 8000, 336, 100) == ((11, 9), (2772, 3696))


@given(st.integers(1, 30000), st.integers(1, 30000), st.integers(16, 512), st.integers(1, 200))
def test_fit_stays_within_the_cap_keeps_the_aspect_ratio_and_beats_every_grid(
    width: int, height: int, tile: int, max_tiles: int
) -> None:
    (rows, cols), (scaled_w, scaled_h) = fit_tile_grid(width, height, tile, max_tiles)
    assert rows * cols <= max_tiles and (rows, cols) == count_tile_grid(scaled_w, scaled_h, tile)
    assert scaled_w <= width and scaled_h <= height
    if (scaled_w, scaled_h) != (width, height):
        # Aspect ratio kept to the pixel (each side is floored), and no grid within the cap keeps more.
        assert abs(scaled_w / width - scaled_h / height) <= 1 / min(width, height) + 1e-9
        kept = (scaled_w / width) * (scaled_h / height)
        for r in range(1, max_tiles + 1):
            c = max_tiles // r
            assert min(c * tile / width, r * tile / height) ** 2 <= kept * (1 + 1e-6) + 2 / min(width, height)
