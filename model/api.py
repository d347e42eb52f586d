"""The library API: load a model, and answer a request about videos, images and folders.

    from model.api import ask, load
    from model.request import AskRequest, ModelSpec
    from sampling import SamplingOptions

    model = load(ModelSpec(path="FreedomIntelligence/LongLLaVA-9B", dtype="bfloat16"))
    request = AskRequest(inputs=("talk.mp4",), questions=("What happens?", "Who speaks first?"),
                         sampling=SamplingOptions(num_frames=256))
    print(ask(model, request).answers[0].text)

Pipeline: the request is planned (`prompting.plan_request`: inputs probed, no pixels; the prompt
laid out and tokenised) → frames are decoded in a background thread, a few ahead → encoded by the
vision tower in batches → spliced with the text embeddings and pushed through the LM in chunks
(`engine.ChunkedPrefill`). With several questions, the frames are prefilled once and the state is
forked for each question. Nothing holds all frames' pixels or features at once.

Dimension letters: docs/glossary.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from model.devices import resolve_device
from model.engine import ChunkedPrefill, generate
from model.hub import find_model
from model.longllava import LongLLaVA, load_model
from model.memory import check_fits, device_memory_bytes
from model.memory_usage import peak_memory_bytes
from model.prefetch import Prefetcher
from model.prompting import PlannedRequest, plan_request
from model.request import DEVICE_MEMORY, AskRequest, GenerationOptions, ModelSpec, RunOptions
from model.results import Answer, AskResult, FrameInfo, InputInfo, describe_inputs
from sampling import SampledFrame, iter_frames
from sampling.prompt import ImageSlot

__all__ = [
    "Answer",
    "AskRequest",
    "AskResult",
    "FrameInfo",
    "GenerationOptions",
    "InputInfo",
    "ModelSpec",
    "RunOptions",
    "ask",
    "check_request_fits",
    "load",
    "plan_request",
    "prefill_shared",
]

ProgressCallback = Callable[[str, int, int], None]
TextCallback = Callable[[int, str], None]


def load(spec: ModelSpec) -> LongLLaVA:
    """The model `spec` names, loaded on its device ("auto": CUDA when available, else the CPU),
    quantised as `spec.quantize` says. `spec.path`: a checkpoint folder, or a Hugging Face repo id
    `ORG/NAME[@REVISION]` in the local cache (`model.hub.find_model`; nothing is downloaded:
    ModelNotDownloadedError names the `longllava pull` command when it is absent or partial)."""
    location = find_model(spec.path)
    model = load_model(
        location.require(),
        device=resolve_device(spec.device),
        dtype=spec.dtype,
        vision_tower=spec.vision_tower.expanduser() if spec.vision_tower else None,
        quantize=spec.quantize,
    )
    if location.is_repo:
        model.name = location.name  # not the snapshot folder's name, a commit hash
    return model


@dataclass
class SharedPrefill:
    """The state after the shared part of the prompt, with what it took."""

    prefill: ChunkedPrefill
    frames: list[FrameInfo]  # what was fed, in order (metadata only: pixels are never kept)
    decode_seconds: float
    vision_seconds: float
    cache_seconds: float = 0.0  # the state cache's own work: keying, then loading or saving


def ask(
    model: LongLLaVA,
    request: AskRequest,
    *,
    on_text: TextCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> AskResult:
    """Answer each of the request's questions about all of its inputs.

    on_text(question_number, text) receives answers as they are generated; on_progress(stage,
    done, total) the stages: "vision" (frames read so far of all), then "answer" (questions
    answered so far of all), for a spinner or a progress bar. Raises InputError for bad media,
    ContextTooLongError / MemoryBudgetError before heavy work when the request cannot fit,
    ValueError for inconsistent arguments.
    """
    started = time.perf_counter()
    planned = plan_request(model, request)
    # Imported here: model.shared_state builds on this module's prefill_shared.
    from model.shared_state import checked_shared_state

    shared, cache = checked_shared_state(
        model,
        planned,
        request.run,
        max_new_tokens=request.generation.max_new_tokens,
        num_questions=len(planned.questions),
        on_progress=on_progress,
    )
    shared_seconds = shared.prefill.seconds
    answers, seconds = _answer_each(model, planned, shared, request.generation, on_text, on_progress)
    timings = {
        "decode": shared.decode_seconds,
        "vision": shared.vision_seconds,
        "prefill": shared_seconds + seconds["prefill"],
        "generate": seconds["generate"],
        "cache": shared.cache_seconds,
        "total": time.perf_counter() - started,
    }
    return AskResult(
        model=model.name,
        answers=tuple(answers),
        inputs=describe_inputs(planned.plans, shared.frames, planned.prompt.num_tokens_per_group),
        num_prompt_tokens=planned.num_shared_tokens + len(planned.suffixes[0]),
        num_visual_tokens=planned.num_visual_tokens,
        timings=timings,
        peak_memory_bytes=peak_memory_bytes(model.device),
        cache=cache,
    )


def _answer_each(
    model: LongLLaVA,
    planned: PlannedRequest,
    shared: SharedPrefill,
    generation: GenerationOptions,
    on_text: TextCallback | None,
    on_progress: ProgressCallback | None,
) -> tuple[list[Answer], dict[str, float]]:
    """Each question's own tokens pushed after the shared state, then its answer generated; every
    question but the last continues from a copy of the shared state."""
    answers, seconds = [], {"prefill": 0.0, "generate": 0.0}
    for number, (question, suffix) in enumerate(zip(planned.questions, planned.suffixes, strict=True)):
        if on_progress is not None:
            on_progress("answer", number, len(planned.questions))
        own = shared.prefill if number == len(planned.questions) - 1 else shared.prefill.fork()
        before = own.seconds
        own.push(_embed(model, suffix))
        logits = own.finish()
        seconds["prefill"] += own.seconds - before
        out = generate(
            model.lm,
            own.cache,
            logits,
            decode=model.tokenizer.decode,
            eos_token_ids=model.eos_token_ids,
            options=generation,
            on_text=None if on_text is None else (lambda text, n=number: on_text(n, text)),
        )
        seconds["generate"] += out.seconds
        answers.append(Answer(question, out.text.strip(), len(out.token_ids), out.finish_reason))
    return answers, seconds


def prefill_shared(
    model: LongLLaVA,
    planned: PlannedRequest,
    run: RunOptions,
    *,
    capacity: int,
    on_progress: ProgressCallback | None = None,
) -> SharedPrefill:
    """Decode, encode and prefill the shared part of the prompt, streaming: frames are decoded (by
    `run.decode_workers` threads) in the background `run.frames_ahead` ahead, encoded
    `run.vision_batch_size` at a time and pushed through the LM in chunks of `run.chunk_tokens`
    positions. `capacity`: positions to
    preallocate in the attention cache (prompt + answer), so it never reallocates.
    on_progress("vision", frames read, frames in all) follows the frames. When questions follow
    (the prompt has a tail), the last chunk is run at the end of the shared part: the state holds
    no pending rows, so a question continued from it, forked or loaded from the state cache, runs
    only its own rows, cut into the same chunks in every case."""
    prefill = ChunkedPrefill(model.lm, model.lm.new_cache(capacity=capacity), run.chunk_tokens)
    frames_seen: list[FrameInfo] = []
    num_images = sum(plan.num_images for plan in planned.plans)

    def record(frame: SampledFrame) -> None:
        frames_seen.append(FrameInfo(frame.kind, frame.index, frame.timestamp, frame.tile))
        if on_progress is not None:
            on_progress("vision", len(frames_seen), num_images)

    vision_seconds = [0.0]
    source = iter_frames(
        list(planned.plans), planned.sampling, batch_size=run.vision_batch_size, workers=run.decode_workers
    )
    with Prefetcher(source, run.frames_ahead) as frames:
        features = _image_features(model, frames, run.vision_batch_size, record, vision_seconds)
        for segment in planned.prompt.shared:
            prefill.push(next(features) if isinstance(segment, ImageSlot) else _embed(model, segment))
        decode_seconds = frames.busy_seconds
    if planned.prompt.tail is not None:
        prefill.flush()
    return SharedPrefill(prefill, frames_seen, decode_seconds, vision_seconds[0])


def check_request_fits(model: LongLLaVA, num_tokens: int, run: RunOptions, *, num_questions: int = 1) -> None:
    """MemoryBudgetError, before any heavy work, when the memory model says the request will not
    fit `run.memory_budget` bytes ("device": the model's device's memory; with several questions,
    a fork of the state is alive too; the weights as `model.quantization` stores them)."""
    config = model.config
    budget = run.memory_budget
    if budget == DEVICE_MEMORY:
        budget = device_memory_bytes(str(model.device))
    check_fits(
        budget,
        config.lm,
        config.vision,
        num_tokens=num_tokens,
        dtype=str(model.dtype).removeprefix("torch."),
        chunk_tokens=run.chunk_tokens,
        vision_batch_size=run.vision_batch_size,
        frames_ahead=run.frames_ahead,
        decode_workers=run.decode_workers,
        mm_hidden_size=config.mm.mm_hidden_size if config.mm is not None else None,
        projector_type=config.mm.mm_projector_type if config.mm is not None else "mlp2x_gelu",
        device=model.device.type,
        num_states=1 if num_questions == 1 else 2,
        quantize=model.quantization,
    )


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
