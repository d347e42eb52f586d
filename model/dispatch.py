"""Which implementation each layer runs: one decision per layer kind, in one place.

    layer      chooser                  paths (the functions each runs)
    Mamba      `choose_mixer_path`      conv: causal-conv1d (CUDA) | compiled (CPU) | PyTorch;
                                        scan: mamba-ssm chunk or step (CUDA) | compiled fused
                                        (CPU) | blocked | differentiable [compiled] | forced
    attention  `choose_attention_path`  SDPA lower-right | tiled (CUDA) | compiled | flash pair |
                                        tiled (CPU) | SDPA causal or reference (training)

The choosers are pure functions of what decides: the device type, the dtype, the shapes, whether
autograd records a graph (training), a scan forced by `JambaLM.set_scan`, and which optional
kernels this process has. Those facts are probed here too (`mamba_kernels_available`,
`flash_cpu_available`; `model.cpu_kernels.kernels_available` for the compiled CPU kernels, which
`LONGLLAVA_CPU_KERNELS=0` turns off), and the layers pass them in, so tests pin every path
without building a model or owning a GPU. `inference_paths` says what a LongLLaVA-9B-shaped
model runs on a device, for `longllava info`.
"""

from __future__ import annotations

import functools
from enum import Enum
from typing import NamedTuple

import torch

from model.cpu_kernels import (
    ATTENTION_ROWS,
    MAX_ATTENTION_KEYS,
    MAX_D_CONV,
    MAX_D_STATE,
    MAX_HEAD_DIM,
    kernels_available,
)

# PyTorch's CPU flash-attention kernel, which returns the log-sum-exp of each query row; private
# (the public SDPA returns no LSE), so looked up once and optional.
FLASH_CPU_OP = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)


def flash_cpu_available() -> bool:
    """This torch has its private CPU flash-attention op (`model.attention.causal_attention_flash_cpu`)."""
    return FLASH_CPU_OP is not None


@functools.lru_cache(maxsize=1)
def _cuda_kernel_packages_importable() -> bool:
    try:
        import causal_conv1d  # noqa: F401
        import mamba_ssm  # noqa: F401
    except ImportError:
        return False
    return True


def mamba_kernels_available(device: torch.device) -> bool:
    """True where mamba-ssm's and causal-conv1d's CUDA kernels can run on `device`."""
    return device.type == "cuda" and _cuda_kernel_packages_importable()


class Conv(str, Enum):
    """The Mamba mixer's depthwise causal conv + SiLU."""

    CAUSAL_CONV1D = "causal-conv1d"  # causal-conv1d's CUDA kernel: model.mamba.causal_conv_cuda
    COMPILED = "compiled"  # model.cpu_kernels.causal_conv_compiled
    PYTORCH = "pytorch"  # model.mamba.causal_conv


class Scan(str, Enum):
    """The Mamba mixer's selective scan (model.scan, model.cpu_kernels)."""

    MAMBA_SSM = "mamba-ssm"  # scan_cuda: mamba-ssm's selective_scan_fn for a chunk
    MAMBA_SSM_STEP = "mamba-ssm-step"  # step_cuda: its selective_state_update for one token
    COMPILED_FUSED = "compiled-fused"  # mamba_inner_compiled: softplus, scan, D skip and gate in one pass
    BLOCKED = "blocked"  # scan_blocked
    DIFFERENTIABLE = "differentiable"  # scan_differentiable (training)
    COMPILED_DIFFERENTIABLE = "compiled-differentiable"  # scan_differentiable_compiled (training)
    FORCED = "forced"  # the scan given to JambaLM.set_scan


class MixerPath(NamedTuple):
    conv: Conv
    scan: Scan

    def __str__(self) -> str:
        return f"{self.conv.value} conv + {self.scan.value} scan"


class AttentionPath(str, Enum):
    """The attention layer's implementation (model.attention)."""

    SDPA_LOWER_RIGHT = "sdpa-lower-right"  # causal_attention_cuda: SDPA's flash kernels on CUDA
    COMPILED = "compiled"  # causal_attention_compiled: the compiled CPU kernel
    FLASH_CPU = "flash-cpu"  # causal_attention_flash_cpu: PyTorch's CPU flash kernel, twice, merged
    TILED = "tiled"  # causal_attention: tiled online softmax in PyTorch
    SDPA_CAUSAL = "sdpa-causal"  # training without cached keys: SDPA with top-left is_causal
    REFERENCE = "reference"  # training after cached keys: attention_reference


def choose_mixer_path(
    device: str,
    *,
    tokens: int,
    d_state: int,
    d_conv: int,
    training: bool,
    forced_scan: bool,
    cuda_kernels: bool,
    cpu_kernels: bool,
) -> MixerPath:
    """The conv and scan a Mamba mixer runs for `tokens` new tokens on a `device` type ("cpu",
    "cuda", ...). The dtype does not matter: both run in float32 whatever the model dtype.

    training: autograd records a graph through the mixer (only the differentiable scans have a
    backward; the compiled conv and fused scan do not). forced_scan: `JambaLM.set_scan` set one
    (it replaces the scan, never the conv). cuda_kernels: mamba-ssm and causal-conv1d are usable
    on this device (`mamba_kernels_available`); cpu_kernels: the compiled CPU kernels built.
    """
    cuda = device == "cuda" and cuda_kernels
    compiled = device == "cpu" and cpu_kernels and d_state <= MAX_D_STATE and d_conv <= MAX_D_CONV
    if cuda:
        conv = Conv.CAUSAL_CONV1D
    elif compiled and not training and not forced_scan:
        return MixerPath(Conv.COMPILED, Scan.COMPILED_FUSED)
    else:
        conv = Conv.PYTORCH
    if forced_scan:
        scan = Scan.FORCED
    elif training:
        scan = Scan.COMPILED_DIFFERENTIABLE if compiled else Scan.DIFFERENTIABLE
    elif cuda:
        scan = Scan.MAMBA_SSM_STEP if tokens == 1 else Scan.MAMBA_SSM
    else:
        scan = Scan.BLOCKED
    return MixerPath(conv, scan)


