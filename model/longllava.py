"""The whole LongLLaVA model: CLIP tower -> pooling -> projector -> image embeddings spliced into
the Jamba LM's input at the prompt's `<image>` slots (Zhang et al. 2024, arXiv 2409.02889 §3;
upstream `llava/model/llava_arch.py`, `prepare_inputs_labels_for_multimodal`).

Dimension letters: docs/glossary.md.

    pixels [b, 3, S, S] -> tower [b, N, c] -> pool [b, t, c] -> projector [b, t, e]
    prompt segments (text ids | slots) -> [1, L, e] with slot i holding image i's t embeddings

The streaming engine (`model/engine.py`) calls `encode_images`, `embed_tokens` and the LM chunk
by chunk; `merge_embeddings` is the one-shot splice for a whole prompt. Unlike upstream, a count
mismatch between slots and images is an error (upstream silently ignores images without
`<image>`), and `tokenizer_model_max_length` is reported, never applied by silent truncation.

`load_model` reads a LongLLaVA directory (LM + CLIP + projector + tokenizer) or a plain Jamba
directory (text only); see its docstring for where the CLIP weights and config may come from.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from model.config import ModelConfig
from model.errors import CheckpointError, ContextTooLongError
from model.jamba import JambaLM
from model.loading import (
    Checkpoint,
    empty_weights,
    jamba_key_renamer,
    load_tensors,
    open_checkpoint,
    resolve_dtype,
)
from model.model_config import (
    ASSUMED_CONFIG_HINT,
    PROJECTOR_PREFIX,
    TowerSource,
    keys_under,
    projector_summary,
    resolve_configs,
)
from model.module_kinds import PROJECTOR, VISION, module_kind
from model.projector import build_projector, num_pooled_tokens, pool_features
from model.quantize import quantizing_hook
from model.tokenizer import Tokenizer, load_tokenizer
from model.vision import CLIPVisionTower, encode_in_batches, is_tower_key
from sampling.prompt import ImageSlot, PromptError, PromptLayout, TokenizedPrompt, tokenize_layout

Segment = Sequence[int] | ImageSlot


class LongLLaVA(nn.Module):
    """LM (`.lm`), CLIP tower (`.vision`), projector (`.projector`) and `.tokenizer`; `.vision`
    and `.projector` are None for a text-only Jamba. Built from `config` with uninitialised
    weights: use `load_model` to read a checkpoint."""

    def __init__(self, config: ModelConfig, tokenizer: Tokenizer | None = None) -> None:
        super().__init__()
        self.config = config
        self.tokenizer = tokenizer
        self.name = "LongLLaVA"  # the checkpoint directory's name once loaded
        self.quantization = "none"  # how `load_model` quantised the weights (model.module_kinds)
        # The folders `load_model` read the weights from (the checkpoint, a separate CLIP folder);
        # the state cache keys on their files (model.model_identity). Empty for a model built in memory.
        self.sources: tuple[Path, ...] = ()
        self.lm = JambaLM(config.lm)
        self.vision: CLIPVisionTower | None = None
        self.projector: nn.Module | None = None
        self.pooling: str | None = None
        if config.mm is not None and config.vision is not None:
            mm = config.mm
            if mm.mm_hidden_size != config.vision.hidden_size:
                raise ValueError(f"mm_hidden_size {mm.mm_hidden_size} != CLIP hidden_size {config.vision.hidden_size}")
            self.vision = CLIPVisionTower(
                config.vision, select_layer=mm.mm_vision_select_layer, select_feature=mm.mm_vision_select_feature
            )
            self.pooling = mm.pooling
            self._tokens_per_image = num_pooled_tokens(self.vision.num_tokens, mm.pooling)
            self.projector = build_projector(mm.mm_projector_type, mm.mm_hidden_size, config.lm.hidden_size)

    @property
    def device(self) -> torch.device:
        return self.lm.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm.dtype

    @property
    def eos_token_ids(self) -> tuple[int, ...]:
        """Ids that end an answer: the tokenizer's EOS and any in the LM config."""
        ids = set(self.config.lm.eos_token_ids)
        if self.tokenizer is not None:
            ids.add(self.tokenizer.eos_token_id)
        return tuple(sorted(ids))

    @property
    def is_multimodal(self) -> bool:
        return self.vision is not None

    @property
    def tokens_per_image(self) -> int:
        """LM positions one image takes: 144 for 2d pooling of CLIP-L/14-336's 24×24 grid."""
        self._require_vision()
        return self._tokens_per_image

    @property
    def image_size(self) -> int:
        """Side in pixels of the square images `encode_images` takes (336 for CLIP-L/14-336)."""
        return self._require_vision().config.image_size

    @property
    def max_context_tokens(self) -> int | None:
        """`tokenizer_model_max_length`: the prompt length the model was trained with, if known."""
        return self.config.mm.tokenizer_model_max_length if self.config.mm is not None else None

    def _require_vision(self) -> CLIPVisionTower:
        if self.vision is None:
            raise CheckpointError(
                "this is a text-only Jamba model without a vision tower; load a LongLLaVA checkpoint to use images"
            )
        return self.vision

    @torch.no_grad()
    def encode_images(self, pixels: torch.Tensor, *, batch_size: int = 32) -> torch.Tensor:
        """pixels [b, 3, S, S] (normalised, any float dtype and device) -> [b, t, e] in the LM dtype
        on the model's device: tower, pooling and projector, `batch_size` images at a time."""
        vision = self._require_vision()
        return encode_in_batches(vision, pixels, batch_size=batch_size, transform=self._pool_and_project)

    def _pool_and_project(self, features: torch.Tensor) -> torch.Tensor:
        assert self.projector is not None and self.pooling is not None
        return self.projector(pool_features(features, self.pooling))

    @torch.no_grad()
    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [b, l] int64 (any device) -> [b, l, e] in the LM dtype on the model's device."""
        return self.lm.embed(ids.to(self.device))

    def prompt_tokens(self, layout: PromptLayout) -> TokenizedPrompt:
        """Tokenise a prompt layout with the checkpoint's tokenizer. Its slots must be sized for this
        model (`build_prompt_layout(..., tokens_per_image=model.tokens_per_image)`)."""
        if self.tokenizer is None:
            raise CheckpointError("this model was built without a tokenizer; load it with model.load_model")
        if layout.slots:
            expected = self.tokens_per_image
            sizes = {slot.num_tokens for slot in layout.slots}
            if sizes != {expected}:
                raise PromptError(
                    f"the prompt layout has image slots of {sorted(sizes)} tokens but this model makes {expected} "
                    f"per image; build it with tokens_per_image={expected}"
                )
        return tokenize_layout(layout, self.tokenizer.encode)

    @torch.no_grad()
    def merge_embeddings(
        self, segments: TokenizedPrompt | Sequence[Segment], image_features: torch.Tensor | Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """The LM input of a whole prompt: text embeddings and image features in slot order.

        segments: a `TokenizedPrompt` or its `.segments` (runs of text ids and `ImageSlot`s).
        image_features: [b, t, e] or b tensors [t, e], image i for the slot with `image == i`
        (as `encode_images` returns them). Returns [1, L, e] in the LM dtype on the model's device.
        Raises PromptError when the slots and the features do not correspond one to one.
        """
        if isinstance(segments, TokenizedPrompt):
            segments = segments.segments
        slots = [s for s in segments if isinstance(s, ImageSlot)]
        if len(slots) != len(image_features):
            raise PromptError(
                f"the prompt has {len(slots)} image slot(s) but {len(image_features)} image(s) were encoded; "
                "every image needs exactly one slot"
            )
        if sorted(s.image for s in slots) != list(range(len(slots))):
            raise PromptError(f"image slots must number the images 0..{len(slots) - 1} once each")
        pieces = []
        for segment in segments:
            if isinstance(segment, ImageSlot):
                pieces.append(self._slot_features(segment, image_features[segment.image]))
            else:
                ids = torch.tensor([list(segment)], dtype=torch.long)
                pieces.append(self.embed_tokens(ids)[0])
        return torch.cat(pieces)[None]

    def _slot_features(self, slot: ImageSlot, features: torch.Tensor) -> torch.Tensor:
        expected = (slot.num_tokens, self.config.lm.hidden_size)
        if tuple(features.shape) != expected:
            raise PromptError(
                f"image {slot.image} has features of shape {list(features.shape)}, its slot needs {list(expected)}"
            )
        return features.to(device=self.device, dtype=self.dtype)

    def check_context(self, num_tokens: int, *, truncate: bool = False) -> None:
        """Report a prompt longer than `tokenizer_model_max_length`: a warning (the model may
        degrade, and the caller asked for nothing else), or, when the caller asked for truncation,
        ContextTooLongError so that it can drop input (which input to drop is the caller's choice)."""
        limit = self.max_context_tokens
        if limit is None or num_tokens <= limit:
            return
        if truncate:
            raise ContextTooLongError(
                f"the prompt needs {num_tokens} tokens, over the {limit} the model was trained with "
                f"(tokenizer_model_max_length); sample fewer frames or images"
            )
        warnings.warn(
            f"the prompt has {num_tokens} tokens but the model was trained with at most {limit} "
            f"(tokenizer_model_max_length); answers may degrade",
            stacklevel=2,
        )


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------


def load_model(
    path: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | str | None = None,
    vision_tower: str | Path | None = None,
    quantize: str = "none",
) -> LongLLaVA:
    """Load a LongLLaVA checkpoint directory (or a plain Jamba one, as a text-only model).

    LongLLaVA: config.json with the Jamba keys and the multimodal keys (`mm_*`, `resamplePooling`;
    without `resamplePooling` we warn and use "2d", where upstream silently used all 576 tokens),
    weights with the LM, `model.mm_projector.*` and, usually, the CLIP tower under
    `model.vision_tower.vision_tower.vision_model.*`, and `tokenizer.json`. The CLIP tower comes from,
    in order: the `vision_tower` directory if given; the checkpoint's own tensors; the
    `mm_vision_tower` directory when it is a local path (absolute, or relative to the checkpoint).
    The config of a tower stored in the checkpoint is, in order: a `vision_config` dict in
    config.json (transformers' CLIPVisionConfig keys; our extension, which tiny test checkpoints
    use), the config.json of a local `mm_vision_tower` directory (config from there, weights from
    the checkpoint, as upstream LongLLaVA builds it), else the ViT-L/14-336 defaults. A CLIP
    directory is what transformers' CLIPVisionModel or CLIPModel `save_pretrained` writes
    (config.json + safetensors; for the config alone, config.json is enough).

    A directory whose config has no multimodal keys and whose weights have no projector is a
    text-only Jamba: `.vision` and `.projector` are None. dtype: float32, bfloat16, float16 or None
    (the checkpoint's `torch_dtype`); every part is loaded in it, on `device`. The configs are
    checked against the safetensors headers before anything is built; each tensor is then read
    once into its final place: peak memory is about the model's size. quantize "int8" or "nf4"
    converts the Linear layers of the kinds `model.module_kinds` marks, each as soon as its weight
    is read (`model.quantize`), so the peak stays near the quantised size.
    Raises CheckpointError (one line: what is missing or wrong, and how to supply it), and
    QuantizationError when the quantisation's library is missing.
    """
    hook = quantizing_hook(quantize, lambda name: module_kind("lm." + name))  # a missing library fails first
    checkpoint = open_checkpoint(path)
    torch_dtype = resolve_dtype(dtype, checkpoint.config)
    tokenizer = load_tokenizer(checkpoint.path)  # cheap, and a missing file should fail before the weights load
    config, tower = resolve_configs(checkpoint, vision_tower, need_weights=True)
    if tokenizer.vocab_size > config.lm.vocab_size:
        raise CheckpointError(
            f"{checkpoint.path / 'tokenizer.json'}: {tokenizer.vocab_size} tokens but the model's vocab_size is "
            f"{config.lm.vocab_size}; the tokenizer belongs to another model"
        )
    model = _build(config, tokenizer, source=checkpoint.path)
    where = dict(dtype=torch_dtype, device=device)
    load_tensors(model.lm, checkpoint, jamba_key_renamer(config.lm), **where, on_module_loaded=hook)
    if tower is not None:
        # First the tower: its config may be assumed. Each part is one kind, whatever its names.
        _load_tower(model, tower, **where, on_module_loaded=quantizing_hook(quantize, lambda _: VISION))
        _load_projector(model, checkpoint, **where, on_module_loaded=quantizing_hook(quantize, lambda _: PROJECTOR))
    model.name = checkpoint.path.name
    model.quantization = quantize
    towers = (tower.checkpoint.path,) if tower is not None and tower.checkpoint is not None else ()
    model.sources = tuple(dict.fromkeys((checkpoint.path, *towers)))
    return model.eval().requires_grad_(False)


def _build(config: ModelConfig, tokenizer: Tokenizer, *, source: Path) -> LongLLaVA:
    """The model on the meta device (no memory), ready for `load_tensors`."""
    try:
        with empty_weights():
            return LongLLaVA(config, tokenizer)
    except ValueError as e:  # select layer, pooling or projector type the code cannot build
        raise CheckpointError(f"{source / 'config.json'}: {e}") from e


def _load_projector(model: LongLLaVA, checkpoint: Checkpoint, **where) -> None:
    assert model.projector is not None and model.config.mm is not None
    try:
        load_tensors(_mounted(model.projector, PROJECTOR_PREFIX), checkpoint, keys_under(PROJECTOR_PREFIX), **where)
    except CheckpointError as e:
        raise CheckpointError(f"{e} ({projector_summary(model.config.mm, model.config.lm.hidden_size)})") from e


def _load_tower(model: LongLLaVA, tower: TowerSource, **where) -> None:
    assert model.vision is not None and tower.checkpoint is not None and tower.prefix is not None
    module = _mounted(model.vision.vision_model, tower.prefix)
    try:
        load_tensors(module, tower.checkpoint, lambda key: key if is_tower_key(key, tower.prefix) else None, **where)
    except CheckpointError as e:
        if not tower.config_assumed:
            raise
        raise CheckpointError(f"{e}; {ASSUMED_CONFIG_HINT}") from e


def _mounted(module: nn.Module, prefix: str) -> nn.Module:
    """A container holding `module` at the dotted `prefix` ("a.b." or ""), so that its parameter
    names are the checkpoint's keys: `load_tensors` then reads and reports them verbatim."""
    for name in reversed(prefix.rstrip(".").split(".") if prefix else []):
        parent = nn.Module()
        parent.add_module(name, module)
        module = parent
    return module


