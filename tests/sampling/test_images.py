"""Every still image leaves as upright 8-bit RGB, whatever its format and mode; huge and broken
files give one-line InputErrors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from sampling.errors import InputError
from sampling.images import load_image, read_image_size

RED = (255, 0, 0)


@pytest.mark.parametrize("suffix", ["jpg", "png", "webp", "gif", "bmp", "tiff"])
def test_formats_load_as_rgb(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"red.{suffix}"
    Image.new("RGB", (40, 30), RED).save(path)
    image = load_image(path)
    assert (image.mode, image.size) == ("RGB", (40, 30))
    r, g, b = image.getpixel((20, 15))
    assert r > 240 and g < 15 and b < 15


def test_gif_gives_its_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (16, 16), c) for c in (RED, (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert load_image(path).getpixel((8, 8)) == RED


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    stored = Image.new("RGB", (60, 20), (0, 0, 0))
    stored.paste(Image.new("RGB", (10, 20), (255, 255, 255)), (0, 0))  # white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    stored.save(path, exif=exif, quality=95)
    image = load_image(path)
    assert image.size == (20, 60) and read_image_size(path) == (20, 60)
    assert sum(image.getpixel((10, 3))) > 600 and sum(image.getpixel((10, 56))) < 60  # band now on top


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 200, (200, 200, 200)),
        ("1", 1, (255, 255, 255)),
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),
        ("LA", (90, 255), (90, 90, 90)),
        ("RGBA", (10, 20, 30, 0), (255, 255, 255)),  # fully transparent: the white background
    ],
)
def test_modes_convert_to_rgb(tmp_path: Path, mode: str, value, expected: tuple[int, int, int]) -> None:
    path = tmp_path / f"{mode}.{'tiff' if mode == 'CMYK' else 'png'}"
    Image.new(mode, (8, 8), value).save(path)
    image = load_image(path)
    assert image.mode == "RGB" and image.getpixel((4, 4)) == expected


def test_16_bit_samples_are_scaled_not_clipped(tmp_path: Path) -> None:
    grey = tmp_path / "grey16.png"
    Image.fromarray(np.full((8, 8), 32768, np.uint16)).save(grey)
    assert load_image(grey).getpixel((4, 4)) == (127, 127, 127)
    colour = tmp_path / "rgb16.png"
    cv2.imwrite(str(colour), np.full((8, 8, 3), (0, 0, 65535), np.uint16))  # BGR: pure red
    assert load_image(colour).getpixel((4, 4)) == RED


def test_palette_with_transparency(tmp_path: Path) -> None:
    path = tmp_path / "logo.png"
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0])
    image.putpixel((0, 0), 1)
    image.save(path, transparency=0)
    loaded = load_image(path)
    assert loaded.getpixel((0, 0)) == RED and loaded.getpixel((5, 5)) == (255, 255, 255)


def test_not_an_image_is_one_line_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpg"
    path.write_text("hello")
    with pytest.raises(InputError, match=r"photo\.jpg: not an image") as caught:
        load_image(path)
    assert "\n" not in str(caught.value) and caught.value.__cause__ is not None


def test_truncated_image_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:400])
    with pytest.raises(InputError, match=r"cut\.png: the image is damaged"):
        load_image(path)


def test_huge_image_over_pillow_limit_is_refused_from_the_header(tmp_path: Path, huge_png: Path) -> None:
    with pytest.raises(InputError, match=r"huge\.png: .*400000000 pixels.*MAX_IMAGE_PIXELS") as caught:
        read_image_size(huge_png)
    assert "\n" not in str(caught.value)


def test_huge_image_header_is_read_without_decoding_when_allowed(huge_png: Path, monkeypatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert read_image_size(huge_png) == (20000, 20000)


@pytest.mark.slow
def test_huge_jpeg_decodes_at_reduced_scale(tmp_path: Path, monkeypatch) -> None:
    # 20000×20000 grey JPEG: ~400 MB to write here; loaded through DCT scaling at 1/8 (2500², 19 MB).
    path = tmp_path / "scan.jpg"
    Image.new("L", (20000, 20000), 90).save(path, quality=50)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    image = load_image(path, min_side=336)
    assert image.mode == "RGB" and image.size == (2500, 2500)
