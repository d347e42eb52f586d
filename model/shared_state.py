"""The state after the shared part of a prompt, from the state cache when it holds it.

    shared, cache = shared_state(model, planned, run, capacity=capacity, store=StateStore(folder))

A miss decodes, encodes and prefills (`model.api.prefill_shared`) and saves the result; a hit loads
it instead: the cache up to its length (attention K/V, Mamba conv and SSM states), the rows
buffered but not yet run, and the frames' metadata. Chunk boundaries decide the floating-point
result, so the buffered rows are state too: restored into a `ChunkedPrefill` of the same
`chunk_tokens` and the same attention `capacity`, the question's rows land exactly where a fresh
run's would, and its logits are bit for bit a fresh run's. The key (`model.state_key`) covers
everything else that decides the state. `store` None turns the cache off.

Dimension letters: docs/glossary.md.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from typing import Any

from model.api import SharedPrefill, check_request_fits, prefill_shared
from model.cache import AttentionCache, JambaCache
from model.content_hash import ContentHashes, FileIdentity
from model.engine import ChunkedPrefill
from model.errors import StateCacheWarning
from model.longllava import LongLLaVA
from model.model_identity import model_identity
from model.prompting import PlannedRequest
from model.request import RunOptions
from model.results import FrameInfo
from model.state_file import StateFileError, StateTensor
from model.state_key import files_read, state_digest, state_key_parts
from model.state_store import StateStore
from sampling.errors import display_path

HIT, MISS, OFF = "hit", "miss", "off"

ProgressCallback = Callable[[str, int, int], None]


def checked_shared_state(
    model: LongLLaVA,
    planned: PlannedRequest,
    run: RunOptions,
    *,
    max_new_tokens: int,
    num_questions: int = 1,
    on_progress: ProgressCallback | None = None,
) -> tuple[SharedPrefill, str]:
    """`ask`'s and `chat`'s way in: the checks made before any heavy work (the context, and the
    memory budget with `num_questions` states alive), then `shared_state` with the store
    `run.cache_dir` names (None: the cache off). The attention cache is preallocated for the prompt
    and `max_new_tokens`."""
    capacity = planned.num_tokens(max_new_tokens)
    model.check_context(capacity)
    if run.memory_budget is not None:
        check_request_fits(model, capacity, run, num_questions=num_questions)
    store = StateStore(run.cache_dir, run.cache_size) if run.cache_dir is not None else None
    return shared_state(model, planned, run, capacity=capacity, store=store, on_progress=on_progress)


def shared_state(
    model: LongLLaVA,
    planned: PlannedRequest,
    run: RunOptions,
    *,
    capacity: int,
    store: StateStore | None,
    on_progress: ProgressCallback | None = None,
) -> tuple[SharedPrefill, str]:
    """The shared prefill (as `prefill_shared` returns it) and "hit", "miss" or "off" (no store,
    or a model not read from a folder, which has no identity to key on)."""
    started = time.perf_counter()
    key = state_key(model, planned, run, store) if store is not None else None
    if store is None or key is None:
        return prefill_shared(model, planned, run, capacity=capacity, on_progress=on_progress), OFF
    digest, parts = key
    if on_progress is not None:
        on_progress("state", 0, 1)
    loaded = load_shared(model, planned, store, digest, capacity=capacity, chunk_tokens=run.chunk_tokens)
    if loaded is not None:
        loaded.cache_seconds = time.perf_counter() - started
        return loaded, HIT
    keyed = time.perf_counter() - started
    before = _identities(planned)  # what was hashed, as the files stood
    shared = prefill_shared(model, planned, run, capacity=capacity, on_progress=on_progress)
    saving = time.perf_counter()
    if _identities(planned) == before:  # else a file changed while it was read: its state has no key
        store.put(digest, _header(model, planned, shared, parts), state_tensors(shared.prefill))
    shared.cache_seconds = keyed + time.perf_counter() - saving
    return shared, MISS


def state_key(
    model: LongLLaVA, planned: PlannedRequest, run: RunOptions, store: StateStore
) -> tuple[str, dict[str, Any]] | None:
    """(digest, parts) of the state `planned` leads to; None when it cannot be keyed."""
    identity = model_identity(model)
    if identity is None:
        return None
    hashes = ContentHashes(store.folder if store.folder.is_dir() else None)
    try:
        digests = {path: hashes.digest(path) for path in files_read(planned.plans)}
    except OSError as e:  # gone since it was planned: the prefill reports it as bad input
        warnings.warn(StateCacheWarning(f"state cache off for this request: {e.strerror or e}"), stacklevel=3)
        return None
    hashes.save()
    parts = state_key_parts(identity, planned.plans, digests, planned.sampling, planned.prompt.shared, run)
    try:
        return state_digest(parts), parts
    except (TypeError, ValueError) as e:  # a value JSON cannot hold (NaN, an object): no key, no cache
        warnings.warn(StateCacheWarning(f"state cache off for this request: {e}"), stacklevel=3)
        return None


def _identities(planned: PlannedRequest) -> list[FileIdentity] | None:
    try:
        return [FileIdentity.of(path) for path in files_read(planned.plans)]
    except OSError:
        return None


def load_shared(
    model: LongLLaVA, planned: PlannedRequest, store: StateStore, key: str, *, capacity: int, chunk_tokens: int
) -> SharedPrefill | None:
    """The state saved under `key`, read into a fresh prefill of `capacity` positions; None on a miss."""
    prefill = ChunkedPrefill(model.lm, model.lm.new_cache(capacity=capacity), chunk_tokens)
    num_images = sum(plan.num_images for plan in planned.plans)

    def tensors_for(header: dict[str, Any]) -> list[StateTensor]:
        length, pending = header.get("length"), header.get("pending")
        if not (isinstance(length, int) and isinstance(pending, int) and 0 <= pending <= chunk_tokens):
            raise StateFileError("positions out of range")
        if length + pending != planned.num_shared_tokens or length > capacity:
            raise StateFileError("its length is not this prompt's")
        try:
            frames.extend(_frame_info(f) for f in header.get("frames"))
        except (TypeError, ValueError) as e:
            raise StateFileError("unreadable frames") from e
        if len(frames) != num_images:
            raise StateFileError("its frames are not this request's")
        return state_tensors(prefill, length=length, pending=pending)

    frames: list[FrameInfo] = []
    header = store.get(key, tensors_for)
    if header is None:
        return None
    _set_lengths(prefill, header["length"], header["pending"])
    return SharedPrefill(prefill, frames, decode_seconds=0.0, vision_seconds=0.0)


def state_tensors(
    prefill: ChunkedPrefill, *, length: int | None = None, pending: int | None = None
) -> list[StateTensor]:
    """The tensors of a prefill's state, as views of its own memory: attention K/V up to `length`
    [1, h_kv, length, hd] (one contiguous piece per head), Mamba conv [1, k-1, d] and SSM [1, d, n],
    and the `pending` rows not yet run [pending, e]. Lengths default to the prefill's own."""
    cache: JambaCache = prefill.cache
    length = cache.length if length is None else length
    pending = prefill.filled if pending is None else pending
    tensors = []
    for i, layer in enumerate(cache.layers):
        if isinstance(layer, AttentionCache):
            b, h_kv, _, hd = layer.k.shape
            assert b == 1, "the state cache holds batch-1 states"
            for name, buffer in (("k", layer.k), ("v", layer.v)):
                pieces = tuple(buffer[0, h, :length] for h in range(h_kv))
                tensors.append(StateTensor(f"layers.{i}.{name}", (1, h_kv, length, hd), pieces))
        else:
            tensors.append(StateTensor(f"layers.{i}.conv", tuple(layer.conv.shape), (layer.conv,)))
            tensors.append(StateTensor(f"layers.{i}.ssm", tuple(layer.ssm.shape), (layer.ssm,)))
    rows = prefill.buffer[0, :pending]
    tensors.append(StateTensor("pending", tuple(rows.shape), (rows,)))
    return tensors


