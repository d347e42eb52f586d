"""`longllava info` reports the implementations the Mamba mixer and attention run on each device."""

from __future__ import annotations

import json

from longllava_cli.app import app
from longllava_cli.report import describe_environment, print_info
from model.cpu_kernels import kernels_available
from model.dispatch import flash_cpu_available, inference_paths


def test_environment_has_the_paths_of_this_process():
    environment = describe_environment()
    expected = inference_paths(
        "cpu", cuda_kernels=False, cpu_kernels=kernels_available(), flash_cpu=flash_cpu_available()
    )
    assert environment["inference_paths"]["cpu"] == expected
    assert ("cuda" in environment["inference_paths"]) == environment["cuda_available"]


def test_info_text_and_json_show_the_paths(runner, capsys):
    both = {
        "cpu": inference_paths("cpu", cuda_kernels=False, cpu_kernels=True, flash_cpu=True),
        "cuda": inference_paths("cuda", cuda_kernels=True, cpu_kernels=False, flash_cpu=False),
    }
    print_info({"environment": {**describe_environment(), "inference_paths": both}})
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("mamba (cpu)")
        and line.endswith("prefill compiled conv + compiled-fused scan; decode compiled conv + compiled-fused scan")
        for line in lines
    )
    assert any(
        line.startswith("attention (cpu)")
        and line.endswith("prefill compiled (float32), flash-cpu (bfloat16); decode flash-cpu")
        for line in lines
    )
    assert any(line.startswith("mamba (cuda)") and "decode causal-conv1d conv + mamba-ssm-step scan" in line
               for line in lines)  # fmt: skip
    result = runner.invoke(app, ["info", "--json"])
    assert result.exit_code == 0, result.output
    paths = json.loads(result.stdout)["environment"]["inference_paths"]
    assert set(paths["cpu"]) == {"mamba", "attention"} and set(paths["cpu"]["mamba"]) == {"prefill", "decode"}
