"""Synthetic V-NIAH: find one needle frame in a haystack video (the needle-in-a-video-haystack
test of arXiv 2409.02889, on this project's synthetic frames).

    python benchmarks/vniah.py                                        # the built-in demo model
    python benchmarks/vniah.py --model hybrid=benchmarks/out/demo_hybrid/model \\
        --model mamba=benchmarks/out/demo_mamba/model --model attention=benchmarks/out/demo_attention/model
    python benchmarks/vniah.py --frames 16 64 --depths 0 0.5 1 --trials 2   # a quick look

Each cell (haystack length × needle depth) draws `--trials` needle items from
model/training/synthetic.py (seeds never used in training: the trainer's are < 10⁷ and keyed by
task), writes each haystack once as a folder of PNGs (lossless; a folder is read like a video)
and asks every model through `model.api.ask`, the engine the CLI uses, with `num_frames` equal
to the haystack length so every frame is seen. A model is right when its greedy answer is
exactly the needle's name ("red circle").

Per model it prints the accuracy grid and, at the longest haystack, the prefill time (mean over
its asks), the whole ask's time and the peak memory: the process's peak RSS over the ask minus
its RSS before it (VmHWM, reset before each ask through /proc/self/clear_refs). Writes
grid.json, one heatmap PNG per model (Pillow; no plotting library needed), and ends with one
JSON line of the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from measure import print_json_line
from PIL import Image, ImageDraw

from model import load_model
from model.api import ask
from model.demo import demo_model_dir
from model.engine import GenerationOptions
from model.memory_usage import current_rss_bytes, reset_peak_rss
from model.request import AskRequest
from model.training import synthetic
from sampling import SamplingOptions

FRAMES = (16, 64, 128, 256, 512, 1000)
DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
SEED_BASE = 900_000  # far from the trainer's seeds


def write_haystacks(frames, depths, trials: int, root: Path) -> dict:
    """{(num_frames, depth): [(folder, question, answer), ...]}: every trial's frames as PNGs."""
    cells = {}
    for num_frames in frames:
        for d, depth in enumerate(depths):
            cells[num_frames, depth] = []
            for trial in range(trials):
                seed = SEED_BASE + 1000 * num_frames + 100 * d + trial
                item = synthetic.make_item("needle", seed, num_frames=num_frames, depth=depth)
                folder = root / f"{num_frames}_{d}_{trial}"
                folder.mkdir()
                for i, frame in enumerate(item.visuals[0].frames):
                    frame.save(folder / f"frame_{i:05d}.png")
                cells[num_frames, depth].append((folder, item.question, item.answer))
    return cells


