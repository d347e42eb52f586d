"""Engine: chunked prefill of embedding rows, forks, generation options and streaming."""

from __future__ import annotations

import pytest
import torch

from model import load_language_model
from model.engine import ChunkedPrefill, GenerationOptions, generate, pick_token
from model.prefetch import Prefetcher


@pytest.fixture
def tiny_lm(hf_jamba):
    path, _ = hf_jamba(seed=21, num_attention_heads=8, num_key_value_heads=2, hidden_size=64, mamba_dt_rank="auto")
    return load_language_model(path)


def _rows(lm, n, seed=0):
    ids = torch.randint(0, lm.config.vocab_size, (1, n), generator=torch.Generator().manual_seed(seed))
    return lm.embed(ids)[0]


@pytest.mark.parametrize("chunk", [1, 5, 16, 37, 1000])
@pytest.mark.parametrize("pieces", [(100,), (3, 40, 1, 56)])
def test_chunked_prefill_of_rows_equals_one_pass(tiny_lm, chunk, pieces):
    rows = _rows(tiny_lm, sum(pieces))
    with torch.no_grad():
        expected = tiny_lm(inputs_embeds=rows[None], logits_to_keep=1)[0, -1]
    prefill = ChunkedPrefill(tiny_lm, tiny_lm.new_cache(), chunk)
    start = 0
    for size in pieces:  # pushes of any size, chunks cut through them
        prefill.push(rows[start : start + size])
        start += size
    torch.testing.assert_close(prefill.finish(), expected, atol=1e-5, rtol=0)
    assert prefill.cache.length == sum(pieces)


def test_fork_continues_exactly_like_the_original(tiny_lm):
    rows, tail_a, tail_b = _rows(tiny_lm, 50, 1), _rows(tiny_lm, 9, 2), _rows(tiny_lm, 4, 3)
    prefill = ChunkedPrefill(tiny_lm, tiny_lm.new_cache(), 16)
    prefill.push(rows)
    fork = prefill.fork()
    fork.push(tail_a)
    prefill.push(tail_b)
    with torch.no_grad():
        expect_a = tiny_lm(inputs_embeds=torch.cat([rows, tail_a])[None])[0, -1]
        expect_b = tiny_lm(inputs_embeds=torch.cat([rows, tail_b])[None])[0, -1]
    torch.testing.assert_close(fork.finish(), expect_a, atol=1e-5, rtol=0)
    torch.testing.assert_close(prefill.finish(), expect_b, atol=1e-5, rtol=0)


def _decode(ids):
    return "".join(chr(ord("a") + i % 26) for i in ids)


def _greedy_by_full_forward(lm, prompt_rows, steps):
    ids = []
    for _ in range(steps):
        embeds = torch.cat([prompt_rows, lm.embed(torch.tensor([ids], dtype=torch.long))[0]]) if ids else prompt_rows
        with torch.no_grad():
            ids.append(int(lm(inputs_embeds=embeds[None])[0, -1].argmax()))
    return ids


def test_greedy_generation_equals_argmax_of_full_forwards(tiny_lm):
    rows = _rows(tiny_lm, 30, 4)
    prefill = ChunkedPrefill(tiny_lm, tiny_lm.new_cache(), 8)
    prefill.push(rows)
    out = generate(
        tiny_lm,
        prefill.cache,
        prefill.finish(),
        decode=_decode,
        eos_token_ids=[],
        options=GenerationOptions(max_new_tokens=6),
    )
    assert list(out.token_ids) == _greedy_by_full_forward(tiny_lm, rows, 6)
    assert out.finish_reason == "length" and out.text == _decode(out.token_ids)


def test_eos_stops_and_is_not_part_of_the_answer(tiny_lm):
    rows = _rows(tiny_lm, 10, 5)
    expected = _greedy_by_full_forward(tiny_lm, rows, 4)
    prefill = ChunkedPrefill(tiny_lm, tiny_lm.new_cache(), 8)
    prefill.push(rows)
    out = generate(tiny_lm, prefill.cache, prefill.finish(), decode=_decode, eos_token_ids=[expected[2]],
                   options=GenerationOptions(max_new_tokens=10))  # fmt: skip
    stop_at = expected.index(expected[2])
    assert out.finish_reason == "eos" and list(out.token_ids) == expected[:stop_at]


