"""State cache benchmark: time to the first answer token of a follow-up question, cold vs from the
cache, on bench_engine.py's mid-size model and video; the saved state's size against its floor;
loading speed against this disk's sequential read rate, measured in the same run.

    python benchmarks/bench_cache.py [--frames 100 1000]

The model and the 1200-frame clip are bench_engine.py's (`benchmarks/out/`; built by it when
absent). float32, 2 threads, chunks of 2048 positions, as bench_engine.py. Per frame count, each in
its own fresh process with the model already loaded (loading is not counted in either):

- cold: `shared_state` with an empty cache folder (a miss: decode, CLIP, prefill, then save), the
  follow-up question's rows, `finish`: its time to the first token minus the cache's own work
  (keying and saving, `SharedPrefill.cache_seconds`) is what the same question costs with
  `--no-cache`; the saving is reported separately;
- cached: the same follow-up question in a new process, the state evicted from the page cache
  first (`posix_fadvise(DONTNEED)` after `fsync`: no root needed), so it is read from the disk:
  hashing the video (the content-hash memo is off: every byte read), loading the state, the
  question's rows, `finish`. Both runs' last logits are written out and compared (`torch.equal`).

Disk: a file of the state's size written, fsync'ed, evicted, then read sequentially in 8 MiB
blocks (`readinto`), against `StateStore.get` of the evicted state into a preallocated cache
(also timed with both in the page cache). Floor: attention K/V bytes × positions + the Mamba conv
and SSM states; the pending rows (the last, partial chunk's inputs, which exactness needs) are
reported beside it. The machine's 2 cores may be shared: os.getloadavg() and the CPU time other
processes took are recorded. Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_engine import CHECKPOINTS, OUT_DIR, VIDEO
from measure import THREADS, Meter, answer_worker, cpu_name, print_json_line
from measure import run_worker as run_in_worker

QUESTION = "What happens in the video?"
FOLLOW_UP = "And what happens right after that?"
CHUNK = 2048
READ_BLOCK = 8 << 20


# --- workers ---------------------------------------------------------------------------------------


def _setup(spec: dict):
    import torch

    import model.content_hash as content_hash
    from model import load_model
    from model.api import RunOptions, plan_request
    from model.request import AskRequest
    from sampling import SamplingOptions

    torch.set_num_threads(THREADS)
    content_hash.RACY_SECONDS = float("inf")  # no memo: every run hashes the video in full
    model = load_model(CHECKPOINTS["hybrid"], dtype="float32")
    run = RunOptions(chunk_tokens=CHUNK)

    def plan(frames: int, question: str):
        request = AskRequest(inputs=[VIDEO], questions=question, sampling=SamplingOptions(num_frames=frames))
        return plan_request(model, request)

    from model.api import _embed, prefill_shared

    warm = plan(2, QUESTION)  # warm-up: the planner's imports, thread pools, the allocator, the decoder
    shared = prefill_shared(model, warm, run, capacity=warm.num_tokens(1))
    shared.prefill.push(_embed(model, warm.suffixes[0]))
    shared.prefill.finish()
    return model, run, plan


def worker_follow_up(spec: dict) -> dict:
    """One follow-up question through the state cache: a miss (cold) or a hit (cached)."""
    import torch

    from model.api import _embed
    from model.shared_state import shared_state
    from model.state_store import StateStore

    model, run, plan = _setup(spec)
    store = StateStore(spec["states"])
    with torch.inference_mode(), Meter() as m:
        planned = plan(spec["frames"], FOLLOW_UP)
        planned_at = time.perf_counter()
        capacity = planned.num_tokens(32)
        shared, status = shared_state(model, planned, run, capacity=capacity, store=store)
        cache = shared.prefill.cache
        kv = sum(c.k[:, :, : c.length].nbytes * 2 for c in cache.layers if hasattr(c, "k"))
        mamba = sum(c.conv.nbytes + c.ssm.nbytes for c in cache.layers if hasattr(c, "ssm"))
        pending_bytes = shared.prefill.buffer[0, : shared.prefill.filled].nbytes
        question_at = time.perf_counter()
        shared.prefill.push(_embed(model, planned.suffixes[0]))
        logits = shared.prefill.finish()
    torch.save(logits.clone(), spec["logits_file"])
    return {
        "status": status,
        "ttft_s": m.seconds,
        "plan_s": planned_at - m.t0,
        "question_s": m.t0 + m.seconds - question_at,
        "cache_s": shared.cache_seconds,
        "vision_s": shared.vision_seconds,
        "num_tokens": planned.num_shared_tokens,
        "kv_bytes": kv,
        "mamba_bytes": mamba,
        "pending_bytes": pending_bytes,
        "others_cores": m.others_cpu_s / m.seconds,
    }


def worker_load(spec: dict) -> dict:
    """StateStore.get of one saved state into a preallocated cache, from the disk each time: into
    fresh memory (as a hit in a new process: page faults included, and the peak RSS it adds), into
    reused memory (the reading itself), then page-cached."""
    from model.memory_usage import current_rss_bytes, peak_rss_bytes, reset_peak_rss
    from model.shared_state import load_shared
    from model.state_store import StateStore

    model, run, plan = _setup(spec)
    planned = plan(spec["frames"], FOLLOW_UP)
    store = StateStore(spec["states"])
    path = store.path_of(spec["key"])
    times, rss = {}, current_rss_bytes()
    reset_peak_rss()
    for name in ("fresh_memory", "disk", "page_cache"):
        if name != "page_cache":
            evict(path)
        with Meter() as m:
            shared = load_shared(model, planned, store, spec["key"], capacity=planned.num_tokens(32),
                                 chunk_tokens=run.chunk_tokens)  # fmt: skip
        assert shared is not None
        times[name] = m.seconds
        if name == "fresh_memory":
            times["peak_rss_added"] = peak_rss_bytes() - rss
        del shared
    return {f"load_{k}_s" if k != "peak_rss_added" else k: v for k, v in times.items()} | {"bytes": path.stat().st_size}


WORKERS = {"follow_up": worker_follow_up, "load": worker_load}


# --- the disk --------------------------------------------------------------------------------------


def evict(path: Path) -> None:
    """Drop the file's pages from the page cache (clean pages only: fsync first)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def sequential_read(path: Path) -> float:
    """Seconds to read the whole file in READ_BLOCK blocks."""
    buffer = bytearray(READ_BLOCK)
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buffer):
            pass
    return time.perf_counter() - start


