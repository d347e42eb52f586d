"""`caption` on this machine vs `caption --ray` with 1 and 2 actors: the same 40 short clips, the
built-in demo model at 64 frames, one torch thread per captioner.

    python benchmarks/bench_caption_scale.py        # ~4 min on 2 cores; clips cached in benchmarks/out/

Each run is a fresh process with OMP_NUM_THREADS=1 (Ray's workers inherit it) and goes through
the code the CLI runs (`run_captions` locally, `run_captions_on_ray` on a local Ray cluster of 2
CPUs that the run starts), writing a results file. Throughput is taken
between records, after the first record of each captioner, so that model loading and actor
start-up (reported apart, `startup_s`) do not count: `inputs_per_s = (n - k) / (t_n - t_k)`, k
captioners. The Ray overhead per input is measured two ways: by rate (1-actor time per input minus
the local one) and by gap (per input, the time between records that the library's own
`timings.total` does not account for, Ray's minus local's), which is far less sensitive to other
work on the machine. Both as a share of the local time per input. The 2 cores may be shared with
other work: each run first waits (a while, at most) for a quiet machine, the cores others used
then and the load average are recorded, and medians over rounds are reported. The last line
printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from measure import answer_worker, cpu_name, print_json_line, run_worker, wait_for_quiet

from longllava_cli import backend as library
from longllava_cli import output
from longllava_cli.caption import run_captions
from longllava_cli.caption_job import CaptionJob, caption_input, failure_message
from longllava_cli.jsonl import Record, ResultsFile
from longllava_cli.ray_plan import RaySettings
from model.demo import demo_model_dir
from model.request import AskRequest, GenerationOptions, ModelSpec
from sampling import SamplingOptions

OUT_DIR = Path(__file__).resolve().parent / "out" / "caption_scale"
NUM_CLIPS, CLIP_FRAMES, FPS, SIZE = 40, 72, 24, (160, 120)
FRAMES = 64


def make_clips(folder: Path) -> list[str]:
    """NUM_CLIPS 3-second H.264 clips (cached): a coloured square moving on grey, a different
    colour and path per clip."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    rng = np.random.default_rng(0)
    for n in range(NUM_CLIPS):
        path = folder / f"clip{n:02}.mp4"
        paths.append(str(path))
        if path.exists():
            continue
        colour, speed = rng.integers(0, 256, 3, dtype=np.uint8), int(rng.integers(1, 4))
        tmp = path.with_suffix(".partial.mp4")
        with av.open(str(tmp), "w") as container:
            stream = container.add_stream("libx264", rate=FPS)
            stream.width, stream.height, stream.pix_fmt = *SIZE, "yuv420p"
            stream.options = {"preset": "ultrafast"}
            for i in range(CLIP_FRAMES):
                pixels = np.full((SIZE[1], SIZE[0], 3), 96, np.uint8)
                x = (i * speed) % (SIZE[0] - 32)
                pixels[40:72, x : x + 32] = colour
                container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
            container.mux(stream.encode())
        tmp.rename(path)
    return paths


