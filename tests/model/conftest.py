"""Fixtures for the model tests: tiny random Jamba checkpoints written by transformers (the oracle)
and rewritten in LongLLaVA/AI21 naming, sharded or not. Nothing is downloaded."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from model.random_init import randomize_parameters

TINY_JAMBA = dict(
    vocab_size=97,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=4,
    attn_layer_period=2,
    attn_layer_offset=1,
    expert_layer_period=2,
    expert_layer_offset=1,
    num_experts=1,
    num_experts_per_tok=1,
    mamba_d_state=8,
    mamba_d_conv=4,
    mamba_expand=2,
    mamba_dt_rank=6,
)


def make_hf_jamba(path: Path, seed: int = 0, **overrides):
    """Save a random transformers JambaForCausalLM to `path`; return the model (eval, float32)."""
    from transformers import JambaConfig, JambaForCausalLM

    torch.manual_seed(seed)
    hf = JambaForCausalLM(JambaConfig(**(TINY_JAMBA | overrides))).eval()
    randomize_parameters(hf, seed)
    hf.save_pretrained(path)
    return hf


# transformers' native names -> AI21 / LongLLaVA names, written independently of model/loading.py.
def to_ai21_name(key: str, dense_layers: set[int]) -> str:
    key = key.replace(".pre_ff_layernorm.", ".pre_moe_layernorm.")
    key = key.replace(".mamba.b_layernorm.", ".mamba.B_layernorm.").replace(
        ".mamba.c_layernorm.", ".mamba.C_layernorm."
    )
    m = re.match(r"model\.layers\.(\d+)\.feed_forward\.(.*)", key)
    if m:
        rest = m.group(2)
        if int(m.group(1)) in dense_layers:
            rest = "experts.0." + rest
        key = f"model.layers.{m.group(1)}.moe.{rest}"
    return key


def rewrite_checkpoint(src: Path, dst: Path, *, ai21: bool, shards: int, extra_config: dict | None = None) -> Path:
    """Copy the checkpoint in `src` to `dst`, renamed to AI21 naming if asked, in `shards` files."""
    dst.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    config.update(extra_config or {})
    tensors = load_file(src / "model.safetensors")
    if ai21:
        period, offset = config["expert_layer_period"], config["expert_layer_offset"]
        dense = {i for i in range(config["num_hidden_layers"]) if config["num_experts"] == 1 or i % period != offset}
        tensors = {to_ai21_name(k, dense): v for k, v in tensors.items()}
    (dst / "config.json").write_text(json.dumps(config))
    names = sorted(tensors)
    if shards == 1:
        save_file(tensors, dst / "model.safetensors")
        return dst
    weight_map = {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s::shards]
        save_file({k: tensors[k].contiguous() for k in part}, dst / file)
        weight_map.update(dict.fromkeys(part, file))
    (dst / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return dst


@pytest.fixture
def hf_jamba(tmp_path):
    """Factory: hf_jamba(**config_overrides) -> (checkpoint dir, transformers model)."""
    count = 0

    def make(seed: int = 0, **overrides):
        nonlocal count
        count += 1
        path = tmp_path / f"hf_jamba_{count}"
        return path, make_hf_jamba(path, seed, **overrides)

    return make


@pytest.fixture
def rewrite():
    return rewrite_checkpoint
