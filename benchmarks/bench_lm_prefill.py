"""Jamba LM prefill benchmark: ours vs transformers' JambaForCausalLM, its pure-PyTorch path.

    python benchmarks/bench_lm_prefill.py [--lengths 1024 4096 16384] [--no-hf] [--reuse]

One random mid-size checkpoint (hidden 512, d_inner 1024, d_state 16, 8 layers with one attention, GQA
8/2, vocab 32000) is written once by transformers under benchmarks/out/ and loaded by both sides. Every
measurement runs in its own subprocess (this script with `--worker SPEC`, answering one JSON line), so
its peak RSS (VmHWM, reset through /proc/self/clear_refs after loading and a warm-up) is its own.
Before each measurement the script waits for the 2 cores to be idle, and measures again when other
processes took CPU meanwhile. Prints a table, the matmul floor (analytic FLOPs / measured F.linear
rates), memory slopes (plus one chunked run of ours at 64K tokens), the scan's share of one Mamba mixer
at Jamba-9B widths, and finally one JSON line with all figures. Raw measurements are kept in
benchmarks/out/bench_lm_prefill_raw.json; `--reuse` re-renders from them, measuring only what is missing.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from measure import (
    CONTENDED,
    RATE_ROWS,
    THREADS,
    Meter,
    answer_worker,
    cpu_name,
    matmul_floors,
    matmul_rates,
    mb,
    print_json_line,
    run_worker,
    slope,
)

OUT_DIR = Path(__file__).resolve().parent / "out"
CHECKPOINT = OUT_DIR / "jamba_mid_random"
RAW = OUT_DIR / "bench_lm_prefill_raw.json"  # every measurement by its spec, for --reuse
WARMUP_TOKENS = 256
CHUNK = 2048
MID = dict(
    vocab_size=32000,
    hidden_size=512,
    intermediate_size=1408,
    num_hidden_layers=8,
    num_attention_heads=8,
    num_key_value_heads=2,
    attn_layer_period=8,
    attn_layer_offset=4,
    expert_layer_period=2,
    expert_layer_offset=1,
    num_experts=1,
    num_experts_per_tok=1,
    mamba_d_state=16,
    mamba_d_conv=4,
    mamba_expand=2,
    mamba_dt_rank="auto",
    use_mamba_kernels=False,
)
JAMBA_9B_MIXER = dict(
    vocab_size=65536,
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=1,
    num_attention_heads=32,
    num_key_value_heads=8,
    mamba_d_state=16,
    mamba_d_conv=4,
    mamba_expand=2,
    mamba_dt_rank=256,
)
# Matmul rates (measure.matmul_rates) of every (in, out) of the mid model's projections, then two
# bigger shapes for the machine's peak.
BIG_SHAPES = ((2048, 2048), (4096, 4096))
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
# Run-to-run spread of a peak RSS from glibc's retained free memory (measured: ±30 MB here).
ALLOCATOR_NOISE = 32 << 20


# --- workers (each runs in its own process) --------------------------------------------------------


def worker_checkpoint(spec: dict) -> dict:
    import torch
    from transformers import JambaConfig, JambaForCausalLM

    from model.random_init import randomize_parameters

    torch.manual_seed(0)
    hf = JambaForCausalLM(JambaConfig(**MID)).eval()
    randomize_parameters(hf, 0)
    tmp = CHECKPOINT.with_name(CHECKPOINT.name + ".partial")
    hf.save_pretrained(tmp)
    tmp.rename(CHECKPOINT)
    return {"path": str(CHECKPOINT)}


def weights_bytes(module) -> int:
    storages = {
        t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in [*module.parameters(), *module.buffers()]
    }
    return sum(storages.values())


def load_prefill(side: str, dtype: str, chunk: int, cpu_kernels: bool):
    """Load one side and return (module, prefill(ids) -> last logits [V] float32). Ours uses the
    compiled CPU kernels (model.cpu_kernels) if `cpu_kernels`, else the PyTorch mixer path (specs
    measured before the kernels existed have no `cpu_kernels` key and mean the latter)."""
    import torch

    if side == "transformers":
        from transformers import JambaForCausalLM

        hf = JambaForCausalLM.from_pretrained(CHECKPOINT, dtype=getattr(torch, dtype)).eval()
        return hf, lambda ids: hf(input_ids=ids, use_cache=False, logits_to_keep=1).logits[0, -1].float()

    from model import load_language_model
    from model.scan import scan_blocked

    lm = load_language_model(CHECKPOINT, dtype=dtype)
    if not cpu_kernels:
        lm.set_scan(scan_blocked)  # a forced scan also keeps the mixer's PyTorch conv, softplus and gate
    if chunk == 0:
        return lm, lambda ids: lm(ids, logits_to_keep=1)[0, -1]

    def prefill_chunked(ids):
        length = ids.shape[1]
        cache = lm.new_cache(capacity=length)  # the prompt length is known at prefill time
        for start in range(0, length, chunk):
            logits = lm(ids[:, start : start + chunk], cache=cache, logits_to_keep=int(start + chunk >= length))
        return logits[0, -1]

    return lm, prefill_chunked


def worker_prefill(spec: dict) -> dict:
    import torch

    from model.memory_usage import current_rss_bytes, peak_rss_bytes, reset_peak_rss

    torch.set_num_threads(THREADS)
    base = current_rss_bytes()
    module, prefill = load_prefill(spec["side"], spec["dtype"], spec["chunk"], spec.get("cpu_kernels", False))
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, MID["vocab_size"], (1, spec["length"]), generator=g)
    times, others, steal = [], 0.0, 0.0
    with torch.inference_mode():
        prefill(ids[:, :WARMUP_TOKENS])
        loaded = current_rss_bytes()
        reset_peak_rss()
        for _ in range(spec["repeat"]):
            with Meter() as m:
                logits = prefill(ids)
            times.append(m.seconds)
            others, steal = others + m.others_cpu_s, steal + m.steal_s
            del m
    if spec.get("logits_file"):
        torch.save(logits.clone(), spec["logits_file"])
    return {
        "seconds": min(times),
        "all_seconds": times,
        "peak_rss": peak_rss_bytes(),
        "base_rss": base,
        "rss_before_prefill": loaded,
        "weights_bytes": weights_bytes(module),
        "others_cores": others / sum(times),
        "steal_s": steal,
    }


def worker_matmul_rate(spec: dict) -> dict:
    """FLOP/s of F.linear per (in, out) and dtype (`measure.matmul_rates`): the MID model's shapes and
    BIG_SHAPES, plus any `spec["shapes"]`, in `spec["dtypes"]` (default both)."""
    import torch

    torch.set_num_threads(THREADS)
    with Meter() as meter:
        shapes = {*(shape for _, shape in prefill_matmuls(RATE_ROWS) if shape), *BIG_SHAPES}
        shapes |= {tuple(shape) for shape in spec.get("shapes", ())}
        rates = matmul_rates(shapes, spec.get("dtypes", DTYPE_BYTES))
    return {"rates": rates, "others_cores": meter.others_cpu_s / meter.seconds}


def worker_mixer(spec: dict) -> dict:
    """One Mamba mixer at Jamba-9B widths: whole forward vs the scan alone, best of 3. Path "pytorch"
    times `scan_blocked`; path "compiled" times the fused kernel (softplus + scan + D skip + gate)."""
    import torch

    import model.mamba
    from model.cache import MambaCache
    from model.config import JambaConfig
    from model.mamba import MambaMixer
    from model.random_init import randomize_parameters
    from model.scan import scan_blocked

    torch.set_num_threads(THREADS)
    cfg = JambaConfig(**JAMBA_9B_MIXER)
    mixer = MambaMixer(cfg)
    randomize_parameters(mixer, 0)
    mixer.to(getattr(torch, spec["dtype"]))
    scan_seconds = []

    def timed(function):
        def run(*args):
            t0 = time.perf_counter()
            out = function(*args)
            scan_seconds.append(time.perf_counter() - t0)
            return out

        return run

    if spec["path"] == "pytorch":
        mixer.scan_impl = timed(scan_blocked)
    else:
        model.mamba.mamba_inner_compiled = timed(model.mamba.mamba_inner_compiled)
    h = torch.randn(1, spec["length"], cfg.hidden_size, generator=torch.Generator().manual_seed(2))
    h = h.to(getattr(torch, spec["dtype"]))
    runs = []
    with torch.inference_mode():
        for length in (WARMUP_TOKENS, *[spec["length"]] * 3):
            cache = MambaCache(torch.zeros(1, cfg.mamba_d_conv - 1, cfg.d_inner), torch.zeros(1, cfg.d_inner, 16))
            with Meter() as m:
                mixer(h[:, :length], cache)
            runs.append((m.seconds, scan_seconds[-1], m.others_cpu_s / m.seconds))
    total, scan, others = min(runs[1:])
    return {"mixer_seconds": total, "scan_seconds": scan, "scan_share": scan / total, "others_cores": others}


WORKERS = {
    "checkpoint": worker_checkpoint,
    "prefill": worker_prefill,
    "rate": worker_matmul_rate,
    "mixer": worker_mixer,
}


# --- analysis --------------------------------------------------------------------------------------


def prefill_matmuls(length: int, lm: dict = MID) -> list[tuple[float, tuple[int, int] | None]]:
    """Matmul FLOPs of a one-shot prefill of the `lm` config (the MID model) as (flops, (in, out) of the
    projection, or None for attention's QKᵀ/PV and the lm_head): every linear layer for every token,
    QKᵀ and PV over the causal half (query i sees i + 1 keys), the lm_head for the last token only."""
    from model.config import JambaConfig

    c = JambaConfig.from_dict(lm)
    e, d, f, n, r = c.hidden_size, c.d_inner, c.intermediate_size, c.mamba_d_state, c.dt_rank
    hd, h, h_kv = c.head_dim, c.num_attention_heads, c.kv_heads
    mamba = [(e, 2 * d), (d, r + 2 * n), (r, d), (d, e)]
    attention = [(e, h * hd), (e, h_kv * hd), (e, h_kv * hd), (h * hd, e)]
    mlp = [(e, f), (e, f), (f, e)]
    layers = [mamba if kind == "mamba" else attention for kind in c.layer_types] + [mlp] * c.num_hidden_layers
    out = [(2.0 * k * m * length, (k, m)) for shapes in layers for k, m in shapes]
    pairs = length * (length + 1) / 2
    out += [(2.0 * 2 * h * hd * pairs, None)] * c.layer_types.count("attention")
    return [*out, (2.0 * e * c.vocab_size, None)]


def prefill_floors(length: int, rates: dict[str, float]) -> dict[str, dict[str, float]]:
    """Seconds of the MID prefill's matmuls per dtype (`measure.matmul_floors`)."""
    return matmul_floors(prefill_matmuls(length), rates, DTYPE_BYTES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 16384])
    parser.add_argument("--no-hf", action="store_true", help="skip transformers (quick runs)")
    parser.add_argument("--mixer-length", type=int, default=2048)
    parser.add_argument(
        "--memory-length",
        type=int,
        default=65536,
        help="one more chunked float32 run of ours, for the memory slope over a longer span (0: none)",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=900,
        help="seconds to wait before each measurement for other processes to leave the CPU",
    )
    parser.add_argument(
        "--reuse", action="store_true", help=f"reuse uncontended measurements saved in {RAW.name} by earlier runs"
    )
    args = parser.parse_args()
    if args.worker:
        answer_worker(WORKERS, args.worker)
        return

    OUT_DIR.mkdir(exist_ok=True)
    if not (CHECKPOINT / "config.json").exists():
        run_worker(__file__, {"kind": "checkpoint"})
    raw = json.loads(RAW.read_text()) if RAW.exists() else {}

    def measure(spec: dict) -> dict:
        key = json.dumps(spec, sort_keys=True)
        if not (args.reuse and key in raw and raw[key]["others_cores"] < CONTENDED):
            raw[key] = run_worker(__file__, spec, max_wait_s=args.max_wait)
            RAW.write_text(json.dumps(raw, indent=1))
        return raw[key]

    from model.cpu_kernels import kernels_status

    compiled, kernels_detail = kernels_status()
    print(f"  ours: CPU kernels {'compiled' if compiled else 'not used: ' + kernels_detail}", file=sys.stderr)
    lengths = args.lengths
    series = [("ours", "float32", 0), ("ours", "float32", CHUNK), ("ours", "bfloat16", 0), ("ours", "bfloat16", CHUNK)]
    if not args.no_hf:
        series.insert(0, ("transformers", "float32", 0))
    results: dict[tuple, dict] = {}
    for side, dtype, chunk in series:
        for length in lengths:
            repeat = 3 if side == "ours" else (2 if length <= 4096 else 1)
            logits_file = str(OUT_DIR / f"logits_{side}_{dtype}_{chunk}_{length}.pt") if dtype == "float32" else ""
            spec = {
                "kind": "prefill",
                "side": side,
                "dtype": dtype,
                "chunk": chunk,
                "length": length,
                "repeat": repeat,
                "logits_file": logits_file,
            }
            if side == "ours":
                spec["cpu_kernels"] = compiled
            results[side, dtype, chunk, length] = r = measure(spec)
            print(
                f"  {side} {dtype} chunk={chunk} L={length}: {r['seconds']:.2f} s, peak {mb(r['peak_rss'])} MB,"
                f" others used {r['others_cores']:.2f} cores",
                file=sys.stderr,
                flush=True,
            )
    if args.memory_length:
        results["ours", "float32", CHUNK, args.memory_length] = r = measure(
            {
                "kind": "prefill",
                "side": "ours",
                "dtype": "float32",
                "chunk": CHUNK,
                "length": args.memory_length,
                "repeat": 1,
                "logits_file": "",
                "cpu_kernels": compiled,
            }
        )
        print(
            f"  ours float32 chunk={CHUNK} L={args.memory_length}: {r['seconds']:.2f} s, peak {mb(r['peak_rss'])} MB,"
            f" others used {r['others_cores']:.2f} cores",
            file=sys.stderr,
            flush=True,
        )
    rate = measure({"kind": "rate"})
    print(f"  matmul rates: others used {rate['others_cores']:.2f} cores", file=sys.stderr, flush=True)
    rates = rate["rates"]
    paths = ("pytorch", "compiled") if compiled else ("pytorch",)
    mixers = {
        (dt, path): measure({"kind": "mixer", "dtype": dt, "length": args.mixer_length, "path": path})
        for dt in DTYPE_BYTES
        for path in paths
    }
    report(args, lengths, series, results, rates, mixers, compiled)


