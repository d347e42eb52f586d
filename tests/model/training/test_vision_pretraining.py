"""Stage 0 trains the CLIP tower through its throwaway heads only."""

from __future__ import annotations

import torch

from model.training.architecture import build_model
from model.training.vision_pretraining import pretrain_vision


def test_vision_pretraining_trains_the_tower_only_through_its_heads(built):
    import argparse

    directory, _ = built
    model = build_model(directory / "tokenizer", seed=1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = argparse.Namespace(vision_steps=4, vision_batch_size=6, vision_lr=1e-3, seed=0, log_every=2)
    records = pretrain_vision(model, args)
    assert [r["step"] for r in records] == [2, 4] and all(0 <= r["all_attributes_right"] <= 1 for r in records)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("vision.") for k in changed)
