"""Estimates before download: the released models by repo id with an empty Hugging Face cache and no
network, through the installed entry point, from their built-in cards."""

from __future__ import annotations

import json

import pytest

GiB = 2**30


@pytest.fixture
def offline(tmp_path):
    """An empty cache, offline, and an endpoint nobody listens on: nothing can be fetched."""
    return {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}


def test_estimate_9b_before_download_matches_a_hand_computation(run_cli, offline):
    result = run_cli(
        "estimate", "--model", "FreedomIntelligence/LongLLaVA-9B", "--frames", "1000", "--gpu-memory", "24GB",
        "--json", env=offline,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    tokens = 1000 * (144 + 7) + 64 + 768  # 151 positions a frame, a question, the default answer length
    by_hand = 19.23e9 + tokens * 4 * 2 * 8 * 128 * 2 + 2048 * (14336 * 2 * 2 + 8192 * 4 * 5)
    assert data["memory_bytes"]["total"] == pytest.approx(by_hand, rel=0.10)
    assert data["fits"] and data["model"] == "FreedomIntelligence/LongLLaVA-9B"
    assert data["card"].startswith("built-in card, from https://huggingface.co/FreedomIntelligence/LongLLaVA-9B")


def test_53b_fits_one_80gb_card_in_int8_before_download(run_cli, offline):
    args = ["estimate", "--model", "FreedomIntelligence/LongLLaVA-53B-A13B", "--frames", "1000", "--gpu-memory", "80GB"]
    result = run_cli(*args, "--quantize", "int8", "--json", env=offline)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["fits"] and data["quantize"] == "int8"
    # 51.9 B parameters: ~45 B in experts, dense MLPs and attention at 1 byte, the rest in bfloat16.
    assert 50 * GiB < data["memory_bytes"]["weights"] < 56 * GiB
    assert data["weights_by_kind"]["moe_experts"] > 40 * GiB
