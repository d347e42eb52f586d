"""Synthetic V-NIAH (REFERENCE §6, issue 7): find one needle frame in a haystack video.

    python benchmarks/vniah.py --model benchmarks/out/demo_train/model --trials 4
    python benchmarks/vniah.py --model DIR --frames 16 64 --depths 0 0.5 1 --trials 2

Each cell (haystack length × needle depth) draws `trials` needle items from
examples/synthetic.py (seeds never used in training), writes the frames as a folder of PNGs
(lossless; a folder is laid out like a video) and asks through `model.api.ask`, the same engine
the CLI uses, with `num_frames` equal to the haystack length so every frame is seen. Prints the
accuracy grid and writes it as JSON, and as a heatmap PNG (Pillow; no plotting library needed).

Skeleton (issue 7 item 4): the grid, the engine call and the outputs work; the architecture
comparison (hybrid / pure Mamba / pure attention) and the timing columns are still to come.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

from PIL import Image, ImageDraw

from model import load_model
from model.api import ask
from model.engine import GenerationOptions
from sampling import SamplingOptions

REPO = Path(__file__).resolve().parents[1]
FRAMES = (16, 64, 128, 256, 512, 1000)
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SEED_BASE = 900_000  # far from the trainer's seeds


def load_synthetic() -> ModuleType:
    """examples/synthetic.py by file path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location("synthetic", REPO / "examples" / "synthetic.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["synthetic"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def run_cell(model, synthetic: ModuleType, num_frames: int, depth: float, trials: int, seed: int) -> float:
    correct = 0
    for trial in range(trials):
        item = synthetic.make_item("needle", seed + trial, num_frames=num_frames, depth=depth)
        with tempfile.TemporaryDirectory() as folder:
            for i, frame in enumerate(item.visuals[0].frames):
                frame.save(Path(folder) / f"frame_{i:05d}.png")
            result = ask(
                model,
                [folder],
                item.question,
                sampling=SamplingOptions(num_frames=num_frames, max_frames=max(num_frames, 1)),
                generation=GenerationOptions(max_new_tokens=8),
            )
        correct += result.answers[0].text.strip() == item.answer
    return correct / trials


def write_heatmap(grid: dict[int, dict[float, float]], path: Path, cell: int = 48) -> None:
    """Rows: haystack lengths; columns: depths; red (0) to green (1)."""
    lengths, depths = list(grid), list(next(iter(grid.values())))
    left, top = 60, 30
    image = Image.new("RGB", (left + cell * len(depths) + 10, top + cell * len(lengths) + 10), "white")
    draw = ImageDraw.Draw(image)
    for c, depth in enumerate(depths):
        draw.text((left + c * cell + 10, 10), f"{depth:g}", fill="black")
    for r, length in enumerate(lengths):
        draw.text((5, top + r * cell + cell // 3), str(length), fill="black")
        for c, depth in enumerate(depths):
            acc = grid[length][depth]
            box = [left + c * cell, top + r * cell, left + (c + 1) * cell - 2, top + (r + 1) * cell - 2]
            draw.rectangle(box, fill=(int(220 * (1 - acc)), int(180 * acc), 40))
            draw.text((box[0] + 8, box[1] + cell // 3), f"{acc:.2f}", fill="white")
    image.save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description="Synthetic needle-in-a-video-haystack accuracy grid.")
    parser.add_argument("--model", required=True, help="LongLLaVA checkpoint directory")
    parser.add_argument("--frames", type=int, nargs="+", default=list(FRAMES))
    parser.add_argument("--depths", type=float, nargs="+", default=list(DEPTHS))
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--out", default="benchmarks/out/vniah", help="folder for grid.json and heatmap.png")
    args = parser.parse_args()
    model = load_model(args.model)
    synthetic = load_synthetic()
    grid: dict[int, dict[float, float]] = {}
    started = time.perf_counter()
    for num_frames in args.frames:
        grid[num_frames] = {}
        for d, depth in enumerate(args.depths):
            seed = SEED_BASE + 1000 * num_frames + 100 * d
            grid[num_frames][depth] = run_cell(model, synthetic, num_frames, depth, args.trials, seed)
        row = "  ".join(f"{grid[num_frames][depth]:.2f}" for depth in args.depths)
        print(f"{num_frames:>5} frames: {row}   ({time.perf_counter() - started:.0f} s)", flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mean = sum(v for row in grid.values() for v in row.values()) / sum(len(row) for row in grid.values())
    (out / "grid.json").write_text(json.dumps({"model": args.model, "grid": grid, "mean": mean}, indent=2) + "\n")
    write_heatmap(grid, out / "heatmap.png")
    print(f"mean accuracy {mean:.3f}; wrote {out / 'grid.json'} and {out / 'heatmap.png'}")


if __name__ == "__main__":
    main()
