"""Writing checkpoint folders as transformers' `save_pretrained` lays them out: `config.json` and the
weights, in one `model.safetensors` or in shards listed by `model.safetensors.index.json`, and the
config.json of a LongLLaVA folder. The reader is `model/loading.py`; the writers are the demo
model's export (`model/training/export.py`), the tiny test checkpoints (`model/testing.py`) and the
benchmarks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from model.checkpoint_files import INDEX_FILE, SINGLE_FILE

# safetensors metadata that marks PyTorch tensors, as transformers writes it.
_METADATA = {"format": "pt"}
# What LongLLaVA-9B's config.json sets for its LM besides the sizes (Jamba-v0.1's choices), and the
# special token ids (`model/tokenizer_training.py` SPECIAL_TOKENS), in AI21 spelling.
JAMBA_V01_SETTINGS: dict[str, Any] = {
    "mamba_conv_bias": True,
    "mamba_proj_bias": False,
    "mamba_inner_layernorms": True,
    "hidden_act": "silu",
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
}
SPECIAL_TOKEN_IDS = {"pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}


def ai21_lm_config(sizes: Mapping[str, Any], *, n_ctx: int) -> dict[str, Any]:
    """A Jamba LM's config in LongLLaVA's spelling and key order: `sizes` (widths, depth, layer
    pattern, experts, Mamba's state), `JAMBA_V01_SETTINGS`, the context length, the special ids."""
    return {**sizes, **JAMBA_V01_SETTINGS, "n_ctx": n_ctx, **SPECIAL_TOKEN_IDS}


def longllava_config(
    lm: Mapping[str, Any], vision: Mapping[str, Any], *, max_length: int, pooling: str | None = "2d"
) -> dict[str, Any]:
    """config.json of a LongLLaVA folder laid out as LongLLaVA-9B's: the LM config `lm` (AI21
    spelling), then the multimodal keys for a CLIP tower of `vision["hidden_size"]` (transformers'
    CLIPVisionConfig keys) with LongLLaVA-9B's settings, `pooling` as `resamplePooling` and
    `max_length` tokens. The tower's own config ("vision_config", our extension) is the caller's."""
    return {
        "architectures": ["LlavaJambaForCausalLM"],
        "model_type": "llava_jamba",  # one of the names model/loading.py accepts (JAMBA_MODEL_TYPES)
        "torch_dtype": "float32",
        **lm,
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",  # the layout's name; the weights are the folder's
        "mm_hidden_size": vision["hidden_size"],
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_patch_merge_type": "flat",
        "image_aspect_ratio": "pad",
        "resamplePooling": pooling,
        "tokenizer_model_max_length": max_length,
    }


def write_weights(directory: str | Path, tensors: Mapping[str, torch.Tensor], *, shards: int = 1) -> None:
    """Write `tensors` into `directory` (created if needed): one `model.safetensors` (shards 1), or
    `shards` files `model-0000i-of-0000n.safetensors` holding consecutive blocks of the sorted
    names, with the index that maps each name to its file."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    if shards == 1:
        save_file({k: tensors[k].contiguous() for k in names}, directory / SINGLE_FILE, metadata=_METADATA)
        return
    per_file = math.ceil(len(names) / shards)
    weight_map = {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s * per_file : (s + 1) * per_file]
        save_file({k: tensors[k].contiguous() for k in part}, directory / file, metadata=_METADATA)
        weight_map |= dict.fromkeys(part, file)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def write_checkpoint(
    directory: str | Path, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], *, shards: int = 1
) -> Path:
    """Write `config` as `config.json` and `tensors` as `write_weights` does into `directory`
    (created if needed); returns the directory."""
    directory = Path(directory)
    write_weights(directory, tensors, shards=shards)  # first: it checks `shards` before writing anything
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return directory
