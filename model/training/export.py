"""The trained demo model as a LongLLaVA checkpoint folder that `model.load_model` reads: config.json
in LongLLaVA's spelling, the LM's tensors under AI21 names (`model.naming.to_ai21`, the loader's
rename inverted), the CLIP tower and the projector under LongLLaVA's prefixes, and the tokenizer files.
"""

from __future__ import annotations

from pathlib import Path

import torch

from model.longllava import PROJECTOR_PREFIX, LongLLaVA
from model.naming import dense_layers, to_ai21
from model.saving import write_checkpoint
from model.tower_keys import CHECKPOINT_PREFIX as TOWER_PREFIX
from model.training.architecture import checkpoint_config
from model.training.tokenizer import TOKENIZER_FILES


def checkpoint_tensors(model: LongLLaVA) -> dict[str, torch.Tensor]:
    """The model's tensors under LongLLaVA's checkpoint names, detached copies."""
    dense = dense_layers(model.config.lm)
    tensors = {to_ai21(name, dense): value for name, value in model.lm.state_dict().items()}
    tensors |= {TOWER_PREFIX + name: value for name, value in model.vision.state_dict().items()}
    tensors |= {PROJECTOR_PREFIX + name: value for name, value in model.projector.state_dict().items()}
    return {k: v.detach().contiguous().clone() for k, v in tensors.items()}


def export(model: LongLLaVA, tokenizer_dir: Path, out: Path, layout: str = "hybrid") -> Path:
    """Write config.json, model.safetensors and the tokenizer files into `out`; returns `out`."""
    config = checkpoint_config(layout) | {
        "demo_model": "trained on synthetic images and videos by examples/train_demo_model.py"
    }
    write_checkpoint(out, config, checkpoint_tensors(model))
    for file in TOKENIZER_FILES:
        (out / file).write_bytes((tokenizer_dir / file).read_bytes())
    return out
