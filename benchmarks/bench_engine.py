"""Streaming engine benchmark: frames → CLIP → chunked prefill → generation, vs one-shot
prefill, transformers' JambaForCausalLM and an all-attention model of the same size.

    python benchmarks/bench_engine.py [--frames 50 100 200 400 1000] [--no-hf] [--reuse]

Written once under benchmarks/out/: a 48-second 64×48 H.264 clip (1200 frames, 25 fps) and two
random LongLLaVA-format checkpoints (`model.testing.write_tiny_longllava`, seed 0): the LM of
bench_lm_prefill.py (hidden 512, intermediate 1408, d_inner 1024, d_state 16, 8 layers with
attention at layer 4, GQA 8/2, vocab 32000) with a narrow CLIP tower at LongLLaVA's geometry
(336 px, patch 14: 576 patches → 2d pooling → 144 tokens per frame, width 64, 3 layers of which
LongLLaVA's select layer -2 runs 2), and the same with attention in every layer. The tokenizer is
the tiny BPE one. transformers' Jamba gets the LM weights renamed to its own naming.

Every measurement runs in its own subprocess (`--worker SPEC`, one JSON line back) whose peak RSS
is its VmHWM over the whole process (imports, loading and the run: what the memory model predicts).
ours = the library path of `model.api.ask` (plan_request → prefill_shared → question → finish →
generate), float32, chunks of 2048 tokens or one chunk of the whole prompt; the first token needs
no further forward, so time-to-first-token is the time until `finish` returns. Our chunked engine
runs --repeats times per frame count (its own process each time): the fastest run's times, the
median peak (`best_of`). Decode rate: 32
greedy tokens with EOS ignored. transformers gets the same `inputs_embeds` (our CLIP + splice,
written to a file by a separate worker) in one forward with `logits_to_keep=1`, only where a
linear fit of its earlier peaks (or a first guess) stays under --max-rss-gb. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from bench_lm_prefill import MID, prefill_matmuls, worker_matmul_rate
from measure import (
    THREADS,
    Meter,
    answer_worker,
    cpu_name,
    cpu_times,
    matmul_floors,
    mb,
    print_json_line,
    slope,
)
from measure import run_worker as run_in_worker

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = Path(__file__).resolve().parent / "out"
VIDEO = OUT_DIR / "engine_1200f_64x48.mp4"
VIDEO_FRAMES, VIDEO_FPS, VIDEO_SIZE = 1200, 25, (64, 48)
CHECKPOINTS = {"hybrid": OUT_DIR / "engine_mid_longllava", "attention": OUT_DIR / "engine_mid_attention"}
HF_CHECKPOINT = OUT_DIR / "engine_mid_hf_jamba"
RESULTS_CACHE = OUT_DIR / "bench_engine_results.json"
CHUNK = 2048
VISION_BATCH, FRAMES_AHEAD = 8, 16  # RunOptions defaults
DECODE_TOKENS = 32
QUESTION = "What happens in the video?"
TOKENS_PER_IMAGE = 144  # 24×24 patches, 2d-pooled to 12×12
LM = {k: v for k, v in MID.items() if k != "use_mamba_kernels"} | dict(
    mamba_dt_rank=32, n_ctx=1 << 20, mamba_conv_bias=True, mamba_proj_bias=False, mamba_inner_layernorms=True
)
CLIP = dict(hidden_size=64, intermediate_size=256, num_hidden_layers=3, num_attention_heads=4, image_size=336,
            patch_size=14, projection_dim=16)
# transformers' peak RSS before its first measurement: ~1 GB + the slow scan's 3 fp32 [L, d_inner,
# d_state] tensors and a few [L, d_inner] ones per token (bench_lm_prefill measured ~260 KB/token).
HF_FIRST_GUESS = (1.0e9, 280e3)


# --- setup -----------------------------------------------------------------------------------------

def write_video() -> None:
    """A moving gradient with a square: every frame differs, x264 has real work to decode."""
    import av
    import numpy as np

    w, h = VIDEO_SIZE
    tmp = VIDEO.with_suffix(".partial.mp4")
    yy, xx = np.mgrid[0:h, 0:w]
    with av.open(str(tmp), "w") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"g": "250", "preset": "ultrafast"}
        for t in range(VIDEO_FRAMES):
            rgb = np.stack([(xx * 4 + t) % 256, (yy * 5 + 2 * t) % 256, np.full_like(xx, (t * 3) % 256)], -1)
            x = t * (w - 12) // VIDEO_FRAMES
            rgb[18:30, x : x + 12] = (250, 30, 30)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24")))
        container.mux(stream.encode())
    tmp.rename(VIDEO)


def worker_checkpoints(spec: dict) -> dict:
    import torch
    from safetensors.torch import load_file
    from transformers import JambaConfig

    from model.naming import to_native
    from model.saving import write_weights
    from model.testing import write_tiny_longllava

    for name, overrides in (("hybrid", {}), ("attention", dict(attn_layer_period=1, attn_layer_offset=0))):
        path = CHECKPOINTS[name]
        tmp = path.with_name(path.name + ".partial")
        write_tiny_longllava(tmp, seed=0, lm=LM | overrides, vision=CLIP, shards=1,
                             config_overrides={"tokenizer_model_max_length": None})
        tmp.rename(path)
    tensors = load_file(CHECKPOINTS["hybrid"] / "model.safetensors")
    dense = set(range(LM["num_hidden_layers"]))  # num_experts 1: every layer is a dense FFN
    lm = {to_native(k, dense): v for k, v in tensors.items() if not k.startswith(("model.mm_", "model.vision"))}
    tmp = HF_CHECKPOINT.with_name(HF_CHECKPOINT.name + ".partial")
    keys = {k: v for k, v in LM.items() if k not in ("n_ctx", "mamba_inner_layernorms")}
    JambaConfig(**keys, max_position_embeddings=LM["n_ctx"], dtype=torch.float32).save_pretrained(tmp)
    write_weights(tmp, lm)
    tmp.rename(HF_CHECKPOINT)
    return {}


# --- workers ---------------------------------------------------------------------------------------

def _ours_setup(spec: dict):
    import torch

    from model import load_model
    from model.api import RunOptions, plan_request
    from model.request import AskRequest
    from sampling import SamplingOptions

    torch.set_num_threads(THREADS)
    model = load_model(CHECKPOINTS[spec.get("model", "hybrid")], dtype="float32")
    # chunk 0 is the one-shot run: worker_ours sets the chunk to the whole prompt once it is planned.
    run = RunOptions(chunk_tokens=spec["chunk"] or CHUNK, vision_batch_size=VISION_BATCH, frames_ahead=FRAMES_AHEAD)

    def request(frames: int):
        sampling = SamplingOptions(num_frames=frames)
        return plan_request(model, AskRequest(inputs=[VIDEO], questions=QUESTION, sampling=sampling))

    return model, run, request


def _first_logits(model, request, run, max_new_tokens: int):
    """Prefill the whole prompt as `ask` does; returns (prefill state, last logits, shared)."""
    from model.api import _embed, prefill_shared

    shared = prefill_shared(model, request, run, capacity=request.num_tokens(max_new_tokens))
    shared.prefill.push(_embed(model, request.suffixes[0]))
    return shared.prefill, shared.prefill.finish(), shared


def worker_ours(spec: dict) -> dict:
    import dataclasses

    import torch

    from model.engine import GenerationOptions, generate
    from model.memory_usage import current_rss_bytes, peak_rss_bytes, reset_peak_rss

    base = current_rss_bytes()
    model, run, request = _ours_setup(spec)
    frames = spec["frames"]
    if spec["chunk"] == 0:  # one shot: one chunk holding the whole prompt
        run = dataclasses.replace(run, chunk_tokens=request(frames).num_tokens(DECODE_TOKENS))
    _first_logits(model, request(2), run, 1)  # warm-up: thread pools, the allocator, the decoder
    loaded = {"peak": peak_rss_bytes(), "rss": current_rss_bytes()}
    reset_peak_rss()  # from here VmHWM is the run's own peak (loading's transients left out)
    with Meter() as m:
        req = request(frames)
        prefill, logits, shared = _first_logits(model, req, run, DECODE_TOKENS)
        token = int(logits.argmax())
    ttft = m.seconds
    out = generate(model.lm, prefill.cache, logits, decode=model.tokenizer.decode, eos_token_ids=(),
                   options=GenerationOptions(max_new_tokens=DECODE_TOKENS))
    assert out.token_ids[0] == token and len(out.token_ids) == DECODE_TOKENS
    if spec.get("logits_file"):
        torch.save(logits.clone(), spec["logits_file"])
    end_peak = peak_rss_bytes()
    return {"ttft_s": ttft, "prefill_s": prefill.seconds, "vision_s": shared.vision_seconds,
            "decode_frames_s": shared.decode_seconds, "generate_s": out.seconds,
            "decode_tok_s": (DECODE_TOKENS - 1) / out.seconds, "num_tokens": req.num_tokens(0),
            "capacity": req.num_tokens(DECODE_TOKENS), "chunk_tokens": run.chunk_tokens,
            "peak_rss": max(loaded["peak"], end_peak), "run_peak_rss": end_peak,
            "base_rss": base, "rss_after_load": loaded["rss"],
            "cache_bytes": prefill.cache.nbytes, "others_cores": m.others_cpu_s / m.seconds}


def worker_embeds(spec: dict) -> dict:
    """The whole prompt's LM input, by our CLIP and splice, to a file for transformers."""
    import torch

    from model.api import _embed
    from sampling import iter_frames

    model, _, request = _ours_setup(spec | {"chunk": CHUNK})
    req = request(spec["frames"])
    features = []
    with torch.inference_mode():
        pixels = [f.pixels for f in iter_frames(list(req.plans), req.sampling)]
        for start in range(0, len(pixels), VISION_BATCH):
            features.extend(model.encode_images(torch.stack(pixels[start : start + VISION_BATCH])))
        embeds = torch.cat([model.merge_embeddings(req.prompt.shared, features)[0], _embed(model, req.suffixes[0])])
    torch.save(embeds[None].contiguous(), spec["file"])
    return {"num_tokens": embeds.shape[0]}


