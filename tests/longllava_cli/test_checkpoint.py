"""Checkpoint summaries from config.json and safetensors headers; memory sizes; estimate."""

from __future__ import annotations

import json

import pytest
from safetensors.torch import load_file

from longllava_cli.app import app
from longllava_cli.checkpoint import count_parameters, parse_size, summarize_checkpoint
from model.errors import CheckpointError


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
