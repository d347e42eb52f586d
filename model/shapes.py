"""The tensors a config implies: every parameter's name and shape, from the configs alone.

Dimension letters: docs/glossary.md.

Names are those of our modules (`JambaLM`: transformers' native Jamba names; the CLIP tower's
`vision_model`: transformers' `CLIPVisionModel` names without the prefix; the projector's
`nn.Sequential` indices), so a checkpoint's keys, after `loading.py`'s rename table, compare
with them directly. `loading.check_tensors` compares them with the safetensors headers before
any module is built: a `config.json` that does not describe its weights fails in milliseconds
with the key at fault, instead of building (and allocating) whatever the config says.
tests/model/test_shapes.py checks each function against the module it describes.
No torch import: `longllava info` and `estimate` use this without loading a model.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

from model.config import POOLINGS, CLIPVisionConfig, JambaConfig, projector_depth

Shapes = dict[str, tuple[int, ...]]
# The LM head shares the embedding's tensor when `tie_word_embeddings`: (alias, source).
TIED_LM_HEAD = ("lm_head.weight", "model.embed_tokens.weight")
# Layer indices in tensor names; at most 6 digits, so a planted "layers.<5000 digits>." is just an
# unexpected name, never a huge int.
LM_LAYER = re.compile(r"^model\.layers\.(\d{1,6})\.")
CLIP_LAYER = re.compile(r"^encoder\.layers\.(\d{1,6})\.")


def lm_tensor_shapes(c: JambaConfig) -> Shapes:
    """`JambaLM`'s parameters (`lm_head.weight` included even when tied: see TIED_LM_HEAD)."""
    e, f, d, n, r, k = c.hidden_size, c.intermediate_size, c.d_inner, c.mamba_d_state, c.dt_rank, c.mamba_d_conv
    shapes: Shapes = {"model.embed_tokens.weight": (c.vocab_size, e)}
    for i, (kind, experts) in enumerate(zip(c.layer_types, c.layer_num_experts, strict=True)):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (e,)
        shapes[p + "pre_ff_layernorm.weight"] = (e,)
        if kind == "attention":
            hd = c.head_dim
            for name, rows in (("q", c.num_attention_heads), ("k", c.kv_heads), ("v", c.kv_heads)):
                shapes[p + f"self_attn.{name}_proj.weight"] = (rows * hd, e)
            shapes[p + "self_attn.o_proj.weight"] = (e, c.num_attention_heads * hd)
        else:
            shapes |= _mamba_shapes(c, p + "mamba.", e, d, n, r, k)
        if experts == 1:
            shapes |= _mlp_shapes(p + "feed_forward.", e, f)
        else:
            shapes[p + "feed_forward.router.weight"] = (experts, e)
            for x in range(experts):
                shapes |= _mlp_shapes(p + f"feed_forward.experts.{x}.", e, f)
    shapes["model.final_layernorm.weight"] = (e,)
    shapes["lm_head.weight"] = (c.vocab_size, e)
    return shapes


def _mamba_shapes(c: JambaConfig, m: str, e: int, d: int, n: int, r: int, k: int) -> Shapes:
    shapes: Shapes = {
        m + "in_proj.weight": (2 * d, e),
        m + "conv1d.weight": (d, 1, k),
        m + "x_proj.weight": (r + 2 * n, d),
        m + "dt_proj.weight": (d, r),
        m + "dt_proj.bias": (d,),
        m + "A_log": (d, n),
        m + "D": (d,),
        m + "out_proj.weight": (e, d),
    }
    if c.mamba_conv_bias:
        shapes[m + "conv1d.bias"] = (d,)
    if c.mamba_proj_bias:
        shapes |= {m + "in_proj.bias": (2 * d,), m + "out_proj.bias": (e,)}
    if c.mamba_inner_layernorms:
        shapes |= {m + "dt_layernorm.weight": (r,), m + "b_layernorm.weight": (n,), m + "c_layernorm.weight": (n,)}
    return shapes


def _mlp_shapes(prefix: str, e: int, f: int) -> Shapes:
    return {prefix + "gate_proj.weight": (f, e), prefix + "up_proj.weight": (f, e), prefix + "down_proj.weight": (e, f)}


def clip_tensor_shapes(v: CLIPVisionConfig) -> Shapes:
    """The CLIP tower's `vision_model` parameters, named relative to it ("embeddings.class_embedding")."""
    c, c_ff, p = v.hidden_size, v.intermediate_size, v.patch_size
    shapes: Shapes = {
        "embeddings.class_embedding": (c,),
        "embeddings.patch_embedding.weight": (c, v.num_channels, p, p),
        "embeddings.position_embedding.weight": (v.num_patches + 1, c),
        "pre_layrnorm.weight": (c,),
        "pre_layrnorm.bias": (c,),
    }
    for layer in range(v.num_hidden_layers):
        q = f"encoder.layers.{layer}."
        for norm in ("layer_norm1", "layer_norm2"):
            shapes |= {q + f"{norm}.weight": (c,), q + f"{norm}.bias": (c,)}
        for proj in ("q", "k", "v", "out"):
            shapes |= {q + f"self_attn.{proj}_proj.weight": (c, c), q + f"self_attn.{proj}_proj.bias": (c,)}
        shapes |= {q + "mlp.fc1.weight": (c_ff, c), q + "mlp.fc1.bias": (c_ff,)}
        shapes |= {q + "mlp.fc2.weight": (c, c_ff), q + "mlp.fc2.bias": (c,)}
    shapes |= {"post_layernorm.weight": (c,), "post_layernorm.bias": (c,)}
    return shapes


def projector_tensor_shapes(projector_type: str, mm_hidden_size: int, hidden_size: int) -> Shapes:
    """The projector's parameters, named relative to it: "weight"/"bias" for "linear", else the
    `nn.Sequential` indices "0.*", "2.*", ... of Linear(c, e), [GELU, Linear(e, e)] × (depth - 1)."""
    depth = projector_depth(projector_type)
    if projector_type == "linear":
        return {"weight": (hidden_size, mm_hidden_size), "bias": (hidden_size,)}
    shapes: Shapes = {}
    for layer in range(depth):
        width = mm_hidden_size if layer == 0 else hidden_size
        shapes |= {f"{2 * layer}.weight": (hidden_size, width), f"{2 * layer}.bias": (hidden_size,)}
    return shapes


def count_layers(names: Iterable[str], pattern: re.Pattern[str]) -> int:
    """Layers the tensor `names` hold: 1 + the largest index `pattern` captures (0 if none)."""
    indices = [int(m.group(1)) for name in names if (m := pattern.match(name))]
    return max(indices) + 1 if indices else 0


def num_pooled_tokens(num_tokens: int, pooling: str) -> int:
    """Tokens per image after `pooling` of `num_tokens` CLIP tokens (576 -> 144 for "2d" and "1d")."""
    if pooling == "2d":
        P = grid_side(num_tokens)
        return math.ceil(P / 2) ** 2
    if pooling == "1d":
        return max(1, num_tokens // 4)
    if pooling == "none":
        return num_tokens
    raise ValueError(f"resamplePooling {pooling!r} is not one of {POOLINGS}")


def grid_side(num_tokens: int) -> int:
    """Patches per side P of a square grid of `num_tokens` patch tokens; ValueError otherwise."""
    P = math.isqrt(num_tokens)
    if num_tokens != P * P:
        raise ValueError(
            f'"2d" pooling needs a square patch grid, got {num_tokens} tokens '
            '(mm_vision_select_feature "cls_patch" adds CLS; use "patch")'
        )
    return P
