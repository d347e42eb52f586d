"""The CLI's only doors into the heavy library, with the request objects the commands build.

Commands parse options into an `AskRequest` / `ModelRequest` and call `load_model` and `ask` here;
tests replace these two functions to check the requests without a model. The library (torch,
`model`, `sampling`) is imported inside the functions so `longllava --help` never loads it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from model import LongLLaVA
    from model.api import AskResult
    from model.engine import GenerationOptions
    from sampling import SamplingOptions


@dataclass(frozen=True)
class ModelRequest:
    """Which checkpoint to load and how. device "auto": CUDA when available, else CPU;
    dtype None: the checkpoint's own."""

    path: Path
    device: str = "auto"
    dtype: str | None = None
    vision_tower: Path | None = None


@dataclass(frozen=True)
class AskRequest:
    """Questions about inputs (paths of videos, images, folders), and how to answer them."""

    inputs: tuple[str, ...]
    questions: tuple[str, ...]
    sampling: SamplingOptions
    generation: GenerationOptions
    chunk_tokens: int
    memory_budget: int | None = None  # bytes; None: the device's memory


def resolve_device(device: str) -> str:
    """ "auto" → "cuda" when a CUDA device is usable, else "cpu"; anything else as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def available_devices() -> list[str]:
    """The devices this process can run on: "cpu" and each CUDA device ("cuda:0", ...)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ["cpu", *(f"cuda:{i}" for i in range(count))]


def check_device(device: str) -> str:
    """`device` as given when it names a device this process has ("auto" always does); a usage
    error naming the devices that exist otherwise (CUDA is the only accelerator the model supports)."""
    if device == "auto":
        return device
    import torch

    from longllava_cli.clickcompat import BadParameter

    here = available_devices()
    try:
        parsed = torch.device(device.strip())
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or not device.strip():
        problem = f"{device!r} is not a device name"
    elif parsed.type == "cpu":
        return "cpu"
    elif parsed.type != "cuda":
        problem = f"{parsed.type} devices are not supported (the model runs on CPU and CUDA)"
    elif len(here) == 1:
        problem = "no CUDA device is available here"
    elif parsed.index is not None and f"cuda:{parsed.index}" not in here:
        problem = f"there is no {device}"
    else:
        return str(parsed)
    raise BadParameter(f"{problem}; devices here: auto, {', '.join(here)}", param_hint="--device")


def load_model(request: ModelRequest) -> LongLLaVA:
    from model import load_model as load

    return load(
        request.path.expanduser(),
        device=resolve_device(request.device),
        dtype=request.dtype,
        vision_tower=request.vision_tower.expanduser() if request.vision_tower else None,
    )


def ask(
    model: Any,
    request: AskRequest,
    on_text: Callable[[int, str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> AskResult:
    from model.api import RunOptions
    from model.api import ask as answer
    from model.memory import device_memory_bytes

    return answer(
        model,
        list(request.inputs),
        list(request.questions),
        sampling=request.sampling,
        generation=request.generation,
        run=RunOptions(
            chunk_tokens=request.chunk_tokens,
            memory_budget=request.memory_budget or device_memory_bytes(str(model.device)),
        ),
        on_text=on_text,
        on_progress=on_progress,
    )
