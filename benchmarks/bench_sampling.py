"""Frame sampling benchmark (issue 3): ours vs decord, OpenCV seek-per-frame and the LongLLaVA way."""

from __future__ import annotations

import argparse
from pathlib import Path

import av
import numpy as np

OUT_DIR = Path(__file__).resolve().parent / "out"
WIDTH, HEIGHT, FPS, GOP = 1280, 720, 25, 250


def generate_video(path: Path, minutes: float) -> Path:
    """Write (once, cached) a 1280×720 H.264 clip with a keyframe every GOP frames: a scrolling
    gradient, cheap to encode with x264 ultrafast, written straight as yuv420p planes."""
    if path.exists():
        return path
    tmp = path.with_suffix(".partial.mp4")
    num_frames = round(minutes * 60 * FPS)
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.options = {"g": str(GOP), "keyint_min": str(GOP), "sc_threshold": "0",
                          "preset": "ultrafast", "crf": "28"}
        luma = (np.add.outer(np.arange(HEIGHT) // 2, np.arange(WIDTH) // 4) % 256).astype(np.uint8)
        planes = np.full((HEIGHT * 3 // 2, WIDTH), 128, np.uint8)
        for i in range(num_frames):
            planes[:HEIGHT] = np.roll(luma, i * 3, axis=1)
            frame = av.VideoFrame.from_ndarray(planes, format="yuv420p")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    tmp.rename(path)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--generate-only", action="store_true")
    args = parser.parse_args()
    OUT_DIR.mkdir(exist_ok=True)
    generate_video(OUT_DIR / "bench_5min_720p.mp4", 5)
    generate_video(OUT_DIR / "bench_20min_720p.mp4", 20)
    if args.generate_only:
        return


if __name__ == "__main__":
    main()
