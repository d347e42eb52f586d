"""The library boundary: what to load, and what to answer about which inputs, each one frozen object.

    from model.request import AskRequest, ModelSpec
    from model.api import ask, load

    model = load(ModelSpec(path="FreedomIntelligence/LongLLaVA-9B", dtype="bfloat16"))
    result = ask(model, AskRequest(inputs=("talk.mp4",), questions=("What happens?",)))

An `AskRequest` is built once (the CLI builds it from its parsed options) and passed whole, so a
chat session, a state cache keyed on it, a Ray actor and an HTTP handler all take the same
object: inputs, questions, and three groups of settings, `sampling` (which frames and pictures),
`generation` (how answers are decoded) and `run` (how the work is laid out: chunk sizes, memory
budget). Every field is checked on creation (ValueError naming it). No torch import here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from model.module_kinds import NO_QUANTIZATION, check_quantization
from sampling.options import SamplingOptions
from sampling.parallel import default_decode_workers

MIN_TEMPERATURE = 0.01
MAX_TEMPERATURE = 100.0
MAX_SEED = 2**64 - 1
# The memory budget "device": the memory of the device the model runs on (the CUDA device's, else RAM).
DEVICE_MEMORY = "device"
# The state cache's default size cap: 20 GiB (model.state_store.DEFAULT_MAX_BYTES).
DEFAULT_CACHE_SIZE = 20 * 2**30


@dataclass(frozen=True, kw_only=True)
class GenerationOptions:
    """Decoding settings. temperature 0 is greedy (LongLLaVA's default); otherwise softmax
    sampling at `temperature`, restricted to the `top_k` most likely tokens (0: all) and to the
    smallest set whose probability reaches `top_p`, reproducible with `seed`."""

    max_new_tokens: int = 768
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    stop: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        # Dividing float32 logits by a tinier temperature overflows to inf and the sampling
        # probabilities to NaN; vLLM raises such temperatures to 0.01 for the same reason.
        if not (self.temperature == 0 or MIN_TEMPERATURE <= self.temperature <= MAX_TEMPERATURE):
            raise ValueError(
                f"temperature must be 0 (greedy) or in {MIN_TEMPERATURE}..{MAX_TEMPERATURE:g}, got {self.temperature}"
            )
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be in 0..2^64-1 (what torch.Generator takes), got {self.seed}")


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How to run a request. chunk_tokens: LM positions per prefill chunk (memory: one chunk of
    activations); vision_batch_size: images per vision-tower batch; frames_ahead: decoded frames
    buffered ahead of the model; decode_workers: threads decoding and preprocessing frames (files
    and GOPs of a video side by side), by default the CPU cores, at most 8: the frames are the
    same for any number, so it is here and not in `SamplingOptions`, which says which frames (nor
    in the state cache's key); show_timestamps: write each frame's time into the prompt (the
    released models were not trained with it); memory_budget: fail early (MemoryBudgetError)
    when the memory model predicts more than this many bytes, "device" for the memory of the
    device the model runs on, None for no check. cache_dir: the state cache's folder
    (`model.state_store`; the CLI's default is `~/.cache/longllava/states`): the state after the
    inputs is saved there and loaded by a later request with the same shared part; None (the
    library's default) turns it off. cache_size: the most bytes of states kept there, least
    recently used ones evicted past it."""

    chunk_tokens: int = 2048
    vision_batch_size: int = 8
    frames_ahead: int = 16
    decode_workers: int = field(default_factory=default_decode_workers)
    show_timestamps: bool = False
    memory_budget: int | Literal["device"] | None = None
    cache_dir: Path | None = None
    cache_size: int = DEFAULT_CACHE_SIZE

    def __post_init__(self) -> None:
        for name in ("chunk_tokens", "vision_batch_size", "frames_ahead", "decode_workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.cache_size <= 0:
            raise ValueError(f"cache_size must be a positive number of bytes, got {self.cache_size}")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser())
        budget = self.memory_budget
        if budget is not None and budget != DEVICE_MEMORY and (not isinstance(budget, int) or budget <= 0):
            raise ValueError(f"memory_budget must be a positive number of bytes or {DEVICE_MEMORY!r}, got {budget!r}")


@dataclass(frozen=True, kw_only=True)
class AskRequest:
    """Questions about inputs (paths of videos, images, folders), and how to answer them. A single
    question or path may be given as a string; both become tuples. history: earlier turns of the
    conversation, (question, answer) pairs, laid out in the model's chat template before each
    question (the inputs go in the first turn), as `longllava chat` holds them."""

    inputs: tuple[str, ...] = ()
    questions: tuple[str, ...]
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    run: RunOptions = field(default_factory=RunOptions)
    history: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", _as_strings(self.inputs))
        questions = (self.questions,) if isinstance(self.questions, str) else tuple(self.questions)
        object.__setattr__(self, "questions", questions)
        if not self.questions:
            raise ValueError("a request needs at least one question")
        object.__setattr__(self, "history", _as_turns(self.history))


@dataclass(frozen=True, kw_only=True)
class ChatRequest:
    """A conversation about inputs: what `AskRequest` holds but the questions, which come one at a
    time (`model.chat.open_chat`)."""

    inputs: tuple[str, ...] = ()
    sampling: SamplingOptions = field(default_factory=SamplingOptions)
    generation: GenerationOptions = field(default_factory=GenerationOptions)
    run: RunOptions = field(default_factory=RunOptions)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", _as_strings(self.inputs))

    def ask_request(self, question: str, history: tuple[tuple[str, str], ...] = ()) -> AskRequest:
        """The one-shot request of `question` after the turns `history` (what a chat turn answers)."""
        return AskRequest(
            inputs=self.inputs,
            questions=(question,),
            sampling=self.sampling,
            generation=self.generation,
            run=self.run,
            history=history,
        )


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """Which checkpoint to load and how. path: a checkpoint folder, or a Hugging Face repo id
    `ORG/NAME[@REVISION]` found in the local cache (`model.hub`; a folder that exists wins);
    device "auto": CUDA when available, else the CPU; dtype None: the checkpoint's own
    (`torch_dtype` in config.json); vision_tower: a CLIP folder for checkpoints without the
    tower's weights; quantize: "none", or "int8" / "nf4" weight-only quantisation of the
    attention, MLP and MoE expert Linear layers (`model.module_kinds`)."""

    path: Path | str
    device: str = "auto"
    dtype: str | None = None
    vision_tower: Path | None = None
    quantize: str = NO_QUANTIZATION

    def __post_init__(self) -> None:
        check_quantization(self.quantize)


def _as_turns(turns: tuple | list) -> tuple[tuple[str, str], ...]:
    pairs = tuple(tuple(turn) for turn in turns)
    for pair in pairs:
        if len(pair) != 2 or not all(isinstance(text, str) for text in pair):
            raise ValueError(f"history holds (question, answer) pairs of strings, got {pair!r}")
    return pairs  # type: ignore[return-value]


def _as_strings(paths: str | os.PathLike[str] | tuple | list) -> tuple[str, ...]:
    if isinstance(paths, (str, os.PathLike)):
        paths = (paths,)
    return tuple(os.fspath(p) for p in paths)
