"""Memory model: peak bytes of a request, from configs alone (no weights loaded).

    peak = weights + KV cache + Mamba state + vision batch + one prefill chunk + runtime

- weights: parameter count × dtype size (LM, CLIP tower, projector), counted from the configs by
  module kind (`model.weights`); with int8 or NF4 quantisation the quantised kinds' Linear
  weights count as those formats store them, and one of them turned back into the activation
  dtype joins the chunk's activations.
- KV cache: positions × 2 × KV heads × head dim × attention layers × dtype size; the engine
  preallocates it for prompt + answer, so it is the only term that grows with the frame count.
- Mamba state: conv context and float32 SSM state per Mamba layer, independent of length.
- vision batch: decoded pixels in flight (the vision batch, the frames buffered ahead and, with
  several decoding threads, their window of pictures made ahead), plus what one CLIP batch's activations need beyond the
  prefill chunk's: the engine encodes a batch, frees its activations and only then pushes its
  rows through the LM, so the two are never alive together and the peak holds the larger.
- chunk: the largest set of activations alive while one prefill chunk runs (the Mamba mixer's
  float32 intermediates, the FFN, the attention score tile and scan buffers), and the chunk's
  embedding buffer, which the engine preallocates at its full `chunk_tokens` rows even when the
  request is shorter: a huge `chunk_tokens` fails the check before anything is allocated.
- runtime: what the framework itself holds (PyTorch on CPU: its libraries; CUDA: the context).

`longllava estimate` prints these; the engine uses `check_fits` to fail before any heavy work.
The constants were calibrated against measured peak RSS (benchmarks/bench_engine.py).

Dimension letters: docs/glossary.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from model.buffers import SCAN_BLOCK_ELEMENTS, SCORE_TILE_ELEMENTS
from model.config import CLIPVisionConfig, JambaConfig, ModelConfig
from model.errors import MemoryBudgetError
from model.weights import (
    DTYPE_BYTES,
    largest_quantized_linear,
    lm_weight_groups,
    model_weight_groups,
    projector_weight_group,
    vision_weight_group,
    weight_bytes_by_kind,
)
from sampling.parallel import decode_window

# Text around each video frame with LongLLaVA's tokenizer: `<img>`, `</img>`, `<t>` (docs/format.md, Prompt).
MARKUP_TOKENS_PER_FRAME = 7
# Template, separators and a typical question.
PROMPT_TEXT_TOKENS = 64
# Resident memory on CPU of the PyTorch runtime, this package and the media libraries (measured
# 259-270 MiB after start-up, VmHWM) plus what glibc keeps of freed activation buffers; calibrated
# on the tiny test model (1000 frames) and the mid-size benchmark model (benchmarks/RESULTS.md).
CPU_RUNTIME_BYTES = 300 * 2**20
# What importing the quantisation library adds to it (measured, torchao 0.18 and bitsandbytes 0.50).
QUANTIZATION_RUNTIME_BYTES = {"int8": 90 * 2**20, "nf4": 125 * 2**20}
# Fixed buffers of a prefill: three float32 attention score tiles plus their mask, the scan's two
# block buffers, and slack for the allocator.
FIXED_ACTIVATION_BYTES = 3 * 4 * SCORE_TILE_ELEMENTS + SCORE_TILE_ELEMENTS + 2 * 4 * SCAN_BLOCK_ELEMENTS + 40 * 2**20
GiB = 2**30
# `max_tokens_that_fit` searches up to here: 16.7M positions, ~100x the 1024 frames a prompt may hold.
MAX_SEARCHED_TOKENS = 1 << 24


@dataclass(frozen=True)
class MemoryEstimate:
    """Predicted peak bytes by component (see the module docstring)."""

    weights: int
    kv_cache: int
    mamba_state: int
    vision: int
    chunk: int
    runtime: int
    weights_by_kind: dict[str, int] = field(default_factory=dict)  # `weights` split by module kind

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.mamba_state + self.vision + self.chunk + self.runtime

    def as_dict(self) -> dict[str, int]:
        return {
            "weights": self.weights,
            "kv_cache": self.kv_cache,
            "mamba_state": self.mamba_state,
            "vision": self.vision,
            "chunk": self.chunk,
            "runtime": self.runtime,
            "total": self.total,
        }


def count_lm_parameters(c: JambaConfig) -> int:
    return sum(group.num_parameters for group in lm_weight_groups(c).values())


def count_vision_parameters(v: CLIPVisionConfig) -> int:
    return vision_weight_group(v).num_parameters


def count_projector_parameters(mm_hidden_size: int, hidden_size: int, projector_type: str = "mlp2x_gelu") -> int:
    """Linear(c, e) then depth - 1 × Linear(e, e), with biases ("linear": depth 1, "mlp{depth}x_gelu")."""
    return projector_weight_group(mm_hidden_size, hidden_size, projector_type).num_parameters


def count_model_parameters(config: ModelConfig) -> int:
    """Parameters of the whole model a config describes (LM, and CLIP tower + projector if any)."""
    total = count_lm_parameters(config.lm)
    mm, vision = config.mm, config.vision
    if mm is not None and vision is not None:
        total += count_vision_parameters(vision)
        total += count_projector_parameters(mm.mm_hidden_size, config.lm.hidden_size, mm.mm_projector_type)
    return total


def prefill_buffer_bytes(lm: JambaConfig, chunk_tokens: int, dtype: str) -> int:
    """The embedding buffer `engine.ChunkedPrefill` preallocates: [1, chunk_tokens, e] in the LM
    dtype, whatever the length of the request."""
    return chunk_tokens * lm.hidden_size * DTYPE_BYTES[dtype]


def tokens_for_frames(num_frames: int, tokens_per_image: int, *, question_tokens: int = PROMPT_TEXT_TOKENS) -> int:
    """LM positions of a prompt with `num_frames` video frames and a typical question."""
    return num_frames * (tokens_per_image + MARKUP_TOKENS_PER_FRAME) + question_tokens


def estimate_memory(
    lm: JambaConfig,
    vision: CLIPVisionConfig | None,
    *,
    dtype: str = "bfloat16",
    num_tokens: int,
    chunk_tokens: int = 2048,
    vision_batch_size: int = 8,
    frames_ahead: int = 16,
    decode_workers: int = 1,
    mm_hidden_size: int | None = None,
    projector_type: str = "mlp2x_gelu",
    device: str = "cuda",
    num_states: int = 1,
    quantize: str = "none",
) -> MemoryEstimate:
    """Predicted peak bytes of one request of `num_tokens` LM positions (prompt + answer).

    num_states: copies of the LM's state alive at once. Several questions about the same inputs
    answer each but the last from a fork of the shared prefill (`api.ask`), so 2 are alive while
    one is answered: the KV cache, the Mamba state and the prefill buffer count twice.
    quantize: "none", "int8" or "nf4", the weights of the kinds `model.module_kinds` marks as
    quantised counted as stored that way (`model.weights`). decode_workers: threads decoding frames;
    with several, their window of pictures made ahead (`sampling.parallel.decode_window`) counts too."""
    size = DTYPE_BYTES[dtype]
    groups = model_weight_groups(lm, vision, mm_hidden_size=mm_hidden_size, projector_type=projector_type)
    by_kind = weight_bytes_by_kind(groups, dtype=dtype, quantize=quantize, device=device)
    pixels = clip_batch = 0
    if vision is not None:
        in_flight = vision_batch_size + frames_ahead + decode_window(vision_batch_size, decode_workers)
        pixels = in_flight * vision.num_channels * vision.image_size**2 * 4
        seq = vision.num_patches + 1
        # Per image: a few [seq, width] hidden states, the MLP's [seq, intermediate] and one
        # layer's attention scores (SDPA's math path on CPU keeps heads × seq² floats).
        per_image = seq * (6 * vision.hidden_size + 2 * vision.intermediate_size) * size
        per_image += vision.num_attention_heads * seq * seq * 4
        clip_batch = vision_batch_size * per_image
    num_mamba = lm.layer_types.count("mamba")
    mamba_state = num_mamba * lm.d_inner * (lm.mamba_d_state + lm.mamba_d_conv - 1) * 4
    kv = num_tokens * lm.kv_elements_per_token * size * num_states
    mamba_state *= num_states
    # Per chunk position: the mixer's float32 intermediates alive at once: in_proj's [2 d_inner]
    # output, the conv output, Δ and y, plus on the PyTorch path the conv's padded copy, the scan's
    # time-major copies and silu(z) (~7 × d_inner; ~5 where the compiled CPU kernels fuse them,
    # model.cpu_kernels); the FFN's two [f] tensors (silu and product run in place); residual-stream
    # copies and the embedding buffer itself.
    mixer = 5 if device == "cpu" and _cpu_kernels_available() else 7
    per_token = mixer * lm.d_inner * 4 + 2 * lm.intermediate_size * size + 6 * lm.hidden_size * 4
    rows = min(chunk_tokens, num_tokens)  # positions one prefill chunk actually runs
    # per_token counts the rows of the embedding buffer a chunk fills; the engine preallocates all
    # chunk_tokens of them, so the rows a short request leaves empty count too.
    unused_rows = prefill_buffer_bytes(lm, chunk_tokens, dtype) - prefill_buffer_bytes(lm, rows, dtype)
    forks = (num_states - 1) * prefill_buffer_bytes(lm, chunk_tokens, dtype)  # each fork copies the buffer
    chunk = rows * per_token + unused_rows + forks + FIXED_ACTIVATION_BYTES + 2 * lm.vocab_size * 4
    chunk += largest_quantized_linear(groups, quantize) * size  # one weight turned back for its matmul
    vision_bytes = pixels + max(0, clip_batch - chunk)  # the CLIP batch and the chunk take turns
    runtime = CPU_RUNTIME_BYTES + QUANTIZATION_RUNTIME_BYTES.get(quantize, 0) if device == "cpu" else 0
    return MemoryEstimate(sum(by_kind.values()), kv, mamba_state, vision_bytes, chunk, runtime, by_kind)


def device_memory_bytes(device: str) -> int:
    """Memory a request on `device` may use: the CUDA device's total memory, else physical RAM."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def max_tokens_that_fit(budget: int, lm: JambaConfig, vision: CLIPVisionConfig | None, **kwargs) -> int:
    """Largest `num_tokens` whose estimate fits `budget` bytes (0 if even the weights do not), up to
    MAX_SEARCHED_TOKENS (a result equal to it means "at least that many")."""
    lo, hi = 0, MAX_SEARCHED_TOKENS
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if estimate_memory(lm, vision, num_tokens=mid, **kwargs).total <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