def logits_diffs(lengths: list[int]) -> dict[str, float]:
    import torch

    def load(side, chunk, length):
        path = OUT_DIR / f"logits_{side}_float32_{chunk}_{length}.pt"
        return torch.load(path) if path.exists() else None

    diffs = {}
    for length in lengths:
        ref = load("ours", 0, length)
        others = (("transformers", load("transformers", 0, length)), ("chunked", load("ours", CHUNK, length)))
        for name, other in others:
            if ref is not None and other is not None:
                diffs[f"ours_vs_{name}_L{length}"] = (ref - other).abs().max().item()
    return diffs


def report(args, lengths, series, results, rates, mixers, compiled: bool) -> None:
    import torch

    from model.config import JambaConfig

    cfg = JambaConfig.from_dict(MID)
    cpu = cpu_name()
    print(
        f"\nJamba LM prefill: hidden {cfg.hidden_size}, intermediate {cfg.intermediate_size}, d_inner {cfg.d_inner}, "
        f"d_state {cfg.mamba_d_state}, dt_rank {cfg.dt_rank}, {cfg.num_hidden_layers} layers "
        f"({cfg.layer_types.count('attention')} attention), GQA {cfg.num_attention_heads}/{cfg.kv_heads}, "
        f"vocab {cfg.vocab_size}; batch 1; torch {torch.__version__}, {THREADS} threads, {cpu}; ours with "
        + ("the compiled CPU kernels" if compiled else "the PyTorch mixer path (CPU kernels unavailable)")
    )
    print(
        "Each row: its own process, best of the timed runs after a 256-token warm-up; last logits only; "
        f"chunked = chunks of {CHUNK} into a cache preallocated for L.\n"
    )
    floors = {length: prefill_floors(length, rates) for length in lengths}
    figures: dict = {"lengths": lengths, "rows": print_rows(lengths, series, results, floors)}
    figures["max_others_cores"] = round(max(r["others_cores"] for r in results.values()), 2)
    figures["matmul_gflops"] = {k: round(v / 1e9, 1) for k, v in rates.items()}
    figures["floor_seconds"] = print_floors(lengths, rates, floors)
    figures["slopes_bytes_per_token"] = print_slopes(cfg, lengths, series, results)
    figures["kv_bytes_per_token"] = {dt: cfg.kv_elements_per_token * size for dt, size in DTYPE_BYTES.items()}
    print(
        f"\nOne Mamba mixer at Jamba-9B widths (hidden 4096, d_inner 8192, d_state 16, dt_rank 256), "
        f"L = {args.mixer_length}, best of 3:"
    )
    for (dtype, path), m in mixers.items():
        scan = "scan" if path == "pytorch" else "fused softplus+scan+gate"
        print(
            f"  {dtype:<10} {path:<9} mixer {m['mixer_seconds']:6.2f} s, {scan} {m['scan_seconds']:6.2f} s, "
            f"share {100 * m['scan_share']:5.1f}%  (target ≤ 30%; others used {m['others_cores']:.2f} cores)"
        )
    figures["mixer_9b"] = {f"{dt} {path}": {k: round(v, 3) for k, v in m.items()} for (dt, path), m in mixers.items()}
    figures["cpu_kernels"] = compiled
    figures["logit_max_abs_diff"] = diffs = logits_diffs(lengths)
    if diffs:
        print("\nLast-logit max abs differences (float32): " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items()))
    figures["targets_met"] = print_targets(figures, results)
    print_json_line(figures)