def disk_rates(folder: Path, size: int) -> dict[str, float]:
    """Sequential read rate (bytes/s) of a fresh file of `size` bytes, evicted first, and page-cached."""
    path = folder / "disk-rate.bin"
    with open(path, "wb") as f:
        block = os.urandom(READ_BLOCK)
        for _ in range(-(-size // READ_BLOCK)):
            f.write(block)
    try:
        evict(path)
        cold = [sequential_read(path)]
        evict(path)
        cold.append(sequential_read(path))
        warm = sequential_read(path)
        return {
            "disk_bytes_per_s": path.stat().st_size / min(cold),
            "page_cache_bytes_per_s": path.stat().st_size / warm,
        }
    finally:
        path.unlink()


# --- driver ----------------------------------------------------------------------------------------


def measure_frames(frames: int, work: Path) -> dict:
    states = work / f"states-{frames}"
    spec = {"frames": frames, "states": str(states)}
    # No retries when contended: a 1000-frame cold run takes minutes; the contention is recorded instead.
    cold = run_in_worker(
        __file__, {**spec, "kind": "follow_up", "logits_file": str(work / f"cold{frames}.pt")}, retries=0
    )
    assert cold["status"] == "miss", cold
    (state,) = states.glob("state-*.safetensors")
    evict(state)
    cached = run_in_worker(__file__, {**spec, "kind": "follow_up", "logits_file": str(work / f"hit{frames}.pt")})
    assert cached["status"] == "hit", cached
    key = state.name.removeprefix("state-").removesuffix(".safetensors")
    load = run_in_worker(__file__, {**spec, "kind": "load", "key": key})
    import torch

    exact = torch.equal(torch.load(work / f"cold{frames}.pt"), torch.load(work / f"hit{frames}.pt"))
    return {"cold": cold, "cached": cached, "load": load, "state_bytes": state.stat().st_size, "exact": exact}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--frames", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    if args.worker:
        answer_worker(WORKERS, args.worker)
        return
    if not CHECKPOINTS["hybrid"].exists() or not VIDEO.exists():
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_engine.py")), "--frames", "4", "--no-hf",
                        "--repeats", "1", "--attention-max-frames", "0"], check=True)  # fmt: skip
    started, load_before = time.perf_counter(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-cache-", dir=OUT_DIR))
    try:
        results = {f: measure_frames(f, work) for f in args.frames}
        disk = disk_rates(work, max(r["state_bytes"] for r in results.values()))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args.frames, results, disk, load_before, time.perf_counter() - started)