def recommend_chunk_tokens(budget: int, lm: JambaConfig, vision: CLIPVisionConfig | None, **kwargs) -> int:
    """The largest power-of-two chunk in 256..8192 that keeps the request within `budget`
    (bigger chunks run the matmuls more efficiently); 256 if none does."""
    kwargs.pop("chunk_tokens", None)
    for chunk in (8192, 4096, 2048, 1024, 512, 256):
        if estimate_memory(lm, vision, chunk_tokens=chunk, **kwargs).total <= budget:
            return chunk
    return 256


def check_fits(budget: int, lm: JambaConfig, vision: CLIPVisionConfig | None, *, num_tokens: int, **kwargs) -> None:
    """Raise MemoryBudgetError, before any heavy work, when a request cannot fit `budget` bytes."""
    estimate = estimate_memory(lm, vision, num_tokens=num_tokens, **kwargs)
    if estimate.total <= budget:
        return
    fits = max_tokens_that_fit(budget, lm, vision, **kwargs)
    remedies = ["a smaller --chunk-tokens", "a smaller dtype"]
    remedies += ["--quantize int8"] if kwargs.get("quantize", "none") == "none" else []
    advice = (
        f"at most {fits} tokens fit: sample fewer frames (--frames), use {', '.join(remedies[:-1])} or {remedies[-1]}"
        if fits
        else f"not even an empty prompt fits: use {', '.join(remedies)} or more memory"
    )
    raise MemoryBudgetError(
        f"{num_tokens} tokens need {estimate.total / GiB:.1f} GiB (weights {estimate.weights / GiB:.1f}, "
        f"KV cache {estimate.kv_cache / GiB:.1f}, prefill chunk {estimate.chunk / GiB:.1f}) but the budget is "
        f"{budget / GiB:.1f} GiB; {advice}"
    )


def _cpu_kernels_available() -> bool:
    """Whether the compiled CPU kernels run the mixer here (imported only for a CPU estimate: the
    kernels' module loads torch)."""
    from model.cpu_kernels import kernels_available

    return kernels_available()
