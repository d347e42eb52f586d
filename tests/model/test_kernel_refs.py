"""The CUDA path's glue, run on the CPU through mamba-ssm's and causal-conv1d's own wrappers with
each compiled kernel replaced by the library's pure-PyTorch reference.

Our CUDA path (model/scan.py `scan_cuda`, `step_cuda`; model/mamba.py `causal_conv_cuda`;
model/attention.py `causal_attention_cuda`) calls `selective_scan_fn`, `selective_state_update`,
`causal_conv1d_fn(initial_states=...)` and SDPA with a lower-right causal bias. Here the libraries'
Python wrappers run for real; below them, the compiled modules `selective_scan_cuda` and
`causal_conv1d_cuda` (absent from a CPU install) and the Triton step kernel are stand-ins that
first enforce what the kernels check (dtypes, shapes, channel-last strides: the TORCH_CHECKs of
state-spaces/mamba:csrc/selective_scan/selective_scan.cpp and
Dao-AILab/causal-conv1d:csrc/causal_conv1d.cpp; the Triton kernel's parameter list and strides)
and then compute with `selective_scan_ref`, `causal_conv1d_ref` and `selective_state_update_ref`.
So a wrong argument order, layout or dtype fails here as it would on a GPU. The layer dispatch
is steered to the CUDA choices (`choose_mixer_path` / `choose_attention_path` told "cuda"), and
chunked prefill plus decode of a whole LM must equal our own CPU reference path.

Needs mamba-ssm and causal-conv1d installed without their CUDA builds, plus einops and triton
(benchmarks/kernel_refs.sh installs them and runs `pytest -m kernel_refs`); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import math
import sys
import types

import pytest
import torch

import model.attention as attn_mod
import model.dispatch as dispatch
import model.mamba as mamba_mod
from model.attention import attention_reference, causal_attention_cuda
from model.config import JambaConfig
from model.dispatch import AttentionPath, Conv, MixerPath, Scan
from model.jamba import JambaLM
from model.mamba import causal_conv, causal_conv_cuda
from model.random_init import randomize_parameters
from model.scan import scan_cuda, scan_reference, step_cuda
from model.testing import TINY_LM_CONFIG

pytestmark = pytest.mark.kernel_refs

_COMPILED = ("selective_scan_cuda", "causal_conv1d_cuda")
_LIBRARIES = ("mamba_ssm", "causal_conv1d", *_COMPILED)
_INPUT_TYPES = (torch.float32, torch.float16, torch.bfloat16)


def _check(condition: bool, message: str) -> None:
    """TORCH_CHECK: the kernels raise RuntimeError on a failed check."""
    if not condition:
        raise RuntimeError(f"kernel check failed: {message}")


def _check_shape(t: torch.Tensor, *shape: int, name: str) -> None:
    _check(tuple(t.shape) == shape, f"{name} must have shape {shape}, got {tuple(t.shape)}")


# --- stand-ins for the compiled kernels -------------------------------------------------------


def _selective_scan_fwd(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """`selective_scan_cuda.fwd`: its entry point's checks, then `selective_scan_ref`. Returns
    [out, x(, out_z)] where x [b, d, chunks, 2n] holds the last state at [:, :, -1, 1::2]."""
    from mamba_ssm.ops.selective_scan_interface import selective_scan_ref

    _check(u.dtype in _INPUT_TYPES and A.dtype == torch.float32, "input type, weight type float32")
    _check(delta.dtype == u.dtype, "delta dtype == u dtype")
    for name, t in (("B", B), ("C", C)):
        _check(t.dtype == (u.dtype if t.dim() >= 3 else A.dtype), f"{name} dtype")
    _check(u.stride(-1) == 1 or u.size(-1) == 1, "u contiguous in l")
    _check(delta.stride(-1) == 1 or delta.size(-1) == 1, "delta contiguous in l")
    batch, dim, seqlen = u.shape
    dstate = A.shape[1]
    _check(dstate <= 256, "dstate <= 256")
    _check_shape(delta, batch, dim, seqlen, name="delta")
    _check_shape(A, dim, dstate, name="A")
    for name, t in (("B", B), ("C", C)):
        if t.dim() >= 3:
            _check_shape(t, batch, B.shape[1], dstate, seqlen, name=name)
            _check(t.stride(-1) == 1 or t.size(-1) == 1, f"{name} contiguous in l")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None:
            _check(t.dtype == torch.float32 and (t.stride(-1) == 1 or t.size(-1) == 1), f"{name} float32")
            _check_shape(t, dim, name=name)
    if z is not None:
        _check(z.dtype == u.dtype and (z.stride(-1) == 1 or z.size(-1) == 1), "z")
        _check_shape(z, batch, dim, seqlen, name="z")
    out, last = selective_scan_ref(u, delta, A, B, C, D, None, delta_bias, delta_softplus, return_last_state=True)
    x = torch.zeros(batch, dim, math.ceil(seqlen / 2048), 2 * dstate, dtype=A.dtype)
    x[:, :, -1, 1::2] = last
    if z is None:
        return [out, x]
    return [out, x, selective_scan_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus)]


def _check_conv_states(t: torch.Tensor | None, name: str, channel_last: bool, x: torch.Tensor, width: int) -> None:
    if t is not None:
        _check(channel_last, f"{name} is only supported for channel last layout")
        _check(t.dtype == x.dtype, f"{name} dtype == x dtype")
        _check_shape(t, x.shape[0], x.shape[1], width - 1, name=name)
        _check(t.stride(1) == 1, f"{name}.stride(1) == 1")


def _causal_conv1d_fwd(x, weight, bias, seq_idx, initial_states, out, final_states_out, silu_activation):
    """`causal_conv1d_cuda.causal_conv1d_fwd`: its entry point's checks, then `causal_conv1d_ref`,
    written into `out` and `final_states_out` as the kernel does."""
    from causal_conv1d.causal_conv1d_interface import causal_conv1d_ref

    _check(x.dtype in _INPUT_TYPES and weight.dtype in _INPUT_TYPES, "input and weight types")
    dim, width = x.shape[1], weight.shape[-1]
    _check_shape(weight, dim, width, name="weight")
    _check(x.stride(2) == 1 or x.stride(1) == 1, "x contiguous in l or in d")
    channel_last = x.stride(1) == 1 and x.stride(2) > 1
    if channel_last:
        _check(dim % 8 == 0, "causal_conv1d only supports channel dimension divisible by 8 for now")
        _check(x.stride(2) % 8 == 0 and x.stride(0) % 8 == 0, "channel last strides multiples of 8")
    _check(2 <= width <= 4, "causal_conv1d only supports width between 2 and 4")
    if bias is not None:
        _check(bias.dtype == weight.dtype and bias.stride(-1) == 1, "bias dtype and stride")
        _check_shape(bias, dim, name="bias")
    _check(seq_idx is None, "the stand-in covers seq_idx=None")
    _check_conv_states(initial_states, "initial_states", channel_last, x, width)
    _check_conv_states(final_states_out, "final_states", channel_last, x, width)
    activation = "silu" if silu_activation else None
    result = causal_conv1d_ref(x, weight, bias, initial_states, final_states_out is not None, None, activation)
    if final_states_out is None:
        out.copy_(result)
    else:
        out.copy_(result[0])
        final_states_out.copy_(result[1])


# The Triton step kernel's stride parameters, per tensor: stride_{tensor}_{dim}.
_STEP_KERNEL_STRIDES = {
    "state": ("batch", "head", "dim", "dstate"), "x": ("batch", "head", "dim"), "dt": ("batch", "head", "dim"),
    "dt_bias": ("head", "dim"), "A": ("head", "dim", "dstate"), "B": ("batch", "group", "dstate"),
    "C": ("batch", "group", "dstate"), "D": ("head", "dim"), "z": ("batch", "head", "dim"),
    "out": ("batch", "head", "dim"),
}  # fmt: skip


class _StepKernel:
    """mamba-ssm's Triton `_selective_scan_update_kernel`: a launch `kernel[grid](*args)` binds the
    arguments to the kernel's parameters (all of them, none twice), checks each stride argument
    against its tensor, and runs `selective_state_update_ref`, which updates `state` in place."""

    def __init__(self, kernel) -> None:
        self.names, provided = list(kernel.arg_names), []
        while hasattr(kernel, "values"):  # triton.heuristics layers supply these parameters
            provided += list(kernel.values)
            kernel = kernel.fn
        self.launched = [name for name in self.names if name not in provided]

    def __getitem__(self, grid):
        return self._launch

    def _launch(self, *args, num_warps=None, **kwargs):
        from mamba_ssm.ops.triton.selective_state_update import selective_state_update_ref

        _check(len(args) + len(kwargs) == len(self.launched), f"{len(self.launched)} kernel arguments")
        bound = dict(zip(self.launched, args, strict=False)) | kwargs  # the rest by keyword
        _check(set(bound) == set(self.launched), "every kernel parameter bound once")
        t = {name: bound[f"{name}_ptr"] for name in _STEP_KERNEL_STRIDES}
        for name, dims in _STEP_KERNEL_STRIDES.items():
            if t[name] is not None:
                got = tuple(bound[f"stride_{name}_{dim}"] for dim in dims)
                _check(got == t[name].stride(), f"{name} strides {got} != {t[name].stride()}")
        _check(bound["state_batch_indices_ptr"] is None, "the stand-in covers state_batch_indices=None")
        out = selective_state_update_ref(
            t["state"], t["x"], t["dt"], t["A"], t["B"], t["C"], t["D"], t["z"], t["dt_bias"], bound["DT_SOFTPLUS"]
        )
        t["out"].copy_(out)


def _no_cuda_device(index):
    """`torch.cuda.device(x.device.index)` as the step wrapper calls it: a CPU tensor's index is None."""
    _check(index is None, "a CPU tensor")
    return contextlib.nullcontext()


