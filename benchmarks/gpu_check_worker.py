"""The timing process of gpu_check.py: one synthetic LM, one kernel setting, every frame count.

Prints one JSON line describing the setting (device, the paths the layers run, build time), then
one per frame count as soon as it is measured, so a process cut short keeps what it finished.
Without kernels, mamba-ssm and causal-conv1d are made unimportable before the model is imported,
which sends `model.dispatch` to the PyTorch path exactly as on a machine without them.
"""

from __future__ import annotations

import json
import sys
import time

FRAME_MARKUP_ROWS = 7  # model.memory.MARKUP_TOKENS_PER_FRAME, without importing the model first
QUESTION_ROWS = 64  # model.memory.PROMPT_TEXT_TOKENS
SEED = 0


def measure_all(spec: dict, config: dict) -> None:
    """spec: {"kernels", "dry_run", "frames", "tokens_per_image", "decode_tokens", "chunk_tokens"};
    config: the LM's config.json keys. Prints the JSON lines of the module docstring."""
    if not spec["kernels"]:
        sys.modules["mamba_ssm"] = sys.modules["causal_conv1d"] = None  # import now raises ImportError
    import torch

    from model.config import JambaConfig

    device = torch.device("cpu" if spec["dry_run"] else "cuda")
    start = time.perf_counter()
    lm = _random_lm(JambaConfig.from_dict(config), device)
    header = {"device": _device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda}
    header["build_s"] = round(time.perf_counter() - start, 1)
    header |= _paths(lm, spec["chunk_tokens"])
    if spec["kernels"]:
        header["kernel_import"] = _import_error() or "ok"
    print(json.dumps(header), flush=True)
    _prefill_and_decode(lm, spec | {"frames": 1, "decode_tokens": 2})  # warm-up: cuBLAS, Triton's JIT
    for frames in spec["frames"]:
        record = _prefill_and_decode(lm, spec | {"frames": frames})
        print(json.dumps(record | {"kernels_used": header["mamba_prefill"].endswith("mamba-ssm scan")}), flush=True)


def _random_lm(config, device):
    """A bfloat16 JambaLM with `model.random_init` values, drawn on `device` (a CPU generator would
    take a minute for LongLLaVA-9B's widths)."""
    import torch

    from model.jamba import JambaLM
    from model.loading import empty_weights
    from model.random_init import random_value

    with empty_weights():
        lm = JambaLM(config)
    lm = lm.to(torch.bfloat16).to_empty(device=device).eval()
    generator = torch.Generator(device=device).manual_seed(SEED)
    with torch.no_grad(), torch.device(device):
        for name, p in lm.named_parameters():
            p.copy_(random_value(name, p.shape, generator))
    return lm


def _paths(lm, chunk_tokens: int) -> dict[str, str]:
    """The conv and scan the first Mamba layer runs for a prefill chunk and a decode step."""
    import torch

    mixer = next(layer.mamba for layer in lm.model.layers if layer.kind == "mamba")
    with torch.inference_mode():
        chunk, step = (torch.empty(1, tokens, 1, device=lm.device, dtype=lm.dtype) for tokens in (chunk_tokens, 1))
        return {"mamba_prefill": str(mixer.choose_path(chunk)), "mamba_decode": str(mixer.choose_path(step))}


def _import_error() -> str | None:
    """Why mamba-ssm or causal-conv1d does not import here (what `model.dispatch` checks), if it does not."""
    try:
        import causal_conv1d  # noqa: F401
        import mamba_ssm  # noqa: F401
    except ImportError as e:
        return f"{type(e).__name__}: {e}"
    return None


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prefill_and_decode(lm, spec: dict) -> dict:
    """Prefill `frames` frames of random rows plus a question's, take the first token (time to
    first token), decode `decode_tokens` more; peak memory against `model.memory`'s prediction."""
    import torch

    from model.engine import ChunkedPrefill
    from model.memory import estimate_memory
    from model.memory_usage import peak_memory_bytes, reset_peak_rss

    device, frames = lm.device, spec["frames"]
    g = torch.Generator(device=device).manual_seed(SEED)
    e = lm.config.hidden_size
    frame_rows = 0.02 * torch.randn(spec["tokens_per_image"] + FRAME_MARKUP_ROWS, e, generator=g, device=device)
    question = 0.02 * torch.randn(QUESTION_ROWS, e, generator=g, device=device)
    tokens = frames * frame_rows.shape[0] + QUESTION_ROWS
    _release(device)
    _reset_peak(device, reset_peak_rss)
    start = time.perf_counter()
    prefill = ChunkedPrefill(lm, lm.new_cache(capacity=tokens + spec["decode_tokens"]), spec["chunk_tokens"])
    for _ in range(frames):
        prefill.push(frame_rows.to(lm.dtype))
    prefill.push(question.to(lm.dtype))
    token = prefill.finish().argmax()
    _sync(device)
    ttft = time.perf_counter() - start
    with torch.inference_mode():
        for _ in range(spec["decode_tokens"]):
            token = lm(token.view(1, 1), cache=prefill.cache)[0, -1].argmax()
        _sync(device)
    decode_s = time.perf_counter() - start - ttft
    peak = peak_memory_bytes(device)
    predicted = estimate_memory(
        lm.config, None, dtype="bfloat16", num_tokens=tokens + spec["decode_tokens"],
        chunk_tokens=spec["chunk_tokens"], device=device.type,
    ).total  # fmt: skip
    del prefill
    return {
        "frames": frames, "tokens": tokens, "ttft_s": round(ttft, 3), "prefill_tokens_per_s": round(tokens / ttft),
        "decode_tokens": spec["decode_tokens"], "decode_tokens_per_s": round(spec["decode_tokens"] / decode_s, 2),
        "peak_bytes": peak, "predicted_bytes": predicted, "measured_over_predicted": round(peak / predicted, 3),
    }  # fmt: skip


def _release(device) -> None:
    """Return the previous run's cache to the allocator, so each peak is its own run's."""
    import gc

    import torch

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def _reset_peak(device, reset_peak_rss) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        reset_peak_rss()
