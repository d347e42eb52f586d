"""The training loss is on answer tokens, spliced as inference splices; a frozen tower gets no gradient."""

from __future__ import annotations

import torch

from model.training import synthetic
from model.training.architecture import build_model
from model.training.batches import batch_loss, encode_pixels, prompt_segments, splice, visual_inputs


def test_loss_is_differentiable_and_matches_the_inference_splice(built):
    _, model = built
    model.train()
    items = [synthetic.make_item("describe", 0), synthetic.make_item("order", 0, num_frames=5)]
    loss, length = batch_loss(model, items)
    loss.backward()
    assert torch.isfinite(loss) and length > 20
    assert model.projector[0].weight.grad.abs().sum() > 0
    assert model.vision.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    item = items[1]
    groups, pixels = visual_inputs(item, model.image_size)
    segments = prompt_segments(model, item, groups)
    with torch.no_grad():
        features = encode_pixels(model, torch.stack(pixels))
        spliced = splice(model, segments, features)[None]
    torch.testing.assert_close(spliced, model.merge_embeddings(segments, features))


def test_frozen_tower_gets_no_gradient(built):
    directory, _ = built
    model = build_model(directory / "tokenizer", seed=2).train()
    model.vision.requires_grad_(False)
    loss, _ = batch_loss(model, [synthetic.make_item("needle", 0, num_frames=4)])
    loss.backward()
    assert all(p.grad is None for p in model.vision.parameters())
    assert model.projector[0].weight.grad.abs().sum() > 0