def worker_hf(spec: dict) -> dict:
    import torch
    from transformers import JambaForCausalLM

    from model.memory_usage import current_rss_bytes, peak_rss_bytes

    torch.set_num_threads(THREADS)
    base = current_rss_bytes()
    hf = JambaForCausalLM.from_pretrained(HF_CHECKPOINT, dtype=torch.float32).eval()
    embeds = torch.load(spec["file"])
    with torch.inference_mode():
        hf(inputs_embeds=embeds[:, :256], use_cache=False, logits_to_keep=1)  # warm-up
        with Meter() as m:
            logits = hf(inputs_embeds=embeds, use_cache=False, logits_to_keep=1).logits[0, -1].float()
    if spec.get("logits_file"):
        torch.save(logits.clone(), spec["logits_file"])
    return {"prefill_s": m.seconds, "num_tokens": embeds.shape[1], "peak_rss": peak_rss_bytes(),
            "base_rss": base, "others_cores": m.others_cpu_s / m.seconds}


WORKERS = {"checkpoints": worker_checkpoints, "ours": worker_ours, "embeds": worker_embeds, "hf": worker_hf,
           "rate": worker_matmul_rate}


def run_worker(spec: dict, max_wait_s: float, retries: int = 1) -> dict:
    """One measurement in a fresh process (`measure.run_worker`) that imports this checkout's library."""
    return run_in_worker(__file__, spec, max_wait_s=max_wait_s, retries=retries, env={"PYTHONPATH": str(REPO)})


