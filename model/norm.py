"""RMSNorm (Zhang & Sennrich 2019) as Jamba uses it: statistics in float32, the weight applied
after casting back to the input dtype (transformers `JambaRMSNorm`)."""

from __future__ import annotations

import torch
from torch import nn


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [..., dim] any float dtype -> same shape and dtype."""
        xf = x.float()
        scale = torch.rsqrt(xf.square().mean(-1, keepdim=True).add_(self.eps))
        h = (xf * scale).to(x.dtype)  # weight ⊙ h after the cast back, as transformers
        return h.mul_(self.weight) if h.dtype == self.weight.dtype else self.weight * h
