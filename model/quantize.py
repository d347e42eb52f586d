"""Weight-only quantisation of the Linear layers `model/module_kinds.py` marks (attention, dense
MLPs, MoE experts), applied while a checkpoint loads:

- "int8": torchao's `quantize_` with `Int8WeightOnlyConfig` (per-row symmetric int8, the
  activations stay in the model dtype). Runs on CPU and CUDA; on CPU there is no int8 matmul
  kernel, so each call converts the weight back (slower than float32, but a quarter of its memory).
- "nf4": bitsandbytes' `Linear4bit` with `quant_type="nf4"` (4-bit NormalFloat in blocks of 64,
  double quantisation of the block scales), computing in the model dtype. Runs on CPU and CUDA.

Both libraries are optional (`pip install -e ".[quant]"`); each is imported on first use, with
the log lines they print while importing silenced. `quantizing_hook` gives the loader
(`model.loading.load_tensors`) a callback that converts each Linear as soon as its weight is in
place, so the float copy of one layer at a time is alive, never the float model.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable
from types import ModuleType

import torch
from torch import nn

from model.errors import QuantizationError
from model.memory_usage import release_free_memory
from model.module_kinds import NO_QUANTIZATION, check_quantization, is_quantized, module_kind
from model.weights import NF4_BLOCK, NF4_CPU_ROWS

QUANT_EXTRA = 'pip install -e ".[quant]"'
# Loggers that print while the libraries import: missing optional CUDA/CPU kernels and a torch
# deprecation notice. Nothing a user can act on.
_NOISY_LOGGERS = ("torchao", "bitsandbytes", "torch.utils._pytree")


# The package each quantisation needs.
PACKAGES = {"int8": "torchao", "nf4": "bitsandbytes"}

KindOf = Callable[[str], str]
Hook = Callable[[nn.Module, str], None]


def import_backend(quantize: str) -> ModuleType:
    """The package of `quantize` ("int8": torchao, "nf4": bitsandbytes), imported quietly.
    Raises QuantizationError naming the extra to install when it is missing or broken."""
    package = PACKAGES[check_quantization(quantize)]
    if sys.modules.get(package) is not None:  # imported already (None: an import that failed)
        return sys.modules[package]
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    try:
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        return importlib.import_module(package)
    except Exception as e:  # a broken binary wheel raises anything from ImportError to OSError
        reason = "is not installed" if isinstance(e, ModuleNotFoundError) else f"failed to import ({e})"
        raise QuantizationError(f"--quantize {quantize} needs {package}, which {reason}: {QUANT_EXTRA}") from e
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def quantize_linear(linear: nn.Linear, quantize: str) -> nn.Module:
    """`linear` with its weight quantised: the same module for int8 (torchao swaps the weight in
    place), a new bitsandbytes `Linear4bit` on the same device for nf4. Bias and activations stay
    in the weight's dtype. Raises QuantizationError when the library is missing, or (nf4 on the
    CPU) for a shape bitsandbytes' CPU kernel cannot take."""
    import_backend(quantize)
    if quantize == "int8":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        # set_inductor_config=False: we never torch.compile, and it would change global settings.
        quantize_(linear, Int8WeightOnlyConfig(set_inductor_config=False))
        return linear
    import bitsandbytes as bnb

    weight = linear.weight
    out, in_ = weight.shape
    if weight.device.type == "cpu" and (in_ % NF4_BLOCK or out % NF4_CPU_ROWS):
        raise QuantizationError(
            f"nf4 on the CPU needs Linear layers of a multiple of {NF4_BLOCK} inputs and {NF4_CPU_ROWS} outputs "
            f"(bitsandbytes' CPU kernel); this model has one of {in_} inputs and {out} outputs: use int8"
        )
    layer = bnb.nn.Linear4bit(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        compute_dtype=weight.dtype,
        quant_type="nf4",
        device="meta",
    )
    layer.weight = bnb.nn.Params4bit(weight.data, requires_grad=False, quant_type="nf4")
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.data, requires_grad=False)
    return layer.to(weight.device).train(linear.training)  # bitsandbytes quantises when the parameter moves


