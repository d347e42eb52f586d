"""The recipe's stages and each step's data. LongLLaVA's progressive recipe (arXiv 2409.02889 §4),
scaled down, after stage 0 (`vision_pretraining`):
  I   alignment: single-image descriptions ("red circle");
  II  single-image instructions: descriptions and which tile of a large image holds an object;
  III multi-image and video instructions (compare, needle, count, temporal order, motion) with
      replay of the stage I/II data;
  IV  (ours, `--count-steps N`) mostly counting items on videos growing from 8 to 32 frames, with
      replay of every other task: counting is what the tiny LM learns last (benchmarks/RESULTS.md).

The batch of a step is a function of (seed, step) only, so a resumed run sees the same data.
"""

from __future__ import annotations

import math
import random

from model.training import synthetic

# (name, tasks, fraction of the steps); stage III replays stage I/II tasks at their share.
STAGES = (
    ("I", {"describe": 1.0}, 0.15),
    ("II", {"describe": 0.5, "tile": 0.5}, 0.15),
    (
        "III",
        {"needle": 0.25, "count": 0.2, "order": 0.2, "motion": 0.1, "compare": 0.1, "describe": 0.075, "tile": 0.075},
        0.70,
    ),
)
# Stage IV (ours, after the paper's three): the tiny LM learns counting last and slowest
# (benchmarks/RESULTS.md), so `--count-steps` adds a stage of mostly counting items whose videos
# grow from 8 to 32 frames, with replay of every other task at those lengths.
COUNT_STAGE_MIX = {
    "count": 0.6,
    "needle": 0.1,
    "order": 0.1,
    "describe": 0.05,
    "motion": 0.05,
    "compare": 0.05,
    "tile": 0.05,
}
# Video lengths per part of stage IV (end as a fraction of the stage, lengths drawn uniformly): short
# videos first; the second half dwells on 32 frames, where counting was weakest (benchmarks/RESULTS.md).
COUNT_STAGE_LENGTHS = ((0.25, (4, 8)), (0.5, (4, 8, 16)), (1.0, (8, 16, 32, 32)))
VIDEO_TASKS = ("needle", "count", "order", "motion")


def stage_at(step: int, total: int) -> tuple[str, dict[str, float]]:
    """(stage name, task mix) of `step` among `total` steps of stages I-III."""
    end = 0.0
    for name, mix, fraction in STAGES:
        end += fraction
        if step < round(end * total):
            return name, mix
    return STAGES[-1][0], STAGES[-1][1]


def items_for_step(seed: int, step: int, total: int, batch_size: int, max_frames: int) -> list[synthetic.Item]:
    """The batch of `step`: a function of (seed, step) only, so a resumed run sees the same data.
    Video tasks draw their length up to `max_frames`; one length per batch keeps padding small."""
    _, mix = stage_at(step, total)
    rng = random.Random(f"{seed}:{step}")
    tasks = rng.choices(list(mix), weights=list(mix.values()), k=batch_size)
    num_frames = rng.choice([n for n in (4, 8, 16, 32, 64, 128) if n <= max_frames])
    items = []
    for i, task in enumerate(tasks):
        options = {"num_frames": num_frames} if task in VIDEO_TASKS else {}
        if task == "count":
            options["num_frames"] = min(num_frames, 32)
        if task == "motion":
            options["num_frames"] = min(num_frames, 16)
        items.append(synthetic.make_item(task, seed * 10_000_000 + step * batch_size + i, **options))
    return items


def count_stage_items(seed: int, step: int, count_steps: int, batch_size: int, offset: int) -> list[synthetic.Item]:
    """Stage IV's batch at its `step` (0-based), its video length drawn from `COUNT_STAGE_LENGTHS`
    for that part of the stage. Item seeds continue after stage III's (`offset` = its step count)."""
    rng = random.Random(f"{seed}:IV:{step}")
    tasks = rng.choices(list(COUNT_STAGE_MIX), weights=list(COUNT_STAGE_MIX.values()), k=batch_size)
    lengths = next(lengths for end, lengths in COUNT_STAGE_LENGTHS if step < end * count_steps)
    num_frames = rng.choice(lengths)
    base = seed * 10_000_000 + (offset + step) * batch_size
    return [
        synthetic.make_item(task, base + i, **({"num_frames": num_frames} if task in VIDEO_TASKS else {}))
        for i, task in enumerate(tasks)
    ]


def learning_rate(step: int, total: int, peak: float, warmup: int = 100) -> float:
    """Linear warm-up over `warmup` steps to `peak`, then a cosine down to 10 % of it at `total`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
