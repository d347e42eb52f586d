"""The demo model's architecture: a small LongLLaVA (Jamba LM, CLIP tower, 2d pooling, MLP
projector) in LongLLaVA's config.json spelling, its three mixer layouts, and the untrained model.

56 px images in 14 px patches: a 4×4 grid, 2d-pooled to 2×2 = 4 tokens per image.
"""

from __future__ import annotations

from pathlib import Path

import torch

from model.config import CLIPVisionConfig, JambaConfig, LongLLaVAConfig, ModelConfig
from model.longllava import LongLLaVA
from model.random_init import mamba_dt_bias
from model.saving import ai21_lm_config, longllava_config
from model.tokenizer import load_tokenizer

MAX_LENGTH = 16384  # tokens: n_ctx and tokenizer_model_max_length
# The LM's sizes by group: widths and depth; heads; which layers attend (layers 2 and 5, the rest
# Mamba); which are a top-2 MoE of 4 experts (the odd ones, as Jamba's every other layer); Mamba's state.
LM_CONFIG = ai21_lm_config(
    dict(
        vocab_size=512, hidden_size=128, intermediate_size=256, num_hidden_layers=6,
        num_attention_heads=4, num_key_value_heads=2,
        attn_layer_period=3, attn_layer_offset=2,
        expert_layer_period=2, expert_layer_offset=1, num_experts=4, num_experts_per_tok=2,
        mamba_d_state=8, mamba_d_conv=4, mamba_expand=2, mamba_dt_rank="auto",
    ),
    n_ctx=MAX_LENGTH,
)  # fmt: skip
# The architecture comparison (benchmarks/RESULTS.md): the same recipe and layer count with every
# mixer Mamba or every mixer attention. Attention mixers are lighter (q/k/v/o 49K vs Mamba's 108K
# parameters at this width), so the pure-attention model has ~10 % fewer parameters.
LAYOUTS = {
    "hybrid": {},
    "mamba": {"attn_layer_period": 7, "attn_layer_offset": 6},  # no layer index i < 6 has i % 7 == 6
    "attention": {"attn_layer_period": 1, "attn_layer_offset": 0},
}
# The CLIP tower by group: widths and depth (mm_vision_select_layer -2 runs the first two of its
# three layers); the input, 56-px RGB images in 14-px patches; ViT-L/14's norm and activation.
CLIP_CONFIG = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
    num_channels=3, image_size=56, patch_size=14,
    layer_norm_eps=1e-5, hidden_act="quick_gelu",
    projection_dim=32,
)  # fmt: skip


def lm_config(layout: str = "hybrid") -> dict:
    """The LM's config.json keys for a mixer layout of `LAYOUTS`."""
    return {**LM_CONFIG, **LAYOUTS[layout]}


def checkpoint_config(layout: str = "hybrid") -> dict:
    """The demo checkpoint's config.json for a mixer layout: LongLLaVA's layout
    (`model.saving.longllava_config`) with the tower's own config as "vision_config"."""
    return longllava_config(lm_config(layout), CLIP_CONFIG, max_length=MAX_LENGTH) | {"vision_config": CLIP_CONFIG}


def build_model(tokenizer_dir: Path, seed: int, layout: str = "hybrid") -> LongLLaVA:
    """The untrained demo model with the tokenizer in `tokenizer_dir`, initialised from `seed`:
    the modules' own initialisers, then Mamba's Δ biases and wide token embeddings (std 0.5)."""
    torch.manual_seed(seed)
    config = ModelConfig(
        lm=JambaConfig.from_dict(lm_config(layout)),
        mm=LongLLaVAConfig.from_dict(checkpoint_config(layout)),
        vision=CLIPVisionConfig.from_dict(CLIP_CONFIG),
    )
    model = LongLLaVA(config, load_tokenizer(tokenizer_dir))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("dt_proj.bias"):
                p.copy_(mamba_dt_bias(p.shape))  # from torch's global generator, seeded above
            elif name.endswith("embed_tokens.weight"):
                torch.nn.init.normal_(p, std=0.5)
    return model
