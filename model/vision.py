"""CLIP ViT vision tower: pixels -> the hidden states of one encoder layer.

Dimension letters: docs/glossary.md.

Module and parameter names equal transformers' `CLIPVisionModel` state-dict keys
(`vision_model.embeddings.patch_embedding.weight`, `vision_model.pre_layrnorm.*` [sic],
`vision_model.encoder.layers.{i}.self_attn.q_proj.*`, ...), so a CLIP checkpoint loads by name;
inside a LongLLaVA checkpoint the same keys sit under `model.tower_keys.CHECKPOINT_PREFIX`.

LongLLaVA reads `hidden_states[mm_vision_select_layer]` (default -2, the penultimate layer) and
drops CLS (`mm_vision_select_feature "patch"`), see upstream
`llava/model/multimodal_encoder/clip_encoder.py` (`feature_select`). Unlike upstream we stop
after the selected layer (with -2 the last layer and `post_layernorm` are never run) and keep
no other hidden states. Source: Radford et al. 2021; transformers `models/clip/modeling_clip.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
import torch.nn.functional as F
from torch import nn

from model.config import CLIPVisionConfig
from model.tower_keys import find_tower_prefix, is_tower_key

SELECT_FEATURES = ("patch", "cls_patch")


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    """OpenAI CLIP's sigmoid approximation of GELU (`hidden_act "quick_gelu"`)."""
    if torch.is_grad_enabled():
        return x * torch.sigmoid(1.702 * x)
    return torch.sigmoid(1.702 * x).mul_(x)  # inference: one [b, N, c_ff] temporary, not three


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "quick_gelu": quick_gelu,
    "gelu": F.gelu,
}


class CLIPVisionEmbeddings(nn.Module):
    """Patchify with a strided conv, prepend CLS, add learned absolute positions."""

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        c = config.hidden_size
        self.class_embedding = nn.Parameter(torch.zeros(c))
        self.patch_embedding = nn.Conv2d(
            config.num_channels, c, kernel_size=config.patch_size, stride=config.patch_size, bias=False
        )
        self.position_embedding = nn.Embedding(config.num_patches + 1, c)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [b, 3, S, S] -> [b, N, c], N = 1 + P² (CLS first)."""
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # [b, P², c]
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding.weight


class CLIPAttention(nn.Module):
    """Bidirectional multi-head self-attention (no mask: every token sees every token)."""

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        c = config.hidden_size
        if c % config.num_attention_heads:
            raise ValueError(f"hidden_size {c} is not divisible by num_attention_heads {config.num_attention_heads}")
        self.num_heads = config.num_attention_heads
        self.q_proj = nn.Linear(c, c)
        self.k_proj = nn.Linear(c, c)
        self.v_proj = nn.Linear(c, c)
        self.out_proj = nn.Linear(c, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [b, N, c] -> [b, N, c]."""
        b, N, c = x.shape
        q, k, v = (
            proj(x).view(b, N, self.num_heads, -1).transpose(1, 2) for proj in (self.q_proj, self.k_proj, self.v_proj)
        )
        y = F.scaled_dot_product_attention(q, k, v)  # [b, h, N, hd], scale hd^-0.5 as CLIP
        return self.out_proj(y.transpose(1, 2).reshape(b, N, c))


class CLIPMLP(nn.Module):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        if config.hidden_act not in _ACTIVATIONS:
            raise ValueError(
                f"CLIP hidden_act {config.hidden_act!r} is not supported (use one of {sorted(_ACTIVATIONS)})"
            )
        self.act = _ACTIVATIONS[config.hidden_act]
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class CLIPEncoderLayer(nn.Module):
    """Pre-norm transformer block: x + attn(ln1(x)), then x + mlp(ln2(x))."""

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.self_attn = CLIPAttention(config)
        self.layer_norm2 = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = CLIPMLP(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class CLIPEncoder(nn.Module):
    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.layers = nn.ModuleList(CLIPEncoderLayer(config) for _ in range(config.num_hidden_layers))


class CLIPVisionTransformer(nn.Module):
    """The `vision_model` of transformers' `CLIPVisionModel`. `post_layernorm` only feeds CLIP's
    pooled CLS output, which LongLLaVA never uses; it is kept so checkpoints load by name."""

    def __init__(self, config: CLIPVisionConfig):
        super().__init__()
        self.embeddings = CLIPVisionEmbeddings(config)
        self.pre_layrnorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.encoder = CLIPEncoder(config)
        self.post_layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, pixel_values: torch.Tensor, *, num_layers: int) -> torch.Tensor:
        """Hidden state after the first `num_layers` encoder layers, i.e. transformers'
        `hidden_states[num_layers]` (0: embeddings after `pre_layrnorm`).
        [b, 3, S, S] -> [b, N, c], N = 1 + P²."""
        x = self.pre_layrnorm(self.embeddings(pixel_values))
        for layer in self.encoder.layers[:num_layers]:
            x = layer(x)
        return x


