"""Random parameter values, by parameter name: for models trained from scratch (the demo recipe,
`model/training/`) and for test and benchmark models whose weights must be meaningful.

Initialisers leave norms at 1, D at 1 and A_log at log(1..n), which would hide mistakes in the
inner norms, the skip term and the scan's decay; `random_value` spreads every kind of parameter
instead: A_log over log(0.5..12), norm weights and D around 1 ± 0.3, Δ biases as Mamba
initialises them (`mamba_dt_bias`), other vectors ~ 0.5·N(0, 1), weights ~ 1.5/√fan_in·N(0, 1).

Dimension letters: docs/glossary.md.
"""

from __future__ import annotations

import math

import torch
from torch import nn

# Mamba's range of initial step sizes Δ (state-spaces/mamba `mamba_ssm/modules/mamba_simple.py`,
# dt_min and dt_max).
DT_MIN, DT_MAX = 1e-3, 1e-1
_NORM_NAMES = ("layernorm", "layer_norm", "layrnorm")  # Jamba's, CLIP's, CLIP's pre_layrnorm


def mamba_dt_bias(shape: tuple[int, ...] | torch.Size, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mamba's initial `dt_proj.bias`: softplus⁻¹ of step sizes log-uniform in [DT_MIN, DT_MAX], so
    that softplus(bias) starts in that range. float32; `generator` None draws from torch's global one."""
    dt = torch.exp(torch.empty(shape).uniform_(math.log(DT_MIN), math.log(DT_MAX), generator=generator))
    return dt + torch.log(-torch.expm1(-dt))


def random_value(name: str, shape: tuple[int, ...] | torch.Size, generator: torch.Generator) -> torch.Tensor:
    """A float32 value of realistic magnitude for the parameter `name` (a checkpoint or module
    name, either Jamba naming) of `shape`, drawn from `generator` (rules in the module docstring)."""
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "A_log":
        return torch.log(torch.empty(shape).uniform_(0.5, 12.0, generator=generator))
    if name.endswith("dt_proj.bias"):
        return mamba_dt_bias(shape, generator)
    is_norm = any(s in name for s in _NORM_NAMES)
    if (is_norm and leaf == "weight") or leaf == "D":
        return 1.0 + 0.3 * torch.randn(shape, generator=generator)
    if len(shape) == 1:
        return 0.5 * torch.randn(shape, generator=generator)
    return torch.randn(shape, generator=generator) * (1.5 / math.sqrt(_fan_in(shape)))


def _fan_in(shape: tuple[int, ...] | torch.Size) -> int:
    """Inputs per output of a weight: a 2-d convolution's [out, in, kh, kw] has in·kh·kw; a linear's
    [out, in], a stack of experts' linears [E, out, in] and a depthwise conv1d's [d, 1, k] their last
    dimension."""
    return math.prod(shape[1:]) if len(shape) == 4 else shape[-1]


def randomize_parameters(module: nn.Module, seed: int) -> None:
    """Give every parameter of `module` its `random_value`, in place, from one generator seeded
    with `seed`, in `named_parameters` order. Used by the tests and the benchmarks to give
    transformers' models and ours the same meaningful weights."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(random_value(name, p.shape, generator))