@pytest.fixture(scope="module")
def kernel_libraries():
    """mamba-ssm and causal-conv1d imported with the stand-ins under their wrappers; afterwards
    every module they brought is dropped again, so later tests see this process as it was."""
    before = set(sys.modules)
    dispatch._cuda_kernel_packages_importable.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(sys.modules, "selective_scan_cuda", types.SimpleNamespace(fwd=_selective_scan_fwd))
        mp.setitem(sys.modules, "causal_conv1d_cuda", types.SimpleNamespace(causal_conv1d_fwd=_causal_conv1d_fwd))
        try:
            pytest.importorskip("einops")
            pytest.importorskip("causal_conv1d.causal_conv1d_interface")
            pytest.importorskip("mamba_ssm.ops.selective_scan_interface")
            step = pytest.importorskip("mamba_ssm.ops.triton.selective_state_update")
            mp.setattr(step, "_selective_scan_update_kernel", _StepKernel(step._selective_scan_update_kernel))
            mp.setattr(torch.cuda, "device", _no_cuda_device)
            yield
        finally:
            mp.undo()
            for name in set(sys.modules) - before:
                if name.split(".")[0] in _LIBRARIES:
                    del sys.modules[name]
            dispatch._cuda_kernel_packages_importable.cache_clear()


def _cuda_dispatch(monkeypatch) -> list:
    """Layers on the CPU choose exactly as on a CUDA device with mamba-ssm: the real choosers, told
    "cuda". Returns the list every chosen path is appended to."""
    chosen: list = []

    def mixer(device, **facts):
        chosen.append(dispatch.choose_mixer_path("cuda", **(facts | {"cuda_kernels": True, "cpu_kernels": False})))
        return chosen[-1]

    def attention(device, dtype, **facts):
        facts |= {"cpu_kernels": False, "flash_cpu": False}
        chosen.append(dispatch.choose_attention_path("cuda", dtype, **facts))
        return chosen[-1]

    monkeypatch.setattr(mamba_mod, "choose_mixer_path", mixer)
    monkeypatch.setattr(attn_mod, "choose_attention_path", attention)
    return chosen


