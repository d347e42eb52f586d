"""The CUDA path on a real GPU: a whole LM's chunked prefill and decode with mamba-ssm's and
causal-conv1d's kernels and SDPA equal the CPU reference path, and SDPA's lower-right causal mask
with GQA equals the reference attention in every dtype (its flash, memory-efficient and math
branches differ in what they accept). Skipped without CUDA and the kernels; tests/model/
test_kernel_refs.py checks the same glue on the CPU against the libraries' reference functions.
"""

from __future__ import annotations

import pytest
import torch

import model.attention as attn_mod
import model.mamba as mamba_mod
from model.attention import attention_reference, causal_attention_cuda
from model.config import JambaConfig
from model.dispatch import Conv, MixerPath, Scan, mamba_kernels_available
from model.jamba import JambaLM
from model.random_init import randomize_parameters
from model.testing import TINY_LM_CONFIG

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(
        not (torch.cuda.is_available() and mamba_kernels_available(torch.device("cuda"))),
        reason="needs CUDA with mamba-ssm and causal-conv1d",
    ),
]

_CHUNKS, _DECODE_STEPS = (1, 2, 7, 13, 300), 4
# float32: the kernels round differently from the CPU (fast-math exp, cuBLAS's summation order).
# bfloat16: looser than test_kernel_refs.py (where the CUDA path on the CPU was within 0.094 of the
# reference), since here every matmul and the flash attention also round in the GPU's own order.
_TOLERANCE = {torch.float32: {"atol": 1e-3, "rtol": 1e-3}, torch.bfloat16: {"atol": 0.25, "rtol": 0.05}}


def _prefill_and_decode(lm: JambaLM, embeds: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Prefill embeds [1, L, e] in `_CHUNKS`, decode `ids` one at a time. -> float32 logits
    [len(_CHUNKS) + steps, V] of each call's last position, on the CPU."""
    cache, logits, start = lm.new_cache(), [], 0
    with torch.inference_mode():
        for size in _CHUNKS:
            logits.append(lm(inputs_embeds=embeds[:, start : start + size].to(lm.device), cache=cache)[0, -1])
            start += size
        for token in ids:
            logits.append(lm(token.view(1, 1).to(lm.device), cache=cache)[0, -1])
    return torch.stack(logits).cpu()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_chunked_prefill_and_decode_with_the_kernels_equal_the_cpu_reference(monkeypatch, dtype):
    lm = JambaLM(JambaConfig.from_dict(TINY_LM_CONFIG)).eval()
    randomize_parameters(lm, seed=5)
    lm = lm.to(dtype)
    g = torch.Generator().manual_seed(1)
    embeds = torch.randn(1, sum(_CHUNKS), lm.config.hidden_size, generator=g).to(dtype)
    ids = torch.randint(0, lm.config.vocab_size, (_DECODE_STEPS,), generator=g)
    with monkeypatch.context() as mp:  # the CPU reference: PyTorch conv, blocked scan, tiled attention
        mp.setattr(mamba_mod, "kernels_available", lambda: False)
        mp.setattr(attn_mod, "kernels_available", lambda: False)
        mp.setattr(attn_mod, "flash_cpu_available", lambda: False)
        expected = _prefill_and_decode(lm, embeds, ids)
    lm = lm.cuda()
    mixer = lm.model.layers[0].mamba
    probe = torch.empty(1, 2, 1, device="cuda")
    assert mixer.choose_path(probe) == MixerPath(Conv.CAUSAL_CONV1D, Scan.MAMBA_SSM)
    assert mixer.choose_path(probe[:, :1]) == MixerPath(Conv.CAUSAL_CONV1D, Scan.MAMBA_SSM_STEP)
    torch.testing.assert_close(_prefill_and_decode(lm, embeds, ids), expected, **_TOLERANCE[dtype])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize(("queries", "cached"), [(1, 300), (64, 0), (64, 200), (300, 5000)])
def test_sdpa_lower_right_with_gqa_on_cuda_equals_the_reference(dtype, queries, cached):
    """32 query heads over 8 KV heads of 128, as LongLLaVA-9B."""
    g = torch.Generator().manual_seed(queries + cached)
    q = torch.randn(1, 32, queries, 128, generator=g)
    k, v = (torch.randn(1, 8, cached + queries, 128, generator=g) for _ in range(2))
    got = causal_attention_cuda(*(t.to("cuda", dtype) for t in (q, k, v)))
    tolerance = {"atol": 2e-3, "rtol": 2e-3} if dtype == torch.float32 else {"atol": 2e-2, "rtol": 2e-2}
    torch.testing.assert_close(got.float().cpu(), attention_reference(q, k, v), **tolerance)
