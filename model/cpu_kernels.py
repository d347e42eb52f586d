"""Compiled CPU kernels for the Mamba mixer and attention (`kernels/cpu_kernels.c`), built on first
use, optional.

- `scan_compiled`: the selective scan, same contract as every scan in `model.scan` (shapes there).
- `mamba_inner_compiled`: the same scan fused with softplus(dt + bias) before it and the D skip
  and SiLU gate after it, i.e. everything between x_proj/dt_proj and out_proj.
- `causal_conv_compiled`: the depthwise causal conv + SiLU, same contract as `mamba.causal_conv`.
- `attention_compiled`: softmax attention of query rows over keys, optionally bottom-right causal,
  with each row's log-sum-exp (what PyTorch's private CPU flash kernel returns); the attention
  layer's CPU path (`model.attention.causal_attention_compiled`).
- `scan_differentiable_compiled`: the training scan, `model.scan.scan_differentiable`'s contract
  and gradients: the forward keeps every state, the backward runs the reverse-time recurrence
  per channel block with all elementwise math in registers.
Each equals its PyTorch twin up to float32 rounding (exp and log are polynomials to ~2 ulp). The
scan keeps a block of SCAN_BLOCK channels' state in L1 for the whole sequence, does all
elementwise math in registers and prefetches rows a few tokens ahead (a block's rows are a page
apart, where the hardware prefetcher stops), where `scan_blocked` pays one dispatched op per
token and a pass over memory for every intermediate.

Nothing here is required: without a C compiler (`$CC`, else `cc`, `gcc` or `clang`), when the
build fails, or with `LONGLLAVA_CPU_KERNELS=0`, `kernels_status()` says why and the mixer uses
its PyTorch twins. The shared library is built once per source, compiler and CPU into
`$XDG_CACHE_HOME/longllava/kernels` (else `~/.cache/...`), a directory only this user can write
(`model.kernel_cache`: libraries load from nowhere else), written under a temporary name and
renamed, so concurrent first uses do not see a half-written file; a failed build is remembered
there too (delete the folder to retry after installing a compiler or OpenMP).

The C interface is defined here once: the limits both sides rely on (`MAX_D_STATE`, ...) and the
status codes are compiled in as -D values (`kernel_defines`, part of the library's cache key;
`kernel_limits` asks a loaded library for them), `SIGNATURES` names every entry point's
parameters, and `_call` checks every status (`check_status`: MemoryError, ValueError).

Dimension letters: docs/glossary.md.
"""

from __future__ import annotations

import ctypes
import enum
import functools
import hashlib
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any

import torch

from model.kernel_cache import is_trusted_file, kernel_cache_dir

KERNEL_SOURCE = Path(__file__).with_name("kernels") / "cpu_kernels.c"
DISABLE_ENV = "LONGLLAVA_CPU_KERNELS"  # "0" turns the compiled kernels off
# The limits both sides rely on, defined here only: the C source is compiled with each as a -D
# value of the same name (`kernel_defines`) and refuses to build without them.
MAX_D_STATE = 256
MAX_D_CONV = 16
MAX_HEAD_DIM = 256  # the attention's; head_dim must also be a multiple of 8
ATTENTION_ROWS = 32  # query rows are computed in blocks of this many (fewer are padded); two 16-lane vectors
MAX_ATTENTION_KEYS = 1 << 24  # the causal mask compares key positions as float32, exact to 2^24
SCAN_BLOCK = 64  # channels per work item (the backward's partial sums of dB, dC come per block)


class KernelStatus(enum.IntEnum):
    """What every entry point returns (passed to the C source as KERNEL_OK, ...)."""

    OK = 0
    BAD_ARGUMENT = 1  # a size out of range; nothing was written
    OUT_OF_MEMORY = 2  # a working buffer could not be allocated


