"""Memory model: parameter counts equal the modules', budgets are checked before heavy work."""

from __future__ import annotations

import pytest
import torch

from model.config import CLIPVisionConfig, JambaConfig, LongLLaVAConfig, ModelConfig
from model.errors import MemoryBudgetError
from model.jamba import JambaLM
from model.memory import (
    GiB,
    check_fits,
    count_lm_parameters,
    count_model_parameters,
    count_projector_parameters,
    count_vision_parameters,
    estimate_memory,
    max_tokens_that_fit,
    prefill_buffer_bytes,
    recommend_chunk_tokens,
    tokens_for_frames,
)
from model.projector import build_projector
from model.vision import CLIPVisionTower
from sampling.parallel import decode_window

LONGLLAVA_9B = JambaConfig(
    vocab_size=65536, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=8, num_experts=1, mamba_dt_rank=256,
)  # fmt: skip


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"num_experts": 4, "num_experts_per_tok": 2},
        {"tie_word_embeddings": True, "mamba_proj_bias": True, "mamba_conv_bias": False},
        {"mamba_inner_layernorms": False, "attn_layer_period": 3, "attn_layer_offset": 0},
    ],
)
def test_lm_parameter_count_equals_the_module(overrides):
    config = JambaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=24, num_hidden_layers=5, num_attention_heads=4,
        num_key_value_heads=2, mamba_d_state=4, **overrides,
    )  # fmt: skip
    with torch.device("meta"):
        lm = JambaLM(config)
    assert count_lm_parameters(config) == sum(p.numel() for p in lm.parameters())


def test_vision_and_projector_counts_equal_the_modules():
    config = CLIPVisionConfig(hidden_size=24, intermediate_size=40, num_hidden_layers=3, num_attention_heads=4,
                              image_size=28, patch_size=7)  # fmt: skip
    with torch.device("meta"):
        tower, projector = CLIPVisionTower(config), build_projector("mlp2x_gelu", 24, 32)
    assert count_vision_parameters(config) == sum(p.numel() for p in tower.parameters())
    assert count_projector_parameters(24, 32) == sum(p.numel() for p in projector.parameters())


def test_longllava_9b_sizes_match_the_release():
    """docs/format.md, Checkpoints: ~9.3B LM + 0.3B CLIP + 0.02B projector, 19.23 GB in bf16; 16 KiB KV per token."""
    assert round(count_lm_parameters(LONGLLAVA_9B) / 1e9, 1) == 9.3
    assert round(count_vision_parameters(CLIPVisionConfig()) / 1e9, 1) == 0.3
    estimate = estimate_memory(LONGLLAVA_9B, CLIPVisionConfig(), dtype="bfloat16", num_tokens=1, mm_hidden_size=1024)
    assert 19.0e9 < estimate.weights < 19.4e9
    assert LONGLLAVA_9B.kv_elements_per_token * 2 == 16 * 1024


def test_only_the_kv_cache_grows_with_tokens():
    small = estimate_memory(LONGLLAVA_9B, CLIPVisionConfig(), num_tokens=20_000, chunk_tokens=2048)
    large = estimate_memory(LONGLLAVA_9B, CLIPVisionConfig(), num_tokens=150_000, chunk_tokens=2048)
    grown = {k: large.as_dict()[k] - small.as_dict()[k] for k in small.as_dict()}
    assert grown["kv_cache"] == 130_000 * 16 * 1024
    assert grown["total"] == grown["kv_cache"]


def test_1000_frames_of_9b_fit_a_24_gb_card_in_bf16():
    num_tokens = tokens_for_frames(1000, 144) + 768
    check_fits(24 * 10**9, LONGLLAVA_9B, CLIPVisionConfig(), num_tokens=num_tokens, mm_hidden_size=1024)
    fits = max_tokens_that_fit(24 * 10**9, LONGLLAVA_9B, CLIPVisionConfig(), mm_hidden_size=1024)
    assert fits >= num_tokens
    assert estimate_memory(LONGLLAVA_9B, CLIPVisionConfig(), num_tokens=fits, mm_hidden_size=1024).total <= 24 * 10**9
    assert (
        estimate_memory(LONGLLAVA_9B, CLIPVisionConfig(), num_tokens=fits + 1, mm_hidden_size=1024).total > 24 * 10**9
    )


def test_too_many_frames_is_a_clear_error():
    with pytest.raises(MemoryBudgetError, match=r"need .* GiB .* budget is 20\.0 GiB; at most \d+ tokens fit") as info:
        check_fits(20 * GiB, LONGLLAVA_9B, CLIPVisionConfig(), num_tokens=tokens_for_frames(1000, 144))
    assert "\n" not in str(info.value)


def test_recommended_chunk_shrinks_with_the_budget():
    kwargs = dict(num_tokens=150_000, mm_hidden_size=1024)
    roomy = recommend_chunk_tokens(40 * GiB, LONGLLAVA_9B, CLIPVisionConfig(), **kwargs)
    tight = recommend_chunk_tokens(21 * GiB, LONGLLAVA_9B, CLIPVisionConfig(), **kwargs)
    assert roomy == 8192 and tight < roomy