def print_rows(lengths, series, results, floors) -> list[dict]:
    head = (
        f"{'L':>6} {'side':<24}{'dtype':<9}{'seconds':>8} {'peak RSS MB':>12} {'weights MB':>11} "
        f"{'peak-wts MB':>12} {'x faster':>9} {'/floor':>7} {'others':>7}"
    )
    print(head + "\n" + "-" * len(head))
    rows = []
    for length in lengths:
        hf = results.get(("transformers", "float32", 0, length))
        for side, dtype, chunk in series:
            r = results[side, dtype, chunk, length]
            over_floor = r["seconds"] / floors[length][dtype]["shapes"]
            faster = hf["seconds"] / r["seconds"] if hf else math.nan
            name = f"{side} " + (f"chunked {chunk}" if chunk else "one-shot")
            print(
                f"{length:>6} {name:<24}{dtype:<9}{r['seconds']:8.2f} {mb(r['peak_rss']):>12} "
                f"{mb(r['weights_bytes']):>11} {mb(r['peak_rss'] - r['weights_bytes']):>12} {faster:9.2f} "
                f"{over_floor:7.2f} {r['others_cores']:7.2f}"
            )
            rows.append(
                {
                    "L": length,
                    "side": side,
                    "dtype": dtype,
                    "chunk": chunk,
                    "seconds": round(r["seconds"], 3),
                    "peak_rss": r["peak_rss"],
                    "weights_bytes": r["weights_bytes"],
                    "base_rss": r["base_rss"],
                    "x_faster_than_transformers": round(faster, 3) if hf else None,
                    "over_floor": round(over_floor, 3),
                    "others_cores": round(r["others_cores"], 2),
                }
            )
    print(
        "x faster: transformers float32 seconds / this row's. /floor: seconds / the row dtype's matmul floor "
        "(model shapes, below). others: cores other processes used meanwhile, of 2."
    )
    return rows


