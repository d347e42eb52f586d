"""Jamba's feed-forward blocks: a SwiGLU MLP, and a top-K mixture of such MLPs.

Dimension letters: docs/glossary.md. Routing as AI21's and transformers' Jamba: softmax over the
router logits in float32, then top-K, **no renormalisation** of the K weights (unlike Mixtral).
Experts are evaluated on the tokens routed to them only, in expert order (the order transformers
adds them in).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config import JambaConfig


class MLP(nn.Module):
    """down(silu(gate(x)) ⊙ up(x)): [..., e] -> [..., e]."""

    def __init__(self, config: JambaConfig) -> None:
        super().__init__()
        e, f = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(e, f, bias=False)
        self.up_proj = nn.Linear(e, f, bias=False)
        self.down_proj = nn.Linear(f, e, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_proj(x), self.up_proj(x)
        if torch.is_grad_enabled():
            return self.down_proj(F.silu(gate) * up)
        # Inference: in place, no [T, f] temporaries (fresh multi-MB buffers cost page faults).
        return self.down_proj(F.silu(gate, inplace=True).mul_(up))


class SparseMoE(nn.Module):
    """Top-K routed experts. Names: `router.weight` [E, e], `experts.{i}.*` (transformers' per-expert
    checkpoint names; AI21 calls the block `moe`, see loading.py)."""

    def __init__(self, config: JambaConfig) -> None:
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.router = nn.Linear(config.hidden_size, config.num_experts, bias=False)
        self.experts = nn.ModuleList(MLP(config) for _ in range(config.num_experts))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [b, l, e] -> [b, l, e]."""
        flat = x.reshape(-1, x.shape[-1])  # [T, e]
        probs = F.softmax(self.router(flat), dim=-1, dtype=torch.float32)
        weights, chosen = torch.topk(probs, self.top_k, dim=-1)  # [T, K]
        weights = weights.to(x.dtype)
        out = torch.zeros_like(flat)
        for expert_id in torch.unique(chosen).tolist():
            token, slot = torch.where(chosen == expert_id)
            y = self.experts[expert_id](flat[token]) * weights[token, slot, None]
            out.index_add_(0, token, y)
        return out.view_as(x)