def test_clip_batch_and_prefill_chunk_take_turns():
    """The engine frees a CLIP batch's activations before pushing its rows into a chunk: a bigger
    vision batch adds only its pixels while the chunk's activations are the larger, and more once
    the CLIP batch outgrows a small chunk. Every component still adds up to the total."""
    pixels_per_image = 3 * 336 * 336 * 4
    common = dict(dtype="bfloat16", num_tokens=50_000, mm_hidden_size=1024)
    for chunk, clip_shows in ((2048, False), (16, True)):
        one, eight = (
            estimate_memory(LONGLLAVA_9B, CLIPVisionConfig(), chunk_tokens=chunk, vision_batch_size=n, **common)
            for n in (1, 8)
        )
        extra = eight.total - one.total
        assert (extra > 7 * pixels_per_image) == clip_shows and extra >= 7 * pixels_per_image
        assert eight.total == sum(v for k, v in eight.as_dict().items() if k != "total")


@pytest.mark.parametrize("projector_type", ["linear", "mlp2x_gelu", "mlp3x_gelu"])
def test_projector_count_follows_its_type(projector_type):
    with torch.device("meta"):
        projector = build_projector(projector_type, 24, 32)
    assert count_projector_parameters(24, 32, projector_type) == sum(p.numel() for p in projector.parameters())


def test_model_count_adds_the_parts():
    vision = CLIPVisionConfig()
    config = ModelConfig(lm=LONGLLAVA_9B, mm=LongLLaVAConfig(), vision=vision, vision_source="assumed")
    parts = count_lm_parameters(LONGLLAVA_9B) + count_vision_parameters(vision) + count_projector_parameters(1024, 4096)
    assert count_model_parameters(config) == parts
    assert count_model_parameters(ModelConfig(lm=LONGLLAVA_9B)) == count_lm_parameters(LONGLLAVA_9B)


def test_the_prefill_buffer_counts_at_its_full_size():
    """The engine preallocates all chunk_tokens rows, whatever the request's length: a chunk larger
    than the request costs its whole buffer, and a huge one fails the check."""
    common = dict(dtype="bfloat16", num_tokens=1000, mm_hidden_size=1024)
    fitted = estimate_memory(LONGLLAVA_9B, CLIPVisionConfig(), chunk_tokens=1000, **common)
    huge = estimate_memory(LONGLLAVA_9B, CLIPVisionConfig(), chunk_tokens=1_000_000, **common)
    assert huge.chunk - fitted.chunk == (1_000_000 - 1000) * 4096 * 2
    assert huge.total - fitted.total == huge.chunk - fitted.chunk
    with pytest.raises(
        MemoryBudgetError, match=r"prefill chunk 8\.0\) .* empty prompt fits: use a smaller --chunk-tokens"
    ):
        check_fits(24 * GiB, LONGLLAVA_9B, CLIPVisionConfig(), chunk_tokens=1_000_000, **common)


def test_the_engine_allocates_the_buffer_the_model_counts(tmp_path):
    from model import load_model
    from model.engine import ChunkedPrefill
    from model.testing import write_tiny_longllava

    model = load_model(write_tiny_longllava(tmp_path / "tiny", shards=1), dtype="bfloat16")
    for chunk_tokens in (7, 5000):
        prefill = ChunkedPrefill(model.lm, model.lm.new_cache(capacity=16), chunk_tokens)
        assert prefill.buffer.nbytes == prefill_buffer_bytes(model.config.lm, chunk_tokens, "bfloat16")


def test_a_huge_chunk_is_refused_before_the_engine_allocates_it(tmp_path):
    """2^40 rows of 32 float32 would be 128 TiB: were the buffer not in the check, torch's
    allocator would fail (or the machine would swap) instead of this MemoryBudgetError."""
    from PIL import Image

    from model import load_model
    from model.api import RunOptions, ask
    from model.engine import GenerationOptions
    from model.request import AskRequest
    from model.testing import write_tiny_longllava

    model = load_model(write_tiny_longllava(tmp_path / "tiny", shards=1))
    Image.new("RGB", (32, 24), "red").save(tmp_path / "red.png")
    run = RunOptions(chunk_tokens=2**40, memory_budget=64 * GiB)
    with pytest.raises(MemoryBudgetError, match=r"prefill chunk 131072\.\d\) but the budget is 64\.0 GiB"):
        ask(
            model,
            AskRequest(
                inputs=[tmp_path / "red.png"],
                questions="What?",
                generation=GenerationOptions(max_new_tokens=2),
                run=run,
            ),
        )
    fine = ask(
        model,
        AskRequest(
            inputs=[tmp_path / "red.png"],
            questions="What?",
            generation=GenerationOptions(max_new_tokens=2),
            run=RunOptions(chunk_tokens=64, memory_budget=64 * GiB),
        ),
    )
    assert fine.num_prompt_tokens > 0


def test_parallel_decoding_counts_its_window_of_pictures():
    """Several decoding threads hold up to `decode_window` preprocessed pictures beyond the vision
    batch and the frames buffered ahead (tests/sampling/test_parallel.py checks that bound)."""
    vision = CLIPVisionConfig()
    picture = vision.num_channels * vision.image_size**2 * 4  # float32 [3, 336, 336]
    one, two, eight = (
        estimate_memory(LONGLLAVA_9B, vision, num_tokens=20_000, vision_batch_size=8, decode_workers=n)
        for n in (1, 2, 8)
    )
    assert two.total - one.total == decode_window(8, 2) * picture == 16 * picture
    assert eight.total - one.total == 64 * picture
