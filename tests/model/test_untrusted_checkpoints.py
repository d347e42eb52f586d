"""A checkpoint folder is untrusted input: the files it names stay inside it (the Hugging Face
cache's snapshot -> blob symlinks included), its safetensors headers are checked, and its config
must describe its weights, all before anything is built."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch

from model import CheckpointError, load_model, read_model_config
from model.loading import INDEX_FILE, open_checkpoint, read_safetensors_header
from model.testing import write_tiny_clip, write_tiny_longllava

SHARD_1 = "model-00001-of-00002.safetensors"


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return write_tiny_longllava(tmp_path_factory.mktemp("orig") / "tiny", seed=7)


@pytest.fixture
def tiny(original, tmp_path) -> Path:
    """A fresh copy of the tiny checkpoint (2 shards + index) that a test may damage."""
    return Path(shutil.copytree(original, tmp_path / "tiny"))


@pytest.fixture(scope="module")
def reference(original) -> torch.Tensor:
    return _features(load_model(original))


def _features(model) -> torch.Tensor:
    pixels = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(0))
    return model.encode_images(pixels)


def _refused(path: Path, match: str) -> str:
    """Both readers (load_model, and read_model_config behind `info`/`estimate`) refuse `path`."""
    with pytest.raises(CheckpointError, match=match) as info:
        load_model(path)
    with pytest.raises(CheckpointError, match=match):
        read_model_config(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


# ---------------------------------------------------------------------------------------------
# Index entries and symlinks stay inside the folder
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("entry", ["../other/" + SHARD_1, "ABSOLUTE", "sub/" + SHARD_1, "x.bin", "..", "", 3, None])
def test_index_entries_naming_anything_but_a_file_in_the_folder_are_refused(tiny, tmp_path, entry):
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tiny / SHARD_1, other / SHARD_1)  # a real, readable file: it would load without the check
    (tiny / "sub").mkdir()
    shutil.copy(tiny / SHARD_1, tiny / "sub" / SHARD_1)
    entry = str(other / SHARD_1) if entry == "ABSOLUTE" else entry
    key = "model.embed_tokens.weight"
    _edit_json(tiny / INDEX_FILE, lambda index: index["weight_map"].__setitem__(key, entry))
    message = _refused(tiny, "not a plain \\*\\.safetensors file name in the checkpoint folder")
    assert f"tensor {key} is mapped to {json.dumps(entry)}" in message and INDEX_FILE in message


def test_a_shard_symlinked_out_of_the_folder_is_refused(tiny, tmp_path):
    outside = tmp_path / "elsewhere.safetensors"
    shutil.move(tiny / SHARD_1, outside)
    (tiny / SHARD_1).symlink_to(outside)
    message = _refused(tiny, "leads out of the checkpoint folder")
    assert message.startswith(f"{tiny / SHARD_1}: ") and str(outside) in message


def test_a_config_symlinked_out_of_the_folder_is_refused(tiny, tmp_path):
    shutil.move(tiny / "config.json", tmp_path / "config.json")
    (tiny / "config.json").symlink_to(tmp_path / "config.json")
    _refused(tiny, r"config\.json: leads out of the checkpoint folder")


def test_symlinks_inside_the_folder_and_a_symlinked_folder_load(tiny, tmp_path, reference):
    shutil.move(tiny / SHARD_1, tiny / "real.safetensors")
    (tiny / SHARD_1).symlink_to("real.safetensors")
    (tmp_path / "link").symlink_to(tiny)
    torch.testing.assert_close(_features(load_model(tmp_path / "link")), reference, atol=0, rtol=0)


def _hf_cache(source: Path, hub: Path, repo: str, revision: str = "0123abcd") -> Path:
    """`source` laid out as huggingface_hub's cache does: blobs named by hash, and the snapshot's
    files as relative symlinks ../../blobs/<hash>."""
    blobs, snapshot = hub / repo / "blobs", hub / repo / "snapshots" / revision
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (hub / repo / "refs").mkdir()
    (hub / repo / "refs" / "main").write_text(revision)
    for file in sorted(source.iterdir()):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copy(file, blobs / digest)
        (snapshot / file.name).symlink_to(Path("..") / ".." / "blobs" / digest)
    return snapshot


def test_hugging_face_cache_snapshot_loads(original, tmp_path, reference):
    snapshot = _hf_cache(original, tmp_path / "hub", "models--org--tiny")
    assert (snapshot / "config.json").is_symlink()
    torch.testing.assert_close(_features(load_model(snapshot)), reference, atol=0, rtol=0)
    (tmp_path / "my-model").symlink_to(snapshot)  # the snapshot reached through a symlink
    assert read_model_config(tmp_path / "my-model").lm.num_hidden_layers == 4


def test_hugging_face_snapshot_linking_into_another_repository_is_refused(original, tmp_path):
    snapshot = _hf_cache(original, tmp_path / "hub", "models--org--tiny")
    evil = _hf_cache(original, tmp_path / "hub", "models--evil--x")
    (snapshot / SHARD_1).unlink()
    (snapshot / SHARD_1).symlink_to(Path("../../../models--evil--x/blobs") / (evil / SHARD_1).resolve().name)
    _refused(snapshot, "leads out of the checkpoint folder")


def test_a_fifo_or_a_dangling_symlink_is_an_error_not_a_hang(tiny):
    (tiny / SHARD_1).unlink()
    os.mkfifo(tiny / SHARD_1)
    _refused(tiny, "not a regular file")
    (tiny / SHARD_1).unlink()
    (tiny / SHARD_1).symlink_to("gone.safetensors")
    _refused(tiny, "shard listed in .* is missing")


# ---------------------------------------------------------------------------------------------
# Safetensors headers
# ---------------------------------------------------------------------------------------------


def _rewrite_header(file: Path, edit) -> None:
    data = file.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    edit(header)
    raw = json.dumps(header).encode()
    file.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])


KEY = "model.final_layernorm.weight"  # [32] float32, in the second shard


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda h: h[KEY].__setitem__("shape", [-32]), "shape is not a list of non-negative integers"),
        (lambda h: h[KEY].__setitem__("shape", [10**12]), "bytes of data for shape"),
        (lambda h: h[KEY].__setitem__("data_offsets", [0, 10**12]), "file is truncated or corrupt"),
        (lambda h: h[KEY].__setitem__("data_offsets", "0-128"), "data_offsets are not"),
        (lambda h: h.__setitem__(KEY, [1, 2]), "malformed header entry \\(not a JSON object\\)"),
        (lambda h: h.pop(KEY), f"has no tensor {KEY}, which {INDEX_FILE} places there"),
    ],
)
def test_malformed_headers_are_named(tiny, edit, message):
    file = tiny / json.loads((tiny / INDEX_FILE).read_text())["weight_map"][KEY]
    _rewrite_header(file, edit)
    assert file.name in _refused(tiny, message)


def test_a_header_that_is_not_an_object_or_too_long(tmp_path):
    file = tmp_path / "x.safetensors"
    file.write_bytes(struct.pack("<Q", 2) + b"[]")
    with pytest.raises(CheckpointError, match="header is not a JSON object"):
        read_safetensors_header(file)
    file.write_bytes(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(CheckpointError, match="header length 1099511627776 is impossible"):
        read_safetensors_header(file)


def test_a_tensor_in_two_files_is_refused(original, tmp_path):
    path = write_tiny_longllava(tmp_path / "t", shards=2)
    (path / INDEX_FILE).unlink()  # bare files, as some exporters leave them
    shutil.copy(path / SHARD_1, path / "copy.safetensors")
    _refused(path, "is in both .* keep one copy of each tensor")


# ---------------------------------------------------------------------------------------------
# The config must describe the weights (checked against the headers before building)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"num_hidden_layers": 1000}, "num_hidden_layers is 1000 but the weights hold 4 layers"),
        ({"num_experts": 1024, "num_experts_per_tok": 2}, "num_experts is 1024 but the weights hold 1 experts"),
        (
            {"hidden_size": 64},
            r"tensor (model\.embed_tokens|lm_head)\.weight has shape \[512, 32\], expected \[512, 64\]",
        ),
        ({"attn_layer_offset": 0}, r"unexpected tensor\(s\) model\.layers\.0\.mamba\."),
        ({"mm_projector_type": "mlp3x_gelu"}, r"missing tensor\(s\) model\.mm_projector\.4\.bias"),
    ],
)
def test_a_config_that_does_not_describe_its_weights(tiny, edit, message):
    _edit_json(tiny / "config.json", lambda config: config.update(edit))
    _refused(tiny, message)


def test_a_clip_config_that_does_not_describe_its_weights(tiny):
    _edit_json(tiny / "config.json", lambda config: config["vision_config"].update(num_hidden_layers=1000))
    _refused(tiny, "the CLIP weights hold 3 layers but its config .* says num_hidden_layers 1000")
    _edit_json(tiny / "config.json", lambda config: config["vision_config"].update(num_hidden_layers=3, image_size=35))
    _refused(tiny, r"position_embedding\.weight has shape \[17, 24\], expected \[26, 24\]")


def test_a_separate_clip_folder_is_checked_too(tmp_path):
    clip = write_tiny_clip(tmp_path / "clip")
    path = write_tiny_longllava(tmp_path / "t", include_vision=False)
    _edit_json(clip / "config.json", lambda config: config.update(intermediate_size=40))
    with pytest.raises(
        CheckpointError, match=r"mlp\.fc1\.(weight|bias) has shape \[48(, 24)?\], expected \[40(, 24)?\]"
    ):
        read_model_config(path, vision_tower=clip)


def test_open_checkpoint_reads_headers_not_data(original):
    checkpoint = open_checkpoint(original)
    assert checkpoint.has_weights and checkpoint.shapes[KEY] == (32,)
    assert set(checkpoint.shapes) == set(checkpoint.weight_map)


def test_tokenizer_files_stay_inside_the_folder(tmp_path):
    """tokenizer.json and the special-token files obey the same rule as the weights."""
    from model.tokenizer import load_tokenizer

    root = write_tiny_longllava(tmp_path / "tiny")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        if not (root / name).exists():
            continue
        (elsewhere / name).write_bytes((root / name).read_bytes())
        (root / name).unlink()
        (root / name).symlink_to(elsewhere / name)
        with pytest.raises(CheckpointError, match=f"{name}: leads out of the checkpoint folder"):
            load_tokenizer(root)
        (root / name).unlink()
        (root / name).write_bytes((elsewhere / name).read_bytes())
    load_tokenizer(root)  # back inside: loads
