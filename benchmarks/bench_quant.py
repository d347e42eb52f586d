"""Quantisation benchmark: float32 (the baseline) against int8 (torchao) and NF4 (bitsandbytes)
weight-only quantisation, on mid-size random LongLLaVA models, on this machine's CPU.

    python benchmarks/bench_quant.py [--frames 64] [--decode-tokens 16] [--models mid mid-moe]
    python benchmarks/bench_quant.py --checkpoints    # build them once; print {name: folder} as JSON

Models (written once under benchmarks/out/, `model.testing.write_tiny_longllava`, seed 0):
- "mid": bench_engine.py's hybrid checkpoint (the same folder: the LM of bench_lm_prefill.py,
  hidden 512, FFN 1408, 8 layers with attention at layer 4, vocab 32000, and a narrow CLIP at
  LongLLaVA's geometry). Its vocabulary is outsized for its width: embeddings and lm_head hold
  52 % of its weights (LongLLaVA-9B: 6 %), so only 29 % of them are in quantised kinds.
- "mid-moe": the same with 16 experts, top-2, on every other layer, LongLLaVA-53B-A13B's layout:
  92 % of its weights are in quantised kinds (the 53B model: about 93 %).

Each (model, method) runs in its own process (`--worker SPEC`, one JSON line back): the library's
one-time start-up (imports, one quantised layer) first, then `load_model` timed, every float weight
read once (safetensors maps float32 weights lazily; reading them counts them as a run will), and the
load peak = VmHWM from just before loading minus the RSS there. Then the `ask` path on the 1200-frame
clip of bench_engine.py at `--frames` frames: a 2-frame warm-up, then time to first token (frames
decoded, CLIP, chunked prefill of 2048-token chunks) and `--decode-tokens` greedy tokens with EOS
ignored. Last logits of each quantised run are compared with float32's. Ends with one JSON line.
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
    out = generate(model.lm, prefill.cache, logits, decode=model.tokenizer.decode, eos_token_ids=(),
                   options=GenerationOptions(max_new_tokens=spec["decode_tokens"]))  # fmt: skip
    torch.save(logits.clone(), spec["logits_file"])
    return {"load_s": load.seconds, "load_peak_rss": load_peak, "weights_bytes": weights,
            "ttft_s": m.seconds, "prefill_s": prefill.seconds, "num_tokens": planned.num_tokens(0),
            "decode_tok_s": (len(out.token_ids) - 1) / out.seconds, "peak_rss": peak_rss_bytes(),
            "others_cores": max(m.others_cpu_s / m.seconds, load.others_cpu_s / max(load.seconds, 1e-9))}  # fmt: skip


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


def measure(args) -> dict:
    if not VIDEO.exists():
        OUT_DIR.mkdir(exist_ok=True)
        write_video()
    ensure_checkpoints()
    results: dict = {}
    for model in args.models:
        results[model] = {}
        for quantize in METHODS:
            logits_file = str(OUT_DIR / f"quant_logits_{model}_{quantize}.pt")
            spec = {"kind": "run", "model": model, "quantize": quantize, "frames": args.frames,
                    "decode_tokens": args.decode_tokens, "logits_file": logits_file}  # fmt: skip
            t0 = time.perf_counter()
            r = run_in_worker(__file__, spec, max_wait_s=args.max_wait, retries=1, env={"PYTHONPATH": str(REPO)})
            r["predicted_weights_bytes"] = predicted_weights(model, quantize)
            print(f"  {model} {quantize}: {time.perf_counter() - t0:.0f} s wall, load peak "
                  f"{mb(r['load_peak_rss'])} MiB, TTFT {r['ttft_s']:.2f} s, decode {r['decode_tok_s']:.1f} tok/s, "
                  f"others {r['others_cores']:.2f} cores", file=sys.stderr, flush=True)  # fmt: skip
            results[model][quantize] = r
        for quantize in METHODS[1:]:
            r, base = results[model][quantize], results[model]["none"]
            r["logits_error"] = logits_error(model, quantize)
            r["load_peak_vs_float32"] = round(r["load_peak_rss"] / base["load_peak_rss"], 3)
            r["ttft_vs_float32"] = round(r["ttft_s"] / base["ttft_s"], 3)
            r["decode_vs_float32"] = round(r["decode_tok_s"] / base["decode_tok_s"], 3)
    return {"benchmark": "bench_quant", "machine": cpu_name(), "threads": THREADS, "frames": args.frames,
            "decode_tokens": args.decode_tokens, "chunk_tokens": CHUNK, "results": results}  # fmt: skip


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        answer_worker({"run": worker_run}, sys.argv[2])
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--decode-tokens", type=int, default=16)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--max-wait", type=float, default=120, help="wait this long at most for a quiet machine")
    parser.add_argument("--checkpoints", action="store_true", help="only build the checkpoints; print their folders")
    args = parser.parse_args()
    if args.checkpoints:
        print(json.dumps({name: str(path) for name, path in ensure_checkpoints().items()}))
        return
    print_json_line(measure(args))


if __name__ == "__main__":
    main()
