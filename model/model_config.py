"""What a checkpoint's configs describe, read and checked without torch: the LM's, the
multimodal keys' and the CLIP tower's, found where `load_model` documents (`resolve_configs`),
and checked against the safetensors headers before anything is built. `longllava info`,
`estimate` and `frames` use it without loading torch; `model/longllava.py` builds from it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from model.checkpoint_files import (
    Checkpoint,
    check_lm_weights,
    check_tensors,
    jamba_config_of,
    open_checkpoint,
    read_config,
)
from model.config import CLIPVisionConfig, LongLLaVAConfig, ModelConfig
from model.errors import CheckpointError
from model.shapes import CLIP_LAYER, clip_tensor_shapes, count_layers, projector_tensor_shapes
from model.tower_keys import CHECKPOINT_PREFIX, find_tower_prefix, is_tower_key

PROJECTOR_PREFIX = "model.mm_projector."
VISION_CONFIG_KEY = "vision_config"  # our extension: a CLIP config dict inside a LongLLaVA config.json
VISION_TOWER_HINT = "pass --vision-tower DIR or put the CLIP weights in the checkpoint"
CLIP_MODEL_TYPES = ("clip_vision_model", "clip")
EMBEDDED_PREFIX = CHECKPOINT_PREFIX + "vision_model."  # of a tower stored in a LongLLaVA checkpoint
ASSUMED = "assumed"  # `ModelConfig.vision_source` when no CLIP config was found
ASSUMED_CONFIG_HINT = (
    f"config.json has no '{VISION_CONFIG_KEY}', so a CLIP ViT-L/14-336 tower was assumed: add a "
    f"'{VISION_CONFIG_KEY}' dict with the tower's CLIPVisionConfig keys, set mm_vision_tower to a local CLIP "
    "folder or pass --vision-tower DIR"
)
# model_type values that mark a LongLLaVA (multimodal) config.json even without mm_* keys.
_MULTIMODAL_MODEL_TYPES = ("llava_jamba", "longllava", "llava_jamba_moe")


@dataclass(frozen=True)
class TowerSource:
    """Where the CLIP tower's config and weights come from."""

    config: CLIPVisionConfig
    source: str  # of the config: "vision_config", a CLIP folder's config.json, or ASSUMED
    checkpoint: Checkpoint | None  # holding the weights; None for a folder without weights yet
    prefix: str | None  # of the tower's `vision_model` keys in that checkpoint

    @property
    def config_assumed(self) -> bool:
        return self.source == ASSUMED


def _is_multimodal(checkpoint: Checkpoint) -> bool:
    config = checkpoint.config
    return (
        config.get("model_type") in _MULTIMODAL_MODEL_TYPES
        or any(key.startswith("mm_") or key == "resamplePooling" for key in config)
        or any(key.startswith(PROJECTOR_PREFIX) for key in checkpoint.weight_map)
    )


def _mm_config_of(checkpoint: Checkpoint) -> LongLLaVAConfig:
    source = checkpoint.path / "config.json"
    mm = LongLLaVAConfig.from_dict(checkpoint.config, source=str(source))
    if mm.resamplePooling is None:
        warnings.warn(
            f"{source}: no 'resamplePooling'; using '2d' (144 tokens per image at 336 px), which LongLLaVA "
            "was trained with (upstream used all 576 tokens in this case); add the key to silence this",
            stacklevel=3,
        )
    return mm