def kernel_defines() -> dict[str, int]:
    """The -D values the C source is compiled with, by name: the limits above and the status codes."""
    limits = {
        "SCAN_BLOCK": SCAN_BLOCK,
        "MAX_D_STATE": MAX_D_STATE,
        "MAX_D_CONV": MAX_D_CONV,
        "MAX_HEAD_DIM": MAX_HEAD_DIM,
        "ATTENTION_ROWS": ATTENTION_ROWS,
        "MAX_ATTENTION_KEYS": MAX_ATTENTION_KEYS,
    }
    return limits | {f"KERNEL_{status.name}": int(status) for status in KernelStatus}


_POINTER, _SIZE = ctypes.c_void_p, ctypes.c_int64


def _named(ctype: Any, *names: str) -> tuple[tuple[str, Any], ...]:
    return tuple((name, ctype) for name in names)


# Every entry point's parameters, by name and in the C source's order (all return an int status,
# `KernelStatus`): argtypes are built from this table and calls name their arguments (`_call`).
# Pointer parameters take a tensor (its data) or None (NULL, where the C source allows it).
SIGNATURES: dict[str, tuple[tuple[str, Any], ...]] = {
    "selective_scan_f32": (
        *_named(_POINTER, "x", "delta", "A", "B", "C", "dt_bias", "D", "z"),
        *_named(_SIZE, "z_batch", "z_row"),
        *_named(_POINTER, "state", "y"),
        *_named(_SIZE, "b", "l", "d", "n", "num_threads"),
    ),
    "selective_scan_hist_f32": (
        *_named(_POINTER, "x", "delta", "A", "B", "C", "state", "y", "hist"),
        *_named(_SIZE, "b", "l", "d", "n", "num_threads"),
    ),
    "selective_scan_bwd_f32": (
        *_named(_POINTER, "x", "delta", "A", "B", "C", "state0", "hist", "dy", "dlast"),
        *_named(_POINTER, "dx", "ddelta", "dA", "dB", "dC", "dstate"),
        *_named(_SIZE, "b", "l", "d", "n", "num_threads"),
    ),
    "causal_conv_silu_f32": (
        *_named(_POINTER, "x"),
        *_named(_SIZE, "x_batch", "x_row"),
        *_named(_POINTER, "tail", "w", "bias", "out"),
        *_named(_SIZE, "b", "l", "d", "k", "num_threads"),
    ),
    "attention_f32": (
        *_named(_POINTER, "q"),
        *_named(_SIZE, "q_head", "q_row"),
        *_named(_POINTER, "k"),
        *_named(_SIZE, "k_head", "k_row"),
        *_named(_POINTER, "v"),
        *_named(_SIZE, "v_head", "v_row"),
        *_named(_POINTER, "out", "lse"),
        *_named(_SIZE, "heads", "rows", "keys", "hd", "causal_len"),
        *_named(ctypes.c_float, "scale"),
        *_named(_SIZE, "num_threads"),
    ),
    "kernel_limit": (("name", ctypes.c_char_p), ("value", ctypes.POINTER(ctypes.c_int64))),
}
# No FP-exception semantics are used, so selects may evaluate both sides: the loops vectorise.
# ISO C mode forbids contracting a * b + c into one FMA; the polynomials want it (measured on a
# 2048-token chunk at d_inner 1024: the scan 18.2 -> 13.8 ms, 8.9 with the prefetch).
_COMMON_FLAGS = (
    "-fno-trapping-math", "-fno-math-errno", "-ffp-contract=fast", "-fPIC", "-shared", "-pthread", "-std=c11"
)
# Tried in order: with OpenMP for this CPU's vector units; without OpenMP (pthreads: compilers
# without an OpenMP runtime, e.g. Apple clang); without -march=native where it is unknown.
COMPILE_FLAGS = (
    ("-O3", "-march=native", "-fopenmp", *_COMMON_FLAGS),
    ("-O3", "-march=native", *_COMMON_FLAGS),
    ("-O3", *_COMMON_FLAGS),
)
# Below this many elementary updates a call runs on one thread: starting threads costs more.
PARALLEL_MIN_WORK = 1 << 16


