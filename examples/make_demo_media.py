"""Write the small demo media used by the README: a 12-second clip of a red square crossing a
blue background, and a folder of three pictures. Run from the repository root:

    python examples/make_demo_media.py

The files are committed, so this only documents how they were made (and remakes them).
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

HERE = Path(__file__).parent
WIDTH, HEIGHT, FPS, SECONDS = 160, 120, 10, 12


def frame_at(t: int) -> np.ndarray:
    """Frame t: a red square moving left to right over a blue background, with a green floor."""
    image = Image.new("RGB", (WIDTH, HEIGHT), (40, 70, 160))
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, HEIGHT - 20, WIDTH, HEIGHT], fill=(40, 150, 60))
    x = int((WIDTH - 30) * t / (FPS * SECONDS - 1))
    draw.rectangle([x, HEIGHT - 50, x + 30, HEIGHT - 20], fill=(220, 40, 40))
    return np.asarray(image)


def write_clip(path: Path) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"g": "25", "crf": "30", "preset": "veryslow"}
        for t in range(FPS * SECONDS):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame_at(t), format="rgb24")))
        container.mux(stream.encode())


def write_pictures(folder: Path) -> None:
    folder.mkdir(exist_ok=True)
    for name, colour in (("1-red.png", (220, 40, 40)), ("2-green.png", (40, 180, 60)), ("3-blue.png", (40, 70, 200))):
        image = Image.new("RGB", (96, 72), (235, 235, 235))
        ImageDraw.Draw(image).ellipse([24, 12, 72, 60], fill=colour)
        image.save(folder / name)


if __name__ == "__main__":
    write_clip(HERE / "clip.mp4")
    write_pictures(HERE / "pictures")
    print("wrote", HERE / "clip.mp4", "and", HERE / "pictures")
