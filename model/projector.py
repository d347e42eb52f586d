"""From CLIP patch features to LM input embeddings: token pooling, then the projector MLP.

Dimension letters: docs/glossary.md.

Pooling (`resamplePooling`, upstream `llava/model/multimodal_encoder/clip_encoder.py`):
- "2d": the P×P grid -> ceil(P/2)² by bilinear interpolation, align_corners=False. At exactly half
  size every output samples the centre of a 2×2 block, i.e. 2×2 average pooling, which we use
  whenever P is even (24×24 -> 12×12: 576 -> 144 tokens). Upstream hard-codes 24 -> 12.
- "1d": the N-token sequence -> N // 4 tokens by *linear* interpolation, align_corners=False.
  Upstream applies it for any resamplePooling value other than "2d" (hard-coded to 144 outputs).
  It is not a 4-token average: output i samples position 4i + 1.5, the mean of tokens 4i+1 and
  4i+2, so tokens 4i and 4i+3 are ignored.
- "none": all N tokens (upstream's behaviour when the key is absent).

Projector (`mm_projector_type`, LLaVA's `multimodal_projector/builder.py`): "linear" is one
Linear(c, e) (checkpoint keys `model.mm_projector.{weight,bias}`); "mlp{depth}x_gelu" is
Linear(c, e) then depth-1 × [GELU, Linear(e, e)] as an `nn.Sequential`, so "mlp2x_gelu" has keys
`model.mm_projector.0.*` [e, c] and `model.mm_projector.2.*` [e, e]. Pooling runs before the
projector, as upstream (GELU does not commute with averaging).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from model.shapes import grid_side, num_pooled_tokens  # re-exported: tokens per image, without torch

POOLINGS = ("2d", "1d", "none")
_MLP_GELU = re.compile(r"^mlp(\d+)x_gelu$")


def pool_features(features: torch.Tensor, pooling: str) -> torch.Tensor:
    """features [b, N, c] -> [b, num_pooled_tokens(N, pooling), c], same dtype, row-major order."""
    b, N, c = features.shape
    if pooling == "none":
        return features
    if pooling == "1d":
        pooled = F.interpolate(
            features.transpose(1, 2), size=num_pooled_tokens(N, "1d"), mode="linear", align_corners=False
        )
        return pooled.transpose(1, 2)
    if pooling != "2d":
        raise ValueError(f"resamplePooling {pooling!r} is not one of {POOLINGS}")
    P = grid_side(N)
    grid = features.transpose(1, 2).reshape(b, c, P, P)  # token row*P + col -> grid[..., row, col]
    if P % 2 == 0:
        grid = F.avg_pool2d(grid, kernel_size=2)
    else:
        out = math.ceil(P / 2)
        grid = F.interpolate(grid, size=(out, out), mode="bilinear", align_corners=False)
    return grid.flatten(2).transpose(1, 2)


def build_projector(projector_type: str, mm_hidden_size: int, hidden_size: int) -> nn.Module:
    """The `mm_projector` module: [..., mm_hidden_size] -> [..., hidden_size]. Its parameter
    names and shapes are the checkpoint's (see module docstring), so a projector of the wrong
    width fails the loader's shape check by name."""
    if projector_type == "linear":
        return nn.Linear(mm_hidden_size, hidden_size)
    match = _MLP_GELU.match(projector_type)
    if match is None or int(match.group(1)) < 1:
        raise ValueError(f"mm_projector_type {projector_type!r} is not supported (use 'mlp2x_gelu' or 'linear')")
    layers: list[nn.Module] = [nn.Linear(mm_hidden_size, hidden_size)]
    for _ in range(int(match.group(1)) - 1):
        layers += [nn.GELU(), nn.Linear(hidden_size, hidden_size)]
    return nn.Sequential(*layers)
