"""The compiled kernels' C interface, defined once in model/cpu_kernels.py: the -D values reach the
compiled code (and the cache key), the signature table matches the C source, and every status the
C code returns is checked and raised as a clear error."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess

import pytest
import torch

import model.cpu_kernels as cpu_kernels
from model.cpu_kernels import (
    KERNEL_SOURCE,
    SIGNATURES,
    KernelStatus,
    check_status,
    kernel_defines,
    kernel_limits,
    kernels_status,
)
from model.mamba import causal_conv

AVAILABLE, DETAIL = kernels_status()
compiled = pytest.mark.skipif(not AVAILABLE, reason=f"compiled CPU kernels unavailable: {DETAIL}")


def _c_entry_points() -> dict[str, list[str]]:
    """{name: its parameter declarations} for every non-static function of the C source."""
    source = KERNEL_SOURCE.read_text()
    found = re.finditer(r"^int (\w+)\(([^)]*)\)\s*\{", source, flags=re.MULTILINE)
    return {m.group(1): [" ".join(p.split()) for p in m.group(2).split(",")] for m in found}


def _ctype_of(declaration: str):
    """The ctypes type a C parameter declaration (e.g. "const float *x") passes as."""
    if declaration.startswith("const char *"):
        return ctypes.c_char_p
    if declaration.startswith("int64_t *"):
        return ctypes.POINTER(ctypes.c_int64)
    if "*" in declaration:
        return ctypes.c_void_p
    return {"int64_t": ctypes.c_int64, "float": ctypes.c_float}[declaration.split()[0]]


def test_the_signature_table_matches_the_c_source():
    """Every entry point, its parameters' names, order and types, as the C source declares them."""
    entry_points = _c_entry_points()
    assert set(entry_points) == set(SIGNATURES)
    for name, declarations in entry_points.items():
        table = SIGNATURES[name]
        assert [d.split("*")[-1].split()[-1] for d in declarations] == [p for p, _ in table], name
        assert [_ctype_of(d) for d in declarations] == [t for _, t in table], name


@compiled
def test_the_library_was_built_with_the_python_constants():
    assert kernel_limits() == kernel_defines()
    assert kernel_defines()["MAX_D_STATE"] == cpu_kernels.MAX_D_STATE
    assert kernel_defines()["KERNEL_OUT_OF_MEMORY"] == KernelStatus.OUT_OF_MEMORY


def test_the_defines_are_part_of_the_cache_key(monkeypatch):
    compiler = cpu_kernels._find_compiler()
    if compiler is None:
        pytest.skip("no C compiler")
    flags = cpu_kernels.COMPILE_FLAGS[0]
    before = cpu_kernels._target(compiler, flags)
    assert "-DMAX_D_CONV=16" in cpu_kernels._command_flags(flags)
    monkeypatch.setattr(cpu_kernels, "MAX_D_CONV", 8)
    assert "-DMAX_D_CONV=8" in cpu_kernels._command_flags(flags)
    assert cpu_kernels._target(compiler, flags) != before


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_the_c_source_does_not_build_without_the_defines():
    result = subprocess.run(["cc", "-fsyntax-only", "-std=c11", str(KERNEL_SOURCE)], capture_output=True, text=True)
    assert result.returncode != 0 and "-D values" in result.stderr


def test_check_status_raises_one_clear_error_per_status():
    check_status("attention_f32", KernelStatus.OK)
    with pytest.raises(MemoryError, match=r"attention_f32 could not allocate its working buffers \(status 2\)"):
        check_status("attention_f32", KernelStatus.OUT_OF_MEMORY)
    with pytest.raises(ValueError, match=r"causal_conv_silu_f32 refused its arguments \(status 1"):
        check_status("causal_conv_silu_f32", KernelStatus.BAD_ARGUMENT)
    with pytest.raises(RuntimeError, match="selective_scan_f32 returned the unknown status 7"):
        check_status("selective_scan_f32", 7)


@compiled
def test_arguments_the_c_code_refuses_raise_a_clear_error():
    """Calls past the Python wrappers' own checks: the C code's refusal reaches the caller."""
    library = cpu_kernels._library()
    x = torch.zeros(1, 4, 8)
    conv = {
        "x": x, "x_batch": 32, "x_row": 8, "tail": None, "w": x, "bias": None, "out": torch.empty_like(x),
        "b": 1, "l": 4, "d": 8, "num_threads": 1,
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"causal_conv_silu_f32 refused its arguments \(status 1"):
        cpu_kernels._call(library, "causal_conv_silu_f32", **conv, k=cpu_kernels.MAX_D_CONV + 1)
    q = torch.zeros(1, 1, 32, 12)
    attention = {
        "q": q, "q_head": 0, "q_row": 12, "k": q, "k_head": 0, "k_row": 12, "v": q, "v_head": 0, "v_row": 12,
        "out": torch.empty_like(q), "lse": torch.empty(32), "heads": 1, "rows": 32, "keys": 32,
        "causal_len": 0, "scale": 1.0, "num_threads": 1,
    }  # fmt: skip
    with pytest.raises(ValueError, match="attention_f32 refused its arguments"):
        cpu_kernels._call(library, "attention_f32", **attention, hd=12)  # not a multiple of 8
    value = ctypes.c_int64()
    with pytest.raises(ValueError, match="kernel_limit refused its arguments"):
        cpu_kernels._call(library, "kernel_limit", name=b"NO_SUCH_LIMIT", value=ctypes.byref(value))
    with pytest.raises(TypeError, match="kernel_limit takes name, value"):
        cpu_kernels._call(library, "kernel_limit", name=b"MAX_D_CONV")


@compiled
def test_a_build_with_other_limits_reports_and_enforces_them(tmp_path, monkeypatch):
    """MAX_D_CONV changed in Python only: the fresh build (-O0, in a private folder) reports the new
    value, refuses a d_conv above it, and computes the conv below it."""
    monkeypatch.setattr(cpu_kernels, "kernel_cache_dir", lambda: tmp_path)
    monkeypatch.setattr(cpu_kernels, "COMPILE_FLAGS", (("-O0", *cpu_kernels._COMMON_FLAGS),))
    monkeypatch.setattr(cpu_kernels, "MAX_D_CONV", 3)
    path = cpu_kernels._build(cpu_kernels._find_compiler())
    assert path.parent == tmp_path
    library = cpu_kernels._open(path)
    monkeypatch.setattr(cpu_kernels, "_load", lambda: (library, str(path)))
    assert kernel_limits() == kernel_defines() and kernel_limits()["MAX_D_CONV"] == 3
    g = torch.Generator().manual_seed(0)
    x, tail, weight = torch.randn(2, 9, 16, generator=g), torch.randn(2, 2, 16, generator=g), torch.randn(16, 1, 3)
    out, new_tail = cpu_kernels.causal_conv_compiled(x, tail, weight, None)
    out_ref, tail_ref = causal_conv(x, tail, weight, None)
    torch.testing.assert_close(out, out_ref, atol=1e-5, rtol=1e-5)
    assert torch.equal(new_tail, tail_ref)
    arguments = {
        "x": x, "x_batch": x.stride(0), "x_row": x.stride(1), "tail": tail, "w": weight, "bias": None,
        "out": torch.empty_like(x), "b": 2, "l": 9, "d": 16, "num_threads": 1,
    }  # fmt: skip
    with pytest.raises(ValueError, match="causal_conv_silu_f32 refused its arguments"):
        cpu_kernels._call(library, "causal_conv_silu_f32", **arguments, k=4)
