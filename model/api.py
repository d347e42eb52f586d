"""The library API: ask questions about videos, images and folders with a LongLLaVA model.

    from model import load_model
    from model.api import ask
    from sampling import SamplingOptions

    model = load_model("LongLLaVA-9B", dtype="bfloat16")
    result = ask(model, ["talk.mp4"], ["What happens?", "Who speaks first?"],
                 sampling=SamplingOptions(num_frames=256))
    print(result.answers[0].text)

Pipeline: `sampling` plans the inputs (no pixels) → the prompt layout fixes every token's place
→ frames are decoded in a background thread, a few ahead → encoded by the vision tower in
batches → spliced with the text embeddings and pushed through the LM in chunks
(`engine.ChunkedPrefill`). With several questions, the frames are prefilled once and the cache
is forked for each question. Nothing holds all frames' pixels or features at once.
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from model.engine import ChunkedPrefill, GenerationOptions, generate
from model.longllava import LongLLaVA
from model.memory import check_fits
from model.prefetch import Prefetcher
from sampling import InputError, InputPlan, SampledFrame, SamplingOptions, iter_frames, plan_inputs
from sampling.plan import PathLike
from sampling.prompt import (
    IMAGE_SLOT,
    ImageGroup,
    ImageSlot,
    TiledGroup,
    VideoGroup,
    VisualGroup,
    build_prompt_layout,
    compose_user_content,
    tokenize_layout,
)

# Marks where the question goes while laying out the prompt; never reaches the tokenizer.
_QUESTION = "\ue000"


@dataclass(frozen=True, kw_only=True)
class RunOptions:
    """How to run a request. chunk_tokens: LM positions per prefill chunk (memory: one chunk of
    activations); vision_batch_size: images per vision-tower batch; frames_ahead: decoded frames
    buffered ahead of the model; show_timestamps: write each frame's time into the prompt (the
    released models were not trained with it); memory_budget: fail early (MemoryBudgetError)
    when the memory model predicts more than this many bytes."""

    chunk_tokens: int = 2048
    vision_batch_size: int = 8
    frames_ahead: int = 16
    show_timestamps: bool = False
    memory_budget: int | None = None  # bytes; checked with the memory model before heavy work


@dataclass(frozen=True)
class FrameInfo:
    kind: str  # "image", "frame" or "tile"
    index: int | None
    timestamp: float | None
    tile: tuple[int, int] | None


@dataclass(frozen=True)
class InputInfo:
    """One prompt item: what was sampled from it and what it cost in LM positions. notices: the
    plan's one-line notes (no path) on what it left out or changed (`sampling.InputPlan.notices`)."""

    path: str
    kind: str
    num_available: int
    num_tokens: int
    frames: tuple[FrameInfo, ...]
    grid: tuple[int, int] | None = None
    skipped: tuple[tuple[str, str], ...] = ()
    notices: tuple[str, ...] = ()


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    num_tokens: int
    finish_reason: str  # "eos", "stop" or "length"


@dataclass(frozen=True)
class AskResult:
    """Answers with what produced them. num_prompt_tokens: positions prefilled for the first
    question (shared part + its own); timings in seconds: decode (frame decoding, overlapped with
    the rest), vision, prefill, generate, total; peak_memory_bytes: the process's peak RSS (CPU)
    or peak allocated GPU memory (CUDA)."""

    model: str
    answers: tuple[Answer, ...]
    inputs: tuple[InputInfo, ...]
    num_prompt_tokens: int
    num_visual_tokens: int
    timings: dict[str, float] = field(default_factory=dict)
    peak_memory_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class _Prompt:
    """The prompt split where the question goes: `shared` segments (text ids and image slots) are
    prefilled once; each question then adds `encode(question + tail)`."""

    shared: tuple[tuple[int, ...] | ImageSlot, ...]
    tail: str | None  # None: the question is inside `shared` (placed by <image> placeholders)
    num_tokens_per_group: tuple[int, ...]


def group_of(plan: InputPlan) -> VisualGroup:
    """The prompt group of a sampling plan: a folder's image sequence is laid out like a video."""
    if plan.kind == "image":
        return ImageGroup()
    if plan.kind == "tiled":
        assert plan.grid is not None
        return TiledGroup(*plan.grid)
    timestamps = tuple(f.timestamp for f in plan.frames)
    return VideoGroup(len(plan.frames), timestamps if None not in timestamps else None)


@dataclass(frozen=True)
class Request:
    """Everything decided before a pixel is decoded: the plans, the prompt split at the question,
    and each question's own tokens."""

    plans: tuple[InputPlan, ...]
    sampling: SamplingOptions
    prompt: _Prompt
    questions: tuple[str, ...]
    suffixes: tuple[tuple[int, ...], ...]

    @property
    def num_shared_tokens(self) -> int:
        return sum(len(s) if isinstance(s, tuple) else s.num_tokens for s in self.prompt.shared)

    def num_tokens(self, max_new_tokens: int) -> int:
        """Cache positions the longest question can need, its answer included."""
        return self.num_shared_tokens + max(map(len, self.suffixes)) + max_new_tokens


