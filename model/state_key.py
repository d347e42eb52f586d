"""The state cache's key: a digest of everything that determines the state after the shared part
of a prompt, built from plain data by pure functions (the I/O that gathers the parts lives in
`model.model_identity`, `model.content_hash` and `model.shared_state`).

The parts:
- model: the weights' identity and the arithmetic (dtype, device kind, quantisation, kernels);
- inputs: per prompt item its kind, size, grid and each picture taken as (content digest of the
  file it comes from, frame index, timestamp): the bytes, never the path or the mtime;
- sampling: the `SamplingOptions` (decoder backend included), which together with the frames
  above is the sampling plan;
- prompt: the shared part's layout, each text segment's token ids and each image slot;
- run: what changes the floating-point result, `chunk_tokens` (where chunks are cut) and
  `vision_batch_size` (how many images one vision-tower call takes);
- format: `FORMAT_VERSION`, raised whenever what a state file holds or means changes.

The digest is BLAKE3 over the parts as canonical JSON (sorted keys, no spaces).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from sampling.prompt import ImageSlot

if TYPE_CHECKING:
    from model.request import RunOptions
    from sampling import InputPlan, SamplingOptions

FORMAT_VERSION = 1
KEY_LENGTH = 64  # hex digits of a digest


def state_digest(parts: Mapping[str, Any]) -> str:
    """BLAKE3 hex digest of `parts` as canonical JSON."""
    return blake3.blake3(canonical_json(parts).encode()).hexdigest()


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def state_key_parts(
    model: Mapping[str, Any],
    plans: Sequence[InputPlan],
    digests: Mapping[Path, str],
    sampling: SamplingOptions,
    shared: Sequence[tuple[int, ...] | ImageSlot],
    run: RunOptions,
) -> dict[str, Any]:
    """The key's parts (module docstring). digests: content digest of every file the plans read."""
    return {
        "format": FORMAT_VERSION,
        "model": dict(model),
        "inputs": [describe_plan(plan, digests) for plan in plans],
        "sampling": {k: v for k, v in dataclasses.asdict(sampling).items()},
        "prompt": describe_prompt(shared),
        "run": {"chunk_tokens": run.chunk_tokens, "vision_batch_size": run.vision_batch_size},
    }


def describe_plan(plan: InputPlan, digests: Mapping[Path, str]) -> dict[str, Any]:
    return {
        "kind": plan.kind,
        "num_available": plan.num_available,
        "size": list(plan.size) if plan.size else None,
        "grid": list(plan.grid) if plan.grid else None,
        "scaled_size": list(plan.scaled_size) if plan.scaled_size else None,
        "frames": [[digests[Path(f.source)], f.index, f.timestamp] for f in plan.frames],
    }


def describe_prompt(shared: Sequence[tuple[int, ...] | ImageSlot]) -> list[Any]:
    """Text segments as their ids, image slots as [image, group, index, num_tokens]."""
    return [
        {"slot": [s.image, s.group, s.index, s.num_tokens]} if isinstance(s, ImageSlot) else {"ids": list(s)}
        for s in shared
    ]


def files_read(plans: Sequence[InputPlan]) -> list[Path]:
    """Every file the plans take pictures from, each once, in order."""
    return list(dict.fromkeys(Path(f.source) for plan in plans for f in plan.frames))
