"""Where the CLIP tower's config comes from: config.json's `vision_config`, else the config.json
of a local `mm_vision_tower` folder (weights from the checkpoint, as upstream LongLLaVA), else the
ViT-L/14-336 defaults, flagged as assumed; and folders with config.json but no weights yet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from model import CheckpointError, load_model, read_model_config
from model.config import CLIPVisionConfig
from model.testing import TINY_CLIP_CONFIG, write_tiny_clip, write_tiny_longllava

# Not ViT-L in any dimension: 40 px images in 8 px patches (5×5 grid -> 9 tokens), 2 layers, 16 wide.
SMALL_CLIP = dict(hidden_size=16, intermediate_size=20, num_hidden_layers=2, num_attention_heads=2, image_size=40,
                  patch_size=8, projection_dim=8)  # fmt: skip


def _clip_config_folder(path: Path) -> Path:
    """A local CLIP folder holding only its config.json (as `save_pretrained` writes it)."""
    write_tiny_clip(path, vision=SMALL_CLIP)
    for file in path.glob("*.safetensors"):
        file.unlink()
    return path


def _pixels(side: int) -> torch.Tensor:
    return torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("relative", [False, True])
def test_embedded_tower_takes_its_config_from_a_local_mm_vision_tower(tmp_path, relative):
    declared = write_tiny_longllava(tmp_path / "declared", seed=4, vision=SMALL_CLIP)  # with vision_config
    clip = _clip_config_folder(tmp_path / "clip-small")
    overrides = {"vision_config": None, "mm_vision_tower": "../clip-small" if relative else str(clip)}
    path = write_tiny_longllava(tmp_path / "llava", seed=4, vision=SMALL_CLIP, config_overrides=overrides)
    assert "vision_config" not in json.loads((path / "config.json").read_text())

    config = read_model_config(path)
    assert config.vision == CLIPVisionConfig.from_dict(TINY_CLIP_CONFIG | SMALL_CLIP)
    assert Path(config.vision_source).resolve() == (clip / "config.json").resolve()
    model = load_model(path)
    assert (model.image_size, model.tokens_per_image) == (40, 9)
    expected = load_model(declared).encode_images(_pixels(40))
    torch.testing.assert_close(model.encode_images(_pixels(40)), expected, atol=0, rtol=0)


def test_mm_vision_tower_naming_a_folder_of_another_kind_is_refused(tmp_path):
    other = write_tiny_longllava(tmp_path / "not-clip", shards=1)
    overrides = {"vision_config": None, "mm_vision_tower": str(other)}
    path = write_tiny_longllava(tmp_path / "llava", config_overrides=overrides, shards=1)
    with pytest.raises(CheckpointError, match=r"is not a CLIP model .* mm_vision_tower in .* must name a CLIP"):
        read_model_config(path)


# ---------------------------------------------------------------------------------------------
# Folders with config.json and no weights yet
# ---------------------------------------------------------------------------------------------


def _config_only(source: Path, folder: Path, **edits) -> Path:
    folder.mkdir()
    config = json.loads((source / "config.json").read_text()) | edits
    (folder / "config.json").write_text(json.dumps({k: v for k, v in config.items() if v is not None}))
    return folder


def test_config_only_folder_reads_like_the_full_one(tmp_path):
    full = write_tiny_longllava(tmp_path / "full", vision=SMALL_CLIP)
    planned = _config_only(full, tmp_path / "planned")
    assert read_model_config(planned) == read_model_config(full)
    assert read_model_config(planned).vision_source == "vision_config"
    with pytest.raises(CheckpointError, match=r"no \*\.safetensors weights found"):
        load_model(planned)


def test_config_only_folder_takes_the_tower_config_from_mm_vision_tower_else_assumes_vit_l(tmp_path):
    full = write_tiny_longllava(tmp_path / "full")
    clip = _clip_config_folder(tmp_path / "clip")
    local = _config_only(full, tmp_path / "local", vision_config=None, mm_vision_tower=str(clip), mm_hidden_size=16)
    assert read_model_config(local).vision.image_size == SMALL_CLIP["image_size"]
    assumed = _config_only(full, tmp_path / "assumed", vision_config=None, mm_hidden_size=1024)
    config = read_model_config(assumed)
    assert config.vision == CLIPVisionConfig() and config.vision_source == "assumed"


def test_an_index_without_its_shards_is_not_a_config_only_folder(tmp_path):
    full = write_tiny_longllava(tmp_path / "full", shards=2)
    for file in full.glob("*.safetensors"):
        file.unlink()
    with pytest.raises(CheckpointError, match=r"shard listed in .* is missing"):
        read_model_config(full)


def test_the_separate_tower_named_by_the_argument_may_be_config_only_for_planning(tmp_path):
    clip = _clip_config_folder(tmp_path / "clip")
    path = write_tiny_longllava(tmp_path / "llava", include_vision=False, vision=SMALL_CLIP)
    assert read_model_config(path, vision_tower=clip).vision.hidden_size == 16
    with pytest.raises(
        CheckpointError, match=r"CLIP vision tower named by the vision_tower argument: .*no \*\.safetensors"
    ):
        load_model(path, vision_tower=clip)
    shutil.rmtree(clip)
    with pytest.raises(CheckpointError, match="no such checkpoint directory"):
        read_model_config(path, vision_tower=clip)