def _reference_dispatch(monkeypatch) -> None:
    """Our CPU reference path: the PyTorch conv, the blocked scan and the tiled attention."""
    monkeypatch.setattr(mamba_mod, "kernels_available", lambda: False)
    monkeypatch.setattr(attn_mod, "kernels_available", lambda: False)
    monkeypatch.setattr(attn_mod, "flash_cpu_available", lambda: False)


def _scan_inputs(b=2, l=45, d=16, n=8, seed=0):
    """x, Δ, A, B, C, state as the mixer passes them: float32, [b, l, d] / [d, n] / [b, l, n] / [b, d, n]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, d, generator=g)
    delta = torch.nn.functional.softplus(torch.randn(b, l, d, generator=g) - 2)
    A = -torch.exp(torch.randn(d, n, generator=g))
    B, C = torch.randn(b, l, n, generator=g), torch.randn(b, l, n, generator=g)
    return x, delta, A, B, C, torch.randn(b, d, n, generator=g)


# --- the stand-ins are strict -----------------------------------------------------------------


def test_the_stand_ins_refuse_what_the_kernels_refuse(kernel_libraries):
    from causal_conv1d import causal_conv1d_fn
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    g = torch.Generator().manual_seed(0)
    x, weight, tail = torch.randn(2, 16, 9, generator=g), torch.randn(16, 4, generator=g), torch.zeros(2, 16, 3)
    with pytest.raises(RuntimeError, match="initial_states is only supported for channel last layout"):
        causal_conv1d_fn(x, weight, initial_states=tail)  # x contiguous in l, not channel-last
    channel_last = x.transpose(1, 2).contiguous().transpose(1, 2)
    with pytest.raises(RuntimeError, match="initial_states dtype"):
        causal_conv1d_fn(channel_last, weight, initial_states=tail.transpose(1, 2).bfloat16().transpose(1, 2))
    with pytest.raises(RuntimeError, match="width between 2 and 4"):
        causal_conv1d_fn(x, torch.randn(16, 5, generator=g))
    u, delta, A, B, C, _ = (t.transpose(1, 2).contiguous() if t.dim() == 3 else t for t in _scan_inputs())
    with pytest.raises(RuntimeError, match="delta dtype"):
        selective_scan_fn(u, delta.bfloat16(), A, B, C)
    with pytest.raises(RuntimeError, match="B must have shape"):
        selective_scan_fn(u, delta, A, B[:, :, :-1], C)


def test_the_step_kernel_wrapper_cannot_launch_without_D_and_dt_bias(kernel_libraries):
    """mamba-ssm 2.3.2's `selective_state_update` builds its launch arguments with
    `*(D.stride(0), D.stride(1)) if D is not None else 0`, which unpacks `*0` when D or dt_bias is
    None: the TypeError every decode step of ours would have raised on a GPU before `step_cuda` passed
    zeros."""
    from mamba_ssm.ops.triton.selective_state_update import selective_state_update

    x, delta, A, B, C, state = _scan_inputs(l=1)
    with pytest.raises(TypeError, match="must be an iterable, not int"):
        selective_state_update(state.clone(), x[:, 0], delta[:, 0], A, B[:, 0], C[:, 0])
    zeros = torch.zeros(x.shape[-1])
    selective_state_update(state.clone(), x[:, 0], delta[:, 0], A, B[:, 0], C[:, 0], D=zeros, dt_bias=zeros)


# --- each CUDA function against our reference ----------------------------------------------------


@pytest.mark.parametrize("l", [1, 7, 300])
@pytest.mark.parametrize("from_zero", [True, False])
def test_scan_cuda_continues_exactly_from_a_carried_state(kernel_libraries, l, from_zero):
    """selective_scan_ref, like the kernel, starts from zero: a nonzero state reaches the result
    only through our initial-state correction."""
    x, delta, A, B, C, state = _scan_inputs(l=l)
    if from_zero:
        state = torch.zeros_like(state)
    y, last = scan_cuda(x, delta, A, B, C, state)
    y_ref, last_ref = scan_reference(x, delta, A, B, C, state)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, last_ref, atol=1e-5, rtol=1e-5)
    assert y.dtype == last.dtype == torch.float32 and y.shape == x.shape and last.shape == state.shape


@pytest.mark.parametrize("b", [1, 2])
def test_step_cuda_equals_one_token_of_the_reference_scan(kernel_libraries, b):
    x, delta, A, B, C, state = _scan_inputs(b=b, l=1)
    before = state.clone()
    y, last = step_cuda(x, delta, A, B, C, state)
    y_ref, last_ref = scan_reference(x, delta, A, B, C, state)
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(last, last_ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(state, before)  # the kernel updates its own copy in place, not the caller's


@pytest.mark.parametrize("l", [1, 2, 50])
@pytest.mark.parametrize("b", [1, 2])
@pytest.mark.parametrize("with_bias", [True, False])
def test_causal_conv_cuda_continues_from_its_tail(kernel_libraries, l, b, with_bias):
    """x as the mixer passes it: the first half of in_proj's output, a strided view."""
    d, k = 16, 4
    g = torch.Generator().manual_seed(l)
    projected = torch.randn(b, l, 2 * d, generator=g)
    x, tail = projected[..., :d], torch.randn(b, k - 1, d, generator=g)
    weight, bias = torch.randn(d, 1, k, generator=g), torch.randn(d, generator=g) if with_bias else None
    out, new_tail = causal_conv_cuda(x, tail, weight, bias)
    out_ref, tail_ref = causal_conv(x, tail, weight, bias)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(new_tail, tail_ref, atol=0, rtol=0)
    assert new_tail.is_contiguous() and out.shape == (b, l, d)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize(("queries", "cached"), [(1, 40), (9, 0), (9, 30), (64, 64)])