def choose_attention_path(
    device: str,
    dtype: torch.dtype,
    *,
    queries: int,
    keys: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    training: bool,
    cpu_kernels: bool,
    flash_cpu: bool,
    max_keys: int = MAX_ATTENTION_KEYS,
) -> AttentionPath:
    """The attention of `queries` new queries over `keys` keys (cached + new) on a `device` type.

    dtype: of q, k and v. training: autograd records a graph (the tiled and compiled paths have
    no backward). cpu_kernels: the compiled CPU kernels built; flash_cpu: `flash_cpu_available`.
    The compiled kernel takes float32, a head_dim that is a multiple of 8 up to MAX_HEAD_DIM, at
    most `max_keys` keys (positions are exact in float32 up to 2^24), and at least one full
    block of ATTENTION_ROWS query rows after GQA folding (decode steps stay with the flash pair).
    """
    if training:
        return AttentionPath.SDPA_CAUSAL if keys == queries else AttentionPath.REFERENCE
    if device == "cuda":
        # SDPA's lower-right bias reaches a fused kernel only in half precision (flash, head_dim up
        # to 256) or without GQA (memory-efficient, which refuses grouped heads); otherwise it falls
        # back to the math kernel, which materialises all [b, h, l, s] scores: 40 GB for a 2048-row
        # chunk after 150K keys at LongLLaVA-9B's 32 heads (pytorch/pytorch:torch/nn/attention/bias.py,
        # aten/src/ATen/native/transformers/cuda/sdp_utils.cpp). A decode step's scores are small; a
        # chunk then takes the tiled attention, bounded by its score tiles.
        fused = (dtype in (torch.float16, torch.bfloat16) and head_dim <= 256) or heads == kv_heads
        return AttentionPath.SDPA_LOWER_RIGHT if fused or queries == 1 else AttentionPath.TILED
    if device != "cpu":
        return AttentionPath.TILED
    compiled_fits = (
        dtype == torch.float32
        and head_dim % 8 == 0
        and head_dim <= MAX_HEAD_DIM
        and heads * queries // kv_heads >= ATTENTION_ROWS
        and keys <= max_keys
    )
    if compiled_fits and cpu_kernels:
        return AttentionPath.COMPILED
    return AttentionPath.FLASH_CPU if flash_cpu else AttentionPath.TILED


# The shapes `inference_paths` reports for: LongLLaVA-9B's layers (Jamba's d_state and d_conv,
# 32 query heads of 128 over 8 KV heads) and the CLI's default prefill chunk.
_REPORT_SHAPES = {"d_state": 16, "d_conv": 4, "heads": 32, "kv_heads": 8, "head_dim": 128, "chunk": 2048}


def inference_paths(device: str, *, cuda_kernels: bool, cpu_kernels: bool, flash_cpu: bool) -> dict[str, dict]:
    """What a LongLLaVA-9B-shaped model runs for inference on a `device` type (no training, no
    forced scan): the mixer for a prefill chunk and a decode step; the attention for a chunk after
    as many cached tokens, in float32 and in bfloat16, and for a decode step.
    -> {"mamba": {"prefill": {"conv", "scan"}, "decode": ...}, "attention": {"prefill_float32",
    "prefill_bfloat16", "decode"}}, every leaf a path's name."""
    shapes = _REPORT_SHAPES
    chunk = shapes["chunk"]

    def mixer(tokens: int) -> dict[str, str]:
        path = choose_mixer_path(
            device, tokens=tokens, d_state=shapes["d_state"], d_conv=shapes["d_conv"], training=False,
            forced_scan=False, cuda_kernels=cuda_kernels, cpu_kernels=cpu_kernels,
        )  # fmt: skip
        return {"conv": path.conv.value, "scan": path.scan.value}

    def attention(dtype: torch.dtype, queries: int) -> str:
        return choose_attention_path(
            device, dtype, queries=queries, keys=2 * chunk, heads=shapes["heads"], kv_heads=shapes["kv_heads"],
            head_dim=shapes["head_dim"], training=False, cpu_kernels=cpu_kernels, flash_cpu=flash_cpu,
        ).value  # fmt: skip

    return {
        "mamba": {"prefill": mixer(chunk), "decode": mixer(1)},
        "attention": {
            "prefill_float32": attention(torch.float32, chunk),
            "prefill_bfloat16": attention(torch.bfloat16, chunk),
            "decode": attention(torch.float32, 1),
        },
    }


def inference_paths_here() -> dict[str, dict]:
    """`inference_paths` on this process's devices: "cpu" always, "cuda" when a CUDA device is
    usable, with the kernels this process has (the CPU ones are built here if they were not)."""
    paths = {
        "cpu": inference_paths(
            "cpu", cuda_kernels=False, cpu_kernels=kernels_available(), flash_cpu=flash_cpu_available()
        )
    }
    if torch.cuda.is_available():
        cuda_kernels = mamba_kernels_available(torch.device("cuda"))
        paths["cuda"] = inference_paths("cuda", cuda_kernels=cuda_kernels, cpu_kernels=False, flash_cpu=False)
    return paths
