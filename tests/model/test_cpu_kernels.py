"""The compiled CPU kernels (model/cpu_kernels.py) against their PyTorch twins: the scan against
`scan_reference`, the fused inner part and the conv against the mixer's PyTorch code, the mixer
with and without them, the attention against softmax in float64; continuation across chunks; the
fallback when they cannot be built."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import model.mamba as mamba_mod
from model.cache import MambaCache
from model.config import JambaConfig
from model.cpu_kernels import (
    attention_compiled,
    causal_conv_compiled,
    kernels_status,
    mamba_inner_compiled,
    scan_compiled,
    scan_differentiable_compiled,
)
from model.mamba import MambaMixer, causal_conv
from model.scan import scan_differentiable, scan_reference

AVAILABLE, DETAIL = kernels_status()
compiled = pytest.mark.skipif(not AVAILABLE, reason=f"compiled CPU kernels unavailable: {DETAIL}")


def _inputs(b=2, l=45, d=12, n=5, seed=0, delta_shift=-2.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, d, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(b, l, d, generator=g) + delta_shift)
    A = -torch.exp(torch.randn(d, n, generator=g))
    B, C = torch.randn(b, l, n, generator=g), torch.randn(b, l, n, generator=g)
    state = torch.randn(b, d, n, generator=g)
    return x, delta, A, B, C, state


@compiled
@pytest.mark.parametrize(
    ("b", "l", "d", "n"),
    [(1, 1, 1, 1), (2, 45, 12, 5), (1, 3, 64, 16), (3, 70, 130, 16), (1, 200, 256, 8), (2, 1, 1024, 16)],
)
def test_compiled_scan_equals_reference(b, l, d, n):
    """Full 64-channel blocks, a partial last block (12, 130) and single tokens (decode)."""
    x, delta, A, B, C, state = _inputs(b, l, d, n)
    y_ref, h_ref = scan_reference(x, delta, A, B, C, state)
    y, h = scan_compiled(x, delta, A, B, C, state)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)


@compiled
def test_compiled_scan_handles_strong_decay_and_empty_input():
    """Δ·A far below exp's range (the decay is 0 to float precision), and a zero-length call."""
    x, delta, A, B, C, state = _inputs(delta_shift=6.0)
    A = A * 100
    y_ref, h_ref = scan_reference(x, delta, A, B, C, state)
    y, h = scan_compiled(x, delta, A, B, C, state)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    y0, h0 = scan_compiled(x[:, :0], delta[:, :0], A, B[:, :0], C[:, :0], state)
    assert y0.shape == (2, 0, 12) and torch.equal(h0, state)
    with pytest.raises(ValueError, match="CPU tensors only"):  # never a raw pointer into device memory
        scan_compiled(x.to("meta"), delta, A, B, C, state)


