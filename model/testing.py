"""Tiny stand-ins for released LongLLaVA files, for tests and for trying the plumbing without
downloading 19 GB: a trained tokenizer (`write_tiny_tokenizer`) and random checkpoints
(`write_tiny_longllava`, `write_tiny_clip`). Nothing here is used by inference itself.

    from model import load_model
    from model.testing import write_tiny_longllava
    model = load_model(write_tiny_longllava("/tmp/tiny-longllava"))

Dimension letters: docs/glossary.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, processors

from model.random_init import random_value
from model.saving import ai21_lm_config, longllava_config, write_checkpoint
from model.tokenizer_training import SPECIAL_TOKENS, train_byte_level_bpe, write_tokenizer_files

# ---------------------------------------------------------------------------------------------
# Tokenizer: a small byte-level BPE whose vocabulary covers the LongLLaVA prompt strings.
# ---------------------------------------------------------------------------------------------

# Plain text in the real tokenizer (not added tokens); the BPE learns them from the corpus.
TEMPLATE_STRINGS = ("<|User|>", "<|Assistant|>", "<img>", "</img>", "<vid>", "</vid>", "<t>", "<image>", "\n")
_CORPUS_LINES = (
    "<|startoftext|><|User|>\n<img><image></img>\nWhat is shown in this image?\n<|startoftext|><|Assistant|>\n",
    "<vid><img><image></img><t><img><image></img><t><img><image></img></vid>What happens in the video?",
    "<img><image>\n<img><image></img><img><image></img>\n<img><image></img><img><image></img></img>\n",
    "A cat sits on a red mat next to the window. The dog runs across the green field.",
    "Describe the scene in detail. How many people are there? What colour is the car?",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 seconds, frames.",
)


def train_tiny_tokenizer(vocab_size: int = 512) -> Tokenizer:
    """A deterministic byte-level BPE of at most `vocab_size` entries (>= 260: 4 specials + 256
    bytes), so any text encodes without unknowns and decodes back exactly. Special ids are
    Jamba's; like Jamba's `add_bos_token`, its post-processor would add `<|startoftext|>` if a
    caller asked for special tokens (our `model.tokenizer.Tokenizer` never does)."""
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size {vocab_size} < 260 (4 special tokens + 256 bytes)")
    tokenizer = train_byte_level_bpe([line for line in _CORPUS_LINES for _ in range(20)], vocab_size)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A", special_tokens=[("<|startoftext|>", 1)]
    )
    return tokenizer


def write_tiny_tokenizer(directory: str | Path, *, vocab_size: int = 512) -> Path:
    """Write `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` in the
    layout of LongLLaVA-9B's into `directory` (created if needed); returns the directory."""
    added = {
        str(i): {"content": text, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
        | {"special": True}
        for i, text in enumerate(SPECIAL_TOKENS)
    }
    return write_tokenizer_files(
        directory, train_tiny_tokenizer(vocab_size), config_extra={"added_tokens_decoder": added}
    )


# ---------------------------------------------------------------------------------------------
# Checkpoints: tiny random LongLLaVA / CLIP directories in the released files' layout, written with
# torch + safetensors only. Key names are AI21's Jamba naming (the table in model/naming.py), spelled
# out here rather than taken from our modules, so a naming mistake in the model code cannot hide
# (tests/model/test_naming.py checks the rename against them).
# ---------------------------------------------------------------------------------------------

# The LM in AI21 / LongLLaVA config spelling (`n_ctx`, `mamba_inner_layernorms`). vocab_size covers
# the tiny tokenizer's 512 entries.
TINY_LM_CONFIG: dict[str, Any] = ai21_lm_config(
    dict(
        vocab_size=512,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
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
    ),
    n_ctx=4096,
)
# CLIP tower (transformers' CLIPVisionConfig keys): 28 px images in 7 px patches, a 4×4 grid that
# 2d pooling makes 2×2 = 4 tokens per image. Width 24 differs from the LM's 32 on purpose.
TINY_CLIP_CONFIG: dict[str, Any] = dict(
    hidden_size=24,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_channels=3,
    image_size=28,
    patch_size=7,
    layer_norm_eps=1e-5,
    hidden_act="quick_gelu",
    projection_dim=16,
)
LONGLLAVA_TOWER_PREFIX = "model.vision_tower.vision_tower."


def write_tiny_longllava(
    path: str | Path,
    *,
    seed: int = 0,
    lm: Mapping[str, Any] | None = None,
    vision: Mapping[str, Any] | None = None,
    shards: int = 2,
    include_vision: bool = True,
    pooling: str | None = "2d",
    config_overrides: Mapping[str, Any] | None = None,
) -> Path:
    """Write a tiny random LongLLaVA-format checkpoint into `path` (created) and return it.

    lm / vision: overrides of `TINY_LM_CONFIG` / `TINY_CLIP_CONFIG`. shards: number of
    safetensors files (1: one `model.safetensors`, else shards + `model.safetensors.index.json`).
    include_vision: store the CLIP tower in the checkpoint (with a `vision_config` dict in
    config.json, our extension that declares the tower's size); without it the directory needs a
    separate CLIP directory (`write_tiny_clip` with the same seed gives the same tower).
    pooling: `resamplePooling`, or None to leave the key out. config_overrides: set config.json keys
    last; a None value deletes the key. Writes the tiny tokenizer files too.
    """
    path = Path(path)
    lm_config = TINY_LM_CONFIG | dict(lm or {})
    clip_config = TINY_CLIP_CONFIG | dict(vision or {})
    g = torch.Generator().manual_seed(seed)
    tensors = {name: random_value(name, shape, g) for name, shape in _jamba_shapes(lm_config)}
    tensors |= {
        name: random_value(name, shape, g)
        for name, shape in _projector_shapes(clip_config["hidden_size"], lm_config["hidden_size"])
    }
    if include_vision:
        tensors |= {LONGLLAVA_TOWER_PREFIX + k: v for k, v in _clip_tensors(clip_config, seed).items()}
    config = longllava_config(lm_config, clip_config, max_length=4096, pooling=pooling)
    if include_vision:
        config["vision_config"] = clip_config
    for key, value in dict(config_overrides or {}).items():
        config[key] = value
    config = {k: v for k, v in config.items() if v is not None}
    write_checkpoint(path, config, tensors, shards=shards)
    write_tiny_tokenizer(path)
    return path


def write_tiny_clip(path: str | Path, *, seed: int = 0, vision: Mapping[str, Any] | None = None) -> Path:
    """Write a tiny random CLIP tower as transformers' `CLIPVisionModel.save_pretrained` lays it out
    (config.json with model_type "clip_vision_model", `vision_model.*` keys) into `path`; the same
    seed and overrides give the tower `write_tiny_longllava` stores. Returns `path`."""
    clip_config = TINY_CLIP_CONFIG | dict(vision or {})
    config = {"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model", **clip_config}
    config["torch_dtype"] = "float32"
    write_checkpoint(path, config, _clip_tensors(clip_config, seed))
    return Path(path)


def _jamba_shapes(c: Mapping[str, Any]) -> list[tuple[str, tuple[int, ...]]]:
    """Tensor names (AI21 naming) and shapes of a Jamba LM with config `c`."""
    e, ff, n, k = c["hidden_size"], c["intermediate_size"], c["mamba_d_state"], c["mamba_d_conv"]
    d_inner = c["mamba_expand"] * e
    r = math.ceil(e / 16) if c["mamba_dt_rank"] == "auto" else int(c["mamba_dt_rank"])
    hd = e // c["num_attention_heads"]
    kv = c.get("num_key_value_heads") or c["num_attention_heads"]
    shapes: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (c["vocab_size"], e))]
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes += [(p + "input_layernorm.weight", (e,)), (p + "pre_moe_layernorm.weight", (e,))]
        if i % c["attn_layer_period"] == c["attn_layer_offset"]:
            shapes += [(p + f"self_attn.{x}_proj.weight", s) for x, s in _attention_shapes(e, hd, kv)]
        else:
            m = p + "mamba."
            shapes += [(m + "in_proj.weight", (2 * d_inner, e)), (m + "conv1d.weight", (d_inner, 1, k))]
            shapes += [(m + "conv1d.bias", (d_inner,))] if c["mamba_conv_bias"] else []
            shapes += [(m + "x_proj.weight", (r + 2 * n, d_inner)), (m + "dt_proj.weight", (d_inner, r))]
            shapes += [(m + "dt_proj.bias", (d_inner,)), (m + "A_log", (d_inner, n)), (m + "D", (d_inner,))]
            shapes += [(m + "out_proj.weight", (e, d_inner))]
            if c["mamba_proj_bias"]:
                shapes += [(m + "in_proj.bias", (2 * d_inner,)), (m + "out_proj.bias", (e,))]
            if c["mamba_inner_layernorms"]:
                shapes += [(m + "dt_layernorm.weight", (r,)), (m + "B_layernorm.weight", (n,))]
                shapes += [(m + "C_layernorm.weight", (n,))]
        moe = c["num_experts"] > 1 and i % c["expert_layer_period"] == c["expert_layer_offset"]
        shapes += [(p + "moe.router.weight", (c["num_experts"], e))] if moe else []
        for x in range(c["num_experts"] if moe else 1):  # a dense layer is AI21's one-expert block
            q = p + f"moe.experts.{x}."
            shapes += [(q + "gate_proj.weight", (ff, e)), (q + "up_proj.weight", (ff, e))]
            shapes += [(q + "down_proj.weight", (e, ff))]
    shapes += [("model.final_layernorm.weight", (e,))]
    return shapes + ([] if c["tie_word_embeddings"] else [("lm_head.weight", (c["vocab_size"], e))])