def test_stop_string_cuts_the_text_and_is_never_streamed(tiny_lm):
    rows = _rows(tiny_lm, 10, 6)
    full = _decode(_greedy_by_full_forward(tiny_lm, rows, 8))
    stop = full[3:5]
    streamed = []
    prefill = ChunkedPrefill(tiny_lm, tiny_lm.new_cache(), 8)
    prefill.push(rows)
    out = generate(tiny_lm, prefill.cache, prefill.finish(), decode=_decode, eos_token_ids=[],
                   options=GenerationOptions(max_new_tokens=8, stop=(stop,)), on_text=streamed.append)  # fmt: skip
    assert out.finish_reason == "stop" and out.text == full[: full.index(stop)]
    assert "".join(streamed) == out.text


def test_streamed_text_concatenates_to_the_answer(tiny_lm):
    rows = _rows(tiny_lm, 12, 7)
    streamed = []
    prefill = ChunkedPrefill(tiny_lm, tiny_lm.new_cache(), 8)
    prefill.push(rows)
    out = generate(tiny_lm, prefill.cache, prefill.finish(), decode=_decode, eos_token_ids=[],
                   options=GenerationOptions(max_new_tokens=7), on_text=streamed.append)  # fmt: skip
    assert len(streamed) == 7 and "".join(streamed) == out.text


def test_sampling_is_reproducible_with_a_seed_and_respects_top_k_and_top_p():
    logits = torch.tensor([5.0, 4.0, 3.0, 0.0, -1.0])
    options = GenerationOptions(temperature=1.0, seed=3)
    draws = lambda opts: [pick_token(logits, opts, torch.Generator().manual_seed(s)) for s in range(200)]
    assert draws(options) == draws(options)
    assert set(draws(GenerationOptions(temperature=1.0, top_k=2))) == {0, 1}
    # p(0) ≈ 0.665, p(0) + p(1) ≈ 0.91: top_p 0.6 keeps token 0 alone, 0.9 keeps 0 and 1.
    assert set(draws(GenerationOptions(temperature=1.0, top_p=0.6))) == {0}
    assert set(draws(GenerationOptions(temperature=1.0, top_p=0.9))) == {0, 1}
    assert pick_token(logits, GenerationOptions(), None) == 0


@pytest.mark.parametrize("bad", [dict(max_new_tokens=0), dict(temperature=-1), dict(top_p=0), dict(top_k=-2)])
def test_invalid_generation_options_are_rejected(bad):
    with pytest.raises(ValueError):
        GenerationOptions(**bad)


def test_prefetcher_yields_in_order_and_reraises_errors_in_place():
    assert list(Prefetcher(range(50), max_ahead=3)) == list(range(50))

    def failing():
        yield 1
        yield 2
        raise OSError("disk gone")

    got = []
    with pytest.raises(OSError, match="disk gone"):
        for item in Prefetcher(failing(), max_ahead=1):
            got.append(item)
    assert got == [1, 2]


def test_prefetcher_stops_its_thread_when_closed_early():
    def endless():
        n = 0
        while True:
            yield n
            n += 1

    prefetcher = Prefetcher(endless(), max_ahead=2)
    assert next(prefetcher) == 0
    prefetcher.close()
    assert not prefetcher._thread.is_alive()


def test_rewind_to_a_mark_continues_bit_for_bit_as_from_the_mark(tiny_lm):
    """A mark costs no copy of the attention cache: rewinding restores lengths, Mamba states and
    the buffered rows, so what follows is computed exactly as it was (and as on a fresh run)."""
    rows, tail_a, tail_b = _rows(tiny_lm, 50, 1), _rows(tiny_lm, 9, 2), _rows(tiny_lm, 4, 3)

    def fresh(tail):
        prefill = ChunkedPrefill(tiny_lm, tiny_lm.new_cache(), 16)
        prefill.push(rows)
        prefill.push(tail)
        return prefill.finish()

    prefill = ChunkedPrefill(tiny_lm, tiny_lm.new_cache(capacity=8), 16)  # the KV buffers grow after the mark
    prefill.push(rows)  # 48 rows run, 2 buffered
    mark = prefill.mark()
    prefill.push(tail_a)
    first = prefill.finish()
    five = GenerationOptions(max_new_tokens=5)
    generate(tiny_lm, prefill.cache, first, decode=_decode, eos_token_ids=(), options=five)  # decode steps too
    prefill.rewind(mark)
    assert prefill.cache.length == 48 and prefill.filled == 2
    prefill.push(tail_a)
    assert torch.equal(prefill.finish(), first) and torch.equal(first, fresh(tail_a))
    prefill.rewind(mark)
    prefill.push(tail_b)
    assert torch.equal(prefill.finish(), fresh(tail_b))
    with pytest.raises(ValueError, match="does not belong"):
        tiny_lm.new_cache().restore(mark.cache)