@compiled
def test_compiled_scan_continues_across_chunks_and_keeps_inputs():
    x, delta, A, B, C, state = _inputs(l=40, d=70)
    copies = [t.clone() for t in (x, delta, A, B, C, state)]
    y_all, h_all = scan_compiled(x, delta, A, B, C, state)
    y1, h1 = scan_compiled(x[:, :17], delta[:, :17], A, B[:, :17], C[:, :17], state)
    y2, h2 = scan_compiled(x[:, 17:], delta[:, 17:], A, B[:, 17:], C[:, 17:], h1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y_all, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(h2, h_all, atol=1e-6, rtol=1e-6)
    for original, copy in zip((x, delta, A, B, C, state), copies, strict=True):
        assert torch.equal(original, copy)


@compiled
def test_compiled_scan_takes_strided_views_and_is_thread_count_independent():
    """B and C arrive as column slices of x_proj's output; threads split channel blocks only."""
    x, delta, A, B, C, state = _inputs(b=2, l=300, d=256, n=16)
    packed = torch.cat([B, C], dim=-1)
    B_view, C_view = packed.split(16, dim=-1)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        y1, h1 = scan_compiled(x, delta, A, B_view, C_view, state)
        torch.set_num_threads(max(2, threads))
        y2, h2 = scan_compiled(x, delta, A, B_view, C_view, state)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(y1, y2) and torch.equal(h1, h2)
    torch.testing.assert_close(y1, scan_reference(x, delta, A, B, C, state)[0], atol=1e-5, rtol=1e-5)


@compiled
@pytest.mark.parametrize("l", [1, 3, 70])
def test_fused_inner_equals_softplus_scan_skip_and_gate(l):
    x, dt, A, B, C, state = _inputs(b=2, l=l, d=130, n=16)
    g = torch.Generator().manual_seed(1)
    dt = dt * 30 - 15  # raw dt_proj outputs: softplus's small, middle and linear (> 20) ranges
    dt_bias, D = torch.randn(130, generator=g), torch.randn(130, generator=g)
    xz = torch.randn(2, l, 260, generator=g) * 4
    z = xz[..., 130:]  # a strided half, as in_proj's output is split
    y_ref, h_ref = scan_reference(x, F.softplus(dt + dt_bias), A, B, C, state)
    y_ref = (y_ref + x * D) * F.silu(z)
    y, h = mamba_inner_compiled(x, dt, dt_bias, A, B, C, D, z, state)
    # y + D x cancels in places: compare at float32 rounding of the terms' magnitude, not of the result
    torch.testing.assert_close(y, y_ref, atol=1e-6 * y_ref.abs().max().item(), rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)


@compiled
@pytest.mark.parametrize(("l", "k", "bias"), [(1, 4, True), (2, 4, False), (50, 4, True), (9, 1, True), (30, 6, True)])
def test_compiled_conv_equals_pytorch_conv_and_carries_its_tail(l, k, bias):
    g = torch.Generator().manual_seed(l * k)
    d = 70
    xz = torch.randn(2, l, 2 * d, generator=g)
    x = xz[..., :d]  # strided, read in place
    tail = torch.randn(2, k - 1, d, generator=g)
    weight, b = torch.randn(d, 1, k, generator=g), torch.randn(d, generator=g) if bias else None
    out_ref, tail_ref = causal_conv(x, tail, weight, b)
    out, new_tail = causal_conv_compiled(x, tail, weight, b)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(new_tail, tail_ref)
    # two calls with the carried tail equal one call over both
    x2 = torch.randn(2, 5, d, generator=g)
    joined, _ = causal_conv_compiled(torch.cat([x, x2], 1), tail, weight, b)
    second, _ = causal_conv_compiled(x2, new_tail, weight, b)
    torch.testing.assert_close(torch.cat([out, second], 1), joined, atol=1e-6, rtol=1e-6)


def _mixer(d_state=16) -> MambaMixer:
    config = JambaConfig.from_dict(
        {
            "vocab_size": 16,
            "hidden_size": 96,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "mamba_d_state": d_state,
            "mamba_dt_rank": 8,
        }
    )
    torch.manual_seed(0)
    mixer = MambaMixer(config)
    with torch.no_grad():
        for p in mixer.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return mixer


@compiled
def test_mixer_with_kernels_equals_mixer_with_reference_scan():
    """A prefill in two chunks then a decode step, with the compiled kernels and with the PyTorch
    path (forced by setting the reference scan): same outputs and same carried caches."""
    mixer = _mixer()
    h = torch.randn(2, 41, 96)
    results = {}
    for name, impl in (("compiled", None), ("reference", scan_reference)):
        mixer.scan_impl = impl
        g = torch.Generator().manual_seed(2)  # the same carried state for both
        cache = MambaCache(torch.randn(2, 3, 192, generator=g), torch.randn(2, 192, 16, generator=g))
        with torch.no_grad():
            assert mixer._use_cpu_kernels(h) == (impl is None)
            outs = [mixer(h[:, :29], cache), mixer(h[:, 29:40], cache), mixer(h[:, 40:], cache)]
        results[name] = (torch.cat(outs, 1), cache.conv, cache.ssm)
    for a, b in zip(results["compiled"], results["reference"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6 * b.abs().max().item(), rtol=1e-5)


@compiled
def test_training_keeps_the_differentiable_path():
    mixer = _mixer()
    h = torch.randn(1, 5, 96)
    assert not mixer._use_cpu_kernels(h)  # parameters require grad and autograd records
    with torch.no_grad():
        assert mixer._use_cpu_kernels(h)


def _scan_gradients(scan, inputs, threads=None):
    """Values and gradients of a loss on both outputs (y and the final state) of `scan`."""
    leaves = [t.clone().requires_grad_() for t in inputs]
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        y, last = scan(*leaves)
        g = torch.Generator().manual_seed(9)
        loss = (y * torch.randn(y.shape, generator=g)).sum() + (last * torch.randn(last.shape, generator=g)).sum()
        loss.backward()
    finally:
        torch.set_num_threads(previous)
    return [y.detach(), last.detach(), *(t.grad for t in leaves)]


@compiled
@pytest.mark.parametrize(("b", "l", "d", "n"), [(1, 1, 1, 1), (2, 37, 70, 5), (3, 50, 130, 16), (1, 9, 64, 8)])
def test_compiled_training_scan_gradients_equal_autograd_of_reference(b, l, d, n):
    """Every input's gradient (x, Δ, A, B, C, initial state) against autograd through the plain
    loop, with full and partial 64-channel blocks (B's and C's gradients sum over blocks)."""
    inputs = _inputs(b, l, d, n, delta_shift=-1.0)
    got = _scan_gradients(scan_differentiable_compiled, inputs)
    ref = _scan_gradients(scan_reference, inputs)
    names = ("y", "state", "dx", "ddelta", "dA", "dB", "dC", "dstate")
    for name, a, r in zip(names, got, ref, strict=True):
        torch.testing.assert_close(a, r, atol=2e-5 * max(1.0, r.abs().max().item()), rtol=1e-4, msg=name)


@compiled
def test_compiled_training_scan_empty_input_strong_decay_and_threads():
    """A zero-length call passes the state's gradient through; Δ·A far below exp's range stays
    finite; 1 and 2 threads give bit-identical gradients (per-block partial sums, added in order)."""
    x, delta, A, B, C, state = _inputs(b=2, l=0, d=70, n=4)
    y, last, *grads = _scan_gradients(scan_differentiable_compiled, (x, delta, A, B, C, state))
    assert y.shape == (2, 0, 70) and torch.equal(last, state)
    assert grads[-1].shape == state.shape and grads[2].abs().sum() == 0  # dA: nothing to decay
    inputs = _inputs(b=2, l=40, d=130, n=8, delta_shift=6.0)
    inputs = (*inputs[:2], inputs[2] * 100, *inputs[3:])
    strong = _scan_gradients(scan_differentiable_compiled, inputs)
    ref = _scan_gradients(scan_reference, inputs)
    for a, r in zip(strong, ref, strict=True):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, r, atol=2e-5 * max(1.0, r.abs().max().item()), rtol=1e-4)
    one, two = (_scan_gradients(scan_differentiable_compiled, _inputs(2, 300, 256, 16), t) for t in (1, 2))
    for a, b in zip(one, two, strict=True):
        assert torch.equal(a, b)


@compiled
def test_training_mixer_uses_the_compiled_scan_with_the_pytorch_gradients(monkeypatch):
    """While autograd records, the mixer's automatic choice is the compiled training scan, and its
    parameter gradients equal those with `scan_differentiable` forced."""
    calls = []

    def counted(*args):
        calls.append(args[0].shape)
        return scan_differentiable_compiled(*args)

    monkeypatch.setattr(mamba_mod, "scan_differentiable_compiled", counted)
    h = torch.randn(2, 33, 96, generator=torch.Generator().manual_seed(4))
    grads = {}
    for name, impl in (("automatic", None), ("pytorch", scan_differentiable)):
        mixer = _mixer()
        mixer.scan_impl = impl
        cache = MambaCache(torch.zeros(2, 3, 192), torch.zeros(2, 192, 16))
        mixer(h, cache).square().mean().backward()
        grads[name] = {k: p.grad for k, p in mixer.named_parameters()}
    assert calls == [(2, 33, 192)]
    for k, ref in grads["pytorch"].items():
        torch.testing.assert_close(grads["automatic"][k], ref, atol=1e-6 * ref.abs().max().item(), rtol=1e-4, msg=k)


def _status_in_subprocess(tmp_path, **env) -> dict:
    """kernels_status() and the mixer's choice in a fresh process with `env` and an empty cache."""
    code = (
        "import json, torch\n"
        "from model.cpu_kernels import kernels_status\n"
        "from model.config import JambaConfig\n"
        "from model.mamba import MambaMixer\n"
        "config = JambaConfig.from_dict({'vocab_size': 16, 'hidden_size': 16, 'intermediate_size': 32,"
        " 'num_hidden_layers': 1, 'num_attention_heads': 2, 'mamba_d_state': 4})\n"
        "with torch.no_grad():\n"
        "    compiled = MambaMixer(config)._use_cpu_kernels(torch.zeros(1, 1, 16))\n"
        "print(json.dumps([*kernels_status(), compiled]))\n"
    )
    environment = {**os.environ, "XDG_CACHE_HOME": str(tmp_path), **env}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    available, detail, used = json.loads(result.stdout)
    return {"available": available, "detail": detail, "used": used}


def test_disabled_by_environment_falls_back_to_pytorch_scan(tmp_path):
    status = _status_in_subprocess(tmp_path, LONGLLAVA_CPU_KERNELS="0")
    assert status == {"available": False, "detail": "disabled by LONGLLAVA_CPU_KERNELS", "used": False}


def test_failing_compiler_falls_back_to_pytorch_scan(tmp_path):
    compiler = tmp_path / "broken-cc"
    compiler.write_text("#!/bin/sh\necho 'broken-cc: cannot compile' >&2\nexit 1\n")
    compiler.chmod(0o755)
    status = _status_in_subprocess(tmp_path, CC=str(compiler))
    assert status["available"] is False and status["used"] is False
    assert status["detail"] == "build failed: broken-cc failed: broken-cc: cannot compile"
    compiler.write_text("#!/bin/sh\necho 'broken-cc: should not run again' >&2\nexit 1\n")
    again = _status_in_subprocess(tmp_path, CC=str(compiler))  # the failures are remembered
    assert again["detail"] == "build failed: broken-cc failed: broken-cc: cannot compile"


@compiled
def test_build_is_cached_per_source_and_compiler(tmp_path):
    first = _status_in_subprocess(tmp_path)
    assert first["available"] and first["used"] is True
    assert first["detail"].startswith(str(tmp_path / "longllava" / "kernels"))
    assert _status_in_subprocess(tmp_path)["detail"] == first["detail"]  # reused, not rebuilt


@compiled
def test_build_without_openmp_equals_reference(tmp_path, monkeypatch):
    """The pthreads build (compilers without an OpenMP runtime) computes the same, on 2 threads."""
    import model.cpu_kernels as cpu_kernels

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    flags = [f for f in cpu_kernels.COMPILE_FLAGS if "-fopenmp" not in f]
    monkeypatch.setattr(cpu_kernels, "COMPILE_FLAGS", tuple(flags))
    path = cpu_kernels._build(cpu_kernels._find_compiler())
    library = cpu_kernels._open(path)
    monkeypatch.setattr(cpu_kernels, "_load", lambda: (library, str(path)))
    x, delta, A, B, C, state = _inputs(b=2, l=300, d=256, n=16)
    g = torch.Generator().manual_seed(3)
    tail, weight, bias = torch.randn(2, 3, 256, generator=g), torch.randn(256, 1, 4, generator=g), torch.randn(256)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        y, h = scan_compiled(x, delta, A, B, C, state)
        out, new_tail = causal_conv_compiled(x, tail, weight, bias)
        short = (x[:, :40], delta[:, :40], A, B[:, :40], C[:, :40], state)
        trained = _scan_gradients(scan_differentiable_compiled, short)
        rows, keys, values = _attention_inputs(b=2, h_kv=2, n_rows=300, keys=333, hd=16)
        attended, lse = attention_compiled(rows, keys, values, causal_len=100)
    finally:
        torch.set_num_threads(threads)
    reference = _scan_gradients(scan_reference, short)
    for a, r in zip(trained, reference, strict=True):
        torch.testing.assert_close(a, r, atol=2e-5 * max(1.0, r.abs().max().item()), rtol=1e-4)
    y_ref, h_ref = scan_reference(x, delta, A, B, C, state)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(h, h_ref, atol=1e-5, rtol=1e-5)
    out_ref, tail_ref = causal_conv(x, tail, weight, bias)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(new_tail, tail_ref)
    attended_ref, lse_ref = _softmax_attention_float64(rows, keys, values, causal_len=100)
    torch.testing.assert_close(attended, attended_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, lse_ref, atol=1e-5, rtol=1e-5)


def _attention_inputs(b, h_kv, n_rows, keys, hd, seed=0):
    """Rows [b, h_kv, R, hd]; keys and values as views of the first `keys` positions of a longer
    cache buffer (what `AttentionCache.append` returns)."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(b, h_kv, n_rows, hd, generator=g)
    cache_k, cache_v = (torch.randn(b, h_kv, keys + 7, hd, generator=g) for _ in range(2))
    return rows, cache_k[:, :, :keys], cache_v[:, :, :keys]


def _softmax_attention_float64(rows, keys, values, causal_len=0):
    """(out, lse) in float64, cast to float32: `attention_compiled`'s contract written plainly."""
    scores = (rows.double() @ keys.double().transpose(-1, -2)) * rows.shape[-1] ** -0.5
    if causal_len:
        n_keys = keys.shape[2]
        position = n_keys - causal_len + torch.arange(rows.shape[2]) % causal_len
        scores = scores.masked_fill(torch.arange(n_keys)[None, :] > position[:, None], float("-inf"))
    return (scores.softmax(-1) @ values.double()).float(), scores.logsumexp(-1).float()


@compiled
@pytest.mark.parametrize(
    ("n_rows", "keys", "hd"),
    # one row; a block's edge (31, 33 of 32); a work item's edge (257 of 256 rows); key blocks of
    # 64 cut at 63 / 65; one key; head dims 8, 64 and the largest
    [(1, 1, 8), (31, 63, 64), (33, 65, 64), (257, 700, 16), (600, 130, 64), (40, 50, 256)],
)
def test_compiled_attention_equals_float64_softmax(n_rows, keys, hd):
    rows, k, v = _attention_inputs(b=2, h_kv=2, n_rows=n_rows, keys=keys, hd=hd)
    out, lse = attention_compiled(rows, k, v)
    out_ref, lse_ref = _softmax_attention_float64(rows, k, v)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, lse_ref, atol=1e-5, rtol=1e-5)


