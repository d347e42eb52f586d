"""This process's resident memory (RSS), as the library's results and the benchmarks report it.

On Linux the figures come from `/proc/self/status`: VmRSS (now) and VmHWM (the peak). The peak is
not `getrusage`'s ru_maxrss there, because ru_maxrss survives exec: a process started from a large
parent would report the parent's size (subprocess uses vfork). Elsewhere the peak falls back to
ru_maxrss. Linux (4.0 and later) also lets a process reset its peak to its current RSS, so that a
peak measures one region of a run (`reset_peak_rss`).
"""

from __future__ import annotations

import ctypes
import functools
import resource
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")
# Written to clear_refs: "reset the peak RSS to the current RSS" (Linux's proc(5)).
_RESET_PEAK = "5"


def _status_bytes(field: str) -> int | None:
    """A `kB` field of /proc/self/status in bytes, or None where there is no such file or field."""
    try:
        with _STATUS.open(encoding="ascii") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """The process's peak RSS in bytes: VmHWM on Linux, else getrusage's ru_maxrss."""
    peak = _status_bytes("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024  # bytes on macOS, KiB elsewhere


def current_rss_bytes() -> int:
    """The process's RSS now in bytes (VmRSS). Raises OSError where /proc/self/status lacks it."""
    rss = _status_bytes("VmRSS")
    if rss is None:
        raise OSError(f"no VmRSS in {_STATUS}")
    return rss


def reset_peak_rss() -> bool:
    """Make the peak RSS the current RSS, so that `peak_rss_bytes` measures from here. False where
    the system cannot (not Linux, or a kernel before 4.0): the peak then stays the process's."""
    try:
        _CLEAR_REFS.write_text(_RESET_PEAK)
    except OSError:
        return False
    return True


def release_free_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's `malloc_trim`; a no-op elsewhere).
    glibc keeps freed memory inside its heap for reuse, and a pattern of large short-lived buffers
    beside smaller long-lived ones (a float layer freed right after its quantised copy is made)
    leaves holes too small for the next layer: resident memory would grow by the freed size."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def peak_memory_bytes(device: torch.device) -> int:
    """Peak GPU memory allocated on a CUDA device (what `ask` reports there), else the peak RSS."""
    if device.type == "cuda":
        import torch

        return torch.cuda.max_memory_allocated(device)
    return peak_rss_bytes()