@dataclass
class SharedPrefill:
    """The state after the shared part of the prompt, with what it took."""

    prefill: ChunkedPrefill
    frames: list[FrameInfo]  # what was fed, in order (metadata only: pixels are never kept)
    decode_seconds: float
    vision_seconds: float


def plan_request(
    model: LongLLaVA,
    inputs: Sequence[PathLike],
    questions: str | Sequence[str],
    *,
    sampling: SamplingOptions | None = None,
    show_timestamps: bool = False,
) -> Request:
    """Plan the inputs (probing media, no decoding) and lay out and tokenize the prompt."""
    questions = (questions,) if isinstance(questions, str) else tuple(questions)
    if not questions:
        raise ValueError("ask needs at least one question")
    sampling = sampling or SamplingOptions()
    if model.vision is not None:
        sampling = dataclasses.replace(sampling, image_size=model.image_size)
    plans = tuple(plan_inputs(list(inputs), sampling)) if inputs else ()
    if plans and model.vision is None:
        raise InputError(f"{model.name} is a text-only model; it cannot look at {plans[0].source}")
    prompt = _split_prompt(model, [group_of(p) for p in plans], list(questions), show_timestamps)
    encode = model.tokenizer.encode
    suffixes = tuple(tuple(encode(q + prompt.tail)) if prompt.tail is not None else () for q in questions)
    return Request(plans, sampling, prompt, questions, suffixes)


