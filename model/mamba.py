"""Jamba's Mamba mixer: Mamba-1 with RMSNorms on Δ, B and C, continuing exactly across chunks.

Dimension letters: docs/glossary.md.

    x, z  = in_proj(h)                      [b, l, d] each
    x     = silu(conv_k(tail ++ x) + bias)  depthwise causal conv; tail = last k-1 pre-conv x
    Δ, B, C = norms(split(x_proj(x)))       [b, l, r], [b, l, n], [b, l, n]
    Δ     = softplus(dt_proj(Δ))            [b, l, d] (bias added in float32)
    y     = scan(x, Δ, A=-exp(A_log), B, C, h) + D ⊙ x
    out   = out_proj(y ⊙ silu(z))

The conv context and the SSM state come from the caller's `MambaCache` and are written back, so
a prefill in chunks of any size equals one pass (transformers' Jamba resets the conv context on
every multi-token call and its kernel path restarts the scan from zero:
huggingface/transformers:src/transformers/models/jamba/modeling_jamba.py, `JambaMambaMixer`).
The conv and the scan run in float32 whatever the model dtype. Which conv and scan run is
`model.dispatch.choose_mixer_path`'s decision (`MambaMixer.choose_path`): mamba-ssm's and
causal-conv1d's kernels on CUDA; for CPU inference the compiled kernels of `model.cpu_kernels`
(conv; softplus + scan + D skip + gate in one pass) where a C compiler built them, else the
PyTorch code here and `scan_blocked`; while autograd records (training) the differentiable scan
(on the CPU its compiled twin); a scan forced by `JambaLM.set_scan` wherever one is set.
Parameter names are transformers' `JambaMambaMixer` names (loading.py maps AI21's).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from model.cache import MambaCache
from model.config import JambaConfig
from model.cpu_kernels import (
    causal_conv_compiled,
    kernels_available,
    mamba_inner_compiled,
    scan_differentiable_compiled,
)
from model.dispatch import Conv, MixerPath, Scan, choose_mixer_path, mamba_kernels_available
from model.norm import RMSNorm
from model.scan import scan_blocked, scan_cuda, scan_differentiable, step_cuda


def causal_conv(
    x: torch.Tensor, tail: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv with left context, then SiLU, in float32.

    x: [b, l, d] pre-conv inputs; tail: [b, k-1, d] the k-1 inputs before x (zeros at the start);
    weight: [d, 1, k]; bias: [d] or None. Returns (silu(conv) [b, l, d], new tail [b, k-1, d]).
    """
    k = weight.shape[-1]
    l = x.shape[1]
    xp = torch.cat([tail, x.float()], dim=1)  # [b, l+k-1, d]
    w = weight.float().squeeze(1)  # [d, k]
    # k shifted multiply-adds on channel-last data: cheaper on CPU than a grouped conv1d.
    out = xp[:, k - 1 :] * w[:, k - 1]
    for j in range(k - 1):
        out.addcmul_(xp[:, j : j + l], w[:, j])
    if bias is not None:
        out += bias.float()
    return F.silu(out), xp[:, l:].clone()


