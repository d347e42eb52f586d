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


def test_separators_are_single_tokens(built):
    _, model = built
    encode = model.tokenizer.encode
    assert [len(encode(s)) for s in ("<img>", "</img>", "<t>", "<vid>", "</vid>")] == [1] * 5
    assert len(encode("</img><t><img>")) == 3
    assert model.tokenizer.decode(encode("<vid><img>red circle</img></vid>")) == "<vid><img>red circle</img></vid>"


@pytest.mark.parametrize(
    ("layout", "types"), [("hybrid", "MMAMMA"), ("mamba", "MMMMMM"), ("attention", "AAAAAA")]
)
def test_layouts(trainer, built, layout, types):
    directory, _ = built
    model = trainer.build_model(directory / "tokenizer", seed=0, layout=layout)
    assert "".join(t[0].upper() for t in model.config.lm.layer_types) == types
    out = trainer.export(model.eval(), directory / "tokenizer", directory / f"model_{layout}", layout)
    assert load_model(out).config.lm.layer_types == model.config.lm.layer_types


def test_vision_pretraining_trains_the_tower_only_through_its_heads(trainer, built):
    import argparse

    directory, _ = built
    model = trainer.build_model(directory / "tokenizer", seed=1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    args = argparse.Namespace(vision_steps=4, vision_batch_size=6, vision_lr=1e-3, seed=0, log_every=2)
    records = trainer.pretrain_vision(model, args)
    assert [r["step"] for r in records] == [2, 4] and all(0 <= r["all_attributes_right"] <= 1 for r in records)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("vision.") for k in changed)


def test_frozen_tower_gets_no_gradient(trainer, synthetic, built):
    directory, _ = built
    model = trainer.build_model(directory / "tokenizer", seed=2).train()
    model.vision.requires_grad_(False)
    loss, _ = trainer.batch_loss(model, [synthetic.make_item("needle", 0, num_frames=4)])
    loss.backward()
    assert all(p.grad is None for p in model.vision.parameters())
    assert model.projector[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize(("steps", "count_steps", "stop_first"), [(4, 0, 2), (2, 2, 3)])
def test_training_resumes_where_it_stopped(trainer, tmp_path, steps, count_steps, stop_first):
    """A run stopped and rerun equals one uninterrupted run (same data, same optimizer state), also
    across the boundary into stage IV."""
    import argparse

    def run(out, stop_after_steps=None):
        args = argparse.Namespace(
            out=str(out), steps=steps, count_steps=count_steps, count_lr=5e-4, batch_size=2, lr=1e-3, max_frames=4,
            seed=0, save_every=3, log_every=1, layout="hybrid", vision_steps=2, vision_batch_size=4, vision_lr=1e-3,
            stop_after_minutes=None, stop_after_steps=stop_after_steps,
        )
        return trainer.train(args)

    whole = run(tmp_path / "a")
    run(tmp_path / "b", stop_after_steps=stop_first)
    resumed = run(tmp_path / "b")
    for (name, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, msg=name)
    log = (tmp_path / "a" / "train_log.jsonl").read_text().splitlines()
    assert sum('"stage": "IV"' in line for line in log) == count_steps


def test_count_stage_is_reproducible_grows_its_videos_and_has_its_own_seeds(trainer):
    batches = [trainer.count_stage_items(0, step, 400, 16, offset=1000) for step in range(0, 400, 20)]
    again = trainer.count_stage_items(0, 20, 400, 16, offset=1000)
    assert [(i.question, i.answer) for i in again] == [(i.question, i.answer) for i in batches[1]]
    longest = [max((i.info.get("num_frames", 0) for i in batch), default=0) for batch in batches]
    assert max(longest[:5]) <= 8 and max(longest[5:10]) <= 16 and max(longest[10:]) == 32
    assert min(longest[10:]) >= 8 and longest[10:].count(32) >= 4  # the second half dwells on 32 frames
    tasks = [i.task for batch in batches for i in batch]
    assert tasks.count("count") > len(tasks) / 2 and {"needle", "order", "describe"} <= set(tasks)
