"""Selective scan of Mamba-1 (Gu & Dao 2023, Alg. 2) continuing from a carried state.

    h_t = exp(Δ_t A) ⊙ h_{t-1} + Δ_t B_t x_t        y_t = C_t · h_t

Dimension letters: docs/glossary.md. All math is float32 whatever the model dtype
(docs/format.md, The language model). Every implementation has the same signature:

    scan(x, delta, A, B, C, state) -> (y, new_state)
    x, delta: [b, l, d] float32     A: [d, n] float32 (negative)
    B, C: [b, l, n] float32         state: [b, d, n] float32 (h before the first token)
    y: [b, l, d] float32 (without the D skip term and gating), new_state: [b, d, n]

- `scan_reference`: the plain sequential loop; the twin every other path is tested against.
- `scan_blocked`: the CPU path. Per block of tokens it builds exp(ΔA) and ΔBx as
  [block, b, n, d] in one vectorised pass each, runs the recurrence as a single in-place `addcmul`
  per token on a cache-resident [b, n, d] slice, and contracts with C in one pass. The block
  buffers are bounded (~1 MB), so memory does not grow with l.
- `scan_differentiable`: the training path, an autograd Function whose backward is the
  reverse-time recurrence over the stored states (one contiguous op per token either way).
- `scan_cuda`: mamba-ssm's `selective_scan_fn`, which has no initial-state argument; exact
  continuation comes from `add_initial_state`, see there. `step_cuda`: its decode-step kernel.
Which one the mixer runs is `model.dispatch.choose_mixer_path`'s decision.
"""

from __future__ import annotations

import torch

from model.buffers import CUDA_CORRECTION_BLOCK_ELEMENTS, SCAN_BLOCK_ELEMENTS


