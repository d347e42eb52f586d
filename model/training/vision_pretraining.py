"""Stage 0, vision pretraining: it stands in for the pretrained CLIP the paper starts from (nothing
can be downloaded here). The CLIP tower, with throwaway linear heads on its pooled features, learns
each frame's object colour, shape and position third; the recipe freezes it afterwards, as the
paper keeps CLIP frozen (arXiv 2409.02889 §4).

Dimension letters: docs/glossary.md.
"""

from __future__ import annotations

import argparse
import json
import random

import torch
import torch.nn.functional as F

from model.longllava import LongLLaVA
from model.projector import pool_features
from model.training import synthetic
from sampling.preprocess import preprocess_image

# The heads read the pooled features [b, t, e] flattened; "no object" is one more class.
ATTRIBUTE_CLASSES = {
    "color": len(synthetic.COLORS) + 1,
    "shape": len(synthetic.SHAPES) + 1,
    "column": 3,
    "row": 3,
}


def pretrain_vision(model: LongLLaVA, args: argparse.Namespace) -> list[dict]:
    """Stage 0: train the CLIP tower to name each frame's object colour, shape and position third
    through throwaway linear heads on its pooled features; returns the log records (also printed).
    args: vision_steps, vision_batch_size, vision_lr, seed, log_every."""
    tokens = model.tokens_per_image * model.config.vision.hidden_size
    heads = torch.nn.ModuleDict({k: torch.nn.Linear(tokens, n) for k, n in ATTRIBUTE_CLASSES.items()})
    optimizer = torch.optim.AdamW([*model.vision.parameters(), *heads.parameters()], lr=args.vision_lr)
    records, correct, losses = [], [], []
    for step in range(args.vision_steps):
        loss, all_right = _attribute_loss(model, heads, random.Random(f"vision:{args.seed}:{step}"), args)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        correct.append(all_right)
        if (step + 1) % args.log_every == 0 or step + 1 == args.vision_steps:
            record = {"step": step + 1, "stage": "0", "loss": sum(losses) / len(losses)}
            record["all_attributes_right"] = round(sum(correct) / len(correct), 3)
            print(json.dumps(record), flush=True)
            records.append(record)
            losses, correct = [], []
    return records


def _attribute_loss(
    model: LongLLaVA, heads: torch.nn.ModuleDict, rng: random.Random, args: argparse.Namespace
) -> tuple[torch.Tensor, float]:
    """One batch of attribute frames: the summed cross-entropy of the heads, and the fraction of
    frames whose every attribute the heads got right."""
    frames, labels = zip(*(synthetic.attribute_frame(rng) for _ in range(args.vision_batch_size)), strict=True)
    pixels = torch.stack([preprocess_image(frame, model.image_size) for frame in frames])
    features = pool_features(model.vision(pixels), model.pooling).flatten(1)
    loss = torch.zeros(())
    hits = []
    for name, head in heads.items():
        target = torch.tensor([label[name] for label in labels])
        logits = head(features)
        loss = loss + F.cross_entropy(logits, target, ignore_index=-100)
        hits.append(((logits.argmax(1) == target) | (target == -100)).float())
    return loss, torch.stack(hits).prod(0).mean().item()
