"""Which implementation each layer runs (model/dispatch.py): every path pinned as a pure decision
(CUDA ones too, without a GPU), and the layers' use of the decision."""

from __future__ import annotations

import pytest
import torch

import model.attention as attn_mod
import model.mamba as mamba_mod
from model.attention import attention_path
from model.cache import AttentionCache, MambaCache
from model.config import JambaConfig
from model.cpu_kernels import ATTENTION_ROWS, MAX_ATTENTION_KEYS, MAX_D_CONV, MAX_D_STATE, MAX_HEAD_DIM
from model.dispatch import (
    AttentionPath,
    Conv,
    MixerPath,
    Scan,
    choose_attention_path,
    choose_mixer_path,
    flash_cpu_available,
    inference_paths,
)
from model.mamba import MambaMixer

COMPILED = MixerPath(Conv.COMPILED, Scan.COMPILED_FUSED)
PYTORCH = MixerPath(Conv.PYTORCH, Scan.BLOCKED)


def _mixer_path(device="cpu", **overrides) -> MixerPath:
    """CPU inference of a 2048-token chunk with the compiled kernels built, unless overridden."""
    arguments = {
        "tokens": 2048, "d_state": 16, "d_conv": 4, "training": False, "forced_scan": False,
        "cuda_kernels": False, "cpu_kernels": True,
    } | overrides  # fmt: skip
    return choose_mixer_path(device, **arguments)


def _attention_path(device="cpu", dtype=torch.float32, **overrides) -> AttentionPath:
    """A float32 prefill chunk of 64 queries (32 heads over 8 KV heads: 256 rows per KV head) after
    64 cached keys, head_dim 128, kernels built and the flash op present, unless overridden."""
    arguments = {
        "queries": 64, "keys": 128, "heads": 32, "kv_heads": 8, "head_dim": 128, "training": False,
        "cpu_kernels": True, "flash_cpu": True,
    } | overrides  # fmt: skip
    return choose_attention_path(device, dtype, **arguments)


# --- the Mamba mixer --------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", [1, 7, 2048])
def test_cpu_inference_takes_the_compiled_kernels_where_they_built(tokens):
    """Prefill chunks and decode steps alike; without the kernels the PyTorch conv and blocked scan."""
    assert _mixer_path(tokens=tokens) == COMPILED
    assert _mixer_path(tokens=tokens, cpu_kernels=False) == PYTORCH


def test_cpu_kernels_take_d_state_and_d_conv_up_to_their_limits():
    assert _mixer_path(d_state=MAX_D_STATE, d_conv=MAX_D_CONV) == COMPILED
    assert _mixer_path(d_state=MAX_D_STATE + 1) == PYTORCH
    assert _mixer_path(d_conv=MAX_D_CONV + 1) == PYTORCH
    assert _mixer_path(d_state=MAX_D_STATE + 1, training=True) == MixerPath(Conv.PYTORCH, Scan.DIFFERENTIABLE)


def test_training_takes_a_differentiable_scan_and_the_pytorch_conv_on_cpu():
    assert _mixer_path(training=True) == MixerPath(Conv.PYTORCH, Scan.COMPILED_DIFFERENTIABLE)
    assert _mixer_path(training=True, cpu_kernels=False) == MixerPath(Conv.PYTORCH, Scan.DIFFERENTIABLE)


def test_a_forced_scan_wins_over_every_automatic_choice():
    forced = MixerPath(Conv.PYTORCH, Scan.FORCED)
    assert _mixer_path(forced_scan=True) == forced
    assert _mixer_path(forced_scan=True, training=True) == forced
    assert _mixer_path("cuda", forced_scan=True, cuda_kernels=True) == MixerPath(Conv.CAUSAL_CONV1D, Scan.FORCED)


def test_cuda_takes_mamba_ssm_and_its_step_kernel_for_one_token():
    """Decided from "cuda" and the availability flags alone: no GPU needed."""
    assert _mixer_path("cuda", cuda_kernels=True) == MixerPath(Conv.CAUSAL_CONV1D, Scan.MAMBA_SSM)
    assert _mixer_path("cuda", cuda_kernels=True, tokens=1) == MixerPath(Conv.CAUSAL_CONV1D, Scan.MAMBA_SSM_STEP)
    assert _mixer_path("cuda", cuda_kernels=True, training=True) == MixerPath(Conv.CAUSAL_CONV1D, Scan.DIFFERENTIABLE)
    # without mamba-ssm / causal-conv1d: the PyTorch code (never the CPU kernels, even if built)
    assert _mixer_path("cuda", cuda_kernels=False) == PYTORCH
    assert _mixer_path("cuda", cuda_kernels=False, training=True) == MixerPath(Conv.PYTORCH, Scan.DIFFERENTIABLE)
    # the CUDA kernels serve CUDA devices only
    assert _mixer_path("cpu", cuda_kernels=True) == COMPILED
    assert _mixer_path("mps", cuda_kernels=True) == PYTORCH


