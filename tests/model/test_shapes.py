"""The tensors a config implies (model/shapes.py) equal the parameters of the modules built from it."""

from __future__ import annotations

import pytest
import torch

from model.config import CLIPVisionConfig, JambaConfig
from model.jamba import JambaLM
from model.projector import build_projector
from model.shapes import (
    CLIP_LAYER,
    LM_LAYER,
    clip_tensor_shapes,
    count_layers,
    lm_tensor_shapes,
    projector_tensor_shapes,
)
from model.vision import CLIPVisionTower


def _shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.named_parameters(remove_duplicate=False)}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"num_experts": 4, "num_experts_per_tok": 2},
        {"tie_word_embeddings": True, "mamba_proj_bias": True, "mamba_conv_bias": False},
        {"mamba_inner_layernorms": False, "attn_layer_period": 3, "attn_layer_offset": 0, "mamba_dt_rank": "auto"},
        {"num_key_value_heads": 1, "expert_layer_period": 3, "expert_layer_offset": 2, "num_experts": 3},
    ],
)
def test_lm_shapes_equal_the_module(overrides):
    base = dict(vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=5, num_attention_heads=4,
                num_key_value_heads=2, mamba_d_state=4)  # fmt: skip
    config = JambaConfig(**(base | overrides))
    with torch.device("meta"):
        lm = JambaLM(config)
    assert lm_tensor_shapes(config) == _shapes(lm)
    assert len(list(lm.named_buffers())) == 0  # nothing else is read from a checkpoint


@pytest.mark.parametrize("overrides", [{}, {"image_size": 30, "patch_size": 6, "num_channels": 1}])
def test_clip_shapes_equal_the_module(overrides):
    base = dict(hidden_size=24, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4, image_size=28,
                patch_size=7)  # fmt: skip
    config = CLIPVisionConfig(**(base | overrides))
    with torch.device("meta"):
        tower = CLIPVisionTower(config)
    assert clip_tensor_shapes(config) == _shapes(tower.vision_model)


@pytest.mark.parametrize("projector_type", ["linear", "mlp1x_gelu", "mlp2x_gelu", "mlp3x_gelu"])
def test_projector_shapes_equal_the_module(projector_type):
    with torch.device("meta"):
        projector = build_projector(projector_type, 24, 32)
    assert projector_tensor_shapes(projector_type, 24, 32) == _shapes(projector)


def test_layer_counts_from_names():
    names = ["model.embed_tokens.weight", "model.layers.0.x", "model.layers.3.y", "model.layers.12a.z"]
    assert count_layers(names, LM_LAYER) == 4
    assert count_layers(["embeddings.class_embedding"], CLIP_LAYER) == 0
    # An index of thousands of digits is not a layer (and never becomes a huge int).
    assert count_layers(["model.layers." + "9" * 5000 + ".x"], LM_LAYER) == 0