def _cpu_identity() -> str:
    """The CPU's model and feature flags (a library built with -march=native is only valid there)."""
    try:
        lines = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return platform.processor()
    wanted = ("model name", "flags", "Features", "CPU part")
    return "\n".join(sorted({line for line in lines if line.split(":")[0].strip() in wanted}))


def _find_compiler() -> str | None:
    for name in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if name and (path := shutil.which(name)):
            return path
    return None


@functools.lru_cache(maxsize=8)
def _compiler_version(compiler: str) -> str:
    return subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=60).stdout


def _command_flags(flags: tuple[str, ...]) -> tuple[str, ...]:
    """The compiler flags of one attempt with the -D values of `kernel_defines` appended."""
    return (*flags, *(f"-D{name}={value}" for name, value in kernel_defines().items()))


def _target(compiler: str, flags: tuple[str, ...]) -> Path:
    """The library's path in the private cache: named by the source, compiler, flags (with the -D
    values) and CPU."""
    parts = (KERNEL_SOURCE.read_bytes(), compiler, _compiler_version(compiler), *_command_flags(flags))
    machine = (_cpu_identity() + platform.machine()).encode()
    key = hashlib.sha256(b"\0".join(x.encode() if isinstance(x, str) else x for x in parts) + machine).hexdigest()
    return kernel_cache_dir() / f"longllava_cpu-{key[:16]}.so"


