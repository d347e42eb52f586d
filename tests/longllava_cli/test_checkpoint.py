"""Checkpoint summaries from config.json and safetensors headers; memory sizes; estimate."""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from safetensors.torch import load_file

from longllava_cli.app import app
from longllava_cli.build import parse_size
from model.errors import CheckpointError
from model.summary import count_parameters, estimate_request, summarize_checkpoint
from sampling.options import MAX_FRAMES


@pytest.mark.parametrize(
    ("text", "expected"),
    [("24GB", 24 * 2**30), ("24GiB", 24 * 2**30), ("80g", 80 * 2**30), ("512MB", 512 * 2**20), ("24", 24 * 2**30),
     ("1.5T", int(1.5 * 2**40)), ("1000B", 1000), (" 16 GB ", 16 * 2**30)],
)  # fmt: skip
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "GB", "0", "-1GB", "lots", "24XB"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="memory size"):
        parse_size(text)


def test_summary_of_tiny_checkpoint(tiny_model):
    summary = summarize_checkpoint(tiny_model)
    expected = sum(t.numel() for f in tiny_model.glob("*.safetensors") for t in load_file(f).values())
    assert summary.num_parameters == expected
    config = json.loads((tiny_model / "config.json").read_text())
    assert len(summary.layer_pattern) == config["num_hidden_layers"]
    assert summary.layer_pattern == "".join(
        "A" if i % config["attn_layer_period"] == config["attn_layer_offset"] else "M"
        for i in range(config["num_hidden_layers"])
    )
    vision = config["vision_config"]
    grid = vision["image_size"] // vision["patch_size"]
    assert summary.tokens_per_image == ((grid + 1) // 2) ** 2
    heads_kv = config.get("num_key_value_heads") or config["num_attention_heads"]
    head_dim = config["hidden_size"] // config["num_attention_heads"]
    assert summary.kv_bytes_per_token() == summary.layer_pattern.count("A") * 2 * heads_kv * head_dim * 4


def test_summary_matches_loaded_model(tiny_model):
    from model import load_model

    model = load_model(tiny_model)
    summary = summarize_checkpoint(tiny_model)
    assert summary.tokens_per_image == model.tokens_per_image
    assert summary.vision.image_size == model.image_size


def test_corrupt_safetensors(tmp_path):
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"\xff" * 16)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        count_parameters(bad)


