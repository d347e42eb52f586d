"""Streaming inference: embedding rows → chunked prefill → generation, as free functions.

Dimension letters: docs/glossary.md.

The prompt reaches the LM as a stream of embedding rows (text embeddings and projected image
features, in prompt order). `ChunkedPrefill` copies them into one preallocated [1, chunk_tokens, e]
buffer and runs the LM whenever it is full (each call has l ≤ chunk_tokens), so a chunk may end
in the middle of an image's tokens or a separator: the LM's cache makes any cut exact. Memory is
therefore weights + cache + one chunk, whatever the number of frames. Only the very last
position's logits are computed.

`generate` continues from the prefill's last logits, one token per forward, greedy or sampled,
streaming text to a callback and stopping on EOS, a stop string or `max_new_tokens`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from model.cache import CacheSnapshot, JambaCache
from model.jamba import JambaLM
from model.request import GenerationOptions

__all__ = ["ChunkedPrefill", "Generated", "GenerationOptions", "PrefillMark", "generate", "pick_token"]


class ChunkedPrefill:
    """Feeds embedding rows to `lm` in chunks of exactly `chunk_tokens` rows (the last one shorter)."""

    def __init__(self, lm: JambaLM, cache: JambaCache, chunk_tokens: int) -> None:
        if chunk_tokens < 1:
            raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")
        self.lm, self.cache = lm, cache
        self.buffer = torch.empty(1, chunk_tokens, lm.config.hidden_size, device=lm.device, dtype=lm.dtype)
        self.filled = 0
        self.seconds = 0.0  # time spent in the LM

    def push(self, rows: torch.Tensor) -> None:
        """rows: [num_rows, e] (any num_rows >= 0). A full buffer is flushed only when more rows
        arrive, so the final `finish` always has at least one row to compute logits from."""
        start = 0
        while start < rows.shape[0]:
            if self.filled == self.buffer.shape[1]:
                self._run(logits_to_keep=0)
            take = min(rows.shape[0] - start, self.buffer.shape[1] - self.filled)
            self.buffer[0, self.filled : self.filled + take] = rows[start : start + take]
            self.filled += take
            start += take

    def flush(self) -> None:
        """Run the buffered rows now, so that the state is complete (none pending): where the shared
        part of a prompt ends, what every question continues from and what the state cache saves."""
        if self.filled:
            self._run(logits_to_keep=0)

    def fork(self) -> ChunkedPrefill:
        """An independent continuation: the cache and the rows not yet run are copied, so the
        fork's chunks fall exactly where this one's would."""
        other = ChunkedPrefill(self.lm, self.cache.fork(), self.buffer.shape[1])
        other.buffer.copy_(self.buffer)
        other.filled = self.filled
        return other

    def mark(self) -> PrefillMark:
        """The point reached so far, to come back to with `rewind` (the cache's snapshot and the
        rows buffered but not yet run), without copying the attention cache."""
        return PrefillMark(self.cache.snapshot(), self.buffer[0, : self.filled].clone())

    def rewind(self, mark: PrefillMark) -> None:
        """Back to `mark` of this prefill: what follows is computed exactly as it was after it."""
        self.cache.restore(mark.cache)
        self.filled = mark.rows.shape[0]
        self.buffer[0, : self.filled] = mark.rows

    def finish(self) -> torch.Tensor:
        """Run what is buffered; return the last position's logits, float32 [V]."""
        if self.filled == 0:
            raise ValueError("nothing to prefill")
        return self._run(logits_to_keep=1)[0, -1]

    def _run(self, *, logits_to_keep: int) -> torch.Tensor:
        start = time.perf_counter()
        with torch.inference_mode():
            rows = self.buffer[:, : self.filled]
            logits = self.lm(inputs_embeds=rows, cache=self.cache, logits_to_keep=logits_to_keep)
        self.filled = 0
        self.seconds += time.perf_counter() - start
        return logits


@dataclass(frozen=True)
class PrefillMark:
    """`ChunkedPrefill.mark`: the cache's snapshot and the buffered rows [filled, e]."""

    cache: CacheSnapshot
    rows: torch.Tensor


@dataclass(frozen=True)
class Generated:
    """token_ids: generated ids (EOS excluded); finish_reason: "eos", "stop" or "length"."""

    token_ids: tuple[int, ...]
    text: str
    finish_reason: str
    seconds: float


def pick_token(logits: torch.Tensor, options: GenerationOptions, generator: torch.Generator | None) -> int:
    """Next token id from last-position logits [V] (float32)."""
    if options.temperature == 0:
        return int(logits.argmax())
    logits = logits / options.temperature
    if options.top_k:
        kth = torch.topk(logits, min(options.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if options.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = sorted_logits.softmax(-1).cumsum(-1)
        # Drop a token when the more likely ones already reach top_p (the first always stays).
        drop = cumulative - sorted_logits.softmax(-1) >= options.top_p
        logits = logits.scatter(0, order[drop], float("-inf"))
    probs = logits.softmax(-1)
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))


def generate(
    lm: JambaLM,
    cache: JambaCache,
    logits: torch.Tensor,
    *,
    decode: Callable[[Sequence[int]], str],
    eos_token_ids: Sequence[int],
    options: GenerationOptions = GenerationOptions(),
    on_text: Callable[[str], None] | None = None,
) -> Generated:
    """Generate after a prefill whose last logits [V] are `logits`; `cache` advances in place.

    decode: ids -> text (special tokens skipped). on_text receives each new piece of text as
    soon as it is complete (a token that ends inside a multi-byte character waits for the next).
    """
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(options.seed) if options.seed is not None else None
    ids: list[int] = []
    text, emitted, reason = "", 0, "length"
    for _ in range(options.max_new_tokens):
        token = pick_token(logits, options, generator)
        if token in eos_token_ids:
            reason = "eos"
            break
        ids.append(token)
        text = decode(ids)
        cut = _first_stop(text, options.stop)
        if cut is not None:
            text, reason = text[:cut], "stop"
        # Hold back an unfinished character and anything that may be the start of a stop string.
        ready = len(text) if reason == "stop" else len(text) - _stop_prefix_length(text, options.stop)
        if on_text is not None and not text[:ready].endswith("\ufffd") and ready > emitted:
            on_text(text[emitted:ready])
            emitted = ready
        if reason == "stop" or len(ids) == options.max_new_tokens:
            break
        with torch.inference_mode():
            logits = lm(torch.tensor([[token]], device=lm.device), cache=cache)[0, -1]
    if on_text is not None and len(text) > emitted:
        on_text(text[emitted:])
    return Generated(tuple(ids), text, reason, time.perf_counter() - start)


def _stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that begins some stop string."""
    return max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found) if found else None
