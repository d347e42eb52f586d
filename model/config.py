"""Model configurations as frozen dataclasses whose fields are the HF `config.json` keys verbatim.

Three configs, one per part of a LongLLaVA checkpoint (gathered in `ModelConfig`):
- `JambaConfig`: the hybrid Mamba/attention language model. Reads both the AI21 remote-code
  spelling (LongLLaVA, Jamba-v0.1: `n_ctx`, `mamba_inner_layernorms`) and transformers' native
  `JambaConfig` spelling (`max_position_embeddings`).
- `CLIPVisionConfig`: the CLIP ViT tower (transformers' `CLIPVisionConfig` keys).
- `LongLLaVAConfig`: the multimodal keys LongLLaVA's training code writes next to the LM keys
  (`mm_*`, `resamplePooling`, `tokenizer_model_max_length`).

No torch import here: `longllava info` and `estimate` read configs without loading a model.
Source: ../shared/REFERENCE.md §1 (field table), transformers `configuration_jamba.py`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from model.errors import CheckpointError

T = TypeVar("T")

# Spellings used by other writers of the same field, mapped to our (HF native) field name.
_JAMBA_ALIASES = {
    "n_ctx": "max_position_embeddings",
    "num_local_experts": "num_experts",
}


def _from_dict(cls: type[T], data: Mapping[str, Any], *, source: str, aliases: Mapping[str, str]) -> T:
    """Build a config dataclass from a JSON mapping: unknown keys are ignored, every missing
    required key is named in one `CheckpointError`."""
    names = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    values: dict[str, Any] = {}
    for key, value in data.items():
        key = aliases.get(key, key)
        if key in names and key not in values:
            values[key] = value
    missing = [
        name
        for name, f in names.items()
        if name not in values and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise CheckpointError(f"{source}: config is missing required key(s) {', '.join(missing)}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{source}: invalid config: {e}") from e


@dataclass(frozen=True, kw_only=True)
class JambaConfig:
    """Jamba language model. Layer i is attention iff i % attn_layer_period == attn_layer_offset,
    else Mamba; its FFN is a top-k MoE iff num_experts > 1 and i % expert_layer_period ==
    expert_layer_offset, else a dense SwiGLU MLP."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int | None = None
    attn_layer_period: int = 8
    attn_layer_offset: int = 4
    expert_layer_period: int = 2
    expert_layer_offset: int = 1
    num_experts: int = 1
    num_experts_per_tok: int = 1
    mamba_d_state: int = 16
    mamba_d_conv: int = 4
    mamba_expand: int = 2
    mamba_dt_rank: int | str = "auto"
    mamba_conv_bias: bool = True
    mamba_proj_bias: bool = False
    # AI21 remote-code key; transformers' Jamba always has the inner norms.
    mamba_inner_layernorms: bool = True
    hidden_act: str = "silu"
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 262144
    pad_token_id: int | None = 0
    bos_token_id: int | None = 1
    eos_token_id: int | list[int] | None = 2
    model_type: str = "jamba"

    def __post_init__(self) -> None:
        if not 0 <= self.attn_layer_offset < self.attn_layer_period:
            raise ValueError(
                f"attn_layer_offset {self.attn_layer_offset} must be in [0, attn_layer_period {self.attn_layer_period})"
            )
        if not 0 <= self.expert_layer_offset < self.expert_layer_period:
            raise ValueError(
                f"expert_layer_offset {self.expert_layer_offset} must be in [0, expert_layer_period "
                f"{self.expert_layer_period})"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.num_attention_heads % self.kv_heads:
            raise ValueError(
                f"num_attention_heads {self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads {self.kv_heads}"
            )
        if self.num_experts_per_tok > self.num_experts:
            raise ValueError(f"num_experts_per_tok {self.num_experts_per_tok} > num_experts {self.num_experts}")
        if self.hidden_act != "silu":
            raise ValueError(f"hidden_act {self.hidden_act!r} is not supported (Jamba uses 'silu')")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config.json") -> JambaConfig:
        return _from_dict(cls, data, source=source, aliases=_JAMBA_ALIASES)

    @property
    def kv_heads(self) -> int:
        return self.num_key_value_heads or self.num_attention_heads

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def d_inner(self) -> int:
        return self.mamba_expand * self.hidden_size

    @property
    def dt_rank(self) -> int:
        if self.mamba_dt_rank == "auto":
            return math.ceil(self.hidden_size / 16)
        return int(self.mamba_dt_rank)

    @property
    def layer_types(self) -> tuple[str, ...]:
        """'attention' or 'mamba' for each layer."""
        return tuple(
            "attention" if i % self.attn_layer_period == self.attn_layer_offset else "mamba"
            for i in range(self.num_hidden_layers)
        )

    @property
    def layer_num_experts(self) -> tuple[int, ...]:
        """Experts of each layer's FFN: `num_experts` on expert layers, 1 (a dense MLP) elsewhere."""
        return tuple(
            self.num_experts if i % self.expert_layer_period == self.expert_layer_offset else 1
            for i in range(self.num_hidden_layers)
        )

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        if self.eos_token_id is None:
            return ()
        if isinstance(self.eos_token_id, int):
            return (self.eos_token_id,)
        return tuple(self.eos_token_id)

    @property
    def kv_elements_per_token(self) -> int:
        """KV-cache elements per token over all attention layers (times the dtype's size: bytes)."""
        return self.layer_types.count("attention") * 2 * self.kv_heads * self.head_dim


@dataclass(frozen=True, kw_only=True)
class CLIPVisionConfig:
    """CLIP ViT vision tower (transformers' `CLIPVisionConfig` keys). Defaults: ViT-L/14-336."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    num_channels: int = 3
    image_size: int = 336
    patch_size: int = 14
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    projection_dim: int = 768

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config.json") -> CLIPVisionConfig:
        # A full CLIPConfig nests the tower's keys under "vision_config".
        if "vision_config" in data and isinstance(data["vision_config"], Mapping):
            data = data["vision_config"]
        return _from_dict(cls, data, source=source, aliases={})

    @property
    def grid_size(self) -> int:
        """Patches per side: 24 for ViT-L/14-336."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        return self.grid_size**2


@dataclass(frozen=True, kw_only=True)
class LongLLaVAConfig:
    """Multimodal keys of a LongLLaVA `config.json` (REFERENCE §1, unverified against a released
    file: all optional, with the values LongLLaVA-9B was trained with)."""

    mm_vision_tower: str | None = "openai/clip-vit-large-patch14-336"
    mm_hidden_size: int = 1024
    mm_projector_type: str = "mlp2x_gelu"
    mm_vision_select_layer: int = -2
    mm_vision_select_feature: str = "patch"
    mm_patch_merge_type: str = "flat"
    image_aspect_ratio: str = "pad"
    # None means absent from config.json: the loader warns and uses "2d" (upstream silently
    # used 576 tokens per image in that case).
    resamplePooling: str | None = None
    tokenizer_model_max_length: int | None = None
    model_type: str = "llava_jamba"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "config.json") -> LongLLaVAConfig:
        return _from_dict(cls, data, source=source, aliases={})

    @property
    def pooling(self) -> str:
        return self.resamplePooling or "2d"


@dataclass(frozen=True, kw_only=True)
class ModelConfig:
    """The configs of one loaded model: the language model's, and for a LongLLaVA model the
    multimodal keys and the CLIP tower's (both None for a text-only Jamba)."""

    lm: JambaConfig
    mm: LongLLaVAConfig | None = None
    vision: CLIPVisionConfig | None = None

    def __post_init__(self) -> None:
        if (self.mm is None) != (self.vision is None):
            raise ValueError("a multimodal model needs both its LongLLaVA keys and its CLIP config (or neither)")

    @property
    def is_multimodal(self) -> bool:
        return self.vision is not None
