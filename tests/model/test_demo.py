"""The built-in demo model (model/demo): a real LongLLaVA checkpoint folder shipped in the package,
read by the same public loader as real checkpoints, answering freshly generated questions
(seeds the trainer never drew) correctly through the engine the CLI uses."""

from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from model import load_model, read_model_config
from model.api import ask
from model.demo import demo_model_dir
from model.engine import GenerationOptions
from model.request import AskRequest
from model.training import synthetic
from sampling import SamplingOptions

# Far from the trainer's seeds (< 10⁷ per task) and from its evaluation seeds (777000 + i).
SEED = 5_550_001


@pytest.fixture(scope="module")
def demo():
    directory = demo_model_dir()
    assert directory is not None, "the demo model is missing from model/demo (see examples/train_demo_model.py)"
    return load_model(directory)


def test_packaged_folder_is_a_longllava_checkpoint():
    directory = demo_model_dir()
    assert directory is not None
    files = {f.name: f.stat().st_size for f in directory.iterdir() if f.is_file()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= set(files)
    assert sum(size for name, size in files.items() if not name.endswith(".py")) <= 20e6
    raw = json.loads((directory / "config.json").read_text())
    assert raw["architectures"] == ["LlavaJambaForCausalLM"] and raw["mm_projector_type"] == "mlp2x_gelu"
    config = read_model_config(directory)  # what `longllava info` reads, without the weights
    assert {"mamba", "attention"} == set(config.lm.layer_types) and config.vision is not None
    with safe_open(directory / "model.safetensors", "pt") as f:  # LongLLaVA's own (AI21) naming
        names = set(f.keys())
    assert "model.mm_projector.0.weight" in names
    assert "model.vision_tower.vision_tower.vision_model.embeddings.patch_embedding.weight" in names
    assert any(".moe.experts.0." in name for name in names) and any(".pre_moe_layernorm." in name for name in names)


def _save_frames(item, folder):
    folder.mkdir()
    for i, frame in enumerate(item.visuals[0].frames):
        frame.save(folder / f"frame_{i:04d}.png")
    return folder


def test_finds_the_needle_in_a_fresh_video(demo, tmp_path):
    item = synthetic.make_item("needle", SEED, num_frames=96, depth=0.3)
    folder = _save_frames(item, tmp_path / "haystack")
    result = ask(
        demo,
        AskRequest(
            inputs=[str(folder)],
            questions=item.question,
            sampling=SamplingOptions(num_frames=96),
            generation=GenerationOptions(max_new_tokens=8),
        ),
    )
    assert result.answers[0].text == item.answer
    assert result.num_visual_tokens == 96 * demo.tokens_per_image


def test_names_the_object_of_fresh_pictures(demo, tmp_path):
    items = [synthetic.make_item("describe", SEED + i) for i in range(3)]
    answers = []
    for i, item in enumerate(items):
        path = tmp_path / f"{i}.png"
        item.visuals[0].image.save(path)
        result = ask(
            demo,
            AskRequest(inputs=[str(path)], questions=item.question, generation=GenerationOptions(max_new_tokens=8)),
        )
        answers.append(result.answers[0].text)
    assert answers == [item.answer for item in items]