class TimedResults(ResultsFile):
    """A results file that notes when each record arrives, and the library's own time for it."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.arrivals: list[float] = []
        self.compute: list[float] = []

    def append(self, record: Record) -> None:
        super().append(record)
        self.arrivals.append(time.perf_counter())
        self.compute.append(record["timings"]["total"])


def rate(results: TimedResults, start: float, captioners: int) -> dict[str, float]:
    """Inputs per second between records (after each captioner's first); `gap_s`: per input, the
    time between records that is not the library's own time (`timings.total`), i.e. what the loop,
    the writer and (on Ray) the calls cost; the time to the first record."""
    t, k = results.arrivals, captioners
    per_input = (t[-1] - t[k - 1]) / (len(t) - k)
    compute = statistics.fmean(results.compute[k:])
    return {
        "inputs_per_s": 1 / per_input,
        "gap_s": per_input - compute / captioners,
        "startup_s": t[0] - start,
        "wall_s": t[-1] - start,
    }


def run_local(paths: list[str], request: AskRequest, spec: ModelSpec, out: Path) -> dict[str, float]:
    import torch

    torch.set_num_threads(1)
    start = time.perf_counter()
    loaded = library.load_model(spec)
    with TimedResults(out) as results:
        cpu, wall = time.process_time(), time.perf_counter()
        run_captions(paths, results, lambda p: caption_input(loaded, request, p), describe_failure=failure_message)
        cores = (time.process_time() - cpu) / (time.perf_counter() - wall)
    # One torch thread, but frames are decoded on a thread of their own while the model works.
    return rate(results, start, 1) | {"cores_used": cores}


def run_ray(paths: list[str], request: AskRequest, spec: ModelSpec, out: Path, actors: int) -> dict[str, float]:
    from longllava_cli.caption_ray import run_captions_on_ray

    job = CaptionJob(str(out), tuple(paths), request, spec, ray=RaySettings(actors=actors, threads=1))
    start = time.perf_counter()
    with TimedResults(out) as results:
        run_captions_on_ray(job, results)
    return rate(results, start, actors)


def measure(spec: dict) -> dict[str, float]:
    """One run in this (fresh) process: `spec["kind"]` is local, ray1 or ray2."""
    output.configure(quiet=True)
    paths = make_clips(OUT_DIR)
    sampling, generation = SamplingOptions(num_frames=FRAMES), GenerationOptions(max_new_tokens=16)
    request = AskRequest(questions=("Describe what you see in detail.",), sampling=sampling, generation=generation)
    model = ModelSpec(path=demo_model_dir(), device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "captions.jsonl"
        if spec["kind"] == "local":
            return run_local(paths, request, model, out)
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
        try:
            return run_ray(paths, request, model, out, int(spec["kind"][-1]))
        finally:
            ray.shutdown()


def measure_rounds(rounds: int, max_wait: float) -> dict[str, list[dict[str, float]]]:
    """`rounds` × (local, Ray 1 actor, Ray 2 actors), each in a fresh process with one OpenMP thread
    (Ray's workers inherit it), after waiting for a quiet machine."""
    make_clips(OUT_DIR)
    runs: dict[str, list[dict[str, float]]] = {"local": [], "ray1": [], "ray2": []}
    for _ in range(rounds):
        for kind in runs:
            others = wait_for_quiet(max_wait)
            figures = run_worker(__file__, {"kind": kind}, retries=0, env={"OMP_NUM_THREADS": "1"})
            runs[kind].append(figures | {"other_cores_before": others})
    return runs


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each kind (medians are reported)")
    parser.add_argument("--max-wait", type=float, default=30, help="seconds to wait for a quiet machine per run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        answer_worker({"local": measure, "ray1": measure, "ray2": measure}, args.worker)
        return
    import ray

    load_start = os.getloadavg()
    runs = measure_rounds(args.rounds, args.max_wait)
    local_s = 1 / median(runs["local"], "inputs_per_s")
    one_s = 1 / median(runs["ray1"], "inputs_per_s")
    gap = median(runs["ray1"], "gap_s") - median(runs["local"], "gap_s")
    print_json_line({
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, Ray {ray.__version__}",
        "clips": NUM_CLIPS, "frames": FRAMES, "rounds": args.rounds,
        "local_s_per_input": round(local_s, 4),
        "local_inputs_per_s": round(1 / local_s, 3),
        "ray1_inputs_per_s": round(1 / one_s, 3),
        "ray2_inputs_per_s": round(median(runs["ray2"], "inputs_per_s"), 3),
        "ray_overhead_pct_by_rate": round(100 * (one_s - local_s) / local_s, 2),
        "ray_overhead_s_per_input_by_gap": round(gap, 5),
        "ray_overhead_pct_by_gap": round(100 * gap / local_s, 2),
        "ray2_speedup_over_ray1": round(median(runs["ray2"], "inputs_per_s") * one_s, 3),
        "local_cores_used": round(median(runs["local"], "cores_used"), 2),
        "startup_s": {name: round(median(r, "startup_s"), 2) for name, r in runs.items()},
        "runs": {name: [{k: round(v, 4) for k, v in run.items()} for run in r] for name, r in runs.items()},
        "loadavg_start": [round(v, 2) for v in load_start],
        "loadavg_end": [round(v, 2) for v in os.getloadavg()],
    })  # fmt: skip


if __name__ == "__main__":
    main()
