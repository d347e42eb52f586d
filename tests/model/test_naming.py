"""The one AI21 <-> native Jamba rename (model/naming.py): literal pairs both ways, and both
directions over every language-model tensor of tiny models, dense-only and with MoE layers,
against the AI21 names `model.testing` spells out independently."""

from __future__ import annotations

import pytest

from model.config import JambaConfig
from model.jamba import JambaLM
from model.loading import MULTIMODAL_PREFIXES, open_checkpoint
from model.naming import dense_layers, to_ai21, to_native
from model.testing import TINY_LM_CONFIG, write_tiny_longllava

MOE = dict(num_experts=4, num_experts_per_tok=2)  # layers 1 and 3 MoE, 0 and 2 dense

PAIRS = [  # (AI21, native) in the MoE config
    ("model.layers.0.moe.experts.0.gate_proj.weight", "model.layers.0.feed_forward.gate_proj.weight"),
    ("model.layers.1.moe.experts.0.gate_proj.weight", "model.layers.1.feed_forward.experts.0.gate_proj.weight"),
    ("model.layers.1.moe.experts.2.down_proj.weight", "model.layers.1.feed_forward.experts.2.down_proj.weight"),
    ("model.layers.1.moe.router.weight", "model.layers.1.feed_forward.router.weight"),
    ("model.layers.0.pre_moe_layernorm.weight", "model.layers.0.pre_ff_layernorm.weight"),
    ("model.layers.2.mamba.B_layernorm.weight", "model.layers.2.mamba.b_layernorm.weight"),
    ("model.layers.2.mamba.C_layernorm.weight", "model.layers.2.mamba.c_layernorm.weight"),
    ("model.layers.2.mamba.dt_layernorm.weight", "model.layers.2.mamba.dt_layernorm.weight"),
    ("model.layers.2.mamba.A_log", "model.layers.2.mamba.A_log"),
    ("model.embed_tokens.weight", "model.embed_tokens.weight"),
    ("lm_head.weight", "lm_head.weight"),
]


@pytest.mark.parametrize(("ai21", "native"), PAIRS)
def test_literal_names_both_ways(ai21, native):
    dense = dense_layers(JambaConfig.from_dict(TINY_LM_CONFIG | MOE))
    assert dense == {0, 2}
    assert to_native(ai21, dense) == native and to_ai21(native, dense) == ai21
    assert to_native(native, dense) == native  # a native name is already native


@pytest.mark.parametrize("lm", [{}, MOE], ids=["dense", "moe"])
def test_round_trip_over_a_tiny_models_tensors(tmp_path, lm):
    config = JambaConfig.from_dict(TINY_LM_CONFIG | lm)
    dense = dense_layers(config)
    checkpoint = open_checkpoint(write_tiny_longllava(tmp_path / "tiny", lm=lm, shards=1))
    ai21 = {key for key in checkpoint.weight_map if not key.startswith(MULTIMODAL_PREFIXES)}
    native = set(JambaLM(config).state_dict())
    assert any(".moe.experts.0." in key for key in ai21) and any(".pre_moe_layernorm." in key for key in ai21)
    assert {to_native(key, dense) for key in ai21} == native
    assert {to_ai21(key, dense) for key in native} == ai21
    assert all(to_ai21(to_native(key, dense), dense) == key for key in ai21)
