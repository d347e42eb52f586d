"""Fixtures for the model tests: tiny random Jamba checkpoints written by transformers (the oracle)
and rewritten in LongLLaVA/AI21 naming, sharded or not. Nothing is downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from model.config import JambaConfig
from model.naming import dense_layers, to_ai21
from model.random_init import randomize_parameters
from model.saving import write_checkpoint
from model.testing import TINY_LM_CONFIG

# The tiny test LM as transformers' JambaConfig keys (without the AI21-only ones), with a vocabulary
# of its own and no GQA.
TINY_JAMBA = {k: v for k, v in TINY_LM_CONFIG.items() if k not in ("n_ctx", "mamba_inner_layernorms")} | dict(
    vocab_size=97, num_key_value_heads=4
)


def make_hf_jamba(path: Path, seed: int = 0, **overrides):
    """Save a random transformers JambaForCausalLM to `path`; return the model (eval, float32)."""
    from transformers import JambaConfig, JambaForCausalLM

    torch.manual_seed(seed)
    hf = JambaForCausalLM(JambaConfig(**(TINY_JAMBA | overrides))).eval()
    randomize_parameters(hf, seed)
    hf.save_pretrained(path)
    return hf


def rewrite_checkpoint(src: Path, dst: Path, *, ai21: bool, shards: int, extra_config: dict | None = None) -> Path:
    """Copy the checkpoint in `src` to `dst`, renamed to AI21 naming if asked, in `shards` files."""
    config = json.loads((src / "config.json").read_text())
    config.update(extra_config or {})
    tensors = load_file(src / "model.safetensors")
    if ai21:
        dense = dense_layers(JambaConfig.from_dict(config))
        tensors = {to_ai21(k, dense): v for k, v in tensors.items()}
    return write_checkpoint(dst, config, tensors, shards=shards)


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
