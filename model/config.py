"""Model configurations as frozen dataclasses whose fields are the HF `config.json` keys verbatim.

Three configs, one per part of a LongLLaVA checkpoint (gathered in `ModelConfig`):
- `JambaConfig`: the hybrid Mamba/attention language model. Reads both the AI21 remote-code
  spelling (LongLLaVA, Jamba-v0.1: `n_ctx`, `mamba_inner_layernorms`) and transformers' native
  `JambaConfig` spelling (`max_position_embeddings`).
- `CLIPVisionConfig`: the CLIP ViT tower (transformers' `CLIPVisionConfig` keys).
- `LongLLaVAConfig`: the multimodal keys LongLLaVA's training code writes next to the LM keys
  (`mm_*`, `resamplePooling`, `tokenizer_model_max_length`).

No torch import here: `longllava info` and `estimate` read configs without loading a model.
Source: docs/format.md (Checkpoints: the key tables), transformers `models/jamba/configuration_jamba.py`.

Everything in a `config.json` is untrusted: each field is checked against its annotated type
(`bool` is not an `int`; a `float` must be finite) and against a range far above any released
model (`*_RANGES` below) when the dataclass is built, so that `num_hidden_layers: 1e9`,
`hidden_size: 4e9` or `patch_size: 0` become one `CheckpointError` naming the key instead of an
allocation that runs until the process is killed, or a ZeroDivisionError.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from model.errors import CheckpointError

T = TypeVar("T")

# model_type values whose config.json carries a Jamba language model (here, without torch, so that
# `longllava models` can tell a LongLLaVA checkpoint in the Hugging Face cache from other repos).
JAMBA_MODEL_TYPES = ("jamba", "llava_jamba", "longllava", "llava_jamba_moe")

# Spellings used by other writers of the same field, mapped to our (HF native) field name.
_JAMBA_ALIASES = {
    "n_ctx": "max_position_embeddings",
    "num_local_experts": "num_experts",
}


# Bounds of numeric fields, inclusive: generous limits (released models are 10-1000x below them)
# that keep every derived size a reasonable Python int and every loop over layers short.
_JAMBA_RANGES: dict[str, tuple[float, float]] = {
    "vocab_size": (1, 2**24),
    "hidden_size": (1, 2**17),
    "intermediate_size": (1, 2**20),
    "num_hidden_layers": (1, 1024),
    "num_attention_heads": (1, 4096),
    "num_key_value_heads": (1, 4096),
    "attn_layer_period": (1, 1024),
    "attn_layer_offset": (0, 1023),
    "expert_layer_period": (1, 1024),
    "expert_layer_offset": (0, 1023),
    "num_experts": (1, 1024),
    "num_experts_per_tok": (1, 1024),
    "mamba_d_state": (1, 1024),
    "mamba_d_conv": (1, 256),
    "mamba_expand": (1, 64),
    "mamba_dt_rank": (1, 2**17),
    "rms_norm_eps": (0, 1),
    "max_position_embeddings": (1, 2**31),
    "pad_token_id": (-1, 2**24),
    "bos_token_id": (-1, 2**24),
    "eos_token_id": (-1, 2**24),
}
_CLIP_RANGES: dict[str, tuple[float, float]] = {
    "hidden_size": (1, 2**16),
    "intermediate_size": (1, 2**18),
    "num_hidden_layers": (1, 1024),
    "num_attention_heads": (1, 1024),
    "num_channels": (1, 16),
    "image_size": (1, 2**14),
    "patch_size": (1, 2**14),
    "layer_norm_eps": (0, 1),
    "projection_dim": (1, 2**17),
}
_MM_RANGES: dict[str, tuple[float, float]] = {
    "mm_hidden_size": (1, 2**17),
    "mm_vision_select_layer": (-1025, 1024),
    "tokenizer_model_max_length": (1, 2**31),
}
# Values the model code can build (model/vision.py, model/projector.py import torch, so the
# names are repeated here for checking a config without it; those modules check them again).
CLIP_ACTIVATIONS = ("quick_gelu", "gelu")
SELECT_FEATURES = ("patch", "cls_patch")
POOLINGS = ("2d", "1d", "none")
MAX_PROJECTOR_DEPTH = 16
_PROJECTOR_TYPE = re.compile(r"^(?:linear|mlp(\d{1,3})x_gelu)$")

_TYPE_NAMES = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "None": "null",
    "list[int]": "a list of integers",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _has_type(value: Any, name: str) -> bool:
    if name == "int":
        return _is_int(value)
    if name == "float":
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if name == "bool":
        return isinstance(value, bool)
    if name == "str":
        return isinstance(value, str)
    if name == "None":
        return value is None
    if name == "list[int]":
        return isinstance(value, list) and all(_is_int(v) for v in value)
    raise AssertionError(f"no type check for {name!r}")


def _short(value: Any) -> str:
    """A JSON value as the user wrote it, cut short: messages stay one short line."""
    if isinstance(value, list | dict):
        return "a list" if isinstance(value, list) else "an object"
    text = json.dumps(value) if isinstance(value, str | int | float | None) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _check_fields(config: Any, ranges: Mapping[str, tuple[float, float]]) -> None:
    """Raise ValueError (one line, naming the key) for a field of the wrong type or out of range.
    Types are read from the dataclass annotations (strings such as "int | None")."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        types = [t.strip() for t in str(f.type).split("|")]
        if not any(_has_type(value, t) for t in types):
            expected = " or ".join(_TYPE_NAMES[t] for t in types)
            raise ValueError(f"{f.name} must be {expected}, got {_short(value)}")
        if f.name in ranges and not isinstance(value, str | bool) and value is not None:
            low, high = ranges[f.name]
            for number in value if isinstance(value, list) else [value]:
                if not low <= number <= high:
                    raise ValueError(f"{f.name} must be in {low}..{high}, got {_short(number)}")


