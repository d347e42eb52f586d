"""Peak memory of this process: GPU memory on CUDA, else the peak resident set size."""

from __future__ import annotations

import resource
import sys

import torch


def peak_rss_bytes() -> int:
    """The process's peak resident set size. On Linux this is VmHWM: `getrusage`'s ru_maxrss
    survives exec, so a process started from a large parent would report the parent's size
    (subprocess uses vfork)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def peak_memory_bytes(device: torch.device) -> int:
    """Peak GPU memory allocated on a CUDA device, else the process's peak resident set size."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return peak_rss_bytes()
