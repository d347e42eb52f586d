"""The CLI's only doors into the heavy library: loading a model and answering a request.

The commands build the library's request objects (`model.request.ModelSpec`, `AskRequest`,
`ChatRequest`) and call `load_model`, `ask` and `open_chat` here; tests replace these functions
to check the requests without a model. The library (torch, `model`, `sampling`) is imported inside the functions so
`longllava --help` never loads it. `check_device` turns a device this machine lacks into a usage
error before anything loads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from longllava_cli.clickcompat import BadParameter

if TYPE_CHECKING:
    from model import LongLLaVA
    from model.chat import ChatSession
    from model.request import AskRequest, ChatRequest, ModelSpec
    from model.results import AskResult


def check_device(device: str) -> str:
    """`device` as given when this process has it ("auto" always); a usage error naming the
    devices that exist otherwise."""
    from model.devices import available_devices, device_problem

    problem = device_problem(device)
    if problem is not None:
        raise BadParameter(f"{problem}; devices here: auto, {', '.join(available_devices())}", param_hint="--device")
    return "cpu" if device.strip() == "cpu" else device


def load_model(spec: ModelSpec) -> LongLLaVA:
    from model.api import load

    return load(spec)


def ask(
    model: Any,
    request: AskRequest,
    on_text: Callable[[int, str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> AskResult:
    from model.api import ask as answer

    return answer(model, request, on_text=on_text, on_progress=on_progress)


def open_chat(
    model: Any, request: ChatRequest, on_progress: Callable[[str, int, int], None] | None = None
) -> ChatSession:
    from model.chat import open_chat as start

    return start(model, request, on_progress=on_progress)
