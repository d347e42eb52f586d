"""The Jamba LM against transformers' JambaForCausalLM, and chunked prefill against one pass."""

from __future__ import annotations

import pytest
import torch

from model import load_language_model
from model.cache import AttentionCache, MambaCache
from model.scan import scan_reference

CONFIGS = {
    "dense": dict(),
    "moe_top2": dict(
        num_experts=4, num_experts_per_tok=2, expert_layer_period=3, expert_layer_offset=2, num_hidden_layers=6
    ),
    "attn_period_3_offset_0": dict(attn_layer_period=3, attn_layer_offset=0, num_hidden_layers=5),
    "gqa_8_2": dict(num_attention_heads=8, num_key_value_heads=2, hidden_size=64, mamba_dt_rank="auto"),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_logits_match_transformers(hf_jamba, name):
    path, hf = hf_jamba(seed=len(name), **CONFIGS[name])
    ours = load_language_model(path)
    ids = torch.randint(0, hf.config.vocab_size, (2, 37), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids, logits_to_keep=None)
    assert got.shape == expected.shape
    assert expected.abs().max() > 1.0, "random weights too small to make the comparison meaningful"
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=0)


def test_moe_layers_route_to_several_experts(hf_jamba):
    """Guards the MoE comparison above against a degenerate router sending every token to one expert."""
    path, _ = hf_jamba(**CONFIGS["moe_top2"])
    ours = load_language_model(path)
    moe = ours.model.layers[2].feed_forward
    x = torch.randn(1, 50, ours.config.hidden_size, generator=torch.Generator().manual_seed(0))
    chosen = torch.topk(moe.router(x[0]).softmax(-1), 2).indices
    assert len(torch.unique(chosen)) == 4


def _states(cache):
    out = []
    for c in cache.layers:
        if isinstance(c, AttentionCache):
            out += [c.k[:, :, : c.length], c.v[:, :, : c.length]]
        else:
            assert isinstance(c, MambaCache)
            out += [c.conv, c.ssm]
    return out


@pytest.fixture
def gqa_model(hf_jamba):
    path, _ = hf_jamba(seed=3, **CONFIGS["gqa_8_2"])
    return load_language_model(path)


@pytest.mark.parametrize("chunk", [1, 2, 7, 64, 100])
def test_chunked_prefill_equals_one_pass(gqa_model, chunk):
    ids = torch.randint(0, 97, (1, 100), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        one = gqa_model.new_cache()
        expected = gqa_model(ids, cache=one)
        cache = gqa_model.new_cache()
        for start in range(0, ids.shape[1], chunk):
            got = gqa_model(ids[:, start : start + chunk], cache=cache)
    assert cache.length == one.length == 100
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # SSM states reach ~20 in magnitude: compare them to float32 rounding relative to their size.
    for a, b in zip(_states(cache), _states(one), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_greedy_decode_after_chunked_prefill_equals_full_forward(gqa_model):
    prompt = torch.randint(0, 97, (1, 45), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        cache = gqa_model.new_cache()
        for start in range(0, 45, 16):
            logits = gqa_model(prompt[:, start : start + 16], cache=cache)
        tokens = prompt
        for _ in range(8):
            next_id = logits[:, -1].argmax(-1, keepdim=True)
            full = gqa_model(torch.cat([tokens, next_id], dim=1), logits_to_keep=None)
            tokens = torch.cat([tokens, next_id], dim=1)
            logits = gqa_model(next_id, cache=cache)
            torch.testing.assert_close(logits[:, -1], full[:, -1], atol=1e-5, rtol=0)
    assert cache.length == tokens.shape[1]


def test_inputs_embeds_equal_input_ids(gqa_model):
    ids = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        a = gqa_model(ids, logits_to_keep=3)
        b = gqa_model(inputs_embeds=gqa_model.embed(ids), logits_to_keep=3)
        none = gqa_model(ids, logits_to_keep=0)
    assert a.shape == (2, 3, 97) and none.shape == (2, 0, 97)
    torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_reference_scan_gives_the_same_logits(gqa_model):
    ids = torch.randint(0, 97, (1, 30), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        fast = gqa_model(ids, logits_to_keep=None)
        gqa_model.set_scan(scan_reference)
        try:
            ref = gqa_model(ids, logits_to_keep=None)
        finally:
            gqa_model.set_scan(None)
    torch.testing.assert_close(fast, ref, atol=1e-5, rtol=0)


def test_fork_gives_independent_continuations(gqa_model):
    ids = torch.randint(0, 97, (1, 25), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        cache = gqa_model.new_cache()
        gqa_model(ids, cache=cache)
        fork = cache.fork()
        a = gqa_model(torch.tensor([[5, 6]]), cache=cache)
        b = gqa_model(torch.tensor([[5, 6]]), cache=fork)
        c = gqa_model(torch.tensor([[9]]), cache=fork)
        full = gqa_model(torch.cat([ids, torch.tensor([[5, 6, 9]])], dim=1))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    torch.testing.assert_close(c, full, atol=1e-5, rtol=0)
    assert cache.length == 27 and fork.length == 28


def test_bfloat16_tracks_float32(hf_jamba):
    path, _ = hf_jamba(seed=8, **CONFIGS["gqa_8_2"])
    ids = torch.randint(0, 97, (1, 40), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        f32 = load_language_model(path)(ids, logits_to_keep=None)
        bf16_model = load_language_model(path, dtype="bfloat16")
        bf16 = bf16_model(ids, logits_to_keep=None)
    assert bf16_model.dtype == torch.bfloat16 and bf16.dtype == torch.float32
    assert torch.corrcoef(torch.stack([f32.flatten(), bf16.flatten()]))[0, 1] > 0.99
