"""Which part of the model each weight belongs to, and which parts weight-only quantisation
touches: the one table the loader (`model/quantize.py`) and the memory model (`model/weights.py`,
`longllava estimate`'s "weights by module kind") both read. No torch import.

`--quantize int8` / `nf4` quantises the Linear layers of the kinds marked `quantized`: attention,
the dense MLPs and the MoE experts, where nearly all of a Jamba's weights are. The rest stays in
the model dtype. Upstream LongLLaVA loaded both released models with bitsandbytes int8 and
`llm_int8_skip_modules=["mamba"]`, keeping the Mamba mixers in 16 bits: their Δ, B and C
projections feed a recurrence, where rounding errors accumulate over the whole sequence. We also
keep lm_head (every logit goes through it), the MoE routers (a rounding error there picks another
expert), the CLIP tower and the projector (small next to the LM) in the model dtype.

Names are paths in a loaded `LongLLaVA`: `lm.model.layers.3.self_attn.q_proj`,
`vision.vision_model...`, `projector.0` (a parameter's name works too: `...q_proj.weight`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

QUANTIZATIONS = ("none", "int8", "nf4")
NO_QUANTIZATION = "none"

MAMBA, ATTENTION, MOE_EXPERTS, MOE_ROUTER, DENSE_MLP = "mamba", "attention", "moe_experts", "moe_router", "dense_mlp"
EMBEDDINGS, NORMS, VISION, PROJECTOR = "embeddings", "norms", "vision", "projector"


@dataclass(frozen=True)
class ModuleKind:
    """label: how reports name the kind; quantized: whether `--quantize` converts its Linear layers."""

    label: str
    quantized: bool


# The one table, in the order reports list the kinds.
MODULE_KINDS: dict[str, ModuleKind] = {
    MAMBA: ModuleKind("Mamba mixers", quantized=False),
    ATTENTION: ModuleKind("attention", quantized=True),
    MOE_EXPERTS: ModuleKind("MoE experts", quantized=True),
    MOE_ROUTER: ModuleKind("MoE routers", quantized=False),
    DENSE_MLP: ModuleKind("dense MLP", quantized=True),
    EMBEDDINGS: ModuleKind("embeddings + lm_head", quantized=False),
    NORMS: ModuleKind("norms", quantized=False),
    VISION: ModuleKind("vision tower", quantized=False),
    PROJECTOR: ModuleKind("projector", quantized=False),
}

# Paths inside the language model (`lm.`), first match wins.
_LM_RULES = (
    (re.compile(r"^model\.layers\.\d+\.mamba(\.|$)"), MAMBA),
    (re.compile(r"^model\.layers\.\d+\.self_attn(\.|$)"), ATTENTION),
    (re.compile(r"^model\.layers\.\d+\.feed_forward\.experts(\.|$)"), MOE_EXPERTS),
    (re.compile(r"^model\.layers\.\d+\.feed_forward\.router(\.|$)"), MOE_ROUTER),
    (re.compile(r"^model\.layers\.\d+\.feed_forward\.(gate|up|down)_proj(\.|$)"), DENSE_MLP),
    (re.compile(r"^(model\.embed_tokens|lm_head)(\.|$)"), EMBEDDINGS),
    (re.compile(r"^model\.(layers\.\d+\.(input|pre_ff)_layernorm|final_layernorm)(\.|$)"), NORMS),
)


def module_kind(path: str) -> str:
    """The kind of the module or parameter at `path` in a `LongLLaVA` (see the module docstring).
    Raises ValueError for a path no rule covers: a new kind of module needs a row here."""
    part, _, rest = path.partition(".")
    if part == "vision":
        return VISION
    if part == "projector":
        return PROJECTOR
    if part == "lm":
        for pattern, kind in _LM_RULES:
            if pattern.match(rest):
                return kind
    raise ValueError(f"no module kind for {path!r}: add a rule to model/module_kinds.py")


def is_quantized(kind: str, quantize: str) -> bool:
    """Whether the Linear layers of `kind` are quantised under `quantize` ("none", "int8", "nf4")."""
    return quantize != NO_QUANTIZATION and MODULE_KINDS[kind].quantized


def check_quantization(quantize: str) -> str:
    """`quantize` if it is one of QUANTIZATIONS; ValueError naming them otherwise."""
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    return quantize
