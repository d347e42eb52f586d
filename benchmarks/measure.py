"""What the benchmarks measure with, so that a figure means the same in every script: wall time and
the CPU time other processes took meanwhile (the 2 cores may be shared), the CPU's name,
measurements in fresh worker processes that answer one JSON line, matmul rates measured in the
same run for the FLOP floors, and the one JSON line each benchmark ends with (benchmarks/RESULTS.md
quotes its keys). Peak and current RSS come from the library (`model/memory_usage.py`).

Linux only (/proc). The scripts beside it import it by name (`python benchmarks/x.py` puts this
folder first on the import path).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

THREADS = 2  # torch threads of every measurement: the machine's 2 cores
# Cores used by other processes during a measurement above which it is measured again.
CONTENDED = 0.3
# Environment of every worker process: THREADS OpenMP threads, transformers offline and quiet.
WORKER_ENV = {"OMP_NUM_THREADS": str(THREADS), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_VERBOSITY": "error"}
# Matmul rates are measured as the models run them, F.linear of [RATE_ROWS, in] by an [out, in] weight.
RATE_ROWS = 4096

# A list of matmuls: (FLOPs, (in, out) of a projection, or None for attention's QKᵀ/PV and the like).
Matmuls = Sequence[tuple[float, tuple[int, int] | None]]


def cpu_times() -> tuple[float, float, float]:
    """(busy seconds of the whole machine, steal seconds, this process's CPU seconds)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    own = os.times()
    return (user + nice + system + irq + softirq) / hz, steal / hz, own.user + own.system


class Meter:
    """Wall time, and CPU time taken by *other* processes (machine busy − own), over a region."""

    def __enter__(self) -> Meter:
        self.t0, self.c0 = time.perf_counter(), cpu_times()
        return self

    def __exit__(self, *exc) -> None:
        c1 = cpu_times()
        self.seconds = time.perf_counter() - self.t0
        self.others_cpu_s = max(0.0, (c1[0] - self.c0[0]) - (c1[2] - self.c0[2]))
        self.steal_s = c1[1] - self.c0[1]


def timed(function: Callable[[], T]) -> tuple[float, T]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, "?" where it gives none."""
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")


def wait_for_quiet(max_wait_s: float, threshold_cores: float = 0.25) -> float:
    """Wait (up to max_wait_s) until other processes use less than `threshold_cores` over a 2 s sample:
    the 2 cores may be shared with other work. Returns the cores they used in the last sample."""
    deadline = time.monotonic() + max_wait_s
    while True:
        c0 = cpu_times()
        time.sleep(2)
        c1 = cpu_times()
        others = ((c1[0] - c0[0]) - (c1[2] - c0[2])) / 2
        if others < threshold_cores or time.monotonic() > deadline:
            return others
        print(f"  waiting: other processes use {others:.1f} cores", file=sys.stderr, flush=True)
        time.sleep(10)


def run_worker(
    script: str | Path,
    spec: dict,
    *,
    max_wait_s: float = 0,
    retries: int = 2,
    env: Mapping[str, str] | None = None,
) -> dict:
    """Run one measurement in a fresh process, `script --worker SPEC` (its last stdout line is the
    JSON answer, `answer_worker`), in `WORKER_ENV` plus `env`; again, up to `retries` times, when
    other processes took more than CONTENDED cores meanwhile. max_wait_s: first wait that long at
    most for the machine to be quiet (`wait_for_quiet`; 0: no wait)."""
    environment = dict(os.environ) | WORKER_ENV | dict(env or {})
    for attempt in range(retries + 1):
        if max_wait_s:
            wait_for_quiet(max_wait_s)
        done = subprocess.run(
            [sys.executable, str(script), "--worker", json.dumps(spec)],
            env=environment,
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        )
        result = json.loads(done.stdout.strip().splitlines()[-1])
        if result.get("others_cores", 0) < CONTENDED or attempt == retries:
            return result
        print(f"  contended ({result['others_cores']:.2f} cores by others): measuring again", file=sys.stderr)
    raise AssertionError("unreachable")


def answer_worker(workers: Mapping[str, Callable[[dict], dict]], spec_json: str) -> None:
    """The worker side of `run_worker`: run `workers[spec["kind"]](spec)`, print its JSON line."""
    spec = json.loads(spec_json)
    print(json.dumps(workers[spec["kind"]](spec)))


def matmul_rates(shapes: Iterable[tuple[int, int]], dtypes: Iterable[str]) -> dict[str, float]:
    """FLOP/s of F.linear, [RATE_ROWS, in] by [out, in], per (in, out) in `shapes` and dtype name:
    2 warm-up calls, then the best of 10. Keys "<dtype> <in>x<out>"."""
    import torch
    import torch.nn.functional as F

    rates = {}
    for dtype in dtypes:
        for k, n in sorted(shapes):
            x = torch.randn(RATE_ROWS, k, dtype=getattr(torch, dtype))
            w = torch.randn(n, k, dtype=getattr(torch, dtype))
            times = []
            for _ in range(12):
                t0 = time.perf_counter()
                F.linear(x, w)
                times.append(time.perf_counter() - t0)
            rates[f"{dtype} {k}x{n}"] = 2 * RATE_ROWS * k * n / min(times[2:])
    return rates


def matmul_floors(matmuls: Matmuls, rates: Mapping[str, float], dtypes: Iterable[str]) -> dict[str, dict[str, float]]:
    """Seconds of `matmuls` per dtype, at the rates measured in the same run (`matmul_rates`): at
    the machine's peak rate ("peak"), and with each projection at the rate measured for its own
    shape, the others at peak ("shapes")."""
    floors = {}
    for dtype in dtypes:
        peak = max(v for key, v in rates.items() if key.startswith(dtype))
        floors[dtype] = {
            "peak": sum(flops for flops, _ in matmuls) / peak,
            "shapes": sum(flops / (rates[f"{dtype} {s[0]}x{s[1]}"] if s else peak) for flops, s in matmuls),
        }
    return floors


def slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of ys over xs (bytes per token, per frame, ...)."""
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)


def mb(b: float) -> str:
    """Bytes as MiB, right-aligned in 8 characters."""
    return f"{b / 2**20:8.1f}"


def print_json_line(figures: Mapping[str, Any]) -> None:
    """A benchmark's last stdout line: one JSON object with every figure."""
    print(json.dumps(figures), flush=True)
