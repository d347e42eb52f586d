"""Our CLIP tower against transformers' `CLIPVisionModel` on identical tiny random weights, moved
between the two only through a safetensors file written by transformers' `save_pretrained`."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from model.config import CLIPVisionConfig
from model.tower_keys import CHECKPOINT_PREFIX
from model.vision import CLIPVisionTower, encode_in_batches, select_tower_weights

transformers = pytest.importorskip("transformers")

TINY = CLIPVisionConfig(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    image_size=28,
    patch_size=7,
    projection_dim=16,
)


def _hf_tower(config: CLIPVisionConfig, tmp_path) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """A seeded random transformers CLIPVisionModel and the tensors of its saved safetensors file."""
    torch.manual_seed(0)
    hf_config = transformers.CLIPVisionConfig(**dataclasses.asdict(config))
    hf = transformers.CLIPVisionModel(hf_config).eval()
    with torch.no_grad():  # random, not the near-identity init, so every weight matters
        for p in hf.parameters():
            p.normal_(0, 0.2)
    hf.save_pretrained(tmp_path / "clip", safe_serialization=True)
    return hf, load_file(tmp_path / "clip" / "model.safetensors")


def _load_ours(config: CLIPVisionConfig, tensors: dict[str, torch.Tensor], **kwargs) -> CLIPVisionTower:
    ours = CLIPVisionTower(config, **kwargs).eval()
    ours.load_state_dict(select_tower_weights(tensors), strict=True)
    return ours


@pytest.mark.parametrize("act", ["quick_gelu", "gelu"])
def test_matches_transformers_penultimate_patch_features(tmp_path, act):
    config = dataclasses.replace(TINY, hidden_act=act)
    hf, tensors = _hf_tower(config, tmp_path)
    ours = _load_ours(config, tensors)
    pixels = torch.randn(3, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(pixel_values=pixels, output_hidden_states=True).hidden_states[-2][:, 1:]
        got = ours(pixels)
    assert got.shape == (3, TINY.num_patches, TINY.hidden_size) == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("select_layer", "hf_index"), [(-1, -1), (0, 0), (1, 1), (-3, -3)])
def test_select_layer_and_cls_patch(tmp_path, select_layer, hf_index):
    hf, tensors = _hf_tower(TINY, tmp_path)
    ours = _load_ours(TINY, tensors, select_layer=select_layer, select_feature="cls_patch")
    pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = hf(pixel_values=pixels, output_hidden_states=True).hidden_states[hf_index]
        got = ours(pixels)
    assert got.shape == (2, TINY.num_patches + 1, TINY.hidden_size) == (2, ours.num_tokens, 32)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_penultimate_layer_skips_the_last_layer():
    tower = CLIPVisionTower(TINY)
    assert tower.num_layers == TINY.num_hidden_layers - 1
    called = []
    tower.vision_model.encoder.layers[-1].register_forward_hook(lambda *a: called.append(True))
    tower(torch.zeros(1, 3, 28, 28))
    assert not called


def test_batching_gives_identical_results():
    torch.manual_seed(3)
    tower = CLIPVisionTower(TINY).eval()
    pixels = torch.randn(7, 3, 28, 28)
    with torch.no_grad():
        whole = encode_in_batches(tower, pixels, batch_size=7)
        for batch_size in (1, 3):
            torch.testing.assert_close(
                encode_in_batches(tower, pixels, batch_size=batch_size), whole, atol=1e-6, rtol=1e-6
            )
        pooled = encode_in_batches(tower, pixels, batch_size=2, transform=lambda f: f.mean(1, keepdim=True))
    assert pooled.shape == (7, 1, TINY.hidden_size)


def test_bfloat16_weights_accept_float32_pixels():
    tower = CLIPVisionTower(TINY).to(torch.bfloat16)
    out = tower(torch.randn(2, 3, 28, 28))
    assert out.dtype == torch.bfloat16 and out.shape == (2, 16, 32)


@pytest.mark.parametrize("prefix", ["", "vision_model.", CHECKPOINT_PREFIX + "vision_model."])
def test_select_tower_weights_strips_each_known_prefix(prefix):
    names = CLIPVisionTower(TINY).state_dict()
    bare = {k.removeprefix("vision_model."): torch.zeros(1) for k in names}
    tensors = {prefix + k: v for k, v in bare.items()}
    tensors |= {prefix + "embeddings.position_ids": torch.zeros(1), "model.layers.0.mamba.D": torch.zeros(1)}
    tensors |= {"text_model.embeddings.token_embedding.weight": torch.zeros(1), "logit_scale": torch.zeros(1)}
    assert set(select_tower_weights(tensors)) == set(names)


def test_select_tower_weights_without_a_tower_is_empty():
    assert select_tower_weights({"model.embed_tokens.weight": torch.zeros(1)}) == {}


def test_checkpoint_prefix_names_every_parameter():
    keys = set(CLIPVisionTower(TINY).state_dict())
    assert all(k.startswith("vision_model.") for k in keys)
    assert "vision_model.pre_layrnorm.weight" in keys and "vision_model.post_layernorm.bias" in keys
    assert CHECKPOINT_PREFIX + "vision_model.embeddings.class_embedding" == (
        "model.vision_tower.vision_tower.vision_model.embeddings.class_embedding"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"select_layer": 4}, "out of range"),
        ({"select_layer": -5}, "out of range"),
        ({"select_feature": "cls"}, "select_feature"),
    ],
)
def test_invalid_selection_is_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CLIPVisionTower(TINY, **kwargs)


def test_wrong_pixel_shape_is_rejected():
    with pytest.raises(ValueError, match=r"\[b, 3, 28, 28\]"):
        CLIPVisionTower(TINY)(torch.zeros(1, 3, 30, 30))


def test_unsupported_activation_is_rejected():
    with pytest.raises(ValueError, match="hidden_act"):
        CLIPVisionTower(dataclasses.replace(TINY, hidden_act="relu"))
