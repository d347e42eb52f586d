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

from model.cache import JambaCache, new_cache
from model.config import CLIPVisionConfig, JambaConfig, LongLLaVAConfig, ModelConfig
from model.errors import CheckpointError, ContextTooLongError, MemoryBudgetError, ModelError
from model.jamba import JambaLM
from model.loading import load_language_model
from model.longllava import LongLLaVA, load_model, read_model_config

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
