"""Reading still images as upright 8-bit RGB (the only place images are decoded).

Pillow reads JPEG, PNG, WebP, GIF (first frame), BMP and TIFF; here every file leaves as an
`RGB` image the way a viewer would show it: EXIF orientation applied, transparency composited on
white (dropping alpha, as LLaVA's `.convert("RGB")` does, turns transparent pixels black), 16-bit
samples scaled rather than clipped (Pillow's own `I;16 -> L` clips at 255), CMYK converted.

Pillow's decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`) is the user's safety setting and
is honoured; over it, the message says how to lift it. A huge JPEG is decoded through its DCT
scaling (`draft`), so a 20000×20000 scan costs ~1/64 of its full size in memory; a picture scaled
to fit its tiles is decoded at the smallest scale that covers the target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sampling.errors import InputError, display_path

# Above this many pixels, decode JPEGs at the smallest DCT scale that still covers the target.
DRAFT_ABOVE_PIXELS = 64_000_000
WHITE = (255, 255, 255)


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) as shown, EXIF rotation included, from the header alone."""
    with _open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)  # 5..8 are the transposing orientations
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def load_image(path: Path, *, min_side: int | None = None, fit: tuple[int, int] | None = None) -> Image.Image:
    """Decode `path` as an upright RGB image.

    min_side: when set and the image is huge, allow decoding JPEGs at a reduced scale whose
    sides stay >= min_side (exact-size decoding otherwise, so small images match upstream bit for
    bit). fit: (width, height) as shown to scale the picture to (bicubic); a JPEG is first decoded
    at the smallest DCT scale that still covers it, so an 8000×6000 photo tiled at 3696×2772 is
    decoded at 4000×3000.
    """
    with _open(path) as image:
        try:
            if fit is not None:
                transposed = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
                image.draft("RGB", fit[::-1] if transposed else fit)
            elif min_side and image.width * image.height > DRAFT_ABOVE_PIXELS:
                image.draft("RGB", (min_side, min_side))
            image.seek(0)  # animated GIF / multi-page TIFF: the first frame
            upright = to_rgb(ImageOps.exif_transpose(image))
            if fit is not None and upright.size != fit:
                upright = upright.resize(fit, Image.Resampling.BICUBIC, reducing_gap=3.0)
            return upright
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise InputError(f"{display_path(path)}: the image is damaged or truncated ({e}); re-save it") from e


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any Pillow mode (grey, palette, alpha, 16/32-bit, float, CMYK, YCbCr...)."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return Image.fromarray(_scale_to_uint8(np.asarray(image))).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, WHITE)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _scale_to_uint8(samples: np.ndarray) -> np.ndarray:
    """Map high-bit-depth samples to 0..255: 16-bit range for integers (values above 255 mean a
    16-bit source), 0..1 for floats."""
    if samples.dtype.kind == "f":
        return (np.clip(np.nan_to_num(samples), 0.0, 1.0) * 255 + 0.5).astype(np.uint8)
    if samples.max(initial=0) <= 255:
        return samples.astype(np.uint8)
    return (np.clip(samples, 0, 65535).astype(np.uint32) * 255 // 65535).astype(np.uint8)


def _open(path: Path) -> Image.Image:
    """`Image.open` with its failures turned into one-line InputErrors (header only, no pixels)."""
    shown = display_path(path)
    try:
        return Image.open(path)
    except Image.DecompressionBombError as e:
        raise InputError(
            f"{shown}: {str(e).rstrip('.')}; if the file is trusted, raise PIL.Image.MAX_IMAGE_PIXELS or set it to None"
        ) from e
    except UnidentifiedImageError as e:
        raise InputError(f"{shown}: not an image Pillow can read; give a JPEG, PNG, WebP, GIF, BMP or TIFF") from e
    except OSError as e:
        raise InputError(f"{shown}: cannot open ({e.strerror or e}); check the path and permissions") from e
