"""Bottom-right causal attention (tiled, PyTorch's CPU flash kernel pair, the compiled kernel) and
the growing KV cache."""

from __future__ import annotations

import pytest
import torch

import model.attention as attn_mod
from model.attention import (
    attention_reference,
    causal_attention,
    causal_attention_compiled,
    causal_attention_cpu,
    causal_attention_cuda,
    causal_attention_flash_cpu,
    flash_cpu_available,
)
from model.cache import AttentionCache, new_cache
from model.config import JambaConfig
from model.cpu_kernels import kernels_status


def _qkv(l, s, h=6, h_kv=2, hd=8, b=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(b, h, l, hd, generator=g),
        torch.randn(b, h_kv, s, hd, generator=g),
        torch.randn(b, h_kv, s, hd, generator=g),
    )


@pytest.mark.parametrize(("l", "s"), [(1, 1), (1, 40), (7, 7), (7, 40), (40, 40), (33, 1000)])
@pytest.mark.parametrize("small_tiles", [False, True])
def test_tiled_attention_equals_reference(monkeypatch, l, s, small_tiles):
    if small_tiles:  # many query blocks and key tiles, diagonal tiles cut at odd places
        monkeypatch.setattr(attn_mod, "_Q_BLOCK", 5)
        monkeypatch.setattr(attn_mod, "SCORE_TILE_ELEMENTS", 1)
    q, k, v = _qkv(l, s)
    torch.testing.assert_close(causal_attention(q, k, v), attention_reference(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(("l", "s"), [(1, 40), (7, 40), (40, 40)])
def test_sdpa_lower_right_path_equals_reference(l, s):
    """The CUDA path's use of SDPA + causal_lower_right, checked on CPU (where it runs unfused)."""
    q, k, v = _qkv(l, s)
    torch.testing.assert_close(causal_attention_cuda(q, k, v), attention_reference(q, k, v), atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not flash_cpu_available(), reason="this torch has no CPU flash-attention op")
@pytest.mark.parametrize(("l", "s"), [(1, 1), (1, 40), (7, 7), (7, 40), (40, 40), (33, 1000)])
@pytest.mark.parametrize(("h", "h_kv"), [(6, 2), (4, 4)])
def test_flash_cpu_merge_equals_reference(l, s, h, h_kv):
    """Cached keys and the chunk's own keys attended separately, merged by log-sum-exp; K/V are
    views into a larger cache buffer, as `AttentionCache.append` returns them."""
    q, k, v = _qkv(l, s + 9, h=h, h_kv=h_kv)
    q = q[:, :, :l]
    k, v = k[:, :, :s], v[:, :, :s]
    torch.testing.assert_close(
        causal_attention_flash_cpu(q, k, v), attention_reference(q, k, v), atol=1e-5, rtol=1e-5
    )


@pytest.mark.skipif(not flash_cpu_available(), reason="this torch has no CPU flash-attention op")
def test_flash_cpu_merge_in_bfloat16():
    q, k, v = (t.bfloat16() for t in _qkv(16, 64))
    out = causal_attention_flash_cpu(q, k, v)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), attention_reference(q, k, v).float(), atol=2e-2, rtol=2e-2)


@pytest.mark.skipif(not kernels_status()[0], reason=f"compiled CPU kernels unavailable: {kernels_status()[1]}")
@pytest.mark.parametrize(("l", "s"), [(1, 1), (1, 40), (7, 7), (7, 40), (40, 40), (33, 1000), (300, 333)])
@pytest.mark.parametrize(("h", "h_kv", "hd"), [(6, 2, 8), (4, 4, 64), (8, 2, 64)])
def test_compiled_attention_equals_reference(l, s, h, h_kv, hd):
    """The whole chunk against cached and own keys in one kernel call; K/V views into a larger
    cache buffer; GQA folded into the rows (the cache is never repeated)."""
    q, k, v = _qkv(l, s + 9, h=h, h_kv=h_kv, hd=hd)
    q = q[:, :, :l]
    k, v = k[:, :, :s], v[:, :, :s]
    torch.testing.assert_close(
        causal_attention_compiled(q, k, v), attention_reference(q, k, v), atol=1e-5, rtol=1e-5
    )