def test_sdpa_lower_right_equals_the_reference_attention(dtype, queries, cached):
    """Queries are the last positions; 8 query heads over 2 KV heads (GQA)."""
    g = torch.Generator().manual_seed(queries + cached)
    q = torch.randn(2, 8, queries, 16, generator=g).to(dtype)
    k, v = (torch.randn(2, 2, cached + queries, 16, generator=g).to(dtype) for _ in range(2))
    tolerance = {"atol": 1e-5, "rtol": 1e-5} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(causal_attention_cuda(q, k, v), attention_reference(q, k, v), **tolerance)


# --- a whole LM: chunked prefill and decode through the dispatch -----------------------------------

# Chunk sizes of the prefill (1 and 2 are shorter than the conv's context), then decode steps.
_CHUNKS, _DECODE_STEPS = (1, 2, 7, 13, 17), 4
# float32: both paths compute in float32, so only rounding differs. bfloat16: the projections and
# attention round to bfloat16 at different points in the two paths (the conv and scan stay float32);
# measured: float32 logits within 6e-6, bfloat16 within 0.094 (3 bfloat16 steps at their size, ~6.6).
_TOLERANCE = {torch.float32: {"atol": 1e-5, "rtol": 1e-5}, torch.bfloat16: {"atol": 0.15, "rtol": 0.05}}