def run_model(model_dir: str, cells: dict, longest: int) -> dict:
    model = load_model(model_dir)
    grid: dict[int, dict[float, float]] = {}
    prefill, total, peaks = [], [], []
    for (num_frames, depth), trials in cells.items():
        correct = 0
        for folder, question, answer in trials:
            measure = num_frames == longest and reset_peak_rss()
            before = current_rss_bytes()
            result = ask(
                model,
                AskRequest(
                    inputs=[str(folder)],
                    questions=question,
                    sampling=SamplingOptions(num_frames=num_frames, max_frames=num_frames),
                    generation=GenerationOptions(max_new_tokens=8),
                ),
            )
            correct += result.answers[0].text.strip() == answer
            if num_frames == longest:
                prefill.append(result.timings["prefill"])
                total.append(result.timings["total"])
                if measure:
                    peaks.append(result.peak_memory_bytes - before)  # VmHWM on CPU
        grid.setdefault(num_frames, {})[depth] = correct / len(trials)
    params = sum(p.numel() for p in model.parameters())
    return {
        "grid": grid,
        "mean": _mean(v for row in grid.values() for v in row.values()),
        "by_frames": {n: _mean(row.values()) for n, row in grid.items()},
        "parameters": params,
        "layers": "".join("A" if t == "attention" else "M" for t in model.config.lm.layer_types),
        f"prefill_s_at_{longest}": _mean(prefill),
        f"ask_s_at_{longest}": _mean(total),
        f"peak_memory_mib_at_{longest}": max(peaks) / 2**20 if peaks else None,
    }


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def write_heatmap(grid: dict[int, dict[float, float]], path: Path, title: str, cell: int = 48) -> None:
    """Rows: haystack lengths; columns: needle depths; red (0) to green (1)."""
    lengths, depths = list(grid), list(next(iter(grid.values())))
    left, top = 60, 46
    image = Image.new("RGB", (left + cell * len(depths) + 10, top + cell * len(lengths) + 10), "white")
    draw = ImageDraw.Draw(image)
    draw.text((5, 5), title, fill="black")
    for c, depth in enumerate(depths):
        draw.text((left + c * cell + 10, 26), f"{depth:g}", fill="black")
    for r, length in enumerate(lengths):
        draw.text((5, top + r * cell + cell // 3), str(length), fill="black")
        for c, depth in enumerate(depths):
            acc = grid[length][depth]
            box = [left + c * cell, top + r * cell, left + (c + 1) * cell - 2, top + (r + 1) * cell - 2]
            draw.rectangle(box, fill=(int(220 * (1 - acc)), int(180 * acc), 40))
            draw.text((box[0] + 8, box[1] + cell // 3), f"{acc:.2f}", fill="white")
    image.save(path)


def parse_models(specs: list[str] | None) -> dict[str, str]:
    if not specs:
        demo = demo_model_dir()
        if demo is None:
            raise SystemExit("no --model given and this install has no built-in demo model")
        return {"demo": str(demo)}
    models = {}
    for spec in specs:
        name, _, path = spec.rpartition("=")
        models[name or Path(path).name] = path
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description="Synthetic needle-in-a-video-haystack accuracy grid.")
    parser.add_argument("--model", action="append", help="NAME=DIR or DIR, repeatable (default: the demo model)")
    parser.add_argument("--frames", type=int, nargs="+", default=list(FRAMES))
    parser.add_argument("--depths", type=float, nargs="+", default=list(DEPTHS))
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default="benchmarks/out/vniah", help="folder for grid.json and heatmaps")
    args = parser.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    models = parse_models(args.model)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    longest = max(args.frames)
    results = {}
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        cells = write_haystacks(args.frames, args.depths, args.trials, Path(root))
        print(f"wrote {len(cells) * args.trials} haystacks in {time.perf_counter() - started:.0f} s", flush=True)
        for name, model_dir in models.items():
            started = time.perf_counter()
            results[name] = result = run_model(model_dir, cells, longest)
            print(f"\n{name} ({model_dir}; layers {result['layers']}, {result['parameters']:,} parameters)")
            print("frames  " + "  ".join(f"d={d:<4g}" for d in args.depths) + "  mean")
            for num_frames, row in result["grid"].items():
                accs = "  ".join(f"{row[d]:6.2f}" for d in args.depths)
                print(f"{num_frames:>6}  {accs}  {result['by_frames'][num_frames]:.2f}")
            prefill, total = result[f"prefill_s_at_{longest}"], result[f"ask_s_at_{longest}"]
            peak = result[f"peak_memory_mib_at_{longest}"]
            print(
                f"mean {result['mean']:.3f}; at {longest} frames: prefill {prefill:.2f} s, ask {total:.2f} s, "
                f"peak memory +{peak:.0f} MiB ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            write_heatmap(result["grid"], out / f"heatmap_{name}.png", f"V-NIAH {name}: frames x depth")
    record = {"trials": args.trials, "frames": args.frames, "depths": args.depths, "models": models, "results": results}
    (out / "grid.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {out / 'grid.json'} and heatmaps")
    print_json_line({name: {k: v for k, v in r.items() if k != "grid"} for name, r in results.items()})


if __name__ == "__main__":
    main()