def _find_tower(
    checkpoint: Checkpoint, mm: LongLLaVAConfig, vision_tower: str | Path | None, *, need_weights: bool
) -> TowerSource:
    """The tower's source, in the order `load_model` documents; its width must match the projector's
    input. A checkpoint without weights (need_weights False) gives the tower's config only."""
    if vision_tower is not None:
        tower = _separate_tower(
            Path(vision_tower).expanduser(), named_by="the vision_tower argument", need_weights=need_weights
        )
    elif find_tower_prefix(checkpoint.weight_map.keys()) == EMBEDDED_PREFIX:
        tower = TowerSource(*_tower_config(checkpoint, mm), checkpoint, EMBEDDED_PREFIX)
    elif not checkpoint.has_weights:  # planning before a download: the config is all there is
        tower = TowerSource(*_tower_config(checkpoint, mm), None, None)
    elif (local := _local_dir(checkpoint.path, mm.mm_vision_tower)) is not None:
        tower = _separate_tower(
            local, named_by=f"mm_vision_tower in {checkpoint.path / 'config.json'}", need_weights=need_weights
        )
    else:
        raise CheckpointError(
            f"{checkpoint.path}: no CLIP weights ({EMBEDDED_PREFIX}*) and mm_vision_tower "
            f"{mm.mm_vision_tower!r} is not a local directory; {VISION_TOWER_HINT}"
        )
    if tower.config.hidden_size != mm.mm_hidden_size:
        fix = ASSUMED_CONFIG_HINT if tower.config_assumed else "use the CLIP this LongLLaVA was trained with"
        where = tower.checkpoint.path if tower.checkpoint is not None else tower.source
        where = checkpoint.path if tower.config_assumed else where
        raise CheckpointError(
            f"{where}: the CLIP tower is {tower.config.hidden_size} wide but mm_hidden_size in "
            f"{checkpoint.path / 'config.json'} is {mm.mm_hidden_size}; {fix}"
        )
    return tower


def _local_dir(root: Path, name: str | None) -> Path | None:
    """`name` as an existing directory: absolute, else relative to the checkpoint directory, else
    to the working directory. None for a hub id such as "openai/clip-vit-large-patch14-336"."""
    if not name:
        return None
    try:
        candidate = Path(name).expanduser()
        for path in (candidate,) if candidate.is_absolute() else (root / candidate, candidate):
            if path.is_dir():
                return path
    except (OSError, ValueError, RuntimeError):  # a NUL byte, an unknown ~user, a name too long
        return None
    return None


def _tower_config(checkpoint: Checkpoint, mm: LongLLaVAConfig) -> tuple[CLIPVisionConfig, str]:
    """(config, source) of a tower whose weights are (or will be) in the checkpoint itself:
    config.json's `vision_config`, else a local `mm_vision_tower` folder's config.json, else
    the ViT-L/14-336 defaults (source ASSUMED)."""
    source = str(checkpoint.path / "config.json")
    data = checkpoint.config.get(VISION_CONFIG_KEY)
    if data is not None:
        if not isinstance(data, dict):
            raise CheckpointError(f"{source}: '{VISION_CONFIG_KEY}' must be a JSON object of CLIPVisionConfig keys")
        return CLIPVisionConfig.from_dict(data, source=f"{source} ({VISION_CONFIG_KEY})"), VISION_CONFIG_KEY
    local = _local_dir(checkpoint.path, mm.mm_vision_tower)
    if local is None:
        return CLIPVisionConfig(), ASSUMED
    return _clip_config(local, read_config(local), named_by=f"mm_vision_tower in {source}")


def _clip_config(root: Path, data: dict, *, named_by: str) -> tuple[CLIPVisionConfig, str]:
    """(config, source) from a CLIP folder's config.json `data` (CLIPVisionModel or CLIPModel)."""
    source = str(root / "config.json")
    model_type = data.get("model_type")
    if model_type is not None and model_type not in CLIP_MODEL_TYPES:
        raise CheckpointError(
            f"{source}: model_type {model_type!r} is not a CLIP model (expected one of {', '.join(CLIP_MODEL_TYPES)}); "
            f"{named_by} must name a CLIP directory"
        )
    return CLIPVisionConfig.from_dict(data, source=source), source


def _separate_tower(path: Path, *, named_by: str, need_weights: bool) -> TowerSource:
    """A CLIP directory as transformers' CLIPVisionModel / CLIPModel `save_pretrained` writes it
    (its config.json alone when need_weights is False and it has no weights)."""
    try:
        checkpoint = open_checkpoint(path, require_weights=need_weights)
    except CheckpointError as e:
        raise CheckpointError(f"CLIP vision tower named by {named_by}: {e}") from e
    config, source = _clip_config(checkpoint.path, checkpoint.config, named_by=named_by)
    if not checkpoint.has_weights:
        return TowerSource(config, source, None, None)
    prefix = find_tower_prefix(checkpoint.weight_map.keys())
    if prefix is None:
        raise CheckpointError(f"{checkpoint.path}: no CLIP vision weights (vision_model.*) in its safetensors files")
    return TowerSource(config, source, checkpoint, prefix)