def scan_reference(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequential reference scan (see module docstring for shapes)."""
    h = state
    ys = []
    for t in range(x.shape[1]):
        dA = torch.exp(delta[:, t, :, None] * A)  # [b, d, n]
        dBx = (delta[:, t] * x[:, t])[:, :, None] * B[:, t, None, :]
        h = dA * h + dBx
        ys.append((h * C[:, t, None, :]).sum(-1))
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(x.shape)
    return y, h


def scan_blocked(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blocked CPU scan, equal to `scan_reference` up to float32 rounding."""
    b, l, d = x.shape
    n = A.shape[1]
    block = max(1, min(l, SCAN_BLOCK_ELEMENTS // (b * d * n)))
    # Time-major, channel-innermost layout [block, b, n, d]: every elementwise op below runs over
    # contiguous d-vectors, and the contraction with C is a sum over an outer axis.
    A_nd = A.t().contiguous()  # [n, d]
    delta_t = delta.transpose(0, 1).contiguous()  # [l, b, d]
    dx_t = (delta * x).transpose(0, 1).contiguous()
    B_t, C_t = B.transpose(0, 1).contiguous(), C.transpose(0, 1).contiguous()  # [l, b, n]
    # Buffers reused by every block: fresh multi-MB temporaries per op cost page faults that
    # take longer than the arithmetic. hs[0] is the state entering the block, hs[1 + t] the
    # state after its token t.
    hs = x.new_empty(block + 1, b, n, d)
    dA = x.new_empty(block, b, n, d)
    y = x.new_empty(l, b, d)
    hs[0] = state.transpose(1, 2)
    # Per-token views made once: the token loop is dispatch-bound, so it must not index.
    h_views, a_views = hs.unbind(0), dA.unbind(0)
    for start in range(0, l, block):
        size = min(block, l - start)
        sl = slice(start, start + size)
        a, h = dA[:size], hs[1 : size + 1]
        torch.mul(delta_t[sl, :, None, :], A_nd, out=a).exp_()  # exp(Δ_t A)
        torch.mul(B_t[sl, :, :, None], dx_t[sl, :, None, :], out=h)  # Δ_t B_t x_t
        for t in range(size):
            h_views[t + 1].addcmul_(a_views[t], h_views[t])  # h_t = Δ_t B_t x_t + exp(Δ_t A) ⊙ h_{t-1}
        torch.sum(a.copy_(h).mul_(C_t[sl, :, :, None]), dim=2, out=y[sl])  # y_t = Σ_n C_t[n] h_t[n]
        hs[0] = hs[size]
    return y.transpose(0, 1), hs[0].transpose(1, 2).contiguous()


class _DifferentiableScan(torch.autograd.Function):
    """Sequential scan with a hand-written backward (the reverse-time recurrence).

    Forward stores every state h_0..h_l as [l+1, b, n, d] (time-major, channel-innermost, so each
    token's update is one contiguous `addcmul`), which is b·l·d·n floats per layer: autograd's
    own graph of the same loop would hold several times that in per-token nodes. Backward, with
    G_t = ∂L/∂h_t (total, including later tokens), runs
        G_t = C_t ⊗ ∂L/∂y_t + exp(Δ_{t+1} A) ⊙ G_{t+1}        (G_l starts from ∂L/∂h_l)
    and reads every parameter gradient off G and the stored states:
        ∂exp(Δ_t A) = G_t ⊙ h_{t-1},   ∂(Δ_t B_t x_t) = G_t,   ∂h_0 = exp(Δ_1 A) ⊙ G_1.
    """

    @staticmethod
    def forward(ctx, x, delta, A, B, C, state):
        A_nd = A.t()  # [n, d]
        delta_t, x_t = delta.transpose(0, 1), x.transpose(0, 1)  # [l, b, d]
        B_t, C_t = B.transpose(0, 1), C.transpose(0, 1)  # [l, b, n]
        dA = torch.exp(delta_t[:, :, None, :] * A_nd)  # [l, b, n, d]
        hs = torch.empty((x.shape[1] + 1, *dA.shape[1:]), dtype=x.dtype, device=x.device)
        hs[0] = state.transpose(1, 2)
        torch.mul(B_t[:, :, :, None], (delta_t * x_t)[:, :, None, :], out=hs[1:])  # Δ_t B_t x_t
        h_views, a_views = hs.unbind(0), dA.unbind(0)
        for t in range(x.shape[1]):
            h_views[t + 1].addcmul_(a_views[t], h_views[t])
        y = (hs[1:] * C_t[:, :, :, None]).sum(2).transpose(0, 1)  # [b, l, d]
        ctx.save_for_backward(x, delta, A, B, C, hs)
        return y, hs[-1].transpose(1, 2).contiguous()

    @staticmethod
    def backward(ctx, dy, dlast):
        x, delta, A, B, C, hs = ctx.saved_tensors
        l = x.shape[1]
        A_nd = A.t()
        delta_t, x_t = delta.transpose(0, 1), x.transpose(0, 1)  # [l, b, d]
        B_t, C_t = B.transpose(0, 1), C.transpose(0, 1)  # [l, b, n]
        dA = torch.exp(delta_t[:, :, None, :] * A_nd)  # [l, b, n, d]
        dy_t = dy.transpose(0, 1)  # autograd materialises absent gradients as zeros
        G = torch.mul(C_t[:, :, :, None], dy_t[:, :, None, :])  # the y_t terms, made total in place
        g_views, a_views = G.unbind(0), dA.unbind(0)
        if l:
            g_views[l - 1].add_(dlast.transpose(1, 2))
        for t in range(l - 1, 0, -1):
            g_views[t - 1].addcmul_(a_views[t], g_views[t])
        dstate = (a_views[0] * g_views[0]).transpose(1, 2) if l else dlast
        # Every gradient below is one product over [l, b, n, d] and a sum over n or over d;
        # spelled out rather than einsum, which would permute and copy these large tensors.
        dC = (hs[1:] * dy_t[:, :, None, :]).sum(-1)  # [l, b, n]
        d_log = hs[:-1].mul(dA).mul_(G)  # ∂L/∂(Δ_t A) = G_t ⊙ h_{t-1} ⊙ exp(Δ_t A)
        dA_param = (d_log * delta_t[:, :, None, :]).sum((0, 1)).t()  # [d, n]
        ddelta = d_log.mul_(A_nd).sum(2)  # [l, b, d], the decay's share
        dB = (G * (delta_t * x_t)[:, :, None, :]).sum(-1)  # [l, b, n]
        GB = G.mul_(B_t[:, :, :, None]).sum(2)  # ∂L/∂(Δ_t x_t), [l, b, d]
        ddelta += GB * x_t
        dx = GB.mul_(delta_t)
        return dx.transpose(0, 1), ddelta.transpose(0, 1), dA_param, dB.transpose(0, 1), dC.transpose(0, 1), dstate


def scan_differentiable(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The training scan: `scan_reference`'s values with gradients for every input, at the cost
    of one [l+1, b, n, d] float32 state history per call (see `_DifferentiableScan`)."""
    return _DifferentiableScan.apply(x, delta, A, B, C, state)


def add_initial_state(
    y: torch.Tensor, last: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turn a scan that started from zero into one that started from `state`.

    A does not depend on time, so the state's contribution at token t is exp(A·S_t) ⊙ h0 with
    S_t = Σ_{s≤t} Δ_s (per channel): y_t gains Σ_n C_t[n] exp(A[d,n] S_t[d]) h0[d,n] and the final
    state gains exp(A·S_l) ⊙ h0. All exponents are ≤ 0, so this is stable (docs/format.md, The language model).

    y: [b, l, d], last: [b, d, n] (zero-start results); delta: [b, l, d]; A: [d, n];
    C: [b, l, n]; state: [b, d, n]. Returns the corrected (y, last), float32.
    """
    b, l, d = delta.shape
    S = torch.cumsum(delta, dim=1)  # [b, l, d]
    block = correction_block(delta.device.type, b=b, d=d, n=A.shape[1])
    y = y.clone()
    for start in range(0, l, block):
        sl = slice(start, start + block)
        decay = torch.exp(S[:, sl, :, None] * A)  # [b, block, d, n], bounded by the block size
        y[:, sl] += torch.einsum("bldn,bdn,bln->bld", decay, state, C[:, sl])
    last = last + torch.exp(S[:, -1, :, None] * A) * state
    return y, last


def correction_block(device: str, *, b: int, d: int, n: int) -> int:
    """Tokens per block of `add_initial_state` on a `device` type: a cache-sized buffer on the CPU,
    a launch-amortising one on a GPU (model/buffers.py)."""
    elements = CUDA_CORRECTION_BLOCK_ELEMENTS if device == "cuda" else SCAN_BLOCK_ELEMENTS
    return max(1, elements // (b * d * n))


def scan_cuda(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """mamba-ssm's fused kernel plus the initial-state correction (CUDA only)."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    y, last = selective_scan_fn(
        x.transpose(1, 2).contiguous(),
        delta.transpose(1, 2).contiguous(),
        A,
        B.transpose(1, 2).contiguous(),
        C.transpose(1, 2).contiguous(),
        return_last_state=True,
    )
    y = y.transpose(1, 2).float()
    if torch.any(state != 0):
        y, last = add_initial_state(y, last.float(), delta, A, C, state)
    return y, last.float()


def step_cuda(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One decode token (l == 1) through mamba-ssm's `selective_state_update` (CUDA only)."""
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update

    state = state.clone()  # the kernel updates in place; callers keep their cache until we return
    # Zeros for D and the Δ bias keep the contract (no skip term; Δ already final) and are needed:
    # mamba-ssm 2.3.2's wrapper cannot launch its kernel when either is None (it unpacks `*0` for
    # their strides, a TypeError; state-spaces/mamba:mamba_ssm/ops/triton/selective_state_update.py).
    zeros = x.new_zeros(x.shape[-1])
    y = selective_state_update(state, x[:, 0], delta[:, 0], A, B[:, 0], C[:, 0], D=zeros, dt_bias=zeros)
    return y[:, None].float(), state