# --- analysis --------------------------------------------------------------------------------------

def vision_matmuls_per_frame(v, layers_run: int, tokens_per_image: int, e: int) -> list[tuple[float, tuple | None]]:
    """(flops, (in, out) or None) as bench_lm_prefill.prefill_matmuls: the patch embedding (a strided
    conv, i.e. [patches, 3·p²] by [3·p², w]), per CLIP layer run q, k, v, o, fc1, fc2 for every
    position and the attention's QKᵀ/PV (None), and the projector on the pooled tokens."""
    seq, w, f = v.num_patches + 1, v.hidden_size, v.intermediate_size
    patch_in = v.num_channels * v.patch_size**2
    out = [(2.0 * v.num_patches * patch_in * w, (patch_in, w))]
    for _ in range(layers_run):
        out += [(2.0 * seq * w * w, (w, w))] * 4 + [(2.0 * seq * w * f, (w, f)), (2.0 * seq * f * w, (f, w))]
        out.append((4.0 * seq * seq * w, None))
    return [*out, (2.0 * tokens_per_image * w * e, (w, e)), (2.0 * tokens_per_image * e * e, (e, e))]


def engine_matmuls(vision, frames: int, num_tokens: int) -> list[tuple[float, tuple | None]]:
    """Every matmul from frames to the first token: CLIP and the projector per frame, then the LM
    prefill of `num_tokens` positions (flops, (in, out) or None)."""
    per_frame = vision_matmuls_per_frame(vision, vision.num_hidden_layers - 1, TOKENS_PER_IMAGE, LM["hidden_size"])
    return [(flops * frames, shape) for flops, shape in per_frame] + prefill_matmuls(num_tokens, LM)


