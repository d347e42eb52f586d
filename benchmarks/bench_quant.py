"""Quantisation benchmark: float32 (the baseline) against int8 (torchao) and NF4 (bitsandbytes)
weight-only quantisation, on mid-size random LongLLaVA models, on this machine's CPU.

    python benchmarks/bench_quant.py [--frames 64] [--decode-tokens 32] [--repeats 2] [--models mid mid-moe]
    python benchmarks/bench_quant.py --checkpoints    # build them once; print {name: folder} as JSON

Models (written once under benchmarks/out/, `model.testing.write_tiny_longllava`, seed 0):
- "mid": bench_engine.py's hybrid checkpoint (the same folder: the LM of bench_lm_prefill.py,
  hidden 512, FFN 1408, 8 layers with attention at layer 4, vocab 32000, and a narrow CLIP at
  LongLLaVA's geometry). Its vocabulary is outsized for its width: embeddings and lm_head hold
  52 % of its weights (LongLLaVA-9B: 6 %), so only 28 % of them are in quantised kinds
  (LongLLaVA-9B: 60 %).
- "mid-moe": the same with 16 experts, top-2, on every other layer, LongLLaVA-53B-A13B's layout:
  77 % of its weights are in quantised kinds (LongLLaVA-53B-A13B: 93 %).

Each (model, method) runs in its own process (`--worker SPEC`, one JSON line back), --repeats
times with the methods interleaved, the fastest run kept. In each: the library's one-time start-up
(imports, one quantised layer), then `load_model` timed, every float weight read once (safetensors
maps float32 weights lazily; reading them counts them as a run will), and the load peak = VmHWM
from just before loading minus the RSS there. Then the `ask` path on the 1200-frame clip of
bench_engine.py at `--frames` frames: a 2-frame warm-up, then time to first token (frames
decoded, CLIP, chunked prefill of 2048-token chunks) and `--decode-tokens` greedy tokens with EOS
ignored, 3 times from copies of the prompt's state (the best rate kept). Last logits of each
quantised run are compared with float32's. Last, one Linear [4096, 4096] alone per method, for 2048
rows (a prefill chunk) and 1 row (a decode step): where the libraries' CPU kernels stand at
LongLLaVA's width. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench_engine import CHECKPOINTS, CLIP, LM, OUT_DIR, QUESTION, REPO, VIDEO, write_video
from measure import THREADS, Meter, answer_worker, cpu_name, mb, print_json_line
from measure import run_worker as run_in_worker

MODELS = {"mid": CHECKPOINTS["hybrid"], "mid-moe": OUT_DIR / "quant_mid_moe_longllava"}
MOE = dict(num_experts=16, num_experts_per_tok=2, expert_layer_period=2, expert_layer_offset=1)
METHODS = ("none", "int8", "nf4")
CHUNK = 2048
DECODE_REPEATS = 3  # the decode rate is the best of this many generations
LINEAR = 4096  # the Linear of the per-layer measurement: LongLLaVA's width


def ensure_checkpoints() -> dict[str, Path]:
    """Write whichever of the two checkpoints is missing; {name: folder}."""
    from model.testing import write_tiny_longllava

    OUT_DIR.mkdir(exist_ok=True)
    for name, lm in (("mid", LM), ("mid-moe", LM | MOE)):
        path = MODELS[name]
        if not path.exists():
            tmp = path.with_name(path.name + ".partial")
            write_tiny_longllava(tmp, seed=0, lm=lm, vision=CLIP, shards=1,
                                 config_overrides={"tokenizer_model_max_length": None})  # fmt: skip
            tmp.rename(path)
    return dict(MODELS)


def worker_run(spec: dict) -> dict:
    import torch

    from model import load_model
    from model.api import RunOptions, _embed, plan_request, prefill_shared
    from model.engine import GenerationOptions, generate
    from model.memory_usage import current_rss_bytes, peak_rss_bytes, reset_peak_rss
    from model.quantize import loaded_bytes_by_kind, quantize_linear
    from model.request import AskRequest
    from sampling import SamplingOptions

    torch.set_num_threads(THREADS)
    quantize = spec["quantize"]
    if quantize != "none":  # the library's one-time start-up is not the model's
        quantize_linear(torch.nn.Linear(128, 128), quantize)(torch.ones(1, 128))
    base = current_rss_bytes()
    reset_peak_rss()
    with Meter() as load:
        model = load_model(MODELS[spec["model"]], dtype="float32", quantize=quantize)
    for p in model.parameters():
        if type(p.data) is torch.Tensor:
            p.data.sum()
    load_peak = peak_rss_bytes() - base
    weights = sum(loaded_bytes_by_kind(model).values())
    run = RunOptions(chunk_tokens=CHUNK)

    def first_logits(frames: int, capacity_extra: int):
        sampling = SamplingOptions(num_frames=frames)
        planned = plan_request(model, AskRequest(inputs=[VIDEO], questions=QUESTION, sampling=sampling))
        shared = prefill_shared(model, planned, run, capacity=planned.num_tokens(capacity_extra))
        shared.prefill.push(_embed(model, planned.suffixes[0]))
        return planned, shared.prefill, shared.prefill.finish()

    first_logits(2, 1)  # warm-up: thread pools, the allocator, the decoder, bitsandbytes' repacking
    with Meter() as m:
        planned, prefill, logits = first_logits(spec["frames"], spec["decode_tokens"])
    rates = []
    for _ in range(DECODE_REPEATS):  # each from a copy of the prompt's state
        out = generate(model.lm, prefill.cache.fork(), logits, decode=model.tokenizer.decode, eos_token_ids=(),
                       options=GenerationOptions(max_new_tokens=spec["decode_tokens"]))  # fmt: skip
        rates.append((len(out.token_ids) - 1) / out.seconds)
    torch.save(logits.clone(), spec["logits_file"])
    return {"load_s": load.seconds, "load_peak_rss": load_peak, "weights_bytes": weights,
            "ttft_s": m.seconds, "prefill_s": prefill.seconds, "num_tokens": planned.num_tokens(0),
            "decode_tok_s": max(rates), "decode_tok_s_all": [round(r, 1) for r in rates], "peak_rss": peak_rss_bytes(),
            "others_cores": max(m.others_cpu_s / m.seconds, load.others_cpu_s / max(load.seconds, 1e-9))}  # fmt: skip


def worker_linear(spec: dict) -> dict:
    """Milliseconds of one LongLLaVA-sized Linear [4096, 4096] per method, for a prefill chunk's
    rows and for one decode row: the best of 10 calls after 3 warm-ups."""
    import copy

    import torch

    from model.quantize import quantize_linear

    torch.set_num_threads(THREADS)
    linear = torch.nn.Linear(LINEAR, LINEAR, bias=False).eval().requires_grad_(False)
    layers = {q: linear if q == "none" else quantize_linear(copy.deepcopy(linear), q).eval() for q in METHODS}
    times: dict = {}
    with torch.inference_mode(), Meter() as m:
        for rows in (CHUNK, 1):
            x = torch.randn(rows, LINEAR)
            for quantize, layer in layers.items():
                for _ in range(3):
                    layer(x)
                times[f"{quantize} {rows} rows"] = min(timed_call(layer, x) for _ in range(10)) * 1e3
    return {"ms": times, "others_cores": m.others_cpu_s / m.seconds}


def timed_call(layer, x) -> float:
    start = time.perf_counter()
    layer(x)
    return time.perf_counter() - start


def predicted_weights(model: str, quantize: str) -> int:
    """The memory model's weights for `model` on the CPU (model.weights)."""
    from model.summary import estimate_request, summarize_checkpoint

    summary = summarize_checkpoint(MODELS[model])
    result = estimate_request(summary, num_frames=1, budget=1 << 40, dtype="float32", chunk_tokens=CHUNK,
                              max_new_tokens=1, device="cpu", quantize=quantize)  # fmt: skip
    return result["memory_bytes"]["weights"]


