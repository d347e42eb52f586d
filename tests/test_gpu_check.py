"""benchmarks/gpu_check.py --dry-run: the GPU check's own code (tool preparation, the `cuda` test
run, both timing workers, the JSON line and $OUT/gpu_check.json) at tiny sizes on the CPU, as CI
runs it; only the kernel build is left to a GPU machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_dry_run_prints_one_json_line_and_writes_it_to_out(tmp_path):
    script = ROOT / "benchmarks" / "gpu_check.py"
    result = subprocess.run(
        [sys.executable, str(script), "--dry-run"], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env=os.environ | {"OUT": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    (line,) = result.stdout.strip().splitlines()
    assert (tmp_path / "gpu_check.json").read_text() == line + "\n"
    report = json.loads(line)
    assert report["dry_run"] and report["build"] == {"skipped": "dry run (no CUDA)"}
    assert report["cuda_tests"]["ok"], report["cuda_tests"]  # all skipped here: no CUDA
    assert "skipped" in report["cuda_tests"]["summary"]
    assert report["model"]["scale"] == report["model"]["full_layers"] / report["model"]["layers"] == 4
    for name, runs in report["runs"].items():
        assert runs["device"] == "cpu" and "error" not in runs, name
        assert "mamba-ssm" not in runs["mamba_prefill"]  # no kernels on a CPU
        assert [m["frames"] for m in runs["measurements"]] == [2, 6]
        for m in runs["measurements"]:
            assert m["tokens"] == m["frames"] * (4 + 7) + 64  # 4 image + 7 markup rows a frame, a question
            assert m["ttft_s"] > 0 and m["decode_tokens_per_s"] > 0 and not m["kernels_used"]
            assert m["ttft_s_full_model"] == round(m["ttft_s"] * 4, 3)
            assert m["measured_over_predicted"] == round(m["peak_bytes"] / m["predicted_bytes"], 3)
    assert report["speedup_ttft"] == {}  # kernels never ran