def configs():
    from model.loading import jamba_config_of, open_checkpoint

    checkpoint = open_checkpoint(CHECKPOINTS["hybrid"])
    from model.config import CLIPVisionConfig

    return (jamba_config_of(checkpoint), jamba_config_of(open_checkpoint(CHECKPOINTS["attention"])),
            CLIPVisionConfig.from_dict(checkpoint.config["vision_config"]))


def best_of(runs: list[dict]) -> dict:
    """Our figures from repeated runs: the fastest run's (by time to first token: noise on this VM
    only adds time, and the floor's rates are likewise the best of 10 calls), with the median peak
    RSS (a peak legitimately varies either way: e.g. whether the decode queue is full when the
    largest chunk runs)."""
    fastest = min(runs, key=lambda r: r["ttft_s"])
    median = {key: statistics.median(r[key] for r in runs) for key in ("peak_rss", "run_peak_rss")}
    return fastest | median | {"repeats": len(runs), "ttft_all": [round(r["ttft_s"], 3) for r in runs],
                               "run_peak_all": [r["run_peak_rss"] for r in runs]}


def fits_hf(results: dict, frames: list[int], num_tokens: int, max_rss: float) -> tuple[bool, float]:
    """Predicted transformers peak for `num_tokens` from a line through its measured peaks."""
    done = [(r["num_tokens"], r["peak_rss"]) for f in frames if "peak_rss" in (r := results.get(f"hf {f}", {}))]
    if len(done) >= 2:
        b = slope([t for t, _ in done], [p for _, p in done])
        a = done[-1][1] - b * done[-1][0]
    else:
        a, b = HF_FIRST_GUESS
        if done:
            a = done[0][1] - b * done[0][0]
    predicted = a + b * num_tokens
    return predicted <= max_rss, predicted


