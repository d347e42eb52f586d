"""What a checkpoint is, from its config.json and safetensors headers alone (no weights read,
nothing built), and what a request of N frames would need of it: for `longllava info`,
`estimate` and `frames --model`, and any caller planning before a load or a download.

Layer pattern: one letter per LM layer, M for Mamba and A for attention (LongLLaVA-9B:
"MMMMAMMM" × 4). Parameters: summed over the tensor shapes in the safetensors headers, or, for
a folder with config.json and no weights yet (planning before a download), counted from the
configs (`model.memory.count_model_parameters`); `weights` says which. Tokens per image: CLIP
patches after `resamplePooling` (144 for LongLLaVA-9B). KV bytes per token: what each prompt
position costs in the attention layers' cache at the chosen dtype. The configs are what
`model.load_model` would build (`model.read_model_config`), CLIP included, checked against the
headers where there are weights.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.config import CLIPVisionConfig, JambaConfig, LongLLaVAConfig
from model.memory import (
    DTYPE_BYTES,
    MARKUP_TOKENS_PER_FRAME,
    MAX_SEARCHED_TOKENS,
    PROMPT_TEXT_TOKENS,
    estimate_memory,
    max_tokens_that_fit,
    recommend_chunk_tokens,
    tokens_for_frames,
)
from model.module_kinds import check_quantization
from sampling.options import MAX_FRAMES

if TYPE_CHECKING:
    from model.cards import ModelCard

# What limits the most frames a request can take (estimate_request's `max_frames_limited_by`).
LIMIT_MEMORY, LIMIT_CONTEXT, LIMIT_FRAMES = "memory", "context", "frames limit"


@dataclass(frozen=True)
class CheckpointSummary:
    """path: the checkpoint folder (for a built-in card, the repo id); weights: "present"
    (num_parameters summed over the safetensors headers) or "absent" (a folder with config.json only,
    or a card; num_parameters counted from the configs); vision_source: where the CLIP config came
    from (`model.ModelConfig.vision_source`); repo_id, revision: the Hugging Face repo id (and
    revision asked for) when the model was named so and `path` is its snapshot in the local cache;
    card: the built-in card's source when the figures come from one (nothing downloaded), else None."""

    path: Path
    lm: JambaConfig
    mm: LongLLaVAConfig | None
    vision: CLIPVisionConfig | None
    dtype: str
    num_parameters: int
    weights: str = "present"
    vision_source: str | None = None
    repo_id: str | None = None
    revision: str | None = None
    card: str | None = None

    @property
    def name(self) -> str:
        """`ORG/NAME[@REVISION]` for a model named by repo id, else the folder path."""
        if self.repo_id is None:
            return str(self.path)
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id

    @property
    def layer_pattern(self) -> str:
        return "".join("A" if kind == "attention" else "M" for kind in self.lm.layer_types)

    @property
    def tokens_per_image(self) -> int | None:
        if self.vision is None or self.mm is None:
            return None
        from model.shapes import num_pooled_tokens

        num_tokens = self.vision.num_patches + (self.mm.mm_vision_select_feature == "cls_patch")
        return num_pooled_tokens(num_tokens, self.mm.pooling)

    @property
    def context_tokens(self) -> int:
        """The longest prompt (answer included) the model is meant for: `tokenizer_model_max_length`,
        the length LongLLaVA was trained with (`ask` warns past it), when config.json has it; else
        `max_position_embeddings` (`n_ctx`). Jamba has no position embeddings, so the latter is a
        nominal bound (262,144 for Jamba-v0.1), not one the weights enforce: the trained length is
        the honest limit whenever the config states it."""
        trained = self.mm.tokenizer_model_max_length if self.mm is not None else None
        return trained or self.lm.max_position_embeddings

    def kv_bytes_per_token(self, dtype: str | None = None) -> int:
        return self.lm.kv_elements_per_token * DTYPE_BYTES[dtype or self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "repo_id": self.repo_id,
            "revision": self.revision,
            "model_type": self.lm.model_type if self.mm is None else self.mm.model_type,
            "multimodal": self.vision is not None,
            "dtype": self.dtype,
            "weights": self.weights,
            "card": self.card,
            "num_parameters": self.num_parameters,
            "num_parameters_from": "headers" if self.weights == "present" else "config",
            "num_layers": self.lm.num_hidden_layers,
            "layer_pattern": self.layer_pattern,
            "num_attention_layers": self.layer_pattern.count("A"),
            "num_experts": self.lm.num_experts,
            "hidden_size": self.lm.hidden_size,
            "vocab_size": self.lm.vocab_size,
            "image_size": self.vision.image_size if self.vision else None,
            "tokens_per_image": self.tokens_per_image,
            "vision_config_source": self.vision_source,
            "kv_bytes_per_token": self.kv_bytes_per_token(),
            "max_context_tokens": self.mm.tokenizer_model_max_length if self.mm else None,
        }


