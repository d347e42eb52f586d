"""What a checkpoint is, from its config.json and safetensors headers alone (no weights read):
for `info`, `estimate` and `frames --model`.

Layer pattern: one letter per LM layer, M for Mamba and A for attention (LongLLaVA-9B:
"MMMMAMMM" × 4). Parameters: summed over the tensor shapes in the safetensors headers.
Tokens per image: CLIP patches after `resamplePooling` (144 for LongLLaVA-9B). KV bytes per
token: what each prompt position costs in the attention layers' cache at the chosen dtype.
The configs are what `model.load_model` would build (`model.read_model_config`), CLIP included.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.config import CLIPVisionConfig, JambaConfig, LongLLaVAConfig
from model.errors import CheckpointError
from model.memory import (
    DTYPE_BYTES,
    MARKUP_TOKENS_PER_FRAME,
    PROMPT_TEXT_TOKENS,
    estimate_memory,
    max_tokens_that_fit,
    recommend_chunk_tokens,
    tokens_for_frames,
)

_PREFIXES = {"k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgtKMGT]?)(i?[bB])?\s*$")
_HEADER_LIMIT = 100 * 2**20  # a safetensors header over 100 MB is corruption, not metadata


@dataclass(frozen=True)
class CheckpointSummary:
    path: Path
    lm: JambaConfig
    mm: LongLLaVAConfig | None
    vision: CLIPVisionConfig | None
    dtype: str
    num_parameters: int

    @property
    def layer_pattern(self) -> str:
        return "".join("A" if kind == "attention" else "M" for kind in self.lm.layer_types)

    @property
    def tokens_per_image(self) -> int | None:
        if self.vision is None or self.mm is None:
            return None
        from model.projector import num_pooled_tokens

        num_tokens = self.vision.num_patches + (self.mm.mm_vision_select_feature == "cls_patch")
        return num_pooled_tokens(num_tokens, self.mm.pooling)

    def kv_bytes_per_token(self, dtype: str | None = None) -> int:
        return self.lm.kv_elements_per_token * DTYPE_BYTES[dtype or self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model_type": self.lm.model_type if self.mm is None else self.mm.model_type,
            "multimodal": self.vision is not None,
            "dtype": self.dtype,
            "num_parameters": self.num_parameters,
            "num_layers": self.lm.num_hidden_layers,
            "layer_pattern": self.layer_pattern,
            "num_attention_layers": self.layer_pattern.count("A"),
            "num_experts": self.lm.num_experts,
            "hidden_size": self.lm.hidden_size,
            "vocab_size": self.lm.vocab_size,
            "image_size": self.vision.image_size if self.vision else None,
            "tokens_per_image": self.tokens_per_image,
            "kv_bytes_per_token": self.kv_bytes_per_token(),
            "max_context_tokens": self.mm.tokenizer_model_max_length if self.mm else None,
        }


def summarize_checkpoint(path: Path, *, vision_tower: Path | None = None) -> CheckpointSummary:
    """Read config.json and the safetensors headers of a checkpoint directory (no weights).
    Raises CheckpointError as `model.load_model` would for a missing or malformed checkpoint."""
    from model.loading import open_checkpoint
    from model.longllava import read_model_config

    checkpoint = open_checkpoint(path)
    config = read_model_config(checkpoint.path, vision_tower=vision_tower)
    dtype = checkpoint.config.get("torch_dtype") or checkpoint.config.get("dtype")
    dtype = dtype if dtype in DTYPE_BYTES else "float32"
    num_parameters = sum(count_parameters(checkpoint.path / name) for name in checkpoint.files())
    return CheckpointSummary(checkpoint.path, config.lm, config.mm, config.vision, dtype, num_parameters)


def count_parameters(file: Path) -> int:
    """Elements of every tensor in a safetensors file, from its JSON header alone."""
    try:
        with open(file, "rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > _HEADER_LIMIT or length > os.fstat(f.fileno()).st_size:
                raise ValueError(f"header length {length} is impossible")
            header = json.loads(f.read(length))
    except (OSError, struct.error, ValueError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{file}: not a readable safetensors file ({e}); re-download it") from e
    return sum(math.prod(v["shape"]) for k, v in header.items() if k != "__metadata__" and isinstance(v, dict))


def parse_size(text: str) -> int:
    """ "24GB", "24GiB", "80G", "512MB", "1000000000B", "24" (GiB) → bytes. K/M/G/T are binary
    (2^10, ...) with or without B / iB: GPU memory is sold and reported in binary units."""
    match = _SIZE.match(text)
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"cannot read {text!r} as a memory size; write e.g. 24GB, 80GiB or 512MB")
    number, prefix, byte = float(match[1]), match[2].lower(), match[3]
    scale = _PREFIXES[prefix] if prefix else (1 if byte else _PREFIXES["g"])
    return int(number * scale)


def estimate_request(
    summary: CheckpointSummary,
    *,
    num_frames: int,
    budget: int,
    dtype: str,
    chunk_tokens: int,
    max_new_tokens: int,
    device: str,
) -> dict[str, Any]:
    """Memory of a request with `num_frames` video frames, whether it fits `budget` bytes, the most
    frames that fit, and the chunk size to use (model.memory's estimate)."""
    tokens_per_image = summary.tokens_per_image or 0
    num_tokens = tokens_for_frames(num_frames, tokens_per_image) + max_new_tokens
    common: dict[str, Any] = dict(
        dtype=dtype, mm_hidden_size=summary.mm.mm_hidden_size if summary.mm else None, device=device
    )
    estimate = estimate_memory(summary.lm, summary.vision, num_tokens=num_tokens, chunk_tokens=chunk_tokens, **common)
    max_tokens = max_tokens_that_fit(budget, summary.lm, summary.vision, chunk_tokens=chunk_tokens, **common)
    per_frame = tokens_per_image + MARKUP_TOKENS_PER_FRAME
    spare = max_tokens - PROMPT_TEXT_TOKENS - max_new_tokens
    max_frames = max(0, spare // per_frame) if tokens_per_image else None
    chunk = recommend_chunk_tokens(budget, summary.lm, summary.vision, num_tokens=num_tokens, **common)
    return {
        "model": str(summary.path),
        "device": device,
        "dtype": dtype,
        "num_frames": num_frames,
        "tokens_per_image": tokens_per_image,
        "num_tokens": num_tokens,
        "budget_bytes": budget,
        "memory_bytes": estimate.as_dict(),
        "fits": estimate.total <= budget,
        "max_frames": max_frames,
        "max_tokens": max_tokens,
        "chunk_tokens": chunk_tokens,
        "recommended_chunk_tokens": chunk,
    }