def _set_lengths(prefill: ChunkedPrefill, length: int, pending: int) -> None:
    prefill.cache.length = length
    for layer in prefill.cache.layers:
        if isinstance(layer, AttentionCache):
            layer.length = length
    prefill.filled = pending


def _header(model: LongLLaVA, planned: PlannedRequest, shared: SharedPrefill, parts: dict[str, Any]) -> dict[str, Any]:
    """What the file says besides its tensors: the key's parts, positions, frames, and for `ls`
    the model's name and the inputs' paths (shown, never used as the key)."""
    return {
        "parts": parts,
        "length": shared.prefill.cache.length,
        "pending": shared.prefill.filled,
        "frames": [[f.kind, f.index, f.timestamp, list(f.tile) if f.tile else None] for f in shared.frames],
        "model": model.name,
        "inputs": [display_path(os.path.abspath(plan.source)) for plan in planned.plans],
        "saved": time.time(),
    }


def _frame_info(item: Any) -> FrameInfo:
    kind, index, timestamp, tile = item  # TypeError / ValueError when not four items
    if kind not in ("image", "frame", "tile") or not (index is None or isinstance(index, int)):
        raise ValueError("bad frame")
    if not (timestamp is None or isinstance(timestamp, (int, float))):
        raise ValueError("bad frame")
    if tile is not None and not (isinstance(tile, list) and len(tile) == 2 and all(isinstance(t, int) for t in tile)):
        raise ValueError("bad frame")
    return FrameInfo(kind, index, timestamp, tuple(tile) if tile is not None else None)