def print_floors(lengths, rates, floors) -> dict:
    print(f"\nMatmul rate, F.linear [{RATE_ROWS}, in] x [out, in]ᵀ, best of 10, GFLOP/s:")
    keys = sorted({key.split(" ", 1)[1] for key in rates}, key=lambda k: tuple(map(int, k.split("x"))))
    print(f"  {'in x out':<12}" + "".join(f"{dt:>10}" for dt in DTYPE_BYTES))
    for key in keys:
        print(f"  {key:<12}" + "".join(f"{rates[f'{dt} {key}'] / 1e9:10.1f}" for dt in DTYPE_BYTES))
    print(
        "Floor = matmul FLOPs / rate; 'shapes': each projection at its own shape's rate (attention and lm_head "
        "at peak); 'peak': all at the best rate."
    )
    print(
        f"{'L':>8} {'GFLOP':>8}"
        + "".join(f"{dt + ' ' + kind:>18}" for dt in DTYPE_BYTES for kind in ("shapes", "peak"))
    )
    for length in lengths:
        gflop = sum(f for f, _ in prefill_matmuls(length)) / 1e9
        print(
            f"{length:>8} {gflop:8.1f}"
            + "".join(f"{floors[length][dt][kind]:17.2f}s" for dt in DTYPE_BYTES for kind in ("shapes", "peak"))
        )
    return {
        length: {dt: {k: round(v, 3) for k, v in f.items()} for dt, f in fl.items()} for length, fl in floors.items()
    }


