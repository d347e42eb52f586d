"""Jamba's attention: grouped-query, causal, and no positional encoding of any kind.

Dimension letters: docs/glossary.md.

A chunk of l queries after s - l cached keys needs a *bottom-right* aligned causal mask (query i
sees keys ≤ s - l + i); SDPA's `is_causal` is top-left aligned (pytorch/pytorch:
torch/nn/attention/bias.py explains both alignments), and an explicit l×s mask grows with the
context. So `causal_attention` is a tiled online-softmax attention
(FlashAttention's recurrence in plain PyTorch): key tiles left of the diagonal need no mask, the
few tiles on it get an [l_q, s_k] one, tiles right of it are skipped. GQA folds the g query heads
of a KV head into the query rows, so K/V are never repeated. Memory: a few score tiles (~24 MB).
On CUDA, SDPA with a lower-right causal bias reaches the flash kernels, which do the same (in
half precision; a float32 chunk with GQA stays with the tiled attention, see `model.dispatch`). On
CPU, float32 prefill chunks go to the compiled kernel (`causal_attention_compiled`: the same
recurrence in C, the whole chunk against cache and itself in one pass); otherwise, when this
torch has its private flash kernel (it returns each row's log-sum-exp),
`causal_attention_flash_cpu` runs the cached keys and the chunk's own keys as two kernel calls
merged exactly; the tiled attention is the fallback and the twin both are tested against.
While autograd records (training), `Attention` uses differentiable twins instead: the tiles are
updated in place, which autograd cannot replay. Without cached keys SDPA's top-left `is_causal`
is the right mask, with them the plain reference. `attention_path` picks among all these
(`model.dispatch.choose_attention_path`) and `attend` runs the pick.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.buffers import SCORE_TILE_ELEMENTS
from model.cache import AttentionCache
from model.config import JambaConfig
from model.cpu_kernels import MAX_ATTENTION_KEYS, attention_compiled, kernels_available
from model.dispatch import FLASH_CPU_OP, AttentionPath, choose_attention_path, flash_cpu_available

_Q_BLOCK = 512


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Plain masked softmax attention; the twin `causal_attention` is tested against.
    q: [b, h, l, hd]; k, v: [b, h_kv, s, hd] (queries are the last l positions) -> [b, h, l, hd]."""
    l, s = q.shape[2], k.shape[2]
    g = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(g, dim=1), v.repeat_interleave(g, dim=1)
    scores = (q.float() @ k.float().transpose(-1, -2)) * q.shape[-1] ** -0.5
    visible = torch.arange(s, device=q.device)[None, :] <= torch.arange(s - l, s, device=q.device)[:, None]
    scores = scores.masked_fill(~visible, float("-inf"))
    return (scores.softmax(-1) @ v.float()).to(q.dtype)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bottom-right causal GQA attention, tiled. Shapes as `attention_reference`."""
    b, h, l, hd = q.shape
    h_kv, s = k.shape[1], k.shape[2]
    g = h // h_kv
    past = s - l
    q = q * hd**-0.5
    out = q.new_empty(b, h_kv, g, l, hd)
    qg = q.view(b, h_kv, g, l, hd)
    for q0 in range(0, l, _Q_BLOCK):
        q1 = min(q0 + _Q_BLOCK, l)
        rows = qg[:, :, :, q0:q1].reshape(b, h_kv, g * (q1 - q0), hd)
        out[:, :, :, q0:q1] = _attend_block(rows, k[:, :, : past + q1], v[:, :, : past + q1], past + q0, g)
    return out.view(b, h, l, hd)


def causal_attention_flash_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bottom-right causal GQA attention from two calls of PyTorch's CPU flash kernel, merged
    exactly by their log-sum-exps: the chunk against the cached keys (every key visible, no
    mask; GQA folds the g query heads into the rows as in `causal_attention`, so the cache is
    never repeated) and the chunk against its own keys (a square, where top-left `is_causal` is
    the right mask; only these l keys are repeated for GQA). Same contract as `causal_attention`."""
    b, h, l, hd = q.shape
    h_kv, s = k.shape[1], k.shape[2]
    g, past = h // h_kv, s - l
    k_new, v_new = k[:, :, past:], v[:, :, past:]
    if g > 1:
        k_new, v_new = k_new.repeat_interleave(g, dim=1), v_new.repeat_interleave(g, dim=1)
    own, own_lse = FLASH_CPU_OP(q, k_new, v_new, 0.0, True)  # [b, h, l, hd], [b, h, l]
    if past == 0:
        return own
    rows = q.reshape(b, h_kv, g * l, hd)
    cached, cached_lse = FLASH_CPU_OP(rows, k[:, :, :past], v[:, :, :past], 0.0, False)
    cached, cached_lse = cached.reshape(b, h, l, hd), cached_lse.reshape(b, h, l)
    total = torch.logaddexp(cached_lse, own_lse)
    out = cached.float() * (cached_lse - total).exp_()[..., None]
    return out.addcmul_(own.float(), (own_lse - total).exp_()[..., None]).to(q.dtype)