def projector_depth(projector_type: str) -> int:
    """Linear layers of a projector type: 1 for "linear", depth for "mlp{depth}x_gelu" (depth <= 16).
    Raises ValueError for a type the model code cannot build."""
    match = _PROJECTOR_TYPE.match(projector_type)
    depth = 0 if match is None else 1 if match.group(1) is None else int(match.group(1))
    if not 1 <= depth <= MAX_PROJECTOR_DEPTH:
        raise ValueError(
            f"mm_projector_type {projector_type!r} is not supported (use 'mlp2x_gelu' or 'linear'; "
            f"mlp{{k}}x_gelu with k in 1..{MAX_PROJECTOR_DEPTH})"
        )
    return depth


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
        _check_fields(self, _JAMBA_RANGES)
        if isinstance(self.mamba_dt_rank, str) and self.mamba_dt_rank != "auto":
            raise ValueError(f'mamba_dt_rank must be an integer or "auto", got {_short(self.mamba_dt_rank)}')
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

    def __post_init__(self) -> None:
        _check_fields(self, _CLIP_RANGES)
        if self.patch_size > self.image_size:
            raise ValueError(f"patch_size {self.patch_size} is larger than image_size {self.image_size}")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_attention_heads}"
            )
        if self.hidden_act not in CLIP_ACTIVATIONS:
            raise ValueError(f"CLIP hidden_act {self.hidden_act!r} is not supported (use one of {CLIP_ACTIVATIONS})")

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
    """Multimodal keys of a LongLLaVA `config.json` (docs/format.md, Checkpoints; inferred, not read from a released
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

    def __post_init__(self) -> None:
        _check_fields(self, _MM_RANGES)
        projector_depth(self.mm_projector_type)
        if self.mm_vision_select_feature not in SELECT_FEATURES:
            raise ValueError(
                f"mm_vision_select_feature {self.mm_vision_select_feature!r} is not one of {SELECT_FEATURES}"
            )
        if self.resamplePooling is not None and self.resamplePooling not in POOLINGS:
            raise ValueError(f"resamplePooling {self.resamplePooling!r} is not one of {POOLINGS}")

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
    # Where the CLIP config came from: "vision_config" (config.json's own dict), the config.json
    # of a CLIP folder (its path), or "assumed" (no config found: ViT-L/14-336 defaults).
    vision_source: str | None = None

    def __post_init__(self) -> None:
        if (self.mm is None) != (self.vision is None):
            raise ValueError("a multimodal model needs both its LongLLaVA keys and its CLIP config (or neither)")
        if self.mm is None or self.vision is None:
            return
        num_states = self.vision.num_hidden_layers + 1  # transformers' hidden_states: embeddings + layers
        if not -num_states <= self.mm.mm_vision_select_layer < num_states:
            raise ValueError(
                f"mm_vision_select_layer {self.mm.mm_vision_select_layer} is out of range for a CLIP tower with "
                f"{self.vision.num_hidden_layers} layers (valid: {-num_states}..{num_states - 1})"
            )
        if self.mm.pooling == "2d" and self.mm.mm_vision_select_feature == "cls_patch":
            raise ValueError(
                'resamplePooling "2d" needs a square patch grid but mm_vision_select_feature "cls_patch" adds CLS; '
                'use "patch"'
            )

    @property
    def is_multimodal(self) -> bool:
        return self.vision is not None
