"""Inference state of the Jamba LM, owned by the caller and passed into every forward.

Dimension letters: docs/glossary.md.

- Attention layers keep K/V in buffers [b, h_kv, capacity, hd] that grow in large blocks
  (never a `cat` per chunk): memory is the KV cache itself, 16 KiB/token at LongLLaVA-9B in bf16.
- Mamba layers keep the last k-1 *pre-conv* inputs [b, k-1, d] (the conv's left context for the
  next chunk) and the SSM state [b, d, n], always float32 whatever the model dtype (docs/format.md, The language model).

One forward serves a prefill chunk of any length and a 1-token decode: the position of the
first new token is `cache.length`. Source: gpt-fast `KVCache`, mamba.py `jamba.py` caches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from model.config import JambaConfig

# Attention buffers grow to the next multiple of this many tokens (plus 25% headroom), so a
# long prefill reallocates O(log) times, not once per chunk.
KV_GROWTH_BLOCK = 4096


@dataclass
class AttentionCache:
    """K/V of one attention layer. `k`, `v`: [b, h_kv, capacity, hd]; valid up to `length`."""

    k: torch.Tensor
    v: torch.Tensor
    length: int = 0

    @property
    def capacity(self) -> int:
        return self.k.shape[2]

    def append(self, k_new: torch.Tensor, v_new: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k_new, v_new [b, h_kv, l, hd]; return views of all keys and values [b, h_kv, s, hd]."""
        end = self.length + k_new.shape[2]
        if end > self.capacity:
            self._grow(end)
        self.k[:, :, self.length : end] = k_new
        self.v[:, :, self.length : end] = v_new
        self.length = end
        return self.k[:, :, :end], self.v[:, :, :end]

    def _grow(self, needed: int) -> None:
        capacity = -(-(needed + needed // 4) // KV_GROWTH_BLOCK) * KV_GROWTH_BLOCK
        b, h, _, hd = self.k.shape
        for name in ("k", "v"):
            old = getattr(self, name)
            new = old.new_empty(b, h, capacity, hd)
            new[:, :, : self.length] = old[:, :, : self.length]
            setattr(self, name, new)

    def clone(self) -> AttentionCache:
        return AttentionCache(self.k.clone(), self.v.clone(), self.length)

    @property
    def nbytes(self) -> int:
        return self.k.nbytes + self.v.nbytes


@dataclass
class MambaCache:
    """State of one Mamba layer: `conv` [b, k-1, d] last pre-conv inputs, channel-last (the layout
    causal-conv1d takes as `initial_states` once transposed); `ssm` [b, d, n]. Both float32."""

    conv: torch.Tensor
    ssm: torch.Tensor

    def clone(self) -> MambaCache:
        return MambaCache(self.conv.clone(), self.ssm.clone())

    @property
    def nbytes(self) -> int:
        return self.conv.nbytes + self.ssm.nbytes


@dataclass
class JambaCache:
    """Per-layer caches of a whole Jamba LM and the number of tokens seen."""

    layers: list[AttentionCache | MambaCache]
    length: int = 0

    def fork(self) -> JambaCache:
        """An independent copy: answering a second question after the same frames costs no prefill."""
        return JambaCache([c.clone() for c in self.layers], self.length)

    def snapshot(self) -> CacheSnapshot:
        """What `restore` needs to bring this cache back to now, after more tokens: the attention
        lengths (keys and values before them are never rewritten) and copies of the Mamba states,
        which do not rewind. A few MB where a fork would copy the whole KV cache."""
        return CacheSnapshot(
            self.length,
            tuple(c.length if isinstance(c, AttentionCache) else c.clone() for c in self.layers),
        )

    def restore(self, snapshot: CacheSnapshot) -> None:
        """Back to the state `snapshot` was taken in; the snapshot stays valid for another restore."""
        if self.length < snapshot.length or len(self.layers) != len(snapshot.layers):
            raise ValueError(f"a snapshot at {snapshot.length} tokens does not belong to this cache")
        for i, saved in enumerate(snapshot.layers):
            if isinstance(saved, MambaCache):
                self.layers[i] = saved.clone()
            else:
                self.layers[i].length = saved
        self.length = snapshot.length


@dataclass(frozen=True)
class CacheSnapshot:
    """`JambaCache.snapshot`: the token count, and per layer the attention length or a Mamba state."""

    length: int
    layers: tuple[int | MambaCache, ...]

    @property
    def nbytes(self) -> int:
        return sum(c.nbytes for c in self.layers)


def new_cache(
    config: JambaConfig,
    *,
    batch_size: int = 1,
    capacity: int = 0,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> JambaCache:
    """An empty cache for `config`. `capacity` preallocates attention K/V for that many tokens
    (0: grow on demand). K/V use `dtype`; Mamba state is float32 whatever the model dtype."""
    layers: list[AttentionCache | MambaCache] = []
    for kind in config.layer_types:
        if kind == "attention":
            shape = (batch_size, config.kv_heads, capacity, config.head_dim)
            layers.append(
                AttentionCache(
                    torch.empty(shape, device=device, dtype=dtype), torch.empty(shape, device=device, dtype=dtype)
                )
            )
        else:
            conv = torch.zeros(batch_size, config.mamba_d_conv - 1, config.d_inner, device=device)
            ssm = torch.zeros(batch_size, config.d_inner, config.mamba_d_state, device=device, dtype=torch.float32)
            layers.append(MambaCache(conv, ssm))
    return JambaCache(layers)