def prefill_shared(
    model: LongLLaVA,
    request: Request,
    run: RunOptions,
    *,
    capacity: int,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> SharedPrefill:
    """Decode, encode and prefill the shared part of the prompt, streaming: frames are decoded in
    a background thread `run.frames_ahead` ahead, encoded `run.vision_batch_size` at a time and
    pushed through the LM in chunks of `run.chunk_tokens` positions. `capacity`: positions to
    preallocate in the attention cache (prompt + answer), so it never reallocates.
    on_progress("vision", frames read, frames in all) follows the frames."""
    prefill = ChunkedPrefill(model.lm, model.lm.new_cache(capacity=capacity), run.chunk_tokens)
    frames_seen: list[FrameInfo] = []
    num_images = sum(plan.num_images for plan in request.plans)

    def record(frame: SampledFrame) -> None:
        frames_seen.append(FrameInfo(frame.kind, frame.index, frame.timestamp, frame.tile))
        if on_progress is not None:
            on_progress("vision", len(frames_seen), num_images)

    vision_seconds = [0.0]
    source = iter_frames(list(request.plans), request.sampling, batch_size=run.vision_batch_size)
    with Prefetcher(source, run.frames_ahead) as frames:
        features = _image_features(model, frames, run.vision_batch_size, record, vision_seconds)
        for segment in request.prompt.shared:
            prefill.push(next(features) if isinstance(segment, ImageSlot) else _embed(model, segment))
        decode_seconds = frames.busy_seconds
    return SharedPrefill(prefill, frames_seen, decode_seconds, vision_seconds[0])


def ask(
    model: LongLLaVA,
    inputs: Sequence[PathLike],
    questions: str | Sequence[str],
    *,
    sampling: SamplingOptions | None = None,
    generation: GenerationOptions | None = None,
    run: RunOptions | None = None,
    on_text: Callable[[int, str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> AskResult:
    """Answer each of `questions` about all of `inputs` (paths of videos, images, folders).

    on_text(question_number, text) receives answers as they are generated; on_progress(stage,
    done, total) the stages: "vision" (frames read so far of all), then "answer" (questions
    answered so far of all), for a spinner or a progress bar. Raises InputError
    for bad media, ContextTooLongError / MemoryBudgetError before heavy work when the request
    cannot fit, ValueError for inconsistent arguments.
    """
    started = time.perf_counter()
    generation, run = generation or GenerationOptions(), run or RunOptions()
    request = plan_request(model, inputs, questions, sampling=sampling, show_timestamps=run.show_timestamps)
    capacity = request.num_tokens(generation.max_new_tokens)
    model.check_context(capacity)
    if run.memory_budget is not None:
        check_request_fits(model, capacity, run, num_questions=len(request.questions))
    shared = prefill_shared(model, request, run, capacity=capacity, on_progress=on_progress)
    prefill_seconds = shared.prefill.seconds

    answers, generate_seconds = [], 0.0
    for number, (question, suffix) in enumerate(zip(request.questions, request.suffixes, strict=True)):
        if on_progress is not None:
            on_progress("answer", number, len(request.questions))
        # Every question but the last continues from a copy of the shared state.
        own = shared.prefill if number == len(request.questions) - 1 else shared.prefill.fork()
        before = own.seconds
        own.push(_embed(model, suffix))
        logits = own.finish()
        prefill_seconds += own.seconds - before
        out = generate(
            model.lm,
            own.cache,
            logits,
            decode=model.tokenizer.decode,
            eos_token_ids=model.eos_token_ids,
            options=generation,
            on_text=None if on_text is None else (lambda text, n=number: on_text(n, text)),
        )
        generate_seconds += out.seconds
        answers.append(Answer(question, out.text.strip(), len(out.token_ids), out.finish_reason))

    timings = {
        "decode": shared.decode_seconds,
        "vision": shared.vision_seconds,
        "prefill": prefill_seconds,
        "generate": generate_seconds,
        "total": time.perf_counter() - started,
    }
    return AskResult(
        model=model.name,
        answers=tuple(answers),
        inputs=_describe_inputs(request.plans, shared.frames, request.prompt.num_tokens_per_group),
        num_prompt_tokens=request.num_shared_tokens + len(request.suffixes[0]),
        num_visual_tokens=sum(s.num_tokens for s in request.prompt.shared if isinstance(s, ImageSlot)),
        timings=timings,
        peak_memory_bytes=peak_memory_bytes(model.device),
    )


def check_request_fits(model: LongLLaVA, num_tokens: int, run: RunOptions, *, num_questions: int = 1) -> None:
    """MemoryBudgetError, before any heavy work, when the memory model says the request will not
    fit `run.memory_budget` bytes (with several questions, a fork of the state is alive too)."""
    config = model.config
    check_fits(
        run.memory_budget,
        config.lm,
        config.vision,
        num_tokens=num_tokens,
        dtype=str(model.dtype).removeprefix("torch."),
        chunk_tokens=run.chunk_tokens,
        vision_batch_size=run.vision_batch_size,
        frames_ahead=run.frames_ahead,
        mm_hidden_size=config.mm.mm_hidden_size if config.mm is not None else None,
        device=model.device.type,
        num_states=1 if num_questions == 1 else 2,
    )


def _split_prompt(model: LongLLaVA, groups: list[VisualGroup], questions: list[str], timestamps: bool) -> _Prompt:
    encode = model.tokenizer.encode
    per_image = model.tokens_per_image if groups else 1  # a text-only model has no images to size
    if any(IMAGE_SLOT in q for q in questions):
        if len(questions) > 1:
            raise ValueError(f"{IMAGE_SLOT} placeholders place inputs within one question; ask one at a time")
        # The question is part of the layout: nothing follows it, nothing is shared.
        layout = build_prompt_layout(
            compose_user_content(questions[0], groups),
            tokens_per_image=per_image,
            show_timestamps=timestamps,
        )
        tokenized = tokenize_layout(layout, encode)
        return _Prompt(tokenized.segments, None, tokenized.num_tokens_per_group)
    layout = build_prompt_layout(
        compose_user_content(_QUESTION, groups), tokens_per_image=per_image, show_timestamps=timestamps
    )
    # Everything before the question is shared. The last text chunk holds the question; it is
    # re-encoded as the text before it (shared) and, per question, question + tail, so the
    # question's tokens never merge with the shared text's (the same split for one or many).
    tokenized = tokenize_layout(layout, encode)
    before, tail = layout.text_chunks()[-1].split(_QUESTION)
    shared = tokenized.segments[:-1] + ((tuple(encode(before)),) if before else ())
    return _Prompt(shared, tail, tokenized.num_tokens_per_group)


def _embed(model: LongLLaVA, ids: Sequence[int]) -> torch.Tensor:
    """Text embeddings [len(ids), e]."""
    return model.embed_tokens(torch.tensor([list(ids)], dtype=torch.long, device=model.device))[0]


def _image_features(
    model: LongLLaVA,
    frames: Iterator[SampledFrame],
    batch_size: int,
    record: Callable[[SampledFrame], None],
    seconds: list[float],
) -> Iterator[torch.Tensor]:
    """Projected features [tokens_per_image, e] of each frame, encoded `batch_size` at a time."""
    batch: list[torch.Tensor] = []
    for frame in frames:
        record(frame)
        batch.append(frame.pixels)
        if len(batch) == batch_size:
            yield from _encode(model, batch, seconds)
            batch = []
    if batch:
        yield from _encode(model, batch, seconds)


def _encode(model: LongLLaVA, batch: list[torch.Tensor], seconds: list[float]) -> Iterator[torch.Tensor]:
    start = time.perf_counter()
    with torch.inference_mode():
        features = model.encode_images(torch.stack(batch))
    seconds[0] += time.perf_counter() - start
    yield from features


def _describe_inputs(
    plans: Sequence[InputPlan], frames: list[FrameInfo], tokens_per_group: Sequence[int]
) -> tuple[InputInfo, ...]:
    infos, position = [], 0
    for plan, num_tokens in zip(plans, tokens_per_group, strict=True):
        own = frames[position : position + plan.num_images]
        position += plan.num_images
        infos.append(
            InputInfo(
                path=str(plan.source),
                kind=plan.kind,
                num_available=plan.num_available,
                num_tokens=num_tokens,
                frames=tuple(own),
                grid=plan.grid,
                skipped=tuple((str(s.path), s.reason) for s in plan.skipped),
                notices=plan.notices,
            )
        )
    return tuple(infos)


def peak_memory_bytes(device: torch.device) -> int:
    """Peak GPU memory allocated on a CUDA device, else the process's peak resident set size.

    On Linux this is VmHWM: `getrusage`'s ru_maxrss survives exec, so a process started from a
    large parent would report the parent's size (subprocess uses vfork)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024
