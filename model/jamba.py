"""The Jamba language model (Lieber et al. 2024) as LongLLaVA uses it (docs/format.md, The language model).

Dimension letters: docs/glossary.md.

    x = x + mixer(input_layernorm(x))       mixer: Mamba, or attention where i % period == offset
    x = x + ffn(pre_ff_layernorm(x))        ffn: top-K MoE on expert layers, else a SwiGLU MLP
    logits = lm_head(final_layernorm(x))    only at the positions asked for

No positional encoding anywhere: a token's position only decides what attention masks. Module
names are transformers' native Jamba names; `loading.py` maps AI21/LongLLaVA's.
"""

from __future__ import annotations

import torch
from torch import nn

from model.attention import Attention
from model.cache import AttentionCache, JambaCache, MambaCache, new_cache
from model.config import JambaConfig
from model.mamba import MambaMixer
from model.moe import MLP, SparseMoE
from model.norm import RMSNorm


class DecoderLayer(nn.Module):
    def __init__(self, config: JambaConfig, kind: str, num_experts: int) -> None:
        super().__init__()
        self.kind = kind
        if kind == "attention":
            self.self_attn = Attention(config)
        else:
            self.mamba = MambaMixer(config)
        self.feed_forward = SparseMoE(config) if num_experts > 1 else MLP(config)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.pre_ff_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x: torch.Tensor, cache: AttentionCache | MambaCache) -> torch.Tensor:
        mixer = self.self_attn if self.kind == "attention" else self.mamba
        x = x + mixer(self.input_layernorm(x), cache)
        return x + self.feed_forward(self.pre_ff_layernorm(x))


class JambaModel(nn.Module):
    """Embeddings, decoder layers and the final norm (checkpoint prefix `model.`)."""

    def __init__(self, config: JambaConfig) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(
            DecoderLayer(config, kind, experts)
            for kind, experts in zip(config.layer_types, config.layer_num_experts, strict=True)
        )
        self.final_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)


class JambaLM(nn.Module):
    """Maps (input_ids or inputs_embeds, cache) to logits; see `forward`."""

    def __init__(self, config: JambaConfig) -> None:
        super().__init__()
        self.config = config
        self.model = JambaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    def new_cache(self, *, batch_size: int = 1, capacity: int = 0) -> JambaCache:
        return new_cache(self.config, batch_size=batch_size, capacity=capacity, device=self.device, dtype=self.dtype)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids: [b, l] int64 -> [b, l, e] in the model dtype."""
        return self.model.embed_tokens(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        inputs_embeds: torch.Tensor | None = None,
        cache: JambaCache | None = None,
        logits_to_keep: int | None = 1,
    ) -> torch.Tensor:
        """Run l new tokens after the `cache.length` tokens the cache has seen.

        input_ids: [b, l] or inputs_embeds: [b, l, e] (exactly one). cache: updated in place;
        None runs a one-shot pass with a throw-away cache. logits_to_keep > 0 computes that many
        last positions' logits, 0 none (a prefill chunk that only feeds the cache), None all.
        Returns float32 logits [b, logits_to_keep, V] ([b, l, V] for None).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds")
        x = self.embed(input_ids) if inputs_embeds is None else inputs_embeds.to(self.dtype)
        if cache is None:
            cache = self.new_cache(batch_size=x.shape[0], capacity=x.shape[1])
        for layer, layer_cache in zip(self.model.layers, cache.layers, strict=True):
            x = layer(x, layer_cache)
        cache.length += x.shape[1]
        if logits_to_keep is not None:
            x = x[:, x.shape[1] - logits_to_keep :] if logits_to_keep > 0 else x[:, :0]
        return self.lm_head(self.model.final_layernorm(x)).float()

    def set_scan(self, scan) -> None:
        """Force one selective-scan implementation (model.scan) in every Mamba layer; None restores
        the automatic choice (`model.dispatch.choose_mixer_path`). For tests and benchmarks."""
        for layer in self.model.layers:
            if layer.kind == "mamba":
                layer.mamba.scan_impl = scan