def print_slopes(cfg, lengths, series, results) -> dict:
    """Least-squares slope over all lengths, and over the two longest (both ≥ the chunk size, so a
    chunked run's activations are the same size at both ends)."""
    print("\nMemory slope of (peak RSS − weights) vs L, bytes/token:")
    print(f"  {'':<36}{'all L':>10}{f'{lengths[-2]}→{lengths[-1]}' if len(lengths) > 1 else '':>14}")
    slopes = {}
    for side, dtype, chunk in series:
        ys = [
            results[side, dtype, chunk, length]["peak_rss"] - results[side, dtype, chunk, length]["weights_bytes"]
            for length in lengths
        ]
        name = f"{side} {dtype} " + (f"chunked {chunk}" if chunk else "one-shot")
        if len(lengths) > 1:
            slopes[name] = {"all": round(slope(lengths, ys)), "tail": round(slope(lengths[-2:], ys[-2:]))}
            print(f"  {name:<36}{slopes[name]['all']:10d}{slopes[name]['tail']:14d}")
    long = max(k[3] for k in results)
    start = min((x for x in lengths if x > CHUNK), default=long)
    if long > lengths[-1] and start < long:
        ys = [
            results["ours", "float32", CHUNK, x]["peak_rss"] - results["ours", "float32", CHUNK, x]["weights_bytes"]
            for x in (start, long)
        ]
        slopes["ours float32 chunked long"] = {"from": start, "to": long, "slope": round(slope([start, long], ys))}
        print(
            f"  {f'ours float32 chunked {CHUNK}':<36}{slopes['ours float32 chunked long']['slope']:10d}"
            f"   ({start}→{long}: peak − weights {mb(ys[0]).strip()} → {mb(ys[1]).strip()} MB; "
            f"{results['ours', 'float32', CHUNK, long]['seconds']:.1f} s at {long})"
        )
    kv = {dt: cfg.kv_elements_per_token * size for dt, size in DTYPE_BYTES.items()}
    e, d, n = cfg.hidden_size, cfg.d_inner, cfg.mamba_d_state
    print(
        f"  {'KV cache float32 / bfloat16':<36}{kv['float32']:10d} / {kv['bfloat16']}   "
        f"({cfg.layer_types.count('attention')} attention layer × 2 × {cfg.kv_heads} kv heads × {cfg.head_dim} "
        "× dtype size)"
    )
    print(f"  {'input ids (int64)':<36}{8:10d}   (held for the whole prompt, also when chunked)")
    print(
        f"  {'one [L, hidden] / [L, d_inner] fp32':<36}{e * 4:10d} / {d * 4}   (one-shot activations; chunked: "
        "one chunk's)"
    )
    print(f"  {'transformers scan tensors':<36}{3 * d * n * 4:10d}   (3 fp32 [L, d_inner, d_state]: exp(ΔA), ΔB, ΔBx)")
    return slopes