def summarize_checkpoint(path: str | Path, *, vision_tower: Path | None = None) -> CheckpointSummary:
    """Read config.json and the safetensors headers of a checkpoint directory (no weights read,
    nothing built). `path`: a folder, or a repo id `ORG/NAME[@REVISION]` in the local Hugging Face
    cache (`model.hub`); a released model not (fully) downloaded is summarised from its built-in card
    (`model.cards`; `card` says so), any other repo id not downloaded is a ModelNotDownloadedError.
    A folder with config.json and no weights yet is summarised from its configs (`weights`
    "absent"). Raises CheckpointError as `model.load_model` would for a malformed checkpoint,
    including configs that do not describe the weights' headers."""
    from model.cards import card_for
    from model.checkpoint_files import open_checkpoint
    from model.hub import find_model
    from model.memory import count_model_parameters
    from model.model_config import read_model_config

    location = find_model(path)
    card = card_for(location.repo_id) if location.is_repo and not location.is_downloaded else None
    if card is not None and vision_tower is None:  # planning before (or during) a download
        return dataclasses.replace(summarize_card(card), repo_id=location.repo_id, revision=location.revision)
    checkpoint = open_checkpoint(location.require(), require_weights=False)
    config = read_model_config(checkpoint.path, vision_tower=vision_tower)
    dtype = checkpoint.config.get("torch_dtype") or checkpoint.config.get("dtype")
    dtype = dtype if isinstance(dtype, str) and dtype in DTYPE_BYTES else "float32"
    if checkpoint.has_weights:
        num_parameters, weights = sum(math.prod(shape) for shape in checkpoint.shapes.values()), "present"
    else:
        num_parameters, weights = count_model_parameters(config), "absent"
    return CheckpointSummary(
        checkpoint.path, config.lm, config.mm, config.vision, dtype, num_parameters, weights, config.vision_source,
        location.repo_id, location.revision,
    )  # fmt: skip


def summarize_card(card: ModelCard) -> CheckpointSummary:
    """The summary of a released model from its built-in card (`model.cards`), nothing downloaded:
    the configs are checked as a config.json would be, parameters counted from them."""
    from model.checkpoint_files import Checkpoint
    from model.memory import count_model_parameters
    from model.model_config import model_config_of

    virtual = Checkpoint(Path(card.repo_id), dict(card.config), weight_map={})
    config = model_config_of(virtual)
    dtype = card.config.get("torch_dtype", "float32")
    return CheckpointSummary(
        virtual.path,
        config.lm,
        config.mm,
        config.vision,
        dtype if dtype in DTYPE_BYTES else "float32",
        count_model_parameters(config),
        "absent",
        config.vision_source,
        card=f"built-in card, from {card.source}",
    )


def count_parameters(file: Path) -> int:
    """Elements of every tensor in a safetensors file, from its (checked) JSON header alone."""
    from model.checkpoint_files import read_safetensors_header

    return sum(math.prod(shape) for shape in read_safetensors_header(file).values())


def estimate_request(
    summary: CheckpointSummary,
    *,
    num_frames: int,
    budget: int,
    dtype: str,
    chunk_tokens: int,
    max_new_tokens: int,
    device: str,
    quantize: str = "none",
) -> dict[str, Any]:
    """Memory of a request with `num_frames` video frames, whether it fits `budget` bytes, the chunk
    size to use (model.memory's estimate), and the most frames a request can take: the fewest of
    what fits the budget, what fits the model's context (`CheckpointSummary.context_tokens`,
    answer included) and the `--frames` limit (sampling's MAX_FRAMES). `max_frames_limited_by`
    names the one that decides ("memory", "context" or "frames limit"); `max_frames_limits` has all
    three. quantize: "none", "int8" or "nf4" (`model.module_kinds`); `weights_by_kind` splits the
    weights' bytes by module kind."""
    tokens_per_image = summary.tokens_per_image or 0
    num_tokens = tokens_for_frames(num_frames, tokens_per_image) + max_new_tokens
    mm = summary.mm
    common: dict[str, Any] = dict(
        dtype=dtype,
        mm_hidden_size=mm.mm_hidden_size if mm else None,
        projector_type=mm.mm_projector_type if mm else "mlp2x_gelu",
        device=device,
        quantize=check_quantization(quantize),
    )
    estimate = estimate_memory(summary.lm, summary.vision, num_tokens=num_tokens, chunk_tokens=chunk_tokens, **common)
    max_tokens = max_tokens_that_fit(budget, summary.lm, summary.vision, chunk_tokens=chunk_tokens, **common)
    chunk = recommend_chunk_tokens(budget, summary.lm, summary.vision, num_tokens=num_tokens, **common)
    max_frames = limited_by = limits = None
    if tokens_per_image:
        per_frame = tokens_per_image + MARKUP_TOKENS_PER_FRAME
        limits = {
            LIMIT_MEMORY: max(0, (max_tokens - PROMPT_TEXT_TOKENS - max_new_tokens) // per_frame),
            LIMIT_CONTEXT: max(0, (summary.context_tokens - PROMPT_TEXT_TOKENS - max_new_tokens) // per_frame),
            LIMIT_FRAMES: MAX_FRAMES,
        }
        limited_by = min(limits, key=lambda name: limits[name])  # the first of equals: memory, then context
        max_frames = limits[limited_by]
    return {
        "model": summary.name,
        "card": summary.card,
        "device": device,
        "dtype": dtype,
        "quantize": quantize,
        "num_frames": num_frames,
        "tokens_per_image": tokens_per_image,
        "num_tokens": num_tokens,
        "budget_bytes": budget,
        "memory_bytes": estimate.as_dict(),
        "weights_by_kind": estimate.weights_by_kind,
        "fits": estimate.total <= budget,
        "within_context": num_tokens <= summary.context_tokens,
        "max_frames": max_frames,
        "max_frames_limited_by": limited_by,
        "max_frames_limits": limits,
        "max_tokens": max_tokens,
        "max_tokens_is_a_floor": max_tokens >= MAX_SEARCHED_TOKENS,  # the budget holds more than was searched
        "context_tokens": summary.context_tokens,
        "chunk_tokens": chunk_tokens,
        "recommended_chunk_tokens": chunk,
    }