def test_mixer_path_names():
    assert str(COMPILED) == "compiled conv + compiled-fused scan"
    assert str(MixerPath(Conv.CAUSAL_CONV1D, Scan.MAMBA_SSM_STEP)) == "causal-conv1d conv + mamba-ssm-step scan"


def _tiny_mixer() -> MambaMixer:
    config = JambaConfig(
        vocab_size=16, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        mamba_d_state=4,
    )  # fmt: skip
    torch.manual_seed(0)
    return MambaMixer(config)


def test_the_mixer_passes_its_shapes_grad_mode_and_forced_scan(monkeypatch):
    """`MambaMixer.choose_path` on CPU with the kernels reported built: any dtype, no_grad →
    compiled; grad mode with trainable parameters, even only some of them → training; set_scan →
    forced."""
    monkeypatch.setattr(mamba_mod, "kernels_available", lambda: True)
    mixer = _tiny_mixer()
    h = torch.zeros(1, 5, 16)
    with torch.no_grad():
        assert mixer.choose_path(h) == mixer.choose_path(h.bfloat16()) == COMPILED
    assert mixer.choose_path(h).scan is Scan.COMPILED_DIFFERENTIABLE
    mixer.in_proj.requires_grad_(False)  # the other parameters still train
    assert mixer.choose_path(h).scan is Scan.COMPILED_DIFFERENTIABLE
    mixer.requires_grad_(False)  # frozen, as load_model returns it
    assert mixer.choose_path(h) == COMPILED
    assert mixer.choose_path(h.clone().requires_grad_()).scan is Scan.COMPILED_DIFFERENTIABLE
    mixer.scan_impl = mamba_mod.scan_blocked
    assert mixer.choose_path(h) == MixerPath(Conv.PYTORCH, Scan.FORCED)
    monkeypatch.setattr(mamba_mod, "kernels_available", lambda: False)
    mixer.scan_impl = None
    with torch.no_grad():
        assert mixer.choose_path(h) == PYTORCH


def test_the_mixer_runs_the_functions_of_its_path(monkeypatch):
    """Each path's conv and scan are the ones called (recorded, then run for real)."""
    mixer = _tiny_mixer()
    calls = []

    def recorded(name, function):
        return lambda *args: calls.append(name) or function(*args)

    monkeypatch.setattr(mamba_mod, "causal_conv", recorded("pytorch conv", mamba_mod.causal_conv))
    monkeypatch.setattr(mamba_mod, "scan_blocked", recorded("blocked", mamba_mod.scan_blocked))
    monkeypatch.setattr(mamba_mod, "scan_differentiable", recorded("differentiable", mamba_mod.scan_differentiable))
    monkeypatch.setattr(mamba_mod, "kernels_available", lambda: False)
    cache = MambaCache(torch.zeros(1, 3, 32), torch.zeros(1, 32, 4))
    with torch.no_grad():
        mixer(torch.randn(1, 5, 16), cache)
    mixer(torch.randn(1, 5, 16), cache)
    assert calls == ["pytorch conv", "blocked", "pytorch conv", "differentiable"]


# --- attention --------------------------------------------------------------------------------


def test_cpu_float32_prefill_takes_the_compiled_kernel_and_falls_back_to_flash_then_tiled():
    assert _attention_path() is AttentionPath.COMPILED
    assert _attention_path(cpu_kernels=False) is AttentionPath.FLASH_CPU
    assert _attention_path(cpu_kernels=False, flash_cpu=False) is AttentionPath.TILED


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_bfloat16_and_float16_take_the_flash_pair(dtype):
    assert _attention_path(dtype=dtype) is AttentionPath.FLASH_CPU
    assert _attention_path(dtype=dtype, flash_cpu=False) is AttentionPath.TILED


def test_decode_steps_are_fewer_rows_than_the_compiled_kernels_block():
    """heads · queries / kv_heads query rows per KV head: the compiled kernel needs a full block."""
    assert _attention_path(queries=1, keys=129) is AttentionPath.FLASH_CPU  # 4 rows
    rows_needed = ATTENTION_ROWS // 4  # queries that fill one block at g = 32 / 8
    assert _attention_path(queries=rows_needed) is AttentionPath.COMPILED
    assert _attention_path(queries=rows_needed - 1) is AttentionPath.FLASH_CPU
    assert _attention_path(queries=ATTENTION_ROWS, heads=8, kv_heads=8) is AttentionPath.COMPILED


@pytest.mark.parametrize(
    ("head_dim", "compiled"), [(8, True), (12, False), (MAX_HEAD_DIM, True), (MAX_HEAD_DIM + 8, False)]
)
def test_compiled_attention_head_dim_limits(head_dim, compiled):
    expected = AttentionPath.COMPILED if compiled else AttentionPath.FLASH_CPU
    assert _attention_path(head_dim=head_dim) is expected


