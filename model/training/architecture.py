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
from model.tokenizer import load_tokenizer

LM_CONFIG = dict(
    vocab_size=512,
    hidden_size=128,
    intermediate_size=256,
    num_hidden_layers=6,
    num_attention_heads=4,
    num_key_value_heads=2,
    attn_layer_period=3,  # layers 2 and 5 attention, the rest Mamba
    attn_layer_offset=2,
    expert_layer_period=2,  # odd layers a top-2 MoE of 4 experts, as Jamba's every other layer
    expert_layer_offset=1,
    num_experts=4,
    num_experts_per_tok=2,
    mamba_d_state=8,
    mamba_d_conv=4,
    mamba_expand=2,
    mamba_dt_rank="auto",
    mamba_conv_bias=True,
    mamba_proj_bias=False,
    mamba_inner_layernorms=True,
    hidden_act="silu",
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    n_ctx=16384,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
# The architecture comparison (benchmarks/RESULTS.md): the same recipe and layer count with every
# mixer Mamba or every mixer attention. Attention mixers are lighter (q/k/v/o 49K vs Mamba's 108K
# parameters at this width), so the pure-attention model has ~10 % fewer parameters.
LAYOUTS = {
    "hybrid": {},
    "mamba": {"attn_layer_period": 7, "attn_layer_offset": 6},  # no layer index i < 6 has i % 7 == 6
    "attention": {"attn_layer_period": 1, "attn_layer_offset": 0},
}
CLIP_CONFIG = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,  # mm_vision_select_layer -2 runs the first two
    num_attention_heads=4,
    num_channels=3,
    image_size=56,
    patch_size=14,
    layer_norm_eps=1e-5,
    hidden_act="quick_gelu",
    projection_dim=32,
)
MM_CONFIG = dict(
    mm_vision_tower="openai/clip-vit-large-patch14-336",  # the layout's name; the weights are ours
    mm_hidden_size=CLIP_CONFIG["hidden_size"],
    mm_projector_type="mlp2x_gelu",
    mm_vision_select_layer=-2,
    mm_vision_select_feature="patch",
    mm_patch_merge_type="flat",
    image_aspect_ratio="pad",
    resamplePooling="2d",
    tokenizer_model_max_length=16384,
)


def lm_config(layout: str = "hybrid") -> dict:
    """The LM's config.json keys for a mixer layout of `LAYOUTS`."""
    return {**LM_CONFIG, **LAYOUTS[layout]}


def build_model(tokenizer_dir: Path, seed: int, layout: str = "hybrid") -> LongLLaVA:
    """The untrained demo model with the tokenizer in `tokenizer_dir`, initialised from `seed`:
    the modules' own initialisers, then Mamba's Δ biases and wide token embeddings (std 0.5)."""
    torch.manual_seed(seed)
    config = ModelConfig(
        lm=JambaConfig.from_dict(lm_config(layout)),
        mm=LongLLaVAConfig.from_dict(MM_CONFIG),
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