def test_info_and_estimate_commands(runner, tiny_model):
    result = runner.invoke(app, ["info", "--model", str(tiny_model), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["model"]["tokens_per_image"] == summarize_checkpoint(tiny_model).tokens_per_image
    assert "torch" in data["environment"] and "av" in data["environment"]["video_backends"]

    result = runner.invoke(
        app, ["estimate", "--model", str(tiny_model), "--frames", "64", "--gpu-memory", "1GB", "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["fits"] is True and data["budget_bytes"] == 2**30 and data["max_frames"] >= 64
    assert data["memory_bytes"]["total"] == sum(v for k, v in data["memory_bytes"].items() if k != "total")

    tight = runner.invoke(app, ["estimate", "--model", str(tiny_model), "--frames", "64", "--gpu-memory", "1MB"])
    assert tight.exit_code == 0 and "does NOT fit" in tight.stdout


def test_estimate_without_a_model_uses_the_demo_model(runner, monkeypatch):
    from model.demo import DEMO_NOTICE

    result = runner.invoke(app, ["estimate", "--frames", "8", "--gpu-memory", "1GB", "--json"])
    assert result.exit_code == 0, result.output
    assert DEMO_NOTICE in result.stderr
    monkeypatch.setattr("model.demo.demo_model_dir", lambda: None)  # an install without it
    missing = runner.invoke(app, ["estimate", "--frames", "8"])
    assert missing.exit_code == 2 and "no model given" in missing.stderr


def test_estimate_bad_size_is_usage_error(runner, tiny_model):
    result = runner.invoke(app, ["estimate", "--model", str(tiny_model), "--gpu-memory", "lots"])
    assert result.exit_code == 2


# ---------------------------------------------------------------------------------------------
# Untrusted checkpoints: absurd configs, index entries outside the folder
# ---------------------------------------------------------------------------------------------


def _copy_with_config(source: Path, target: Path, edit: Callable[[dict], object]) -> Path:
    shutil.copytree(source, target)
    config = json.loads((target / "config.json").read_text())
    edit(config)
    (target / "config.json").write_text(json.dumps(config))
    return target


def _one_line_failure(result, *needles: str) -> str:
    """Exit 1 with one line on stderr that names the problem (never "this is a bug")."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "bug" not in lines[0] and all(needle in lines[0] for needle in needles), lines[0]
    return lines[0]


def test_a_billion_layers_fail_fast_in_info_estimate_and_ask(run_cli, tiny_model, tmp_path, image):
    """The config is checked before anything is built; the timeout only guards against a hang."""
    huge = _copy_with_config(tiny_model, tmp_path / "huge", lambda c: c.update(num_hidden_layers=10**9))
    for args in (["info"], ["estimate", "--frames", "8"], ["ask", str(image), "What is this?"]):
        result = run_cli(*args, "--model", str(huge), timeout=60)
        _one_line_failure(result, "config.json", "num_hidden_layers must be in 1..1024, got 1000000000")


def test_an_index_entry_outside_the_folder_is_refused(run_cli, tiny_model, tmp_path):
    bad = shutil.copytree(tiny_model, tmp_path / "bad")
    (tmp_path / "other").mkdir()
    index = json.loads((bad / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["model.embed_tokens.weight"]
    shutil.copy(bad / shard, tmp_path / "other" / shard)
    index["weight_map"]["model.embed_tokens.weight"] = f"../other/{shard}"
    (bad / "model.safetensors.index.json").write_text(json.dumps(index))
    result = run_cli("info", "--model", str(bad), timeout=60)
    _one_line_failure(result, f'"../other/{shard}"', "not a plain *.safetensors file name in the checkpoint folder")


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda c: c.update(hidden_size=4e9), "hidden_size must be an integer, got 4000000000.0"),
        (lambda c: c.update(num_attention_heads=0), "num_attention_heads must be in 1..4096, got 0"),
        (lambda c: c["vision_config"].update(patch_size=0), "patch_size must be in 1..16384, got 0"),
        (lambda c: c.update(mm_projector_type="qformer"), "mm_projector_type 'qformer' is not supported"),
        (lambda c: c.update(num_hidden_layers=40), "num_hidden_layers is 40 but the weights hold 4 layers"),
    ],
)
def test_bad_config_values_are_one_line_checkpoint_errors(runner, tiny_model, tmp_path, edit, needle):
    bad = _copy_with_config(tiny_model, tmp_path / "bad", edit)
    for args in (["info", "--model", str(bad)], ["estimate", "--model", str(bad), "--gpu-memory", "1GB"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and needle in result.stderr and "bug" not in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1


def test_info_and_estimate_never_build_the_model(tiny_model, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a module was built")

    for cls in ("model.jamba.JambaLM", "model.vision.CLIPVisionTower", "model.longllava.LongLLaVA"):
        monkeypatch.setattr(f"{cls}.__init__", refuse)
    summary = summarize_checkpoint(tiny_model)
    result = estimate_request(summary, num_frames=8, budget=2**30, dtype="float32", chunk_tokens=64,
                              max_new_tokens=8, device="cpu")  # fmt: skip
    assert summary.weights == "present" and result["fits"]


def test_malformed_header_entries_are_checkpoint_errors(tmp_path):
    file = tmp_path / "x.safetensors"
    header = json.dumps({"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}).encode()
    file.write_bytes(struct.pack("<Q", len(header)) + header + bytes(16))
    with pytest.raises(CheckpointError, match="tensor w has a malformed header entry"):
        count_parameters(file)


# ---------------------------------------------------------------------------------------------
# Folders with config.json only (planning before a download)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def planned(tiny_model, tmp_path) -> Path:
    folder = tmp_path / "planned"
    folder.mkdir()
    shutil.copy(tiny_model / "config.json", folder / "config.json")
    return folder


def test_info_on_a_config_only_folder(run_cli, planned, tiny_model):
    result = run_cli("info", "--model", str(planned), "--json", timeout=60)
    assert result.returncode == 0, result.stderr
    model = json.loads(result.stdout)["model"]
    full = summarize_checkpoint(tiny_model).to_dict()
    assert model["weights"] == "absent" and model["num_parameters_from"] == "config"
    assert full["weights"] == "present" and full["num_parameters_from"] == "headers"
    assert model["num_parameters"] == full["num_parameters"]  # the configs count what the headers hold
    assert {k: v for k, v in model.items() if "param" not in k and k not in ("weights", "path")} == {
        k: v for k, v in full.items() if "param" not in k and k not in ("weights", "path")
    }


def test_estimate_and_frames_on_a_config_only_folder(runner, planned, tiny_model, image):
    options = ["--frames", "16", "--gpu-memory", "1GB", "--json"]
    result = runner.invoke(app, ["estimate", "--model", str(planned), *options])
    assert result.exit_code == 0, result.output
    full = runner.invoke(app, ["estimate", "--model", str(tiny_model), *options])
    assert {**json.loads(result.stdout), "model": None} == {**json.loads(full.stdout), "model": None}
    frames = runner.invoke(app, ["frames", "--model", str(planned), str(image), "--json"])
    assert frames.exit_code == 0, frames.output
    assert json.loads(frames.stdout)["tokens_per_image"] == summarize_checkpoint(tiny_model).tokens_per_image
    text = runner.invoke(app, ["info", "--model", str(planned)])
    assert "counted from config.json: no weights in the folder yet" in text.stdout


# ---------------------------------------------------------------------------------------------
# estimate: the most frames
# ---------------------------------------------------------------------------------------------


def _estimate(summary, budget: int, **kwargs):
    options = dict(num_frames=8, budget=budget, dtype="float32", chunk_tokens=256, max_new_tokens=64, device="cpu")
    return estimate_request(summary, **(options | kwargs))


def test_most_frames_is_the_least_of_memory_context_and_the_frames_limit(tiny_model):
    summary = summarize_checkpoint(tiny_model)  # 4 tokens per image, 7 of markup; trained context 4096
    context = _estimate(summary, 2**40)
    assert context["context_tokens"] == 4096
    assert context["max_frames"] == (4096 - 64 - 64) // 11 and context["max_frames_limited_by"] == "context"
    assert set(context["max_frames_limits"]) == {"memory", "context", "frames limit"}
    memory = _estimate(summary, 330 * 2**20)  # the CPU runtime's 300 MiB and a little
    assert memory["max_frames_limited_by"] == "memory" and memory["max_frames"] < context["max_frames"]
    assert memory["max_frames"] == memory["max_frames_limits"]["memory"]
    wide = replace(summary, mm=replace(summary.mm, tokenizer_model_max_length=None))  # n_ctx then: 4096 too
    assert wide.context_tokens == summary.lm.max_position_embeddings
    longer = replace(summary, mm=replace(summary.mm, tokenizer_model_max_length=2**20))
    limited = _estimate(longer, 2**40)
    assert (limited["max_frames"], limited["max_frames_limited_by"]) == (MAX_FRAMES, "frames limit")


def test_estimate_of_the_demo_model_reports_what_limits_the_frames(runner):
    result = runner.invoke(app, ["estimate", "--frames", "8", "--gpu-memory", "64GB", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["max_frames"] == MAX_FRAMES and data["max_frames_limited_by"] == "frames limit"
    assert data["max_frames_limits"]["memory"] > MAX_FRAMES and data["within_context"]
    text = runner.invoke(app, ["estimate", "--frames", "8", "--gpu-memory", "64GB"])
    assert f"{MAX_FRAMES:,} (limited by frames limit; memory " in text.stdout