def test_cpu_attention_takes_the_compiled_kernel_for_float32_chunks_only(monkeypatch):
    """Prefill chunks (≥ 32 query rows after GQA folding) go to the compiled kernel when it
    built; decode steps and bfloat16 to PyTorch's flash pair (or the tiled attention)."""
    used = []
    monkeypatch.setattr(attn_mod, "causal_attention_compiled", lambda *a: used.append("compiled") or 0)
    monkeypatch.setattr(attn_mod, "causal_attention_flash_cpu", lambda *a: used.append("flash") or 0)
    monkeypatch.setattr(attn_mod, "causal_attention", lambda *a: used.append("tiled") or 0)
    monkeypatch.setattr(attn_mod, "kernels_available", lambda: True)
    causal_attention_cpu(*_qkv(16, 40, h=6, h_kv=2))  # 3·16 = 48 rows per KV head
    causal_attention_cpu(*_qkv(1, 40, h=6, h_kv=2))  # decode: 3 rows
    causal_attention_cpu(*(t.bfloat16() for t in _qkv(16, 40, h=6, h_kv=2)))
    causal_attention_cpu(*_qkv(16, 40, h=6, h_kv=2, hd=12))  # head_dim not a multiple of 8
    monkeypatch.setattr(attn_mod, "MAX_ATTENTION_KEYS", 39)  # positions past float32's exact range
    causal_attention_cpu(*_qkv(16, 40, h=6, h_kv=2))
    fallback = "flash" if flash_cpu_available() else "tiled"
    assert used == ["compiled", fallback, fallback, fallback, fallback]
    monkeypatch.setattr(attn_mod, "kernels_available", lambda: False)  # no compiler, or disabled
    causal_attention_cpu(*_qkv(16, 40, h=6, h_kv=2))
    assert used[-1] == fallback


def test_reference_is_bottom_right_aligned():
    """The last query sees every key; the first of a chunk sees only keys up to its own position."""
    q, k, v = _qkv(3, 10, h=2, h_kv=2)
    out = attention_reference(q, k, v)
    only_first_8 = attention_reference(q[:, :, :1], k[:, :, :8], v[:, :, :8])
    torch.testing.assert_close(out[:, :, :1], only_first_8)


def test_cache_grows_in_blocks_and_keeps_contents(monkeypatch):
    monkeypatch.setattr("model.cache.KV_GROWTH_BLOCK", 8)
    cache = AttentionCache(torch.empty(1, 2, 0, 4), torch.empty(1, 2, 0, 4))
    chunks = [torch.randn(1, 2, n, 4) for n in (3, 9, 1, 20)]
    for c in chunks:
        k, v = cache.append(c, -c)
    expected = torch.cat(chunks, dim=2)
    assert cache.length == 33 and cache.capacity % 8 == 0 and cache.capacity >= 33
    torch.testing.assert_close(k, expected, atol=0, rtol=0)
    torch.testing.assert_close(v, -expected, atol=0, rtol=0)


def test_preallocated_cache_does_not_reallocate():
    config = JambaConfig(
        vocab_size=10,
        hidden_size=8,
        intermediate_size=8,
        num_hidden_layers=2,
        num_attention_heads=2,
        attn_layer_period=2,
        attn_layer_offset=1,
    )
    cache = new_cache(config, capacity=64)
    attn = cache.layers[1]
    assert isinstance(attn, AttentionCache)
    storage = attn.k.data_ptr()
    for _ in range(8):
        attn.append(torch.randn(1, 2, 8, 4), torch.randn(1, 2, 8, 4))
    assert attn.k.data_ptr() == storage and attn.length == 64
    assert cache.layers[0].ssm.dtype == torch.float32