def measure(args) -> dict:
    OUT_DIR.mkdir(exist_ok=True)
    if not VIDEO.exists():
        write_video()
    if not HF_CHECKPOINT.exists():
        run_worker({"kind": "checkpoints"}, 0)
    results = json.loads(RESULTS_CACHE.read_text()) if args.reuse and RESULTS_CACHE.exists() else {}

    def record(key: str, spec: dict, retries: int = 1) -> dict | None:
        if key not in results:
            t0 = time.perf_counter()
            results[key] = run_worker(spec, args.max_wait, retries)
            RESULTS_CACHE.write_text(json.dumps(results))
            r = results[key]
            print(f"  {key}: {time.perf_counter() - t0:.0f} s wall, peak {mb(r['peak_rss'])} MB, "
                  f"others {r['others_cores']:.2f} cores", file=sys.stderr, flush=True)
        return results[key]

    for f in args.frames:
        spec = {"kind": "ours", "chunk": CHUNK, "frames": f, "logits_file": str(OUT_DIR / f"engine_logits_ours_{f}.pt")}
        runs = [record(f"ours {f} run {k + 1}", spec, retries=int(f <= 200)) for k in range(args.repeats)]
        results[f"ours {f}"] = best_of(runs)
    if not args.no_hf:
        for f in args.frames:
            tokens = results[f"ours {f}"]["num_tokens"]
            ok, predicted = fits_hf(results, args.frames, tokens, args.max_rss_gb * 1e9)
            if not ok:
                results[f"hf {f}"] = {"skipped": f"would need ~{predicted / 1e9:.1f} GB"}
                continue
            file = OUT_DIR / f"engine_embeds_{f}.pt"
            if f"hf {f}" not in results:
                run_worker({"kind": "embeds", "frames": f, "file": str(file)}, 0)
            record(f"hf {f}", {"kind": "hf", "frames": f, "file": str(file),
                               "logits_file": str(OUT_DIR / f"engine_logits_hf_{f}.pt")}, retries=int(f <= 100))
            file.unlink(missing_ok=True)
    for f in args.frames:
        record(f"oneshot {f}", {"kind": "ours", "chunk": 0, "frames": f}, retries=int(f <= 200))
    for f in args.frames:
        if f > args.attention_max_frames:
            results[f"attention {f}"] = {"skipped": f"over --attention-max-frames {args.attention_max_frames}"}
            continue
        record(f"attention {f}", {"kind": "ours", "chunk": CHUNK, "frames": f, "model": "attention"},
               retries=int(f <= 100))
    shapes = sorted({shape for _, shape in engine_matmuls(configs()[2], 1, 1) if shape})
    if not {f"float32 {k}x{n}" for k, n in shapes} <= results.get("rate", {}).get("rates", {}).keys():
        results["rate"] = run_worker({"kind": "rate", "shapes": shapes, "dtypes": ["float32"]}, args.max_wait)
        RESULTS_CACHE.write_text(json.dumps(results))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, nargs="+", default=[50, 100, 200, 400, 1000])
    parser.add_argument("--no-hf", action="store_true", help="skip transformers")
    parser.add_argument("--reuse", action="store_true", help=f"reuse measurements cached in {RESULTS_CACHE.name}")
    parser.add_argument("--max-rss-gb", type=float, default=18.0, help="skip transformers runs predicted above this")
    parser.add_argument("--attention-max-frames", type=int, default=200,
                        help="all-attention model: larger frame counts are skipped (quadratic time: ~25 min at 1000)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="runs of our chunked engine per frame count (fastest time, median peak RSS)")
    parser.add_argument("--max-wait", type=float, default=600,
                        help="seconds to wait before each measurement for other processes to leave the CPU")
    args = parser.parse_args()
    if args.worker:
        answer_worker(WORKERS, args.worker)
        return
    start = time.perf_counter()
    results = measure(args)
    report(args, results, time.perf_counter() - start)


def report(args, results: dict, wall_s: float) -> None:
    import torch

    from model.memory import estimate_memory

    lm, lm_attention, vision = configs()
    frames = args.frames
    ours = {f: results[f"ours {f}"] for f in frames}
    tokens = {f: ours[f]["num_tokens"] for f in frames}
    per_frame_tokens = slope(frames, [tokens[f] for f in frames])
    rates = results["rate"]["rates"]
    best_rate = max(v for k, v in rates.items() if k.startswith("float32"))
    cpu = cpu_name()
    print(f"\nStreaming engine: LM hidden {lm.hidden_size}, {lm.num_hidden_layers} layers "
          f"({lm.layer_types.count('attention')} attention), d_inner {lm.d_inner}, d_state {lm.mamba_d_state}, "
          f"GQA {lm.num_attention_heads}/{lm.kv_heads}, vocab {lm.vocab_size}; CLIP {vision.image_size} px / "
          f"{vision.patch_size}, width {vision.hidden_size}, {vision.num_hidden_layers - 1} layers run, "
          f"{TOKENS_PER_IMAGE} tokens per frame; float32; torch {torch.__version__}, {THREADS} threads, {cpu}")
    print(f"Prompt: {per_frame_tokens:.2f} LM positions per frame; chunk {CHUNK}; vision batch {VISION_BATCH}; "
          f"frames ahead {FRAMES_AHEAD}; fp32 matmul rates: best {best_rate / 1e9:.0f} GFLOP/s, per shape "
          + ", ".join(f"{k.split()[1]} {v / 1e9:.0f}" for k, v in rates.items() if k.startswith("float32")) + "\n")
    head = (f"{'frames':>6} {'tokens':>7} {'ours s/frame':>12} {'vision':>7} {'prefill':>8} {'TTFT s':>8} "
            f"{'tok/s':>6} {'floor s/fr':>10} {'/floor':>6} {'/peak':>6} {'1-shot s/fr':>11} {'HF s/frame':>10} "
            f"{'HF/ours':>8} "
            f"{'attn-all s/fr':>13}")
    print(head + "\n" + "-" * len(head))
    figures: dict = {"frames": frames, "tokens": tokens, "tokens_per_frame": round(per_frame_tokens, 3),
                     "matmul_gflops_fp32": round(best_rate / 1e9, 1), "rows": [], "wall_s": round(wall_s)}
    for f in frames:
        r, one, hf, att = ours[f], results[f"oneshot {f}"], results.get(f"hf {f}", {}), results[f"attention {f}"]
        floors = matmul_floors(engine_matmuls(vision, f, tokens[f]), rates, dtypes=("float32",))["float32"]
        floor, peak = floors["shapes"], floors["peak"]
        hf_ratio = hf["prefill_s"] / r["prefill_s"] if "prefill_s" in hf else math.nan
        hf_cell = f"{hf['prefill_s'] / f:10.3f}" if "prefill_s" in hf else f"{'skipped':>10}"
        att_cell = f"{att['ttft_s'] / f:13.3f}" if "ttft_s" in att else f"{'skipped':>13}"
        print(f"{f:>6} {tokens[f]:>7} {r['ttft_s'] / f:12.3f} {r['vision_s']:7.1f} {r['prefill_s']:8.1f} "
              f"{r['ttft_s']:8.1f} {r['decode_tok_s']:6.1f} {floor / f:10.3f} {r['ttft_s'] / floor:6.2f} "
              f"{r['ttft_s'] / peak:6.2f} "
              f"{one['ttft_s'] / f:11.3f} {hf_cell} {hf_ratio:8.2f} {att_cell}")
        figures["rows"].append({
            "frames": f, "tokens": tokens[f], "ours": _rounded(r), "oneshot": _rounded(one), "hf": _rounded(hf),
            "attention": _rounded(att), "floor_s": round(floor, 3), "ours_over_floor": round(r["ttft_s"] / floor, 3),
            "peak_floor_s": round(peak, 3), "ours_over_peak_floor": round(r["ttft_s"] / peak, 3),
            "hf_prefill_over_ours_prefill": round(hf_ratio, 3)})
    print(f"(ours s/frame = time to first token / frames, i.e. frame decoding + CLIP + prefill, fastest of "
          f"{args.repeats} runs; vision and prefill:"
          " seconds in CLIP and in the LM; tok/s: 31 greedy decode steps after it; floor: the matmuls of CLIP, the"
          " projector and the LM prefill, each projection at its own shape's measured fp32 rate, attention and"
          " lm_head at the best rate (as bench_lm_prefill.py); /peak: against all matmuls at the best rate;"
          " HF/ours = transformers forward seconds / our LM prefill seconds on the same"
          " embeddings)")
    memory_report(args, results, figures, lm, lm_attention, vision, estimate_memory)
    targets_report(figures, results, frames)
    print_json_line(figures)


def _rounded(r: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()}


def memory_report(args, results, figures, lm, lm_attention, vision, estimate_memory) -> None:
    frames = args.frames
    kv_frame = {name: c.kv_elements_per_token * 4 * figures["tokens_per_frame"]
                for name, c in (("hybrid", lm), ("attention", lm_attention))}
    print(f"\nPeak RSS (whole worker process, VmHWM; ours: the median of {args.repeats} runs), MB:")
    print(f"{'frames':>6} {'ours':>9} {'one-shot':>9} {'transformers':>13} {'all-attention':>14} {'predicted':>10} "
          f"{'meas/pred':>9}")
    figures["memory"] = {"kv_bytes_per_frame": {k: round(v) for k, v in kv_frame.items()}, "rows": []}
    for f in frames:
        r = results[f"ours {f}"]
        est = estimate_memory(lm, vision, dtype="float32", num_tokens=r["capacity"], chunk_tokens=CHUNK,
                              vision_batch_size=VISION_BATCH, frames_ahead=FRAMES_AHEAD,
                              mm_hidden_size=vision.hidden_size, device="cpu")
        cells = []
        for key in ("oneshot", "hf", "attention"):
            other = results.get(f"{key} {f}", {})
            cells.append(mb(other["peak_rss"]) if "peak_rss" in other else "skipped")
        print(f"{f:>6} {mb(r['peak_rss']):>9} {cells[0]:>9} {cells[1]:>13} {cells[2]:>14} {mb(est.total):>10} "
              f"{r['peak_rss'] / est.total:9.3f}")
        figures["memory"]["rows"].append({"frames": f, "ours_peak": r["peak_rss"], "predicted": est.as_dict(),
                                          "measured_over_predicted": round(r["peak_rss"] / est.total, 4),
                                          "rss_after_load": r["rss_after_load"], "base_rss": r["base_rss"],
                                          "cache_bytes": r["cache_bytes"]})
    est = figures["memory"]["rows"][0]["predicted"]
    print("Predicted components at the first frame count, MB: "
          + ", ".join(f"{k} {v / 2**20:.1f}" for k, v in est.items()))
    print("\nPer-frame slope of peak RSS (least squares over the frame counts measured), bytes/frame:")
    figures["memory"]["slopes"] = {}
    for key, field, name in (("ours", "run_peak_rss", "ours chunked, run's own peak"),
                             ("ours", "peak_rss", "ours chunked, process peak"),
                             ("oneshot", "peak_rss", "ours one-shot"), ("hf", "peak_rss", "transformers"),
                             ("attention", "peak_rss", "all-attention (ours chunked)")):
        points = [(f, results[f"{key} {f}"][field]) for f in frames if field in results.get(f"{key} {f}", {})]
        s = slope(*zip(*points, strict=True)) if len(points) > 1 else math.nan
        label = key if field == "peak_rss" else f"{key} run"
        figures["memory"]["slopes"][label] = round(s) if len(points) > 1 else None
        kv = kv_frame["attention" if key == "attention" else "hybrid"]
        print(f"  {name:<32}{s:14.0f}  ({s / kv:5.2f} × its KV cache per frame, over frames {[p[0] for p in points]})")
    print("  (run's own peak: VmHWM reset after loading and the warm-up, so only what the run adds moves it)")
    print(f"  KV cache per frame: hybrid {kv_frame['hybrid']:.0f}, all-attention {kv_frame['attention']:.0f} "
          f"(= KV elements per token × 4 B × {figures['tokens_per_frame']:.2f} positions per frame)")


def targets_report(figures, results, frames) -> None:
    slopes, kv = figures["memory"]["slopes"], figures["memory"]["kv_bytes_per_frame"]
    targets = {"ours' memory slope (run's own peak) = KV bytes/frame within 10%":
               abs(slopes["ours run"] / kv["hybrid"] - 1) <= 0.10}
    rows = {r["frames"]: r for r in figures["rows"]}
    compared = [f for f in frames if not math.isnan(rows[f]["hf_prefill_over_ours_prefill"])]
    if compared:
        targets[f"ours faster than transformers at every frame count measured ({compared})"] = all(
            rows[f]["hf_prefill_over_ours_prefill"] > 1 for f in compared)
    if 400 in compared:
        targets["ours >= 3x transformers at 400 frames"] = rows[400]["hf_prefill_over_ours_prefill"] >= 3
    targets["ours within 1.5x of the matmul floor (model shapes) at every frame count"] = all(
        r["ours_over_floor"] <= 1.5 for r in figures["rows"])
    ratios = [r["measured_over_predicted"] for r in figures["memory"]["rows"]]
    targets["memory model within 15% at >= 4 frame counts"] = sum(abs(x - 1) <= 0.15 for x in ratios) >= 4
    diffs = {}
    for f in frames:
        a, b = OUT_DIR / f"engine_logits_ours_{f}.pt", OUT_DIR / f"engine_logits_hf_{f}.pt"
        if a.exists() and b.exists():
            import torch

            diffs[f] = (torch.load(a) - torch.load(b)).abs().max().item()
    if diffs:
        print("\nLast-logit max abs difference ours (chunked) vs transformers: "
              + ", ".join(f"{f} frames {d:.2e}" for f, d in diffs.items()))
    figures["logit_max_abs_diff_vs_hf"] = diffs
    print("\nTargets:")
    for name, ok in targets.items():
        print(f"  [{'met' if ok else 'NOT met'}] {name}")
    figures["targets_met"] = targets
    figures["others_cores_max"] = round(max(r.get("others_cores", 0) for k, r in results.items() if k != "rate"), 2)


if __name__ == "__main__":
    cpu_times()  # fail early off Linux
    main()
