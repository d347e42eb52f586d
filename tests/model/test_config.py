"""Config values from config.json are typed and bounded: a wrong type, a zero or an absurd size is
one CheckpointError naming the key, raised before anything is built or allocated."""

from __future__ import annotations

import math

import pytest

from model.config import CLIPVisionConfig, JambaConfig, LongLLaVAConfig, ModelConfig
from model.errors import CheckpointError
from model.testing import TINY_CLIP_CONFIG, TINY_LM_CONFIG

LONGLLAVA_9B_LM = dict(
    vocab_size=65536, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=8, num_experts=16, num_experts_per_tok=2, mamba_dt_rank=256, n_ctx=262144,
    mamba_inner_layernorms=True, eos_token_id=[2, 3],
)  # fmt: skip


def _error(cls, data: dict) -> str:
    with pytest.raises(CheckpointError) as info:
        cls.from_dict(data, source="x/config.json")
    message = str(info.value)
    assert "\n" not in message and message.startswith("x/config.json: invalid config: ")
    return message


def test_real_and_tiny_configs_are_accepted():
    assert JambaConfig.from_dict(LONGLLAVA_9B_LM).num_hidden_layers == 32
    assert JambaConfig.from_dict(TINY_LM_CONFIG).max_position_embeddings == 4096
    assert CLIPVisionConfig.from_dict({}).num_patches == 576  # ViT-L/14-336 defaults
    assert CLIPVisionConfig.from_dict(TINY_CLIP_CONFIG).grid_size == 4
    assert LongLLaVAConfig.from_dict({"mm_projector_type": "linear", "resamplePooling": "1d"}).pooling == "1d"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("num_hidden_layers", 10**9, "num_hidden_layers must be in 1..1024, got 1000000000"),
        ("hidden_size", 4e9, "hidden_size must be an integer, got 4000000000.0"),
        ("hidden_size", 2**18, "hidden_size must be in 1..131072"),
        ("num_attention_heads", 0, "num_attention_heads must be in 1..4096, got 0"),
        ("vocab_size", None, "vocab_size must be an integer, got null"),
        ("vocab_size", "65536", 'vocab_size must be an integer, got "65536"'),
        ("intermediate_size", 14336.0, "intermediate_size must be an integer, got 14336.0"),
        ("num_experts", True, "num_experts must be an integer, got true"),
        ("mamba_conv_bias", 1, "mamba_conv_bias must be true or false, got 1"),
        ("mamba_dt_rank", "big", 'mamba_dt_rank must be an integer or "auto", got "big"'),
        ("mamba_dt_rank", 0, "mamba_dt_rank must be in 1..131072"),
        ("rms_norm_eps", math.inf, "rms_norm_eps must be a number, got Infinity"),
        ("eos_token_id", [2, "x"], "eos_token_id must be an integer or a list of integers or null, got a list"),
        ("eos_token_id", [2, 10**9], "eos_token_id must be in -1..16777216, got 1000000000"),
        ("num_key_value_heads", {"a": 1}, "num_key_value_heads must be an integer or null, got an object"),
        ("n_ctx", -5, "max_position_embeddings must be in 1..2147483648, got -5"),
        ("hidden_act", ["silu"], "hidden_act must be a string, got a list"),
        ("hidden_act", "gelu", "hidden_act 'gelu' is not supported"),
    ],
)
def test_bad_language_model_values(key, value, message):
    assert message in _error(JambaConfig, TINY_LM_CONFIG | {key: value})


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("patch_size", 0, "patch_size must be in 1..16384, got 0"),
        ("patch_size", 56, "patch_size 56 is larger than image_size 28"),
        ("image_size", "336", 'image_size must be an integer, got "336"'),
        ("num_attention_heads", 5, "hidden_size 24 is not divisible by num_attention_heads 5"),
        ("num_hidden_layers", 10**9, "num_hidden_layers must be in 1..1024"),
        ("hidden_act", "relu", "CLIP hidden_act 'relu' is not supported"),
        ("layer_norm_eps", None, "layer_norm_eps must be a number, got null"),
    ],
)
def test_bad_clip_values(key, value, message):
    assert message in _error(CLIPVisionConfig, TINY_CLIP_CONFIG | {key: value})


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"mm_projector_type": "qformer"}, "mm_projector_type 'qformer' is not supported"),
        ({"mm_projector_type": "mlp100x_gelu"}, "mm_projector_type 'mlp100x_gelu' is not supported"),
        ({"resamplePooling": "3d"}, "resamplePooling '3d' is not one of"),
        ({"mm_vision_select_feature": "cls"}, "mm_vision_select_feature 'cls' is not one of"),
        ({"mm_hidden_size": 0}, "mm_hidden_size must be in 1..131072, got 0"),
        ({"tokenizer_model_max_length": 1.5}, "tokenizer_model_max_length must be an integer or null, got 1.5"),
        ({"mm_vision_tower": 7}, "mm_vision_tower must be a string or null, got 7"),
    ],
)
def test_bad_multimodal_values(data, message):
    assert message in _error(LongLLaVAConfig, data)


@pytest.mark.parametrize(
    ("mm", "message"),
    [
        ({"mm_vision_select_layer": -5}, "mm_vision_select_layer -5 is out of range for a CLIP tower with 3 layers"),
        ({"mm_vision_select_feature": "cls_patch"}, 'resamplePooling "2d" needs a square patch grid'),
    ],
)
def test_inconsistent_multimodal_configs(mm, message):
    lm, vision = JambaConfig.from_dict(TINY_LM_CONFIG), CLIPVisionConfig.from_dict(TINY_CLIP_CONFIG)
    with pytest.raises(ValueError, match=message):
        ModelConfig(lm=lm, mm=LongLLaVAConfig.from_dict({"resamplePooling": "2d"} | mm), vision=vision)
