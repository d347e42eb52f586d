"""Synthetic items -> model inputs, as the inference pipeline makes them, and the training loss:
cross-entropy on the answer tokens (and the EOS that ends them) of a padded batch. Everything runs
through our own model code: the CLIP tower, 2d pooling, the projector, and the Jamba LM on the
spliced embeddings (differentiable scan and attention, chosen automatically while autograd records).

Dimension letters: docs/glossary.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from model.longllava import LongLLaVA
from model.projector import pool_features
from model.training import synthetic
from sampling.preprocess import iter_tiles, preprocess_image
from sampling.prompt import (
    ImageGroup,
    ImageSlot,
    TiledGroup,
    VideoGroup,
    build_prompt_layout,
    compose_user_content,
    tokenize_layout,
)


def visual_inputs(item: synthetic.Item, size: int) -> tuple[list, list[torch.Tensor]]:
    """(prompt groups, preprocessed images in slot order), as the inference pipeline makes them."""
    groups, pixels = [], []
    for visual in item.visuals:
        if isinstance(visual, synthetic.Picture):
            groups.append(ImageGroup())
            pixels.append(preprocess_image(visual.image, size))
        elif isinstance(visual, synthetic.Video):
            groups.append(VideoGroup(len(visual.frames)))
            pixels += [preprocess_image(frame, size) for frame in visual.frames]
        else:
            groups.append(TiledGroup(visual.rows, visual.cols))
            pixels.append(preprocess_image(visual.image, size))
            pixels += [preprocess_image(piece, size) for _, _, piece in iter_tiles(visual.image, size)]
    return groups, pixels


def prompt_segments(model: LongLLaVA, item: synthetic.Item, groups: list) -> tuple:
    """The item's prompt as token-id runs and image slots (`sampling.prompt.tokenize_layout`)."""
    layout = build_prompt_layout(compose_user_content(item.question, groups), tokens_per_image=model.tokens_per_image)
    return tokenize_layout(layout, model.tokenizer.encode).segments


def encode_pixels(model: LongLLaVA, pixels: torch.Tensor) -> torch.Tensor:
    """[b, 3, S, S] -> [b, t, e] with autograd through the projector, and through the CLIP tower
    while it trains (LongLLaVA.encode_images is inference-only)."""
    tower_trains = any(p.requires_grad for p in model.vision.parameters())
    with torch.set_grad_enabled(torch.is_grad_enabled() and tower_trains):
        features = model.vision(pixels)
    return model.projector(pool_features(features, model.pooling))


def splice(model: LongLLaVA, segments: Sequence, features: torch.Tensor) -> torch.Tensor:
    """Text embeddings and image features in prompt order -> [L, e] (differentiable twin of
    `LongLLaVA.merge_embeddings`)."""
    pieces = []
    for segment in segments:
        if isinstance(segment, ImageSlot):
            pieces.append(features[segment.image])
        else:
            pieces.append(model.lm.embed(torch.tensor(segment, dtype=torch.long)))
    return torch.cat(pieces)


def batch_loss(model: LongLLaVA, items: Sequence[synthetic.Item]) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the answer tokens (and their EOS) of a padded batch; returns it and
    the padded length."""
    size = model.image_size
    prepared, all_pixels = [], []
    for item in items:
        groups, pixels = visual_inputs(item, size)
        prepared.append((prompt_segments(model, item, groups), len(all_pixels), len(pixels)))
        all_pixels += pixels
    features = encode_pixels(model, torch.stack(all_pixels))
    rows, labels = [], []
    for (segments, first, count), item in zip(prepared, items, strict=True):
        prompt = splice(model, segments, features[first : first + count])
        answer = [*model.tokenizer.encode(item.answer), model.tokenizer.eos_token_id]
        answer_ids = torch.tensor(answer, dtype=torch.long)
        rows.append(torch.cat([prompt, model.lm.embed(answer_ids[:-1])]))
        labels.append(torch.cat([torch.full((len(prompt) - 1,), -100), answer_ids]))
    length = max(len(r) for r in rows)
    embeds = torch.stack([F.pad(r, (0, 0, 0, length - len(r))) for r in rows])  # right padding: causal, harmless
    targets = torch.stack([F.pad(t, (0, length - len(t)), value=-100) for t in labels])
    logits = model.lm(inputs_embeds=embeds, logits_to_keep=None)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    return loss, length
