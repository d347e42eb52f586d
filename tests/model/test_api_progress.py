"""`ask`'s progress callback: the stages and counts a spinner shows, in order, on a real run of a
tiny random checkpoint over a generated video."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from model import load_model
from model.api import RunOptions, ask
from model.engine import GenerationOptions
from model.testing import write_tiny_longllava
from sampling import SamplingOptions


def _video(path: Path, num_frames: int) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            pixels = np.full((32, 32, 3), (i * 29) % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_progress_follows_the_frames_then_the_questions(tmp_path):
    model = load_model(write_tiny_longllava(tmp_path / "tiny", seed=3))
    video = _video(tmp_path / "v.mp4", 20)
    seen: list[tuple[str, int, int]] = []
    result = ask(
        model,
        [video],
        ["first?", "second?"],
        sampling=SamplingOptions(num_frames=12),
        generation=GenerationOptions(max_new_tokens=2),
        run=RunOptions(vision_batch_size=5),
        on_progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    frames = len(result.inputs[0].frames)
    assert frames == 12
    assert seen == [("vision", i, 12) for i in range(1, 13)] + [("answer", 0, 2), ("answer", 1, 2)]