def causal_attention_compiled(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Bottom-right causal GQA attention by the compiled CPU kernel (`model.cpu_kernels`): GQA
    folds the g query heads into the rows, so the cache is read in place and never repeated.
    float32, head_dim a multiple of 8. Same contract as `causal_attention`."""
    b, h, l, hd = q.shape
    h_kv = k.shape[1]
    out, _ = attention_compiled(q.reshape(b, h_kv, h // h_kv * l, hd), k, v, causal_len=l)
    return out.view(b, h, l, hd)


def causal_attention_cpu(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The CPU's fastest exact path for this call: the compiled kernel, else PyTorch's flash kernel
    pair, else the tiled attention. Same contract as `causal_attention`."""
    return attend(attention_path(q, k, device="cpu"), q, k, v)


def causal_attention_cuda(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA with a lower-right causal bias: on CUDA it dispatches to the flash / memory-efficient
    kernels, which align the causal mask bottom-right without materialising it. Same contract as
    `causal_attention`."""
    # Imported here: torch.nn.attention.bias pulls in torch._dynamo (~70 MB resident on CPU).
    from torch.nn.attention.bias import causal_lower_right

    bias = causal_lower_right(q.shape[2], k.shape[2])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=True)


def causal_attention_sdpa_square(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """SDPA with its top-left `is_causal`, which is the right mask only when the queries are all
    the keys (l == s, nothing cached); differentiable, unlike the tiled and compiled paths.
    Same contract as `causal_attention` otherwise."""
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)


def _attend_block(rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor, first_pos: int, g: int) -> torch.Tensor:
    """Online softmax of query rows [b, h_kv, g·lq, hd] (positions first_pos.., g copies) over
    keys k, v [b, h_kv, s_k, hd]; the last key is the last query's own. -> [b, h_kv, g, lq, hd]."""
    b, h_kv, gl, hd = rows.shape
    lq, s_k = gl // g, k.shape[2]
    tile = max(256, SCORE_TILE_ELEMENTS // (b * h_kv * gl))
    m = rows.new_full((b, h_kv, gl, 1), float("-inf"), dtype=torch.float32)
    denom = torch.zeros_like(m)
    acc = torch.zeros(b, h_kv, gl, hd, dtype=torch.float32, device=rows.device)
    for k0 in range(0, s_k, tile):
        k1 = min(k0 + tile, s_k)
        scores = (rows @ k[:, :, k0:k1].transpose(-1, -2)).float()  # [b, h_kv, g·lq, kt]
        if k1 - 1 > first_pos:  # the tile reaches past the first query: mask the future
            key_pos = torch.arange(k0, k1, device=rows.device)
            query_pos = torch.arange(first_pos, first_pos + lq, device=rows.device)
            future = (key_pos[None, :] > query_pos[:, None]).repeat(g, 1)
            scores.masked_fill_(future, float("-inf"))
        m_new = torch.maximum(m, scores.amax(-1, keepdim=True))
        p = scores.sub_(m_new).exp_()  # in place: one score tile alive per step
        scale = torch.exp(m - m_new)
        denom.mul_(scale).add_(p.sum(-1, keepdim=True))
        acc.mul_(scale).add_(p.to(v.dtype) @ v[:, :, k0:k1])
        m = m_new
    return (acc / denom).to(rows.dtype).view(b, h_kv, g, lq, hd)


def attention_path(
    q: torch.Tensor, k: torch.Tensor, *, training: bool = False, device: str | None = None
) -> AttentionPath:
    """The path for queries q [b, h, l, hd] over keys k [b, h_kv, s, hd]: `model.dispatch.
    choose_attention_path` with these shapes and this process's kernels, for q's device type or
    `device`."""
    device = device or q.device.type
    return choose_attention_path(
        device,
        q.dtype,
        queries=q.shape[2],
        keys=k.shape[2],
        heads=q.shape[1],
        kv_heads=k.shape[1],
        head_dim=q.shape[3],
        training=training,
        cpu_kernels=device == "cpu" and kernels_available(),  # never built for a CUDA run
        flash_cpu=flash_cpu_available(),
        max_keys=MAX_ATTENTION_KEYS,
    )


def attend(path: AttentionPath, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Run `path` on q [b, h, l, hd] and k, v [b, h_kv, s, hd] (queries the last l) -> [b, h, l, hd]."""
    run = {
        AttentionPath.SDPA_CAUSAL: causal_attention_sdpa_square,
        AttentionPath.SDPA_LOWER_RIGHT: causal_attention_cuda,
        AttentionPath.COMPILED: causal_attention_compiled,
        AttentionPath.FLASH_CPU: causal_attention_flash_cpu,
        AttentionPath.TILED: causal_attention,
        AttentionPath.REFERENCE: attention_reference,
    }[path]  # looked up when called, so that tests can replace a path's function
    return run(q, k, v)


class Attention(nn.Module):
    """Parameter names as transformers' `JambaAttention` (and AI21's)."""

    def __init__(self, config: JambaConfig) -> None:
        super().__init__()
        e, h, h_kv, hd = config.hidden_size, config.num_attention_heads, config.kv_heads, config.head_dim
        self.num_heads, self.num_kv_heads, self.head_dim = h, h_kv, hd
        self.q_proj = nn.Linear(e, h * hd, bias=False)
        self.k_proj = nn.Linear(e, h_kv * hd, bias=False)
        self.v_proj = nn.Linear(e, h_kv * hd, bias=False)
        self.o_proj = nn.Linear(h * hd, e, bias=False)

    def forward(self, x: torch.Tensor, cache: AttentionCache) -> torch.Tensor:
        """x: [b, l, e] -> [b, l, e]; appends this chunk's K/V to `cache`."""
        b, l, _ = x.shape
        q = self.q_proj(x).view(b, l, self.num_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(b, l, self.num_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(b, l, self.num_kv_heads, self.head_dim).transpose(1, 2)
        k_all, v_all = cache.append(k, v)
        training = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad)
        path = attention_path(q, k_all, training=training)
        # Without cached keys the chunk's own K/V are all the keys: the training SDPA takes them
        # directly, so that autograd need not go through the cache's copy.
        out = attend(path, q, k, v) if path is AttentionPath.SDPA_CAUSAL else attend(path, q, k_all, v_all)
        return self.o_proj(out.transpose(1, 2).reshape(b, l, -1))
