"""Evaluation of the demo model: greedy answers to fresh items through the inference path (the
cache and the chunk-capable LM forward), exact-match accuracy per setting."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from model.longllava import LongLLaVA
from model.training import synthetic
from model.training.batches import prompt_segments, visual_inputs

EVAL_SEED = 777_000  # evaluation items come from seeds far from the training ones
# (name, make_item options): the name is the task, then "@frames" for video lengths.
EVAL_SETTINGS = (
    ("describe", {}),
    ("compare", {}),
    ("tile", {}),
    ("motion", {}),
    ("order@16", {"num_frames": 16}),
    ("order@32", {"num_frames": 32}),
    ("order@128", {"num_frames": 128}),
    ("count@8", {"num_frames": 8}),
    ("count@16", {"num_frames": 16}),
    ("count@32", {"num_frames": 32}),
    ("needle@16", {"num_frames": 16}),
    ("needle@64", {"num_frames": 64}),
    ("needle@128", {"num_frames": 128}),
    ("needle@256", {"num_frames": 256}),
)


@torch.no_grad()
def answer(model: LongLLaVA, item: synthetic.Item, max_new_tokens: int = 8) -> str:
    """The model's greedy answer to `item`, stripped."""
    groups, pixels = visual_inputs(item, model.image_size)
    segments = prompt_segments(model, item, groups)
    embeds = model.merge_embeddings(segments, model.encode_images(torch.stack(pixels)))
    cache = model.lm.new_cache(capacity=embeds.shape[1] + max_new_tokens)
    logits = model.lm(inputs_embeds=embeds, cache=cache)
    ids: list[int] = []
    for _ in range(max_new_tokens):
        token = int(logits[0, -1].argmax())
        if token in model.eos_token_ids:
            break
        ids.append(token)
        logits = model.lm(torch.tensor([[token]]), cache=cache)
    return model.tokenizer.decode(ids).strip()


def evaluate(model: LongLLaVA, per_task: int, settings: Sequence[tuple[str, dict]]) -> dict[str, float]:
    """Accuracy per setting over `per_task` items from `EVAL_SEED` on; prints each as it finishes."""
    results = {}
    for name, options in settings:
        task = name.split("@")[0]
        correct = sum(
            answer(model, item) == item.answer
            for item in (synthetic.make_item(task, EVAL_SEED + i, **options) for i in range(per_task))
        )
        results[name] = correct / per_task
        print(f"{name:>14}: {correct}/{per_task}", flush=True)
    return results