def logits_error(model: str, quantize: str) -> dict:
    import torch

    reference, logits = (torch.load(OUT_DIR / f"quant_logits_{model}_{q}.pt") for q in ("none", quantize))
    error = (logits - reference).abs().max() / reference.abs().max()
    return {"max_rel": round(float(error), 4), "same_top_token": bool(logits.argmax() == reference.argmax())}


def run_one(model: str, quantize: str, args) -> dict:
    """One (model, method) measurement in its own process."""
    logits_file = str(OUT_DIR / f"quant_logits_{model}_{quantize}.pt")
    spec = {"kind": "run", "model": model, "quantize": quantize, "frames": args.frames,
            "decode_tokens": args.decode_tokens, "logits_file": logits_file}  # fmt: skip
    t0 = time.perf_counter()
    r = run_in_worker(__file__, spec, max_wait_s=args.max_wait, retries=1, env={"PYTHONPATH": str(REPO)})
    print(f"  {model} {quantize}: {time.perf_counter() - t0:.0f} s wall, load peak {mb(r['load_peak_rss'])} MiB, "
          f"TTFT {r['ttft_s']:.2f} s, decode {r['decode_tok_s']:.1f} tok/s, others {r['others_cores']:.2f} cores",
          file=sys.stderr, flush=True)  # fmt: skip
    return r