def read_model_config(path: str | Path, *, vision_tower: str | Path | None = None) -> ModelConfig:
    """What `load_model` would build (LM, multimodal keys, CLIP tower configs) from config files
    and safetensors headers alone, no weight read, nothing built: for `longllava info`,
    `estimate`, `frames`. Works on a folder with config.json and no weights yet (the tower's
    config then comes from `vision_config`, a local `mm_vision_tower` folder's config.json, or
    the ViT-L/14-336 defaults: `vision_source` says which). Where there are weights, their
    headers are checked against the configs. Raises CheckpointError as `load_model` does."""
    return resolve_configs(open_checkpoint(path, require_weights=False), vision_tower, need_weights=False)[0]


def model_config_of(checkpoint: Checkpoint) -> ModelConfig:
    """The configs of an opened checkpoint (or of a built-in card's virtual one: no weights), as
    `read_model_config` checks them."""
    return resolve_configs(checkpoint, None, need_weights=False)[0]


def resolve_configs(
    checkpoint: Checkpoint, vision_tower: str | Path | None, *, need_weights: bool
) -> tuple[ModelConfig, TowerSource | None]:
    """The configs, checked against every safetensors header there is, before anything is built."""
    lm_config = jamba_config_of(checkpoint)
    if checkpoint.has_weights:
        check_lm_weights(checkpoint, lm_config)
    if not _is_multimodal(checkpoint):
        if vision_tower is not None:
            raise CheckpointError(
                f"{checkpoint.path}: a text-only Jamba checkpoint (no mm_* keys, no projector); "
                "a vision tower needs a LongLLaVA checkpoint"
            )
        return ModelConfig(lm=lm_config), None
    mm_config = _mm_config_of(checkpoint)
    tower = _find_tower(checkpoint, mm_config, vision_tower, need_weights=need_weights)
    try:
        config = ModelConfig(lm=lm_config, mm=mm_config, vision=tower.config, vision_source=tower.source)
    except ValueError as e:
        raise CheckpointError(f"{checkpoint.path / 'config.json'}: {e}") from e
    if tower.checkpoint is not None:
        _check_tower_weights(tower)
    if checkpoint.has_weights:
        _check_projector_weights(checkpoint, mm_config, lm_config.hidden_size)
    return config, tower


def _check_tower_weights(tower: TowerSource) -> None:
    """The tower's headers against its config: the layer count first, then every name and shape."""
    assert tower.checkpoint is not None and tower.prefix is not None
    prefix, config = tower.prefix, tower.config
    hint = f"; {ASSUMED_CONFIG_HINT}" if tower.config_assumed else ""
    names = [key[len(prefix) :] for key in tower.checkpoint.weight_map if is_tower_key(key, prefix)]
    found = count_layers(names, CLIP_LAYER)
    if found != config.num_hidden_layers:
        raise CheckpointError(
            f"{tower.checkpoint.path}: the CLIP weights hold {found} layers but its config "
            f"({tower.source}) says num_hidden_layers {config.num_hidden_layers}{hint}"
        )
    expected = {prefix + name: shape for name, shape in clip_tensor_shapes(config).items()}
    try:
        check_tensors(tower.checkpoint, lambda key: key if is_tower_key(key, prefix) else None, expected)
    except CheckpointError as e:
        raise CheckpointError(f"{e}{hint}") from e


def _check_projector_weights(checkpoint: Checkpoint, mm: LongLLaVAConfig, hidden_size: int) -> None:
    shapes = projector_tensor_shapes(mm.mm_projector_type, mm.mm_hidden_size, hidden_size)
    try:
        check_tensors(checkpoint, keys_under(PROJECTOR_PREFIX), {PROJECTOR_PREFIX + k: v for k, v in shapes.items()})
    except CheckpointError as e:
        raise CheckpointError(f"{e} ({projector_summary(mm, hidden_size)})") from e


def projector_summary(mm: LongLLaVAConfig, hidden_size: int) -> str:
    return f"projector {mm.mm_projector_type}: mm_hidden_size {mm.mm_hidden_size} -> hidden_size {hidden_size}"


def keys_under(prefix: str) -> Callable[[str], str | None]:
    return lambda key: key if key.startswith(prefix) else None
