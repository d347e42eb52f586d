"""The demo model's export is a LongLLaVA directory the public loader reads back to the same model."""

from __future__ import annotations

import torch

from model import load_model
from model.training import synthetic
from model.training.batches import prompt_segments, visual_inputs
from model.training.evaluation import answer
from model.training.export import checkpoint_tensors, export


def test_export_loads_through_load_model_with_the_same_outputs(built):
    directory, model = built
    out = export(model.eval(), directory / "tokenizer", directory / "model")
    loaded = load_model(out)
    assert sum(f.stat().st_size for f in out.iterdir()) < 20e6
    keys = set(checkpoint_tensors(model))
    assert "model.layers.0.pre_moe_layernorm.weight" in keys and "model.layers.0.mamba.B_layernorm.weight" in keys
    assert "model.layers.0.moe.experts.0.gate_proj.weight" in keys  # a dense layer, in AI21 naming
    item = synthetic.make_item("needle", 1, num_frames=6)
    groups, pixels = visual_inputs(item, model.image_size)
    segments = prompt_segments(model, item, groups)
    with torch.no_grad():
        embeds = [m.merge_embeddings(segments, m.encode_images(torch.stack(pixels))) for m in (model, loaded)]
        logits = [m.lm(inputs_embeds=e, logits_to_keep=None) for m, e in zip((model, loaded), embeds, strict=True)]
    torch.testing.assert_close(logits[1], logits[0])
    assert isinstance(answer(loaded, item), str)
