"""Weights by module kind (`model/module_kinds.py`), counted from the configs alone, and their
bytes in a dtype under each quantisation: what `longllava estimate` shows and the memory model
(`model/memory.py`) adds up, before any weight is read or downloaded.

Dimension letters: docs/glossary.md.

Bytes of one Linear weight [out, in] of a quantised kind, n = out · in (biases stay in the
model dtype), as the libraries store them (tests/model/test_weights.py checks both against a
loaded model):
- int8 (torchao `Int8WeightOnlyConfig`, per-row symmetric): n int8 values, and per output row a
  float32 scale and an int8 zero point: n + 5 · out.
- nf4 (bitsandbytes `Linear4bit`, blocks of 64, double quantisation as its default): n / 2
  bytes of 4-bit codes; one absmax per block, itself quantised to uint8, with a float32 absmax
  per 256 blocks; a 16-entry float32 code table, a 256-entry one for the absmaxes and a float32
  offset: ceil(n / 2) + B + 4 · ceil(B / 256) + 4 · (16 + 256 + 1), B = ceil(n / 64). On a CPU
  with AVX512-BF16, the first call repacks the layer for bitsandbytes' CPU kernel, the absmaxes
  turned into one bfloat16 each: n / 2 + 2 · B + 4 · (16 + 1). On the CPU we count the larger.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from model.config import CLIPVisionConfig, JambaConfig, projector_depth
from model.module_kinds import (
    ATTENTION,
    DENSE_MLP,
    EMBEDDINGS,
    MAMBA,
    MODULE_KINDS,
    MOE_EXPERTS,
    MOE_ROUTER,
    NORMS,
    PROJECTOR,
    VISION,
    is_quantized,
)

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
NF4_BLOCK = 64  # weights per absmax (bitsandbytes' default blocksize)
NF4_NESTED_BLOCK = 256  # absmaxes per float32 absmax of the double quantisation
NF4_TABLES = 4 * (16 + 256 + 1)  # float32 code tables and offset, per Linear layer
NF4_CPU_TABLES = 4 * (16 + 1)  # what remains of them once repacked for the CPU kernel
NF4_CPU_ROWS = 32  # the CPU kernel packs outputs in blocks of this many

Shape = tuple[int, int]  # (out, in) of a Linear weight


@dataclass(frozen=True)
class WeightGroup:
    """The weights of one module kind: its Linear layers' weight shapes, {(out, in): how many},
    and the number of every other element (biases, norms, convolutions, embeddings, A_log, D)."""

    linears: Counter[Shape] = field(default_factory=Counter)
    other: int = 0

    @property
    def num_parameters(self) -> int:
        return sum(out * in_ * count for (out, in_), count in self.linears.items()) + self.other

    def __add__(self, other: WeightGroup) -> WeightGroup:
        return WeightGroup(self.linears + other.linears, self.other + other.other)

    def __mul__(self, times: int) -> WeightGroup:
        return WeightGroup(Counter({shape: count * times for shape, count in self.linears.items()}), self.other * times)


def _group(*linears: Shape, other: int = 0) -> WeightGroup:
    return WeightGroup(Counter(linears), other)


def mamba_group(c: JambaConfig) -> WeightGroup:
    """One Mamba mixer: in_proj [2d, e], x_proj [r + 2n, d], dt_proj [d, r], out_proj [e, d]; the
    conv [d, 1, k] (+ bias), dt_proj's bias, A_log [d, n], D [d], the inner norms and biases."""
    e, d, n, r, k = c.hidden_size, c.d_inner, c.mamba_d_state, c.dt_rank, c.mamba_d_conv
    other = d * k + d * c.mamba_conv_bias + d + d * n + d
    other += (r + 2 * n) * c.mamba_inner_layernorms + (2 * d + e) * c.mamba_proj_bias
    return _group((2 * d, e), (r + 2 * n, d), (d, r), (e, d), other=other)


def lm_weight_groups(c: JambaConfig) -> dict[str, WeightGroup]:
    """The language model's weights by kind (kinds it lacks, e.g. MoE on a dense model, absent)."""
    e, f = c.hidden_size, c.intermediate_size
    q, kv = c.num_attention_heads * c.head_dim, c.kv_heads * c.head_dim
    attention = _group((q, e), (kv, e), (kv, e), (e, q))
    mlp = _group((f, e), (f, e), (e, f))
    groups: dict[str, WeightGroup] = {}

    def add(kind: str, group: WeightGroup) -> None:
        groups[kind] = groups.get(kind, WeightGroup()) + group

    add(EMBEDDINGS, _group((c.vocab_size, e)) if not c.tie_word_embeddings else WeightGroup())
    add(EMBEDDINGS, WeightGroup(other=c.vocab_size * e))  # the embedding table is no Linear
    add(NORMS, WeightGroup(other=e * (2 * c.num_hidden_layers + 1)))
    for kind, experts in zip(c.layer_types, c.layer_num_experts, strict=True):
        if kind == "attention":
            add(ATTENTION, attention)
        else:
            add(MAMBA, mamba_group(c))
        if experts == 1:
            add(DENSE_MLP, mlp)
        else:
            add(MOE_EXPERTS, mlp * experts)
            add(MOE_ROUTER, _group((experts, e)))
    return groups


