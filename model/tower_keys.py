"""Where a CLIP tower's tensors sit in a checkpoint, by name alone (no torch): LongLLaVA stores
its tower under `model.vision_tower.vision_tower.vision_model.*`; transformers' CLIPVisionModel and
CLIPModel files under `vision_model.*`; a bare tower's keys have no prefix."""

from __future__ import annotations

from collections.abc import Collection

# Where LongLLaVA checkpoints store the tower's `vision_model.*` keys.
CHECKPOINT_PREFIX = "model.vision_tower.vision_tower."

# Prefixes of the tower's keys in files we read, most specific first: a LongLLaVA checkpoint; a
# CLIPModel / older CLIPVisionModel file (openai/clip-vit-large-patch14-336); transformers >= 5
# `CLIPVisionModel.save_pretrained`, which writes the keys bare (`embeddings.class_embedding`).
_TOWER_PREFIXES = (CHECKPOINT_PREFIX + "vision_model.", "vision_model.", "")
_TOWER_PARTS = ("embeddings.", "pre_layrnorm.", "encoder.", "post_layernorm.")


def find_tower_prefix(keys: Collection[str]) -> str | None:
    """The prefix (one of `_TOWER_PREFIXES`) under which a checkpoint's tensor names `keys` hold a
    CLIP tower's `vision_model` tensors, recognised by the CLS embedding's key; None if none."""
    return next((prefix for prefix in _TOWER_PREFIXES if prefix + "embeddings.class_embedding" in keys), None)


def is_tower_key(key: str, prefix: str) -> bool:
    """Whether checkpoint key `key` is one of the tower's tensors stored under `prefix`; False for
    transformers' `position_ids` buffer, which we compute, and for anything else in the file."""
    return key.startswith(tuple(prefix + part for part in _TOWER_PARTS)) and not key.endswith("position_ids")