@pytest.fixture(scope="module")
def tiny_lm() -> JambaLM:
    """The test LM: Mamba and GQA attention layers, d_inner 64 (channel-last needs a multiple of 8)."""
    lm = JambaLM(JambaConfig.from_dict(TINY_LM_CONFIG)).eval()
    randomize_parameters(lm, seed=5)
    return lm


def _prefill_and_decode(lm: JambaLM, embeds: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, list]:
    """Prefill embeds [1, L, e] in `_CHUNKS`, then decode `ids` [steps] one token at a time.
    -> (logits [len(_CHUNKS) + steps, V] of each call's last position, the final Mamba states)."""
    cache, logits, start = lm.new_cache(), [], 0
    with torch.inference_mode():
        for size in _CHUNKS:
            logits.append(lm(inputs_embeds=embeds[:, start : start + size], cache=cache)[0, -1])
            start += size
        for token in ids:
            logits.append(lm(token.view(1, 1), cache=cache)[0, -1])
    states = [t for c in cache.layers if hasattr(c, "ssm") for t in (c.conv, c.ssm)]
    return torch.stack(logits), states


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_chunked_prefill_and_decode_on_the_cuda_path_equal_the_reference_path(
    kernel_libraries, tiny_lm, monkeypatch, dtype
):
    lm = JambaLM(tiny_lm.config).to(dtype).eval()
    lm.load_state_dict(tiny_lm.state_dict())
    g = torch.Generator().manual_seed(1)
    embeds = torch.randn(1, sum(_CHUNKS), lm.config.hidden_size, generator=g).to(dtype)
    ids = torch.randint(0, lm.config.vocab_size, (_DECODE_STEPS,), generator=g)
    with monkeypatch.context() as mp:
        _reference_dispatch(mp)
        expected, expected_states = _prefill_and_decode(lm, embeds, ids)
    with monkeypatch.context() as mp:
        chosen = _cuda_dispatch(mp)
        got, states = _prefill_and_decode(lm, embeds, ids)
    # float32 chunks with GQA take the tiled attention on CUDA (SDPA would fall back to its math
    # kernel there); single rows and bfloat16 take SDPA with the lower-right mask.
    chunk_attention = AttentionPath.TILED if dtype == torch.float32 else AttentionPath.SDPA_LOWER_RIGHT
    assert set(chosen) == {
        MixerPath(Conv.CAUSAL_CONV1D, Scan.MAMBA_SSM),
        MixerPath(Conv.CAUSAL_CONV1D, Scan.MAMBA_SSM_STEP),
        AttentionPath.SDPA_LOWER_RIGHT,
        chunk_attention,
    }
    torch.testing.assert_close(got, expected, **_TOLERANCE[dtype])
    for a, b in zip(states, expected_states, strict=True):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, b, **_TOLERANCE[dtype])
