"""Checkpoint loading: both weight namings, sharded and not, and every kind of broken directory."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from model import CheckpointError, load_language_model
from model.config import JambaConfig
from model.loading import jamba_key_renamer

MOE = dict(num_experts=4, num_experts_per_tok=2, num_hidden_layers=4)


@pytest.fixture
def native(hf_jamba):
    path, _ = hf_jamba(seed=11, **MOE)
    return path


def _logits(path):
    ids = torch.arange(30).view(1, 30) % 97
    with torch.no_grad():
        return load_language_model(path)(ids, logits_to_keep=None)


@pytest.mark.parametrize(("ai21", "shards"), [(False, 1), (False, 3), (True, 1), (True, 4)])
def test_both_namings_sharded_or_not_load_identically(native, rewrite, tmp_path, ai21, shards):
    other = rewrite(native, tmp_path / "other", ai21=ai21, shards=shards)
    if ai21:
        keys = json.loads((other / "model.safetensors.index.json").read_text())["weight_map"] if shards > 1 else {}
        keys = keys or load_file(other / "model.safetensors")
        assert any(".moe.experts.0." in k for k in keys) and any(".pre_moe_layernorm." in k for k in keys)
    torch.testing.assert_close(_logits(other), _logits(native), atol=0, rtol=0)


def test_longllava_directory_loads_its_language_model(native, rewrite, tmp_path):
    """A LongLLaVA checkpoint carries vision and projector tensors the LM loader must leave alone."""
    extra = {"model_type": "llava_jamba", "mm_hidden_size": 16, "mm_projector_type": "mlp2x_gelu"}
    other = rewrite(native, tmp_path / "llava", ai21=True, shards=1, extra_config=extra)
    tensors = load_file(other / "model.safetensors")
    tensors["model.mm_projector.0.weight"] = torch.zeros(32, 16)
    tensors["model.vision_tower.vision_tower.vision_model.post_layernorm.weight"] = torch.ones(16)
    save_file(tensors, other / "model.safetensors")
    torch.testing.assert_close(_logits(other), _logits(native), atol=0, rtol=0)


def test_dense_layer_rename_only_applies_to_dense_layers():
    config = JambaConfig(
        vocab_size=10,
        hidden_size=8,
        intermediate_size=8,
        num_hidden_layers=4,
        num_attention_heads=2,
        num_experts=4,
        num_experts_per_tok=2,
    )
    rename = jamba_key_renamer(config)
    assert rename("model.layers.0.moe.experts.0.up_proj.weight") == "model.layers.0.feed_forward.up_proj.weight"
    assert (
        rename("model.layers.1.moe.experts.0.up_proj.weight") == "model.layers.1.feed_forward.experts.0.up_proj.weight"
    )
    assert rename("model.layers.1.moe.router.weight") == "model.layers.1.feed_forward.router.weight"
    assert rename("model.layers.2.mamba.B_layernorm.weight") == "model.layers.2.mamba.b_layernorm.weight"
    assert rename("model.mm_projector.2.bias") is None


def test_loads_in_requested_dtype_and_is_inference_ready(native):
    lm = load_language_model(native, dtype=torch.bfloat16)
    assert {p.dtype for p in lm.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in lm.parameters()) and not lm.training
    assert all(p.device.type == "cpu" for p in lm.parameters())


def test_tied_embeddings_load_without_lm_head(hf_jamba):
    path, hf = hf_jamba(seed=12, tie_word_embeddings=True)
    assert "lm_head.weight" not in load_file(path / "model.safetensors")
    lm = load_language_model(path)
    assert lm.lm_head.weight is lm.model.embed_tokens.weight
    ids = torch.arange(12).view(1, 12)
    with torch.no_grad():
        torch.testing.assert_close(lm(ids, logits_to_keep=None), hf(ids).logits, atol=1e-4, rtol=0)


def _one_line_error(path, match):
    with pytest.raises(CheckpointError, match=match) as info:
        load_language_model(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_missing_directory(tmp_path):
    _one_line_error(tmp_path / "nope", "no such checkpoint directory")


def test_missing_config(native):
    (native / "config.json").unlink()
    _one_line_error(native, r"config\.json: missing config file")


def test_no_weights(native):
    (native / "model.safetensors").unlink()
    _one_line_error(native, r"no \*\.safetensors weights")


def test_missing_shard(native, rewrite, tmp_path):
    sharded = rewrite(native, tmp_path / "sharded", ai21=False, shards=3)
    (sharded / "model-00002-of-00003.safetensors").unlink()
    _one_line_error(sharded, r"model-00002-of-00003\.safetensors: shard listed in .* is missing")


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_truncated_shard(native, rewrite, tmp_path, keep):
    sharded = rewrite(native, tmp_path / "sharded", ai21=False, shards=2)
    shard = sharded / "model-00001-of-00002.safetensors"
    data = shard.read_bytes()
    shard.write_bytes(data[: int(len(data) * keep)])
    _one_line_error(sharded, r"model-00001-of-00002\.safetensors: .*(truncated|re-download)")


def test_missing_tensor(native):
    tensors = load_file(native / "model.safetensors")
    del tensors["model.layers.2.mamba.A_log"]
    save_file(tensors, native / "model.safetensors")
    _one_line_error(native, r"missing tensor\(s\) model\.layers\.2\.mamba\.A_log")


def test_misshaped_tensor(native):
    tensors = load_file(native / "model.safetensors")
    tensors["model.layers.1.self_attn.k_proj.weight"] = torch.zeros(8, 32)
    save_file(tensors, native / "model.safetensors")
    message = _one_line_error(native, r"tensor model\.layers\.1\.self_attn\.k_proj\.weight has shape \[8, 32\]")
    assert "expected [32, 32]" in message


def test_unexpected_tensor(native):
    tensors = load_file(native / "model.safetensors")
    tensors["model.layers.0.mamba.mystery.weight"] = torch.zeros(3)
    save_file(tensors, native / "model.safetensors")
    _one_line_error(native, r"unexpected tensor\(s\) model\.layers\.0\.mamba\.mystery\.weight")


def test_unknown_model_type(native):
    config = json.loads((native / "config.json").read_text())
    config["model_type"] = "llama"
    (native / "config.json").write_text(json.dumps(config))
    _one_line_error(native, r"model_type 'llama' is not a Jamba/LongLLaVA model")


def test_config_missing_required_key(native):
    config = json.loads((native / "config.json").read_text())
    del config["hidden_size"], config["vocab_size"]
    (native / "config.json").write_text(json.dumps(config))
    _one_line_error(native, r"missing required key\(s\) vocab_size, hidden_size")


def test_corrupt_config(native):
    (native / "config.json").write_text("{not json")
    _one_line_error(native, "unreadable config file")