def _build(compiler: str) -> Path:
    """Compile the kernel (or find it already compiled); raises OSError/SubprocessError. A flag
    set that failed leaves a `.failed` note with the compiler's message, so later processes go
    straight to the next set instead of failing the same compile again."""
    error = ""
    for flags in COMPILE_FLAGS:
        target = _target(compiler, flags)
        failed = target.with_suffix(".failed")
        if is_trusted_file(target):
            return target
        if failed.exists():
            error = failed.read_text(encoding="utf-8", errors="replace")[:500]
            continue
        partial = target.with_name(f"{target.stem}.{os.getpid()}.tmp")
        command = [compiler, *_command_flags(flags), "-o", str(partial), str(KERNEL_SOURCE)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode == 0:
            partial.chmod(0o755)  # whatever the umask: a group-writable library would not be trusted
            partial.replace(target)
            return target
        partial.unlink(missing_ok=True)
        error = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else f"exit {result.returncode}"
        failed.write_text(error, encoding="utf-8")
    raise OSError(f"{Path(compiler).name} failed: {error}")


@functools.lru_cache(maxsize=1)
def _load() -> tuple[ctypes.CDLL | None, str]:
    """(library, where it came from) or (None, why not); decided once per process."""
    if os.environ.get(DISABLE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None, f"disabled by {DISABLE_ENV}"
    compiler = _find_compiler()
    if compiler is None:
        return None, "no C compiler found (set CC)"
    try:
        path = _build(compiler)
        return _open(path), str(path)
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"build failed: {e}"


def _open(path: Path) -> ctypes.CDLL:
    """Load a built library and declare its entry points' signatures from `SIGNATURES`."""
    library = ctypes.CDLL(str(path))
    for name, parameters in SIGNATURES.items():
        function = getattr(library, name)
        function.argtypes = [ctype for _, ctype in parameters]
        function.restype = ctypes.c_int
    return library


def check_status(kernel: str, status: int) -> None:
    """Raise for an entry point's status other than OK: MemoryError when it could not allocate,
    ValueError when it refused its arguments, RuntimeError for a status it should not return."""
    if status == KernelStatus.OK:
        return
    if status == KernelStatus.OUT_OF_MEMORY:
        raise MemoryError(f"the compiled kernel {kernel} could not allocate its working buffers (status {status})")
    if status == KernelStatus.BAD_ARGUMENT:
        raise ValueError(f"the compiled kernel {kernel} refused its arguments (status {status}: a size out of range)")
    raise RuntimeError(f"the compiled kernel {kernel} returned the unknown status {status}")


def _call(library: ctypes.CDLL, kernel: str, **arguments: Any) -> None:
    """Call entry point `kernel` with its arguments by name (`SIGNATURES`), tensors passed as their
    data pointers, and check the status it returns (`check_status`)."""
    parameters = SIGNATURES[kernel]
    names = [name for name, _ in parameters]
    if sorted(arguments) != sorted(names):
        raise TypeError(f"{kernel} takes {', '.join(names)}; got {', '.join(arguments)}")
    values = [arguments[name] for name in names]
    values = [value.data_ptr() if isinstance(value, torch.Tensor) else value for value in values]
    check_status(kernel, getattr(library, kernel)(*values))


def kernel_limits() -> dict[str, int]:
    """The constants the loaded library was built with (its `kernel_limit` answers), by the names of
    `kernel_defines`; equal to `kernel_defines()` unless the constants changed since the build."""
    library = _library()
    value = ctypes.c_int64()
    limits = {}
    for name in kernel_defines():
        _call(library, "kernel_limit", name=name.encode(), value=ctypes.byref(value))
        limits[name] = value.value
    return limits


def kernels_status() -> tuple[bool, str]:
    """(available, detail): the library's path, or why the PyTorch twins are used instead."""
    library, detail = _load()
    return library is not None, detail


def kernels_available() -> bool:
    return _load()[0] is not None


def _library(*tensors: torch.Tensor) -> ctypes.CDLL:
    library, detail = _load()
    if library is None:
        raise RuntimeError(f"the compiled CPU kernels are not available: {detail}")
    if any(t.device.type != "cpu" for t in tensors):
        raise ValueError("the compiled CPU kernels take CPU tensors only")
    return library


def _threads(work: int) -> int:
    return torch.get_num_threads() if work >= PARALLEL_MIN_WORK else 1


def _float32(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.float().contiguous() for t in tensors]


def _float32_rows(t: torch.Tensor) -> torch.Tensor:
    """t as float32 with unit stride along the last axis; a strided view of rows is kept as is."""
    t = t.float()
    return t if t.stride(-1) == 1 else t.contiguous()


def scan_compiled(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The compiled scan (shapes as `model.scan`; CPU tensors). Inputs are not modified."""
    return _scan(x, delta, A, B, C, state)


def mamba_inner_compiled(
    x: torch.Tensor,
    dt: torch.Tensor,
    dt_bias: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor,
    z: torch.Tensor,
    state: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(scan(x, softplus(dt + dt_bias), A, B, C, state).y + D ⊙ x) ⊙ silu(z), and the new state.

    x, dt, z: [b, l, d] (z may be a strided view, e.g. a half of in_proj's output); dt_bias, D: [d];
    A: [d, n]; B, C: [b, l, n]; state: [b, d, n]. Returns (y [b, l, d], new state [b, d, n]),
    float32. Equals `MambaMixer`'s PyTorch path between dt_proj and out_proj.
    """
    return _scan(x, dt, A, B, C, state, dt_bias=dt_bias, D=D, z=z)


def _scan(x, delta, A, B, C, state, dt_bias=None, D=None, z=None) -> tuple[torch.Tensor, torch.Tensor]:
    library = _library(x, delta, A, B, C, state)
    b, l, d = x.shape
    n = A.shape[1]
    if n > MAX_D_STATE:
        raise ValueError(f"d_state {n} exceeds the compiled scan's limit {MAX_D_STATE}")
    x, delta, A, B, C = _float32(x, delta, A, B, C)
    dt_bias_f, D_f = (None if t is None else t.float().contiguous() for t in (dt_bias, D))
    z_f = None if z is None else _float32_rows(z)
    new_state = state.float().clone(memory_format=torch.contiguous_format)
    y = torch.empty_like(x)
    z_batch, z_row = (z_f.stride(0), z_f.stride(1)) if z_f is not None else (0, 0)
    _call(
        library, "selective_scan_f32",
        x=x, delta=delta, A=A, B=B, C=C, dt_bias=dt_bias_f, D=D_f, z=z_f, z_batch=z_batch, z_row=z_row,
        state=new_state, y=y, b=b, l=l, d=d, n=n, num_threads=_threads(b * l * d * n),
    )  # fmt: skip
    return y, new_state


class _CompiledDifferentiableScan(torch.autograd.Function):
    """`scan_differentiable` in C: the forward stores h_1..h_l as [b, l, n, d] (the same b·l·d·n
    floats the PyTorch version keeps), the backward (`selective_scan_bwd_f32`) recomputes each
    exp(Δ_t A) and reads every gradient off the reverse-time recurrence in one pass."""

    @staticmethod
    def forward(ctx, x, delta, A, B, C, state):
        library = _library(x, delta, A, B, C, state)
        b, l, d = x.shape
        n = A.shape[1]
        xf, deltaf, Af, Bf, Cf, state0 = _float32(x, delta, A, B, C, state)
        new_state = state0.clone()
        y = torch.empty_like(xf)
        hist = xf.new_empty((b, l, n, d))
        _call(
            library, "selective_scan_hist_f32",
            x=xf, delta=deltaf, A=Af, B=Bf, C=Cf, state=new_state, y=y, hist=hist,
            b=b, l=l, d=d, n=n, num_threads=_threads(b * l * d * n),
        )  # fmt: skip
        ctx.save_for_backward(xf, deltaf, Af, Bf, Cf, state0, hist)
        return y, new_state

    @staticmethod
    def backward(ctx, dy, dlast):
        x, delta, A, B, C, state0, hist = ctx.saved_tensors
        b, l, d = x.shape
        n = A.shape[1]
        blocks = -(-d // SCAN_BLOCK)
        dy, dlast = _float32(dy, dlast)
        dx, ddelta = torch.empty_like(x), torch.empty_like(x)
        dA, dstate = x.new_empty((b, d, n)), x.new_empty((b, d, n))
        dB, dC = x.new_empty((blocks, b, l, n)), x.new_empty((blocks, b, l, n))
        _call(
            _library(), "selective_scan_bwd_f32",
            x=x, delta=delta, A=A, B=B, C=C, state0=state0, hist=hist, dy=dy, dlast=dlast,
            dx=dx, ddelta=ddelta, dA=dA, dB=dB, dC=dC, dstate=dstate,
            b=b, l=l, d=d, n=n, num_threads=_threads(b * l * d * n),
        )  # fmt: skip
        return dx, ddelta, dA.sum(0), dB.sum(0), dC.sum(0), dstate


def scan_differentiable_compiled(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, state: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The compiled training scan: `model.scan.scan_differentiable`'s values and gradients (shapes
    there; CPU tensors, d_state ≤ MAX_D_STATE), several times faster on the CPU."""
    n = A.shape[1]
    if n > MAX_D_STATE:
        raise ValueError(f"d_state {n} exceeds the compiled scan's limit {MAX_D_STATE}")
    return _CompiledDifferentiableScan.apply(x, delta, A, B, C, state)


def causal_conv_compiled(
    x: torch.Tensor, tail: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise causal conv with left context, then SiLU (contract of `mamba.causal_conv`).

    x: [b, l, d] (a strided view is read in place if float32); tail: [b, k-1, d]; weight:
    [d, 1, k]; bias: [d] or None. Returns (silu(conv) [b, l, d], new tail [b, k-1, d]), float32.
    """
    library = _library(x, tail, weight)
    b, l, d = x.shape
    k = weight.shape[-1]
    if not 1 <= k <= MAX_D_CONV:
        raise ValueError(f"d_conv {k} is outside the compiled conv's range 1..{MAX_D_CONV}")
    xf = _float32_rows(x)
    tail_f, taps = _float32(tail, weight.squeeze(1).t())  # taps: [k, d]
    bias_f = None if bias is None else bias.float().contiguous()
    out = x.new_empty((b, l, d), dtype=torch.float32)
    _call(
        library, "causal_conv_silu_f32",
        x=xf, x_batch=xf.stride(0), x_row=xf.stride(1), tail=tail_f, w=taps, bias=bias_f, out=out,
        b=b, l=l, d=d, k=k, num_threads=_threads(b * l * d * k),
    )  # fmt: skip
    # The k-1 inputs before the next call: x's last rows, preceded by the old tail when l < k-1.
    new_tail = xf[:, l - (k - 1) :] if l >= k - 1 else torch.cat([tail_f, xf], dim=1)[:, l:]
    return out, new_tail.clone(memory_format=torch.contiguous_format)


def attention_compiled(
    rows: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, causal_len: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention of query rows over keys in one pass, float32 CPU tensors.

    rows: [b, h_kv, num_rows, hd] (scaled by hd^-0.5 inside); k, v: [b, h_kv, s, hd], e.g. views of
    a KV cache (read in place when the last axis has unit stride). causal_len 0: every row sees
    every key. causal_len l > 0: row r is the query at position s - l + (r mod l) and sees the keys
    up to its own position, i.e. the rows are g query heads' l new queries folded into one KV head
    (GQA), bottom-right aligned after the s - l cached keys. hd: a multiple of 8, ≤ MAX_HEAD_DIM.
    Returns (out [b, h_kv, num_rows, hd], lse [b, h_kv, num_rows]): the attention and each row's
    log-sum-exp of its scaled scores, float32.
    """
    library = _library(rows, k, v)
    b, h_kv, n_rows, hd = rows.shape
    keys = k.shape[2]
    if rows.dtype != torch.float32 or k.dtype != torch.float32 or v.dtype != torch.float32:
        raise ValueError("the compiled attention takes float32 tensors")
    if hd % 8 or hd > MAX_HEAD_DIM:
        raise ValueError(f"head_dim {hd} is not a multiple of 8 up to {MAX_HEAD_DIM}")
    if not 0 <= causal_len <= keys or not 1 <= keys <= MAX_ATTENTION_KEYS:
        raise ValueError(f"causal_len {causal_len} does not fit {keys} keys (1..{MAX_ATTENTION_KEYS})")
    # Heads are addressed as b·h_kv entries of one stride: fold (b, h_kv) where the layout allows.
    rows, k, v = (_heads_foldable(t) for t in (rows, k, v))
    out = rows.new_empty((b, h_kv, n_rows, hd))
    lse = rows.new_empty((b, h_kv, n_rows))
    _call(
        library, "attention_f32",
        q=rows, q_head=rows.stride(1), q_row=rows.stride(2),
        k=k, k_head=k.stride(1), k_row=k.stride(2),
        v=v, v_head=v.stride(1), v_row=v.stride(2),
        out=out, lse=lse, heads=b * h_kv, rows=n_rows, keys=keys, hd=hd, causal_len=causal_len,
        scale=hd**-0.5, num_threads=_threads(b * h_kv * n_rows * keys * hd),
    )  # fmt: skip
    return out, lse


def _heads_foldable(t: torch.Tensor) -> torch.Tensor:
    """t [b, h_kv, rows or keys, hd] with unit stride along hd and stride(0) == h_kv·stride(1), so
    that head i of batch j sits at (j·h_kv + i)·stride(1); a copy only where t is not laid out so
    already."""
    if t.stride(3) == 1 and (t.shape[0] == 1 or t.stride(0) == t.shape[1] * t.stride(1)):
        return t
    return t.contiguous()
