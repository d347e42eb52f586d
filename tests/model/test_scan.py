"""Selective-scan twins: the blocked CPU scan, the initial-state correction the CUDA kernel path
relies on, and the conv with carried context, each against its plain reference."""

from __future__ import annotations

import pytest
import torch

import model.scan as scan_mod
from model.dispatch import mamba_kernels_available
from model.mamba import causal_conv, causal_conv_cuda
from model.scan import add_initial_state, correction_block, scan_blocked, scan_cuda, scan_reference, step_cuda

cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and mamba_kernels_available(torch.device("cuda"))),
    reason="needs CUDA with mamba-ssm and causal-conv1d",
)


def _inputs(b=2, l=45, d=12, n=5, seed=0, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, d, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(b, l, d, generator=g) - 2)
    A = -torch.exp(torch.randn(d, n, generator=g))
    B, C = torch.randn(b, l, n, generator=g), torch.randn(b, l, n, generator=g)
    state = torch.randn(b, d, n, generator=g)
    return [t.to(device) for t in (x, delta, A, B, C, state)]


@pytest.mark.parametrize("l", [1, 2, 45])
@pytest.mark.parametrize("block_elements", [1, 300, 1 << 22])
def test_blocked_scan_equals_reference(monkeypatch, l, block_elements):
    monkeypatch.setattr(scan_mod, "SCAN_BLOCK_ELEMENTS", block_elements)  # 1 token per block .. all at once
    x, delta, A, B, C, state = _inputs(l=l)
    y_ref, h_ref = scan_reference(x, delta, A, B, C, state)
    y, h = scan_blocked(x, delta, A, B, C, state.clone())
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)


def test_blocked_scan_does_not_modify_its_inputs():
    inputs = _inputs()
    copies = [t.clone() for t in inputs]
    scan_blocked(*inputs)
    for a, b in zip(inputs, copies, strict=True):
        assert torch.equal(a, b)


def test_split_scan_equals_whole():
    x, delta, A, B, C, state = _inputs(l=40)
    y_all, h_all = scan_blocked(x, delta, A, B, C, state)
    y1, h1 = scan_blocked(x[:, :17], delta[:, :17], A, B[:, :17], C[:, :17], state)
    y2, h2 = scan_blocked(x[:, 17:], delta[:, 17:], A, B[:, 17:], C[:, 17:], h1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_all, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h2, h_all, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("block_elements", [50, 1 << 22])
def test_initial_state_correction_turns_zero_start_into_carried_start(monkeypatch, block_elements):
    """What the CUDA path does with mamba-ssm's zero-start kernel, checked with the CPU reference."""
    monkeypatch.setattr(scan_mod, "SCAN_BLOCK_ELEMENTS", block_elements)
    x, delta, A, B, C, state = _inputs(l=33)
    y0, h0 = scan_reference(x, delta, A, B, C, torch.zeros_like(state))
    y, h = add_initial_state(y0, h0, delta, A, C, state)
    y_ref, h_ref = scan_reference(x, delta, A, B, C, state)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)


def test_the_correction_takes_bigger_blocks_on_a_gpu():
    """At LongLLaVA-9B's widths (d 8192, n 16) a CPU block holds 2 tokens (cache-sized); on a GPU
    16, so a 2048-token chunk launches 128 blocks per layer, not 1024; never fewer than 1 token."""
    assert correction_block("cpu", b=1, d=8192, n=16) == 2
    assert correction_block("cuda", b=1, d=8192, n=16) == 16
    assert correction_block("cuda", b=64, d=8192, n=256) == 1


def _conv_reference(x, tail, weight, bias):
    """Plain grouped conv1d over the context-prefixed input."""
    xp = torch.cat([tail, x], dim=1).transpose(1, 2)
    out = torch.nn.functional.conv1d(xp, weight, bias, groups=weight.shape[0])
    return torch.nn.functional.silu(out).transpose(1, 2)


@pytest.mark.parametrize("l", [1, 2, 3, 10])
def test_conv_carries_its_left_context(l):
    g = torch.Generator().manual_seed(1)
    d, k = 6, 4
    weight, bias = torch.randn(d, 1, k, generator=g), torch.randn(d, generator=g)
    x = torch.randn(2, 23, d, generator=g)
    expected = _conv_reference(x, torch.zeros(2, k - 1, d), weight, bias)
    tail, outs = torch.zeros(2, k - 1, d), []
    for start in range(0, 23, l):
        out, tail = causal_conv(x[:, start : start + l], tail, weight, bias)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, 1), expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(tail, x[:, -(k - 1) :], atol=0, rtol=0)


@pytest.mark.cuda
@cuda
def test_cuda_scan_equals_reference():
    inputs = _inputs(b=2, l=300, d=64, n=16, device="cuda")
    y, h = scan_cuda(*inputs)
    y_ref, h_ref = scan_reference(*[t.cpu() for t in inputs])
    torch.testing.assert_close(y.cpu(), y_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(h.cpu(), h_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.cuda
@cuda
def test_cuda_conv_equals_cpu_conv():
    g = torch.Generator().manual_seed(2)
    x, tail = torch.randn(2, 50, 64, generator=g), torch.randn(2, 3, 64, generator=g)
    weight, bias = torch.randn(64, 1, 4, generator=g), torch.randn(64, generator=g)
    out, new_tail = causal_conv_cuda(x.cuda(), tail.cuda(), weight.cuda(), bias.cuda())
    out_ref, tail_ref = causal_conv(x, tail, weight, bias)
    torch.testing.assert_close(out.cpu(), out_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new_tail.cpu(), tail_ref, atol=0, rtol=0)


@pytest.mark.cuda
@cuda
def test_cuda_step_equals_reference():
    inputs = _inputs(b=2, l=1, d=64, n=16, device="cuda")
    y, h = step_cuda(*inputs)
    y_ref, h_ref = scan_reference(*[t.cpu() for t in inputs])
    torch.testing.assert_close(y.cpu(), y_ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(h.cpu(), h_ref, atol=1e-4, rtol=1e-4)
