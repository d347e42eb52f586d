"""Checkpoint folders written by model/saving.py read back through the loader: one file or shards
with their index, and a LongLLaVA config.json in LongLLaVA-9B's layout."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from model.config import JambaConfig, LongLLaVAConfig
from model.loading import open_checkpoint
from model.saving import ai21_lm_config, longllava_config, write_checkpoint
from model.testing import TINY_CLIP_CONFIG, TINY_LM_CONFIG

TENSORS = {f"t{i}": torch.full((i + 1,), float(i)) for i in range(7)}


@pytest.mark.parametrize("shards", [1, 3])
def test_written_tensors_read_back(tmp_path, shards):
    path = write_checkpoint(tmp_path / "ckpt", {"model_type": "jamba"}, TENSORS, shards=shards)
    checkpoint = open_checkpoint(path)
    assert checkpoint.config == {"model_type": "jamba"} and set(checkpoint.weight_map) == set(TENSORS)
    assert len(set(checkpoint.weight_map.values())) == shards
    for name, file in checkpoint.weight_map.items():
        torch.testing.assert_close(load_file(path / file)[name], TENSORS[name])
    if shards > 1:
        index = json.loads((path / "model.safetensors.index.json").read_text())
        assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in TENSORS.values())


def test_no_shards_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="shards must be >= 1"):
        write_checkpoint(tmp_path / "ckpt", {}, TENSORS, shards=0)
    assert not (tmp_path / "ckpt").exists()


def test_longllava_config_reads_back_as_its_parts():
    sizes = {k: TINY_LM_CONFIG[k] for k in ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers")}
    lm = ai21_lm_config(sizes | {"num_attention_heads": 4}, n_ctx=2048)
    config = longllava_config(lm, TINY_CLIP_CONFIG, max_length=2048, pooling="1d")
    assert list(config)[:3] == ["architectures", "model_type", "torch_dtype"]
    jamba = JambaConfig.from_dict(config)
    assert (jamba.hidden_size, jamba.max_position_embeddings, jamba.mamba_inner_layernorms) == (32, 2048, True)
    mm = LongLLaVAConfig.from_dict(config)
    assert (mm.mm_hidden_size, mm.resamplePooling, mm.tokenizer_model_max_length) == (24, "1d", 2048)