def figures_of(frames: int, r: dict, disk: dict) -> dict:
    """One row of figures: times, speed-up, size against the floor, load rate against the disk."""
    cold, cached, load = r["cold"], r["cached"], r["load"]
    cold_s = cold["ttft_s"] - cold["cache_s"]
    floor = cold["kv_bytes"] + cold["mamba_bytes"]
    load_rate = load["bytes"] / load["load_disk_s"]
    return {
        "frames": frames,
        "tokens": cold["num_tokens"],
        "cold_ttft_s": round(cold_s, 3),
        "cached_ttft_s": round(cached["ttft_s"], 4),
        "speedup": round(cold_s / cached["ttft_s"], 1),
        "save_s": round(cold["cache_s"], 3),
        "cached_key_and_load_s": round(cached["cache_s"], 4),
        "cached_plan_s": round(cached["plan_s"], 4),
        "cached_question_s": round(cached["question_s"], 4),
        "state_bytes": r["state_bytes"],
        "floor_bytes": floor,
        "pending_bytes": cold["pending_bytes"],
        "size_over_floor": round(r["state_bytes"] / floor, 4),
        "load_disk_bytes_per_s": round(load_rate),
        "load_page_cache_bytes_per_s": round(load["bytes"] / load["load_page_cache_s"]),
        "load_fresh_memory_bytes_per_s": round(load["bytes"] / load["load_fresh_memory_s"]),
        "load_fresh_memory_over_disk": round(load["bytes"] / load["load_fresh_memory_s"] / disk["disk_bytes_per_s"], 3),
        "load_peak_rss_added_bytes": load["peak_rss_added"],
        "load_over_disk": round(load_rate / disk["disk_bytes_per_s"], 3),
        "exact_logits": r["exact"],
        "others_cores": [round(cold["others_cores"], 2), round(cached["others_cores"], 2)],
    }


def report(frames: list[int], results: dict, disk: dict, load_before: tuple, wall_s: float) -> None:
    import torch

    print(f"State cache: bench_engine's mid model, float32, {THREADS} threads, chunk {CHUNK}; torch "
          f"{torch.__version__}; {cpu_name()}; load average {load_before[0]:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after")  # fmt: skip
    head = (f"{'frames':>6} {'tokens':>7} {'cold s':>8} {'cached s':>9} {'speed-up':>9} {'save s':>7} "
            f"{'state MiB':>9} {'/floor':>7} {'pending':>7} {'load GB/s':>9} {'/disk':>6} {'exact':>5}")  # fmt: skip
    print(head + "\n" + "-" * len(head))
    rows = [figures_of(f, results[f], disk) for f in frames]
    for row in rows:
        print(f"{row['frames']:>6} {row['tokens']:>7} {row['cold_ttft_s']:8.2f} {row['cached_ttft_s']:9.3f} "
              f"{row['speedup']:8.1f}× {row['save_s']:7.2f} {row['state_bytes'] / 2**20:9.1f} "
              f"{row['size_over_floor']:7.3f} {row['pending_bytes']:7d} {row['load_disk_bytes_per_s'] / 1e9:9.2f} "
              f"{row['load_over_disk']:6.2f} {row['exact_logits']!s:>5}")  # fmt: skip
    print(f"disk: {disk['disk_bytes_per_s'] / 1e9:.2f} GB/s sequential (evicted file), page cache "
          f"{disk['page_cache_bytes_per_s'] / 1e9:.2f} GB/s. cold = the follow-up with --no-cache (the miss run's "
          "time to the first token less keying and saving); cached = hashing the video, loading the state from the "
          "disk, the question's rows. floor = attention K/V × positions + Mamba state")  # fmt: skip
    figures = {
        "rows": rows,
        **{k: round(v) for k, v in disk.items()},
        "threads": THREADS,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpu": cpu_name(),
        "wall_s": round(wall_s),
    }
    print_json_line(figures)


if __name__ == "__main__":
    main()