class CLIPVisionTower(nn.Module):
    """CLIP tower returning the features LongLLaVA feeds its projector.

    select_layer: index into transformers' `hidden_states` tuple (length num_hidden_layers + 1),
        negative from the end: -2 (LongLLaVA) runs all but the last layer.
    select_feature: "patch" drops CLS (P² tokens), "cls_patch" keeps it (1 + P² tokens).
    """

    def __init__(self, config: CLIPVisionConfig, *, select_layer: int = -2, select_feature: str = "patch"):
        super().__init__()
        num_states = config.num_hidden_layers + 1
        if not -num_states <= select_layer < num_states:
            raise ValueError(
                f"mm_vision_select_layer {select_layer} is out of range for a CLIP tower with "
                f"{config.num_hidden_layers} layers (valid: {-num_states}..{num_states - 1})"
            )
        if select_feature not in SELECT_FEATURES:
            raise ValueError(f"mm_vision_select_feature {select_feature!r} is not one of {SELECT_FEATURES}")
        self.config = config
        self.num_layers = select_layer % num_states  # layers actually run
        self.select_feature = select_feature
        self.vision_model = CLIPVisionTransformer(config)

    @property
    def num_tokens(self) -> int:
        """Tokens per image in the output: P², or P² + 1 with "cls_patch"."""
        return self.config.num_patches + (self.select_feature == "cls_patch")

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values [b, 3, S, S], normalised (any float dtype; cast to the weights' dtype)
        -> [b, num_tokens, c] in the weights' dtype."""
        weight = self.vision_model.embeddings.patch_embedding.weight
        size = self.config.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[1:]) != (self.config.num_channels, size, size):
            raise ValueError(
                f"expected pixel values [b, {self.config.num_channels}, {size}, {size}], got {list(pixel_values.shape)}"
            )
        x = self.vision_model(pixel_values.to(device=weight.device, dtype=weight.dtype), num_layers=self.num_layers)
        return x[:, 1:] if self.select_feature == "patch" else x


def select_tower_weights(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The CLIP tower's tensors out of a checkpoint's, renamed to `CLIPVisionTower` names
    (`vision_model.*`). Recognises the prefixes in `_TOWER_PREFIXES` by the CLS embedding's key;
    drops transformers' `position_ids` buffer. Returns {} when the tensors hold no tower."""
    prefix = find_tower_prefix(tensors.keys())
    if prefix is None:
        return {}
    return {"vision_model." + key[len(prefix) :]: value for key, value in tensors.items() if is_tower_key(key, prefix)}


def encode_in_batches(
    tower: CLIPVisionTower,
    pixel_values: torch.Tensor,
    *,
    batch_size: int = 32,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Run `tower` (then `transform`, e.g. pooling + projector) over images `batch_size` at a time,
    keeping only the transformed features: peak memory is one batch's activations, not all
    images' hidden states at once (upstream encodes every image of a turn in one batch).

    pixel_values [b, 3, S, S] on any device -> `transform`'s outputs concatenated along b, on the
    tower's device ([b, t, e] after pooling and projector; [b, num_tokens, c] without a transform).
    Results do not depend on batch_size.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    outputs = []
    for start in range(0, pixel_values.shape[0], batch_size):
        features = tower(pixel_values[start : start + batch_size])
        outputs.append(transform(features) if transform is not None else features)
    if not outputs:
        raise ValueError("no images to encode")
    return torch.cat(outputs)
