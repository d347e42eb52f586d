"""LongLLaVA models in PyTorch: the hybrid Jamba language model, its cache and loading.

Public API:
- `load_model(path, *, device="cpu", dtype=None, vision_tower=None) -> LongLLaVA` (LM, CLIP tower,
  projector, tokenizer; text-only for a plain Jamba directory)
- `read_model_config(path, *, vision_tower=None) -> ModelConfig` (configs checked against the
  safetensors headers, no weights read; also a folder with config.json only)
- `load_language_model(path, *, device="cpu", dtype=None) -> JambaLM`
- `JambaLM(input_ids | inputs_embeds, cache=..., logits_to_keep=1) -> logits`
- `new_cache(config, ...)`, `JambaCache.fork()`
- configs (`JambaConfig`, `CLIPVisionConfig`, `LongLLaVAConfig`, `ModelConfig`) and errors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sampling.lazy import lazy_exports

# Public names and the module each lives in, loaded on first use (PEP 562): `import model.errors`
# or `model.request` (the CLI's error table, its request building) loads neither torch nor media
# libraries; `from model import load_model` loads what loading needs.
_EXPORTS = {
    "JambaCache": "model.cache",
    "new_cache": "model.cache",
    "CLIPVisionConfig": "model.config",
    "JambaConfig": "model.config",
    "LongLLaVAConfig": "model.config",
    "ModelConfig": "model.config",
    "CheckpointError": "model.errors",
    "ContextTooLongError": "model.errors",
    "MemoryBudgetError": "model.errors",
    "ModelError": "model.errors",
    "JambaLM": "model.jamba",
    "load_language_model": "model.loading",
    "LongLLaVA": "model.longllava",
    "load_model": "model.longllava",
    "read_model_config": "model.model_config",
}

if TYPE_CHECKING:
    from model.cache import JambaCache, new_cache
    from model.config import CLIPVisionConfig, JambaConfig, LongLLaVAConfig, ModelConfig
    from model.errors import CheckpointError, ContextTooLongError, MemoryBudgetError, ModelError
    from model.jamba import JambaLM
    from model.loading import load_language_model
    from model.longllava import LongLLaVA, load_model
    from model.model_config import read_model_config


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__all__ = [
    "CLIPVisionConfig",
    "CheckpointError",
    "ContextTooLongError",
    "JambaCache",
    "JambaConfig",
    "JambaLM",
    "LongLLaVA",
    "LongLLaVAConfig",
    "MemoryBudgetError",
    "ModelConfig",
    "ModelError",
    "load_language_model",
    "load_model",
    "new_cache",
    "read_model_config",
]
