"""The demo-model trainer: its export is a LongLLaVA directory the public loader reads back to the
same model, its loss trains on answer tokens only, and its data is a function of (seed, step)."""

from __future__ import annotations

import pytest
import torch

from model import load_model


@pytest.fixture(scope="module")
def built(trainer, tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    trainer.write_tokenizer(directory / "tokenizer")
    return directory, trainer.build_model(directory / "tokenizer", seed=0)


def test_export_loads_through_load_model_with_the_same_outputs(trainer, synthetic, built):
    directory, model = built
    out = trainer.export(model.eval(), directory / "tokenizer", directory / "model")
    loaded = load_model(out)
    assert sum(f.stat().st_size for f in out.iterdir()) < 20e6
    keys = set(trainer.checkpoint_tensors(model))
    assert "model.layers.0.pre_moe_layernorm.weight" in keys and "model.layers.0.mamba.B_layernorm.weight" in keys
    assert "model.layers.0.moe.experts.0.gate_proj.weight" in keys  # a dense layer, in AI21 naming
    item = synthetic.make_item("needle", 1, num_frames=6)
    groups, pixels = trainer.visual_inputs(item, model.image_size)
    segments = trainer.prompt_segments(model, item, groups)
    with torch.no_grad():
        embeds = [m.merge_embeddings(segments, m.encode_images(torch.stack(pixels))) for m in (model, loaded)]
        logits = [m.lm(inputs_embeds=e, logits_to_keep=None) for m, e in zip((model, loaded), embeds, strict=True)]
    torch.testing.assert_close(logits[1], logits[0])
    assert isinstance(trainer.answer(loaded, item), str)


def test_loss_is_differentiable_and_matches_the_inference_splice(trainer, synthetic, built):
    _, model = built
    model.train()
    items = [synthetic.make_item("describe", 0), synthetic.make_item("order", 0, num_frames=5)]
    loss, length = trainer.batch_loss(model, items)
    loss.backward()
    assert torch.isfinite(loss) and length > 20
    assert model.projector[0].weight.grad.abs().sum() > 0
    assert model.vision.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    item = items[1]
    groups, pixels = trainer.visual_inputs(item, model.image_size)
    segments = trainer.prompt_segments(model, item, groups)
    with torch.no_grad():
        features = trainer.encode_pixels(model, torch.stack(pixels))
        spliced = trainer.splice(model, segments, features)[None]
    torch.testing.assert_close(spliced, model.merge_embeddings(segments, features))


def test_steps_are_reproducible_and_stages_progress(trainer):
    a = trainer.items_for_step(0, 250, 1000, 4, 16)
    b = trainer.items_for_step(0, 250, 1000, 4, 16)
    assert [(i.task, i.question, i.answer) for i in a] == [(i.task, i.question, i.answer) for i in b]
    stages = [trainer.stage_at(s, 1000)[0] for s in (0, 149, 150, 299, 300, 999)]
    assert stages == ["I", "I", "II", "II", "III", "III"]
    assert {i.task for s in range(10) for i in trainer.items_for_step(0, s, 1000, 4, 16)} == {"describe"}
