"""LongLLaVA models in PyTorch: the hybrid Jamba language model, its cache and loading.

Public API:
- `load_language_model(path, *, device="cpu", dtype=None) -> JambaLM`
- `JambaLM(input_ids | inputs_embeds, cache=..., logits_to_keep=1) -> logits`
- `new_cache(config, ...)`, `JambaCache.fork()`
- configs (`JambaConfig`, `CLIPVisionConfig`, `LongLLaVAConfig`) and errors.
"""

from model.cache import JambaCache, new_cache
from model.config import CLIPVisionConfig, JambaConfig, LongLLaVAConfig
from model.errors import CheckpointError, ContextTooLongError, MemoryBudgetError, ModelError
from model.jamba import JambaLM
from model.loading import load_language_model

__all__ = [
    "CLIPVisionConfig",
    "CheckpointError",
    "ContextTooLongError",
    "JambaCache",
    "JambaConfig",
    "JambaLM",
    "LongLLaVAConfig",
    "MemoryBudgetError",
    "ModelError",
    "load_language_model",
    "new_cache",
]
