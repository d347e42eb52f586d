"""The one rename between the two namings of Jamba language-model tensors, in both directions.

| AI21 remote code (LongLLaVA, Jamba-v0.1)   | transformers' native Jamba (ours)          |
|--------------------------------------------|--------------------------------------------|
| layers.{i}.pre_moe_layernorm               | layers.{i}.pre_ff_layernorm                |
| layers.{i}.moe.router                      | layers.{i}.feed_forward.router             |
| layers.{i}.moe.experts.{e}.* (MoE layer)   | layers.{i}.feed_forward.experts.{e}.*      |
| layers.{i}.moe.experts.0.* (dense layer)   | layers.{i}.feed_forward.*                  |
| layers.{i}.mamba.B_layernorm / C_layernorm | layers.{i}.mamba.b_layernorm / c_layernorm |

A dense layer is AI21's one-expert "MoE" block: its only expert is our plain MLP, so whether
`experts.0.` is part of a name depends on the layer (`dense_layers`). The loader
(`model/loading.py`) reads either naming through `to_native`; the demo model's export
(`model/training/export.py`) writes AI21 names through `to_ai21`, as LongLLaVA's checkpoints have them.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from model.config import JambaConfig

# (AI21 fragment, native fragment), applied in this order from AI21 to native and in reverse back.
RENAMES: tuple[tuple[str, str], ...] = (
    (".pre_moe_layernorm.", ".pre_ff_layernorm."),
    (".moe.", ".feed_forward."),
    (".mamba.B_layernorm.", ".mamba.b_layernorm."),
    (".mamba.C_layernorm.", ".mamba.c_layernorm."),
)
# Layer indices of at most 6 digits: names come from untrusted checkpoint headers.
_NATIVE_FEED_FORWARD = re.compile(r"^(model\.layers\.(\d{1,6})\.feed_forward\.)")
_NATIVE_DENSE_EXPERT = re.compile(r"^(model\.layers\.(\d{1,6})\.feed_forward\.)experts\.0\.")


def dense_layers(config: JambaConfig) -> frozenset[int]:
    """Indices of the layers whose feed-forward block is a plain MLP (one expert)."""
    return frozenset(i for i, experts in enumerate(config.layer_num_experts) if experts == 1)


def to_native(key: str, dense: Collection[int]) -> str:
    """An AI21 / LongLLaVA tensor name -> transformers' native name; other names pass unchanged.
    `dense`: the dense layers' indices (`dense_layers`). A native name is returned as it is."""
    for ai21, native in RENAMES:
        key = key.replace(ai21, native)
    match = _NATIVE_DENSE_EXPERT.match(key)
    if match and int(match.group(2)) in dense:
        key = match.group(1) + key[match.end() :]
    return key


def to_ai21(key: str, dense: Collection[int]) -> str:
    """A transformers-native tensor name -> the AI21 / LongLLaVA name; the inverse of `to_native`."""
    match = _NATIVE_FEED_FORWARD.match(key)
    if match and int(match.group(2)) in dense:
        key = match.group(1) + "experts.0." + key[match.end() :]
    for ai21, native in reversed(RENAMES):
        key = key.replace(native, ai21)
    return key