def test_compiled_attention_stops_at_2_to_the_24_keys():
    """Key positions are compared as float32 in the kernel's causal mask, exact up to 2^24."""
    assert MAX_ATTENTION_KEYS == 1 << 24
    assert _attention_path(keys=MAX_ATTENTION_KEYS) is AttentionPath.COMPILED
    assert _attention_path(keys=MAX_ATTENTION_KEYS + 1) is AttentionPath.FLASH_CPU
    assert _attention_path(keys=40, max_keys=39) is AttentionPath.FLASH_CPU


def test_cuda_takes_sdpa_lower_right_where_a_fused_kernel_serves_it():
    """Half precision reaches flash (GQA included), float32 without GQA the memory-efficient
    kernel; a float32 chunk with GQA would reach SDPA's math kernel and all its [h, l, s] scores,
    so it takes the tiled attention; a decode step's scores are small either way."""
    sdpa, tiled = AttentionPath.SDPA_LOWER_RIGHT, AttentionPath.TILED
    for dtype in (torch.float16, torch.bfloat16):
        for queries in (1, 64):
            assert _attention_path("cuda", dtype, queries=queries, keys=200) is sdpa
    assert _attention_path("cuda", torch.bfloat16, head_dim=512) is tiled  # beyond flash's head sizes
    assert _attention_path("cuda", torch.float32, queries=1, keys=200) is sdpa
    assert _attention_path("cuda", torch.float32, queries=64, keys=200) is tiled  # 32 heads over 8
    assert _attention_path("cuda", torch.float32, queries=64, keys=200, kv_heads=32) is sdpa
    assert _attention_path("mps") is AttentionPath.TILED  # other devices: the tiled PyTorch attention


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_training_takes_the_differentiable_twins(device):
    assert _attention_path(device, training=True, queries=64, keys=64) is AttentionPath.SDPA_CAUSAL
    assert _attention_path(device, training=True, queries=64, keys=100) is AttentionPath.REFERENCE


def test_the_attention_layer_decides_from_its_tensors_and_grad_mode(monkeypatch):
    """`attention_path` with real tensors, and `Attention` running the path chosen."""
    monkeypatch.setattr(attn_mod, "kernels_available", lambda: True)
    q, k = torch.zeros(1, 4, 16, 8), torch.zeros(1, 2, 20, 8)
    assert attention_path(q, k) is AttentionPath.COMPILED  # 2 · 16 = 32 rows per KV head
    assert attention_path(q[:, :, :1], k) is AttentionPath.FLASH_CPU
    assert attention_path(q, k, training=True) is AttentionPath.REFERENCE
    assert attention_path(q.bfloat16(), k.bfloat16(), device="cuda") is AttentionPath.SDPA_LOWER_RIGHT
    assert attention_path(q, k, device="cuda") is AttentionPath.TILED  # float32 with GQA
    used = []
    monkeypatch.setattr(attn_mod, "attend", lambda path, q, k, v: used.append(path) or q)
    config = JambaConfig(vocab_size=16, hidden_size=32, intermediate_size=8, num_hidden_layers=1, num_attention_heads=4)
    layer = attn_mod.Attention(config)
    cache = AttentionCache(torch.empty(1, 4, 0, 8), torch.empty(1, 4, 0, 8))
    layer(torch.randn(1, 3, 32), cache)  # trainable weights, grad mode on, nothing cached
    layer(torch.randn(1, 3, 32), cache)  # after 3 cached keys
    with torch.no_grad():
        layer(torch.randn(1, 1, 32), cache)
    decode = AttentionPath.FLASH_CPU if flash_cpu_available() else AttentionPath.TILED
    assert used == [AttentionPath.SDPA_CAUSAL, AttentionPath.REFERENCE, decode]


# --- what `longllava info` reports ------------------------------------------------------------


def test_inference_paths_on_each_device():
    cpu = inference_paths("cpu", cuda_kernels=False, cpu_kernels=True, flash_cpu=True)
    assert cpu == {
        "mamba": {
            "prefill": {"conv": "compiled", "scan": "compiled-fused"},
            "decode": {"conv": "compiled", "scan": "compiled-fused"},
        },
        "attention": {"prefill_float32": "compiled", "prefill_bfloat16": "flash-cpu", "decode": "flash-cpu"},
    }
    bare = inference_paths("cpu", cuda_kernels=False, cpu_kernels=False, flash_cpu=False)
    assert bare["mamba"]["prefill"] == {"conv": "pytorch", "scan": "blocked"}
    assert set(bare["attention"].values()) == {"tiled"}
    cuda = inference_paths("cuda", cuda_kernels=True, cpu_kernels=False, flash_cpu=False)
    assert cuda["mamba"] == {
        "prefill": {"conv": "causal-conv1d", "scan": "mamba-ssm"},
        "decode": {"conv": "causal-conv1d", "scan": "mamba-ssm-step"},
    }
    assert cuda["attention"] == {
        "prefill_float32": "tiled", "prefill_bfloat16": "sdpa-lower-right", "decode": "sdpa-lower-right"
    }
