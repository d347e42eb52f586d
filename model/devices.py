"""The devices a model can run on here: "cpu" and each CUDA device (the only accelerator the model
code supports), and what "auto" means (CUDA when available, else the CPU)."""

from __future__ import annotations

import torch


def resolve_device(device: str) -> str:
    """ "auto" → "cuda" when a CUDA device is usable, else "cpu"; anything else as given."""
    if device != "auto":
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def available_devices() -> list[str]:
    """The devices this process can run on: "cpu" and each CUDA device ("cuda:0", ...)."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{i}" for i in range(count))]


def device_problem(device: str) -> str | None:
    """None when `device` names a device this process has ("auto" always does); else what is
    wrong with it, in a few words."""
    if device == "auto":
        return None
    try:
        parsed = torch.device(device.strip())
    except (RuntimeError, ValueError):
        return f"{device!r} is not a device name"
    if not device.strip():
        return f"{device!r} is not a device name"
    if parsed.type == "cpu":
        return None
    if parsed.type != "cuda":
        return f"{parsed.type} devices are not supported (the model runs on CPU and CUDA)"
    here = available_devices()
    if len(here) == 1:
        return "no CUDA device is available here"
    if parsed.index is not None and f"cuda:{parsed.index}" not in here:
        return f"there is no {device}"
    return None
