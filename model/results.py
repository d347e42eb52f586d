"""What `ask` returns: the answers and what produced them, as plain frozen data (JSON-ready through
`AskResult.to_dict()`; the CLI's `ask --json` prints exactly that)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sampling import InputPlan


@dataclass(frozen=True)
class FrameInfo:
    kind: str  # "image", "frame" or "tile"
    index: int | None
    timestamp: float | None
    tile: tuple[int, int] | None


@dataclass(frozen=True)
class InputInfo:
    """One prompt item: what was sampled from it and what it cost in LM positions. notices: the
    plan's one-line notes (no path) on what it left out or changed (`sampling.InputPlan.notices`)."""

    path: str
    kind: str
    num_available: int
    num_tokens: int
    frames: tuple[FrameInfo, ...]
    grid: tuple[int, int] | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    num_tokens: int
    finish_reason: str  # "eos", "stop" or "length"


@dataclass(frozen=True)
class AskResult:
    """Answers with what produced them. num_prompt_tokens: positions prefilled for the first
    question (shared part + its own); timings in seconds: decode (frame decoding, overlapped with
    the rest), vision, prefill, generate, cache (the state cache's keying, loading or saving),
    total; peak_memory_bytes: the process's peak RSS (CPU)
    or peak allocated GPU memory (CUDA)."""

    model: str
    answers: tuple[Answer, ...]
    inputs: tuple[InputInfo, ...]
    num_prompt_tokens: int
    num_visual_tokens: int
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_bytes: int = 0
    cache: str = "off"  # the state cache: "hit" (the shared state was loaded), "miss" (computed, saved), "off"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def describe_inputs(
    plans: Sequence[InputPlan], frames: Sequence[FrameInfo], tokens_per_group: Sequence[int]
) -> tuple[InputInfo, ...]:
    """One InputInfo per plan: its frames (the next `plan.num_images` of `frames`) and positions."""
    infos, position = [], 0
    for plan, num_tokens in zip(plans, tokens_per_group, strict=True):
        own = frames[position : position + plan.num_images]
        position += plan.num_images
        infos.append(
            InputInfo(
                path=str(plan.source),
                kind=plan.kind,
                num_available=plan.num_available,
                num_tokens=num_tokens,
                frames=tuple(own),
                grid=plan.grid,
                skipped=tuple((str(s.path), s.reason) for s in plan.skipped),
                notices=plan.notices,
            )
        )
    return tuple(infos)