@compiled
@pytest.mark.parametrize(
    ("causal_len", "keys", "g"), [(1, 1, 1), (5, 5, 4), (37, 100, 4), (300, 300, 1), (70, 1000, 8)]
)
def test_compiled_attention_causal_rows_see_keys_up_to_their_position(causal_len, keys, g):
    """g query heads of `causal_len` new queries folded into the rows of one KV head, after
    keys - causal_len cached ones: key blocks wholly in a row block's future are skipped, blocks
    across the diagonal masked per row."""
    rows, k, v = _attention_inputs(b=1, h_kv=2, n_rows=g * causal_len, keys=keys, hd=64, seed=1)
    out, lse = attention_compiled(rows, k, v, causal_len=causal_len)
    out_ref, lse_ref = _softmax_attention_float64(rows, k, v, causal_len=causal_len)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, lse_ref, atol=1e-5, rtol=1e-5)


@compiled
def test_compiled_attention_is_thread_count_independent_and_checks_its_inputs():
    rows, k, v = _attention_inputs(b=1, h_kv=2, n_rows=700, keys=900, hd=64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = attention_compiled(rows, k, v, causal_len=300)
        torch.set_num_threads(max(2, threads))
        two = attention_compiled(rows, k, v, causal_len=300)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(one, two, strict=True))
    with pytest.raises(ValueError, match="multiple of 8"):
        attention_compiled(rows[..., :12], k[..., :12], v[..., :12])
    with pytest.raises(ValueError, match="float32"):
        attention_compiled(rows.double(), k.double(), v.double())
    with pytest.raises(ValueError, match="does not fit"):
        attention_compiled(rows, k, v, causal_len=901)