def quantizing_hook(quantize: str, kind_of: KindOf) -> Hook | None:
    """For `load_tensors(..., on_module_loaded=)`: given the root module and the dotted name of a
    submodule whose tensors are all in place, quantise it if it is a Linear of a kind the table
    marks (`kind_of(name)`). None for "none". Raises QuantizationError when the library is
    missing (at once, before anything loads)."""
    if check_quantization(quantize) == NO_QUANTIZATION:
        return None
    import_backend(quantize)

    def hook(root: nn.Module, name: str) -> None:
        module = root.get_submodule(name)
        if type(module) is nn.Linear and is_quantized(kind_of(name), quantize):
            _replace(root, name, quantize_linear(module, quantize))
            release_free_memory()  # the float layer's pages, before the next one is read

    return hook


def quantize_model(model: nn.Module, quantize: str) -> nn.Module:
    """Quantise an already-loaded `LongLLaVA` in place (what loading with `quantize` does layer by
    layer, for a model built in memory). Returns the model."""
    hook = quantizing_hook(quantize, module_kind)
    if hook is not None:
        for name, module in list(model.named_modules()):
            if type(module) is nn.Linear:
                hook(model, name)
    return model


def _replace(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, leaf = name.rpartition(".")
    owner = root.get_submodule(parent)
    if owner._modules.get(leaf) is not module:
        owner._modules[leaf] = module


def stored_bytes(tensor: torch.Tensor) -> int:
    """Bytes a parameter or buffer holds: a quantised tensor's parts (torchao's int8 values, scales
    and zero points; bitsandbytes' 4-bit codes and block scales) summed."""
    state = getattr(tensor, "quant_state", None)
    if state is not None:  # bitsandbytes Params4bit: packed codes, then its quantisation state
        nested = getattr(state, "state2", None)
        parts = [tensor.data, state.absmax, state.code, state.offset]
        parts += [nested.absmax, nested.code] if nested is not None else []
        return sum(part.numel() * part.element_size() for part in parts if part is not None)
    inner = tensor.data if isinstance(tensor, nn.Parameter) else tensor
    flatten = getattr(inner, "__tensor_flatten__", None)
    if flatten is not None and type(inner) is not torch.Tensor:
        return sum(stored_bytes(getattr(inner, name)) for name in flatten()[0])
    return inner.numel() * inner.element_size()


def loaded_bytes_by_kind(model: nn.Module) -> dict[str, int]:
    """{module kind: bytes} of a loaded model's parameters and buffers as stored (quantised parts
    included): what `model.weights.weight_bytes_by_kind` predicts from the configs."""
    totals: dict[str, int] = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        kind = module_kind(name)
        totals[kind] = totals.get(kind, 0) + stored_bytes(tensor)
    return totals


# Where each method runs (torchao 0.18 and bitsandbytes 0.50: measured on CPU here,
# benchmarks/RESULTS.md; CUDA is both libraries' main target), shown by `longllava info`.
DEVICE_SUPPORT = {
    ("int8", "cpu"): "yes, slower than float32 (no int8 kernel: the weight is converted back for each call)",
    ("int8", "cuda"): "yes",
    ("nf4", "cpu"): f"yes, for Linear layers of a multiple of {NF4_BLOCK} inputs and {NF4_CPU_ROWS} outputs",
    ("nf4", "cuda"): "yes",
}


def quantization_support(devices: tuple[str, ...]) -> dict[str, dict[str, str | None]]:
    """For each method: its package, the installed version (None: not installed, nothing imported
    to find out) and, per device kind in `devices` ("cpu", "cuda"), whether it runs there."""
    from importlib.metadata import PackageNotFoundError, version

    support: dict[str, dict[str, str | None]] = {}
    for quantize, package in PACKAGES.items():
        try:
            installed: str | None = version(package)
        except PackageNotFoundError:
            installed = None
        row: dict[str, str | None] = {"package": package, "version": installed}
        for device in devices:
            row[device] = DEVICE_SUPPORT[quantize, device] if installed else f"not installed: {QUANT_EXTRA}"
        support[quantize] = row
    return support
