"""The small demo media of `examples/` (used by the README), drawn like the demo model's training
data (`model/training/synthetic.py`, 56-px frames of coloured shapes) from fixed seeds:

- `shapes.mp4`: 64 frames at 8 fps; every frame is empty but one, which shows the object the
  README asks about ("Which object appears in the video?").
- `order.mp4`: 32 frames at 8 fps; two objects in two frames ("Which appears first, ...?").
- `count.mp4`: 12 frames at 8 fps; five show a yellow shape ("How many frames show a yellow shape?").
- `pictures/1.png` .. `3.png`: one object each ("What is in the image?").

The videos are H.264 in 4:4:4 at constant quantiser 0 (lossless up to the RGB↔YUV rounding), so
what the model sees is what was drawn. The files are committed (`examples/make_demo_media.py`
writes them); `demo_items()` also gives the questions and answers, which the tests check the
packaged model against.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
from PIL import Image

from model.training import synthetic

FPS = 8
# (file, task, seed, options): the seeds are fixed so the media and answers never change.
DEMO = (
    ("shapes.mp4", "needle", 31, {"num_frames": 64, "depth": 0.6}),
    ("order.mp4", "order", 7, {"num_frames": 32}),
    ("count.mp4", "count", 1, {"num_frames": 12}),
    ("pictures/1.png", "describe", 101, {}),
    ("pictures/2.png", "describe", 102, {}),
    ("pictures/3.png", "describe", 103, {}),
)


def demo_items() -> dict[str, synthetic.Item]:
    """Each demo file's item: its frames or pictures, question and answer."""
    return {name: synthetic.make_item(task, seed, **options) for name, task, seed, options in DEMO}


def write_video(path: Path, frames: Sequence[Image.Image]) -> None:
    """Lossless-as-possible H.264 (yuv444p, qp 0) at `FPS`."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = frames[0].width, frames[0].height, "yuv444p"
        stream.options = {"qp": "0", "preset": "veryslow", "g": "32"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.asarray(frame), format="rgb24")))
        container.mux(stream.encode())


def write_demo_media(folder: Path) -> None:
    """Write every demo file under `folder`, printing each one's question and answer."""
    for name, item in demo_items().items():
        if name.endswith(".mp4"):
            write_video(folder / name, item.visuals[0].frames)
        else:
            (folder / name).parent.mkdir(exist_ok=True)
            item.visuals[0].image.save(folder / name)
        print(f"{folder / name}: {item.question!r} -> {item.answer!r}")