def best_of(runs: list[dict]) -> dict:
    """The fastest run (by time to first token: noise only adds time), with every run's TTFT, best
    decode rate and load peak beside it."""
    fastest = min(runs, key=lambda r: r["ttft_s"])
    return fastest | {"ttft_all": [round(r["ttft_s"], 3) for r in runs],
                      "decode_tok_s_runs": [round(r["decode_tok_s"], 1) for r in runs],
                      "load_peak_rss_all": [r["load_peak_rss"] for r in runs]}  # fmt: skip


def measure(args) -> dict:
    if not VIDEO.exists():
        OUT_DIR.mkdir(exist_ok=True)
        write_video()
    ensure_checkpoints()
    runs: dict = {model: {quantize: [] for quantize in METHODS} for model in args.models}
    for _ in range(args.repeats):  # the methods interleaved, so that a slow phase of the machine hits all
        for model in args.models:
            for quantize in METHODS:
                runs[model][quantize].append(run_one(model, quantize, args))
    results: dict = {}
    for model in args.models:
        results[model] = {quantize: best_of(runs[model][quantize]) for quantize in METHODS}
        for quantize in METHODS:
            results[model][quantize]["predicted_weights_bytes"] = predicted_weights(model, quantize)
        for quantize in METHODS[1:]:
            r, base = results[model][quantize], results[model]["none"]
            r["logits_error"] = logits_error(model, quantize)
            r["load_peak_vs_float32"] = round(r["load_peak_rss"] / base["load_peak_rss"], 3)
            r["ttft_vs_float32"] = round(r["ttft_s"] / base["ttft_s"], 3)
            r["decode_vs_float32"] = round(r["decode_tok_s"] / base["decode_tok_s"], 3)
    linear = run_in_worker(__file__, {"kind": "linear"}, max_wait_s=args.max_wait, env={"PYTHONPATH": str(REPO)})
    return {"benchmark": "bench_quant", "machine": cpu_name(), "threads": THREADS, "frames": args.frames,
            "decode_tokens": args.decode_tokens, "chunk_tokens": CHUNK, "repeats": args.repeats,
            "results": results, "linear_4096": linear}  # fmt: skip


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        answer_worker({"run": worker_run, "linear": worker_linear}, sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--decode-tokens", type=int, default=32)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--repeats", type=int, default=2, help="runs of each (model, method); the fastest kept")
    parser.add_argument("--max-wait", type=float, default=120, help="wait this long at most for a quiet machine")
    parser.add_argument("--checkpoints", action="store_true", help="only build the checkpoints; print their folders")
    args = parser.parse_args()
    if args.checkpoints:
        print(json.dumps({name: str(path) for name, path in ensure_checkpoints().items()}))
        return
    print_json_line(measure(args))


if __name__ == "__main__":
    main()