def _attention_shapes(e: int, hd: int, kv: int) -> list[tuple[str, tuple[int, ...]]]:
    return [("q", (e, e)), ("k", (kv * hd, e)), ("v", (kv * hd, e)), ("o", (e, e))]


def _projector_shapes(c: int, e: int) -> list[tuple[str, tuple[int, ...]]]:
    """mlp2x_gelu: Linear(c, e), GELU, Linear(e, e) as an nn.Sequential under model.mm_projector."""
    p = "model.mm_projector."
    return [(p + "0.weight", (e, c)), (p + "0.bias", (e,)), (p + "2.weight", (e, e)), (p + "2.bias", (e,))]


def _clip_tensors(c: Mapping[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """CLIPVisionModel tensors (`vision_model.*`), from their own generator so that a tower stored
    in a LongLLaVA checkpoint and one in a CLIP directory agree for the same seed."""
    d, ff, p = c["hidden_size"], c["intermediate_size"], c["patch_size"]
    grid = c["image_size"] // p
    v = "vision_model."
    shapes: list[tuple[str, tuple[int, ...]]] = [
        (v + "embeddings.class_embedding", (d,)),
        (v + "embeddings.patch_embedding.weight", (d, c["num_channels"], p, p)),
        (v + "embeddings.position_embedding.weight", (grid * grid + 1, d)),
        (v + "pre_layrnorm.weight", (d,)),
        (v + "pre_layrnorm.bias", (d,)),
    ]
    for i in range(c["num_hidden_layers"]):
        layer = v + f"encoder.layers.{i}."
        for norm in ("layer_norm1", "layer_norm2"):
            shapes += [(layer + f"{norm}.weight", (d,)), (layer + f"{norm}.bias", (d,))]
        for x in ("q", "k", "v", "out"):
            shapes += [(layer + f"self_attn.{x}_proj.weight", (d, d)), (layer + f"self_attn.{x}_proj.bias", (d,))]
        shapes += [(layer + "mlp.fc1.weight", (ff, d)), (layer + "mlp.fc1.bias", (ff,))]
        shapes += [(layer + "mlp.fc2.weight", (d, ff)), (layer + "mlp.fc2.bias", (d,))]
    shapes += [(v + "post_layernorm.weight", (d,)), (v + "post_layernorm.bias", (d,))]
    g = torch.Generator().manual_seed(seed + 1_000_003)
    return {name: random_value(name, shape, g) for name, shape in shapes}