def vision_weight_group(v: CLIPVisionConfig) -> WeightGroup:
    """The CLIP tower: per layer q, k, v, out [c, c], fc1 [c_ff, c], fc2 [c, c_ff] with biases and
    two layer norms; the patch convolution, class and position embeddings, pre and post norms."""
    c, c_ff, p = v.hidden_size, v.intermediate_size, v.patch_size
    embeddings = v.num_channels * p * p * c + c + (v.num_patches + 1) * c
    layer = _group((c, c), (c, c), (c, c), (c, c), (c_ff, c), (c, c_ff), other=4 * c + c_ff + c + 4 * c)
    return WeightGroup(other=embeddings + 4 * c) + layer * v.num_hidden_layers


def projector_weight_group(mm_hidden_size: int, hidden_size: int, projector_type: str = "mlp2x_gelu") -> WeightGroup:
    """Linear(c, e) then depth - 1 × Linear(e, e), with biases ("linear": depth 1, "mlp{depth}x_gelu")."""
    depth = projector_depth(projector_type)
    first = _group((hidden_size, mm_hidden_size), other=hidden_size)
    return first + _group((hidden_size, hidden_size), other=hidden_size) * (depth - 1)


def model_weight_groups(
    lm: JambaConfig,
    vision: CLIPVisionConfig | None,
    *,
    mm_hidden_size: int | None = None,
    projector_type: str = "mlp2x_gelu",
) -> dict[str, WeightGroup]:
    """Every weight of the model by kind, in `MODULE_KINDS` order: the LM, and with a vision
    config the CLIP tower and the projector (from `mm_hidden_size`, default the tower's width)."""
    groups = lm_weight_groups(lm)
    if vision is not None:
        groups[VISION] = vision_weight_group(vision)
        groups[PROJECTOR] = projector_weight_group(mm_hidden_size or vision.hidden_size, lm.hidden_size, projector_type)
    return {kind: groups[kind] for kind in MODULE_KINDS if kind in groups}


def linear_bytes(shape: Shape, quantize: str, dtype: str, device: str = "cuda") -> int:
    """Bytes of one Linear weight [out, in] stored quantised as `quantize` on `device` ("cpu" or
    "cuda"; module docstring); "none": in `dtype`."""
    out, in_ = shape
    n = out * in_
    if quantize == "int8":
        return n + 5 * out
    if quantize == "nf4":
        blocks = math.ceil(n / NF4_BLOCK)
        nested = math.ceil(n / 2) + blocks + 4 * math.ceil(blocks / NF4_NESTED_BLOCK) + NF4_TABLES
        repacked = math.ceil(n / 2) + 2 * blocks + NF4_CPU_TABLES
        return max(nested, repacked) if device == "cpu" else nested
    return n * DTYPE_BYTES[dtype]


def group_bytes(kind: str, group: WeightGroup, *, dtype: str, quantize: str = "none", device: str = "cuda") -> int:
    """Bytes of one kind's weights in `dtype`, its Linear layers quantised when the table says so."""
    if not is_quantized(kind, quantize):
        return group.num_parameters * DTYPE_BYTES[dtype]
    linears = sum(linear_bytes(shape, quantize, dtype, device) * count for shape, count in group.linears.items())
    return linears + group.other * DTYPE_BYTES[dtype]


def weight_bytes_by_kind(
    groups: dict[str, WeightGroup], *, dtype: str, quantize: str = "none", device: str = "cuda"
) -> dict[str, int]:
    """{kind: bytes} of `model_weight_groups`' result on `device` ("cpu" or "cuda")."""
    return {
        kind: group_bytes(kind, group, dtype=dtype, quantize=quantize, device=device) for kind, group in groups.items()
    }


def largest_quantized_linear(groups: dict[str, WeightGroup], quantize: str) -> int:
    """Elements of the largest quantised Linear weight (0 when nothing is quantised): both
    libraries turn it back into the activation dtype for each matmul, a transient of that size."""
    return max(
        (out * in_ for kind, group in groups.items() if is_quantized(kind, quantize) for out, in_ in group.linears),
        default=0,
    )
