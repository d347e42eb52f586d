"""One command for a GPU machine: build the kernels, run the CUDA tests, time the model.

    python benchmarks/gpu_check.py             # on a CUDA machine, ≤ 8 minutes on one H200
    python benchmarks/gpu_check.py --dry-run   # the same code at tiny sizes on the CPU (seconds)

1. Builds mamba-ssm's and causal-conv1d's CUDA extensions from the sdists in benchmarks/sdists,
   for this GPU's architecture only (benchmarks/gpu_build.py), within --build-timeout-s; on a
   failure or a timeout it goes on without them and says why.
2. Runs the `cuda`-marked tests (pytest -m cuda) with the kernels on the path.
3. Times a synthetic model with LongLLaVA-9B's widths (model/cards) and random weights
   (model/random_init.py) in bfloat16, with the mamba-ssm kernels and without (our PyTorch path),
   each in its own process: time to first token at 128 and 1000 frames (random embedding rows, one
   frame's 144 image + 7 markup rows at a time, pushed through `engine.ChunkedPrefill`: no video
   or CLIP is needed), peak `torch.cuda.max_memory_allocated` against `model.memory`'s prediction
   for the same model and length, and decode tokens/s. The model keeps one attention period of
   the 32 layers (7 Mamba + 1 attention, --layers 8): the layers are identical per period, so
   times scale by 32/8 to the full model; the JSON says so and gives both.

Prints one JSON line (and writes it to $OUT/gpu_check.json when OUT is set). Every step has a
share of --budget-s; what does not fit is reported as skipped, and a worker cut short keeps the
measurements it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from gpu_build import build_kernels, prepare_tools

ROOT = Path(__file__).resolve().parents[1]
CARD = ROOT / "model" / "cards" / "FreedomIntelligence--LongLLaVA-9B.json"
# The test files holding `cuda`-marked tests.
CUDA_TEST_FILES = ("tests/model/test_scan.py", "tests/model/test_longllava.py", "tests/model/test_cuda_path.py")
# Tiny stand-ins for --dry-run: LongLLaVA-9B's layer pattern and ratios at widths a CPU runs in seconds.
DRY_WIDTHS = dict(
    vocab_size=512, hidden_size=64, intermediate_size=128, num_attention_heads=8, num_key_value_heads=2,
    mamba_dt_rank=8,
)  # fmt: skip
SIZES = {
    "gpu": {"frames": (128, 1000), "tokens_per_image": 144, "decode_tokens": 32, "chunk_tokens": 2048},
    "dry": {"frames": (2, 6), "tokens_per_image": 4, "decode_tokens": 3, "chunk_tokens": 16},
}


def lm_config(layers: int, *, dry_run: bool) -> dict:
    """LongLLaVA-9B's LM config (its card) cut to `layers` layers (a multiple of its attention
    period keeps the 7:1 Mamba:attention ratio); --dry-run also shrinks the widths."""
    config = json.loads(CARD.read_text())["config"]
    config = {k: v for k, v in config.items() if not k.startswith("mm_") and k != "vision_config"}
    return config | {"num_hidden_layers": layers} | (DRY_WIDTHS if dry_run else {})


def _subprocess_env(paths: list[str], extra: dict[str, str]) -> dict[str, str]:
    """The environment of every child: the repository and the kernel/tool folders first on PYTHONPATH."""
    entries = [str(ROOT), *paths, os.environ.get("PYTHONPATH", "")]
    return os.environ | extra | {"PYTHONPATH": os.pathsep.join(e for e in entries if e)}


def run_cuda_tests(env: dict[str, str], timeout_s: float) -> dict:
    """pytest -m cuda on CUDA_TEST_FILES, without the repository's addopts (xdist may be absent)."""
    command = [
        sys.executable, "-m", "pytest", "-m", "cuda", "-o", "addopts=", "--import-mode=importlib", "-p",
        "no:cacheprovider", "-q", "-rs", *CUDA_TEST_FILES,
    ]  # fmt: skip
    start = time.monotonic()
    try:
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout_s:.0f} s"}
    lines = result.stdout.strip().splitlines()
    summary = lines[-1] if lines else result.stderr.strip()[-300:]
    report = {"ok": result.returncode == 0, "summary": summary, "seconds": round(time.monotonic() - start, 1)}
    if result.returncode != 0:
        report["output_tail"] = "\n".join(lines[-30:])
    return report


