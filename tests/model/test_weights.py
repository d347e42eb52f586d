"""Weights by module kind: the one table of kinds (model/module_kinds.py) covers every parameter of
a model, the per-kind counts from the configs (model/weights.py) equal the modules' and a hand
count, and the quantised bytes equal what torchao and bitsandbytes store for a loaded model."""

from __future__ import annotations

import math

import pytest
import torch

from model.config import CLIPVisionConfig, JambaConfig, LongLLaVAConfig, ModelConfig
from model.errors import MemoryBudgetError
from model.longllava import LongLLaVA, load_model
from model.memory import check_fits, estimate_memory
from model.module_kinds import MODULE_KINDS, QUANTIZATIONS, is_quantized, module_kind
from model.testing import write_tiny_longllava
from model.weights import linear_bytes, model_weight_groups, weight_bytes_by_kind

# A small LM in LongLLaVA-53B-A13B's layout: attention in 1 layer of 4, 4 experts on every other layer.
SMALL = JambaConfig(
    vocab_size=100, hidden_size=64, intermediate_size=128, num_hidden_layers=4, num_attention_heads=4,
    num_key_value_heads=2, attn_layer_period=4, attn_layer_offset=1, expert_layer_period=2, expert_layer_offset=1,
    num_experts=4, num_experts_per_tok=2, mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank=4,
)  # fmt: skip
SMALL_CLIP = CLIPVisionConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                              image_size=28, patch_size=7)  # fmt: skip
# Layers 0, 2, 3 are Mamba, layer 1 attention; layers 1 and 3 are MoE, 0 and 2 dense.
HAND_COUNT = {
    # in_proj [256, 64] + x_proj [4 + 16, 128] + dt_proj [128, 4] + out_proj [64, 128]; conv 128·4 + bias 128,
    # dt bias 128, A_log 128·8, D 128, inner norms 4 + 8 + 8.
    "mamba": 3 * (256 * 64 + 20 * 128 + 128 * 4 + 64 * 128 + 128 * 4 + 128 + 128 + 128 * 8 + 128 + 20),
    "attention": 64 * 64 + 32 * 64 + 32 * 64 + 64 * 64,  # q [64, 64], k and v [2·16, 64], o [64, 64]
    "moe_experts": 2 * 4 * 3 * 128 * 64,
    "moe_router": 2 * 4 * 64,
    "dense_mlp": 2 * 3 * 128 * 64,
    "embeddings": 2 * 100 * 64,
    "norms": (2 * 4 + 1) * 64,
}


def test_every_parameter_of_the_model_has_a_kind_and_the_table_quantises_three():
    config = ModelConfig(lm=SMALL, mm=LongLLaVAConfig(mm_hidden_size=32, resamplePooling="2d"), vision=SMALL_CLIP)
    with torch.device("meta"):
        model = LongLLaVA(config)
    kinds = {module_kind(name) for name, _ in model.named_parameters()}
    assert kinds == set(MODULE_KINDS)
    assert {kind for kind, row in MODULE_KINDS.items() if row.quantized} == {"attention", "dense_mlp", "moe_experts"}
    assert not any(is_quantized(kind, "none") for kind in MODULE_KINDS)
    with pytest.raises(ValueError, match="no module kind"):
        module_kind("lm.model.layers.0.something_new.weight")


def test_counts_by_kind_equal_a_hand_count_and_the_modules():
    config = ModelConfig(lm=SMALL, mm=LongLLaVAConfig(mm_hidden_size=32, resamplePooling="2d"), vision=SMALL_CLIP)
    groups = model_weight_groups(SMALL, SMALL_CLIP, mm_hidden_size=32)
    assert list(groups) == list(MODULE_KINDS)  # the table's order
    assert {kind: groups[kind].num_parameters for kind in HAND_COUNT} == HAND_COUNT
    with torch.device("meta"):
        model = LongLLaVA(config)
    counted: dict[str, int] = {}
    for name, p in model.named_parameters():
        counted[module_kind(name)] = counted.get(module_kind(name), 0) + p.numel()
    assert counted == {kind: group.num_parameters for kind, group in groups.items()}