def causal_conv_cuda(
    x: torch.Tensor, tail: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """causal-conv1d's kernel with `initial_states`; same contract as `causal_conv`."""
    from causal_conv1d import causal_conv1d_fn

    out, final = causal_conv1d_fn(
        x.float().transpose(1, 2),  # [b, d, l] in channel-last memory, as initial_states needs
        weight.float().squeeze(1),
        None if bias is None else bias.float(),
        initial_states=tail.transpose(1, 2),
        return_final_states=True,
        activation="silu",
    )
    return out.transpose(1, 2), final.transpose(1, 2).contiguous()


class MambaMixer(nn.Module):
    def __init__(self, config: JambaConfig) -> None:
        super().__init__()
        e, d, n, r, k = config.hidden_size, config.d_inner, config.mamba_d_state, config.dt_rank, config.mamba_d_conv
        self.d_state, self.dt_rank = n, r
        self.in_proj = nn.Linear(e, 2 * d, bias=config.mamba_proj_bias)
        self.conv1d = nn.Conv1d(d, d, k, groups=d, padding=k - 1, bias=config.mamba_conv_bias)
        self.x_proj = nn.Linear(d, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d, bias=True)
        self.A_log = nn.Parameter(torch.empty(d, n))
        self.D = nn.Parameter(torch.empty(d))
        self.reset_ssm_parameters()
        self.out_proj = nn.Linear(d, e, bias=config.mamba_proj_bias)
        self.inner_norms = config.mamba_inner_layernorms
        if self.inner_norms:
            self.dt_layernorm = RMSNorm(r, config.rms_norm_eps)
            self.b_layernorm = RMSNorm(n, config.rms_norm_eps)
            self.c_layernorm = RMSNorm(n, config.rms_norm_eps)
        # Set by `JambaLM.set_scan` in tests and benchmarks; None picks by device.
        self.scan_impl = None

    def reset_ssm_parameters(self) -> None:
        """S4D-real initialisation, A = -(1..n) per channel, and D = 1 (Mamba's). Skipped on the
        meta device, where a checkpoint provides the values."""
        if self.A_log.is_meta:
            return
        with torch.no_grad():
            n = self.A_log.shape[1]
            self.A_log.copy_(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).expand_as(self.A_log))
            self.D.fill_(1.0)

    def choose_path(self, h: torch.Tensor) -> MixerPath:
        """The conv and scan `forward` runs for input h [b, l, e] (`model.dispatch.choose_mixer_path`
        with this mixer's shapes and this process's kernels)."""
        return choose_mixer_path(
            h.device.type,
            tokens=h.shape[1],
            d_state=self.d_state,
            d_conv=self.conv1d.kernel_size[0],
            training=self._records_graph(h),
            forced_scan=self.scan_impl is not None,
            cuda_kernels=mamba_kernels_available(h.device),
            cpu_kernels=h.device.type == "cpu" and kernels_available(),  # never built for a CUDA run
        )

    def _records_graph(self, h: torch.Tensor) -> bool:
        """Autograd records this call: grad mode is on and the input or a parameter requires grad."""
        return torch.is_grad_enabled() and (h.requires_grad or any(p.requires_grad for p in self.parameters()))

    def _use_cpu_kernels(self, h: torch.Tensor) -> bool:
        """The fused compiled inference path serves this call."""
        return self.choose_path(h).conv is Conv.COMPILED

    def forward(self, h: torch.Tensor, cache: MambaCache) -> torch.Tensor:
        """h: [b, l, e] -> [b, l, e] in h's dtype; reads and updates `cache` in place."""
        path = self.choose_path(h)
        x, z = self.in_proj(h).chunk(2, dim=-1)
        conv = _conv_function(path.conv)
        x, cache.conv = conv(x, cache.conv, self.conv1d.weight, self.conv1d.bias)  # float32 [b, l, d]
        dt, B, C = self.x_proj(x.to(h.dtype)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        if self.inner_norms:
            dt, B, C = self.dt_layernorm(dt), self.b_layernorm(B), self.c_layernorm(C)
        dt = (dt @ self.dt_proj.weight.T).float()
        A = -torch.exp(self.A_log.float())
        if path.scan is Scan.COMPILED_FUSED:  # softplus, scan, D skip and gate in one pass
            y, cache.ssm = mamba_inner_compiled(x, dt, self.dt_proj.bias, A, B, C, self.D, z, cache.ssm)
            return self.out_proj(y.to(h.dtype))
        delta = F.softplus(dt + self.dt_proj.bias.float())
        scan = self.scan_impl if path.scan is Scan.FORCED else _scan_function(path.scan)
        y, cache.ssm = scan(x, delta, A, B.float(), C.float(), cache.ssm)
        y = (y + x * self.D.float()) * F.silu(z.float())
        return self.out_proj(y.to(h.dtype))


# Looked up when called, not bound at import, so that tests can replace a path's function.
def _conv_function(conv: Conv) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    return {Conv.CAUSAL_CONV1D: causal_conv_cuda, Conv.COMPILED: causal_conv_compiled, Conv.PYTORCH: causal_conv}[conv]


def _scan_function(scan: Scan) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    return {
        Scan.MAMBA_SSM: scan_cuda,
        Scan.MAMBA_SSM_STEP: step_cuda,
        Scan.BLOCKED: scan_blocked,
        Scan.DIFFERENTIABLE: scan_differentiable,
        Scan.COMPILED_DIFFERENTIABLE: scan_differentiable_compiled,
    }[scan]