def print_targets(figures, results) -> dict[str, bool]:
    hf = results.get(("transformers", "float32", 0, 4096))
    floor = figures["floor_seconds"][4096]["float32"]["shapes"]
    targets = {}
    for chunk, name in ((0, "one-shot"), (CHUNK, f"chunked {CHUNK} (the engine's way)")):
        ours = results.get(("ours", "float32", chunk, 4096))
        if ours and hf:
            targets[f"ours {name} >= 4x transformers at 4K float32"] = hf["seconds"] / ours["seconds"] >= 4
        if ours:
            targets[f"ours {name} within 1.5x of the floor (model shapes) at 4K float32"] = (
                ours["seconds"] / floor <= 1.5
            )
    slopes = figures["slopes_bytes_per_token"]
    long = slopes.get("ours float32 chunked long")
    if long:
        # Between two lengths ≥ the chunk (the same activations at both ends) the peak may grow by the
        # KV cache and the int64 ids only; the allocator's retained memory moves peaks by tens of MB
        # from run to run, so allow ALLOCATOR_NOISE either way.
        span = long["to"] - long["from"]
        excess = (long["slope"] - figures["kv_bytes_per_token"]["float32"] - 8) * span
        long["excess_over_kv_bytes"] = round(excess)
        print(
            f"\nOurs chunked, {long['from']}→{long['to']} tokens: peak grew {mb(long['slope'] * span).strip()} MB, "
            f"KV cache + ids {mb((figures['kv_bytes_per_token']['float32'] + 8) * span).strip()} MB, "
            f"excess {mb(excess).strip()} MB (noise allowance ±{ALLOCATOR_NOISE // 2**20} MB)"
        )
        targets["ours chunked peak grows only by the KV cache (+ ids)"] = abs(excess) <= ALLOCATOR_NOISE
    for path in ("pytorch", "compiled"):
        if f"float32 {path}" in figures["mixer_9b"]:
            share = figures["mixer_9b"][f"float32 {path}"]["scan_share"]
            targets[f"scan share <= 30% at Jamba-9B widths, float32, {path} path"] = share <= 0.30
    print("\nTargets:")
    for name, ok in targets.items():
        print(f"  [{'met' if ok else 'NOT met'}] {name}")
    return targets


if __name__ == "__main__":
    main()