def test_quantised_bytes_by_kind_by_hand():
    groups = model_weight_groups(SMALL, None)
    int8 = weight_bytes_by_kind(groups, dtype="bfloat16", quantize="int8")
    # int8: 1 byte a weight, a float32 scale and an int8 zero point per output row; biases none here.
    assert int8["dense_mlp"] == 2 * (2 * (128 * 64 + 5 * 128) + (64 * 128 + 5 * 64))
    assert int8["attention"] == 2 * (64 * 64 + 5 * 64) + 2 * (32 * 64 + 5 * 32)
    assert int8["moe_experts"] == 4 * int8["dense_mlp"]
    # The kinds that stay in the model dtype: 2 bytes a parameter in bfloat16.
    for kind in ("mamba", "moe_router", "embeddings", "norms"):
        assert int8[kind] == 2 * HAND_COUNT[kind]
    # nf4 on CUDA: n/2 codes, a uint8 absmax per 64 weights, a float32 absmax per 256 of those, 1092 B of tables.
    n = 128 * 64
    assert linear_bytes((128, 64), "nf4", "bfloat16", "cuda") == n // 2 + n // 64 + 4 * math.ceil(n / 64 / 256) + 1092
    # On the CPU the larger of that and the repacked layout (a bfloat16 absmax per block, 68 B of tables).
    n = 4096 * 4096
    assert linear_bytes((4096, 4096), "nf4", "bfloat16", "cpu") == n // 2 + 2 * (n // 64) + 68


def test_the_estimate_adds_up_the_kinds_and_quantisation_shrinks_the_weights():
    kwargs = dict(dtype="bfloat16", num_tokens=1000, mm_hidden_size=32, device="cuda")
    sizes = {}
    for quantize in QUANTIZATIONS:
        estimate = estimate_memory(SMALL, SMALL_CLIP, quantize=quantize, **kwargs)
        assert estimate.weights == sum(estimate.weights_by_kind.values())
        sizes[quantize] = estimate.weights_by_kind
    for kind in MODULE_KINDS:
        if MODULE_KINDS[kind].quantized:
            assert sizes["nf4"][kind] < sizes["int8"][kind] < sizes["none"][kind]
        else:
            assert sizes["nf4"][kind] == sizes["int8"][kind] == sizes["none"][kind]


@pytest.fixture(scope="module")
def tiny_moe(tmp_path_factory):
    """A tiny LongLLaVA whose quantised layers bitsandbytes' CPU kernel takes (64 inputs, 32 outputs)."""
    lm = dict(hidden_size=64, intermediate_size=128, num_attention_heads=2, num_key_value_heads=1, num_experts=4,
              num_experts_per_tok=2, mamba_dt_rank=4)  # fmt: skip
    return write_tiny_longllava(tmp_path_factory.mktemp("tiny_moe"), lm=lm, shards=1)


@pytest.mark.parametrize("quantize", QUANTIZATIONS)
def test_predicted_bytes_equal_what_the_libraries_store(tiny_moe, quantize):
    from model.quantize import loaded_bytes_by_kind

    model = load_model(tiny_moe, quantize=quantize)
    c = model.config
    groups = model_weight_groups(c.lm, c.vision, mm_hidden_size=c.mm.mm_hidden_size)
    before = loaded_bytes_by_kind(model)
    with torch.inference_mode():
        model.lm(torch.arange(3, 20)[None])  # bitsandbytes repacks its layers on the first CPU call
    after = loaded_bytes_by_kind(model)
    expected = weight_bytes_by_kind(groups, dtype="float32", quantize=quantize, device="cuda")
    assert before == expected  # as quantised (torchao; bitsandbytes' layout on CUDA)
    if quantize != "nf4":
        assert after == expected
        return
    # What the first CPU call leaves where the CPU has AVX512-BF16 (else nothing changes).
    repacked = expected | {kind: _repacked(group) for kind, group in groups.items() if is_quantized(kind, "nf4")}
    assert after in (expected, repacked)
    cpu = weight_bytes_by_kind(groups, dtype="float32", quantize=quantize, device="cpu")
    assert all(after[kind] <= cpu[kind] for kind in cpu)  # the CPU estimate is an upper bound


def _repacked(group) -> int:
    """float32 bytes of a kind whose Linear layers bitsandbytes repacked for its CPU kernel: n/2
    codes, a bfloat16 absmax per 64 weights and 68 bytes of tables per layer."""
    linears = sum((out * in_ // 2 + 2 * (out * in_ // 64) + 68) * count for (out, in_), count in group.linears.items())
    return linears + 4 * group.other


def test_a_request_that_does_not_fit_suggests_quantising_until_quantised():
    with pytest.raises(MemoryBudgetError, match="--quantize int8"):
        check_fits(2**20, SMALL, None, num_tokens=100, dtype="float32")
    with pytest.raises(MemoryBudgetError) as caught:
        check_fits(2**20, SMALL, None, num_tokens=100, dtype="float32", quantize="int8")
    assert "--quantize" not in str(caught.value)
