"""Writing checkpoint folders as transformers' `save_pretrained` lays them out: `config.json` and the
weights, in one `model.safetensors` or in shards listed by `model.safetensors.index.json`. The
reader is `model/loading.py`; the writers are the demo model's export (`model/training/export.py`),
the tiny test checkpoints (`model/testing.py`) and the benchmarks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from model.loading import INDEX_FILE, SINGLE_FILE

# safetensors metadata that marks PyTorch tensors, as transformers writes it.
_METADATA = {"format": "pt"}


def write_weights(directory: str | Path, tensors: Mapping[str, torch.Tensor], *, shards: int = 1) -> None:
    """Write `tensors` into `directory` (created if needed): one `model.safetensors` (shards 1), or
    `shards` files `model-0000i-of-0000n.safetensors` holding consecutive blocks of the sorted
    names, with the index that maps each name to its file."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    names = sorted(tensors)
    if shards == 1:
        save_file({k: tensors[k].contiguous() for k in names}, directory / SINGLE_FILE, metadata=_METADATA)
        return
    per_file = math.ceil(len(names) / shards)
    weight_map = {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = names[s * per_file : (s + 1) * per_file]
        save_file({k: tensors[k].contiguous() for k in part}, directory / file, metadata=_METADATA)
        weight_map |= dict.fromkeys(part, file)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")


def write_checkpoint(
    directory: str | Path, config: Mapping[str, Any], tensors: Mapping[str, torch.Tensor], *, shards: int = 1
) -> Path:
    """Write `config` as `config.json` and `tensors` as `write_weights` does into `directory`
    (created if needed); returns the directory."""
    directory = Path(directory)
    write_weights(directory, tensors, shards=shards)  # first: it checks `shards` before writing anything
    (directory / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return directory