def run_worker(spec: dict, env: dict[str, str], timeout_s: float) -> dict:
    """One timing process (this script with --worker): its JSON lines, one per finished
    measurement, gathered even when it is cut short."""
    command = [sys.executable, __file__, "--worker", json.dumps(spec)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = process.communicate(timeout=timeout_s)
        error = None if process.returncode == 0 else f"worker exited with {process.returncode}"
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        error = f"timed out after {timeout_s:.0f} s"
    result: dict = {"measurements": []}
    for line in out.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # a library's own print
        if isinstance(record, dict):
            result["measurements"].append(record) if "frames" in record else result.update(record)
    if error:
        result["error"] = error
        result["stderr_tail"] = "\n".join(err.strip().splitlines()[-15:])
    return result


def _scaled(result: dict, scale: float) -> None:
    """Add full-model figures (seconds × scale, tokens/s ÷ scale) to every finished run."""
    for run in result.get("measurements", []):
        run["ttft_s_full_model"] = round(run["ttft_s"] * scale, 3)
        run["decode_tokens_per_s_full_model"] = round(run["decode_tokens_per_s"] / scale, 2)


def check(args: argparse.Namespace) -> dict:
    """Steps 1-3 of the module docstring within args.budget_s; -> the JSON line's object."""
    start = time.monotonic()
    deadline = start + args.budget_s
    sizes = SIZES["dry" if args.dry_run else "gpu"] | ({"frames": tuple(args.frames)} if args.frames else {})
    tool_paths, tool_env = prepare_tools()
    report: dict = {"dry_run": args.dry_run, "budget_s": args.budget_s}
    kernel_paths: list[str] = []
    if args.dry_run:
        report["build"] = {"skipped": "dry run (no CUDA)"}
    else:
        try:
            report["build"], kernel_paths = build_kernels(min(args.build_timeout_s, deadline - time.monotonic()))
        except Exception as e:  # a device check reports every failure and goes on
            report["build"] = {"error": f"{type(e).__name__}: {e}"}
    env = _subprocess_env(kernel_paths + tool_paths, tool_env)
    report["cuda_tests"] = run_cuda_tests(env, max(10.0, min(args.test_timeout_s, deadline - time.monotonic())))
    full_layers = json.loads(CARD.read_text())["config"]["num_hidden_layers"]
    scale = full_layers / args.layers
    report["model"] = {
        "widths": "LongLLaVA-9B" if not args.dry_run else "tiny (dry run)", "layers": args.layers,
        "full_layers": full_layers, "scale": scale, "dtype": "bfloat16",
        "scaling": f"measured on {args.layers} of {full_layers} layers (one attention period each); "
        f"*_full_model figures multiply times by {scale:g} (the embedding and lm_head too: a slight overestimate)",
    } | {k: v for k, v in sizes.items() if k != "frames"}  # fmt: skip
    report["runs"] = {}
    for name, kernels in (("mamba_ssm", True), ("pytorch", False)):
        remaining = deadline - time.monotonic()
        if remaining < 15:
            report["runs"][name] = {"skipped": "time budget spent"}
            continue
        if kernels and not (kernel_paths or args.dry_run):
            report["runs"][name] = {"skipped": "the kernels were not built"}
            continue
        spec = {"kernels": kernels, "layers": args.layers, "dry_run": args.dry_run, **sizes}
        # The kernels' run may take half of what is left (it needs far less), so that the PyTorch run,
        # the slower one, keeps its share even if the first one hangs.
        share = (remaining - 5) / 2 if kernels else remaining - 5
        report["runs"][name] = result = run_worker(spec, env, share)
        _scaled(result, scale)
    report["speedup_ttft"] = _speedups(report["runs"])
    report["seconds"] = round(time.monotonic() - start, 1)
    return report


def _speedups(runs: dict) -> dict[str, float]:
    """PyTorch-path TTFT / mamba-ssm TTFT per frame count measured by both (where kernels ran)."""
    ours = {r["frames"]: r["ttft_s"] for r in runs["mamba_ssm"].get("measurements", []) if r["kernels_used"]}
    theirs = {r["frames"]: r["ttft_s"] for r in runs["pytorch"].get("measurements", [])}
    return {str(f): round(theirs[f] / ours[f], 2) for f in ours if f in theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, no build")
    parser.add_argument("--budget-s", type=float, default=470.0, help="wall-clock budget of the whole check")
    parser.add_argument("--build-timeout-s", type=float, default=240.0)
    parser.add_argument("--test-timeout-s", type=float, default=90.0)
    parser.add_argument("--layers", type=int, default=8, help="layers of the synthetic model (of 32)")
    parser.add_argument("--frames", type=int, nargs="+", help="frame counts (default 128 1000; dry run 2 6)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.layers < 8 or args.layers % 8:
        parser.error("--layers must be a multiple of 8 (LongLLaVA-9B's attention period)")
    if args.worker:
        from gpu_check_worker import measure_all

        spec = json.loads(args.worker)
        measure_all(spec, lm_config(spec["layers"], dry_run=spec["dry_run"]))
        return
    report = check(args)
    line = json.dumps(report)
    print(line)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "gpu_check.json").write_text(line + "\n")


if __name__ == "__main__":
    main()
