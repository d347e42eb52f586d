"""From a request to the prompt's token layout, before a pixel is decoded (`plan_request`).

The inputs are planned (`sampling.plan_inputs`: probing, no decoding), each plan becomes a prompt
group (`group_of`), and the prompt is laid out and tokenised, then split where the question goes:
everything before it is shared by all questions and prefilled once; each question then adds its
own tokens (`PlannedRequest.suffixes`). The same layout gives each input's LM positions
(`count_tokens_per_input`, what `longllava frames --model` shows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model.request import AskRequest, ChatRequest
from sampling import InputError, InputPlan, SamplingOptions, plan_inputs
from sampling.prompt import (
    IMAGE_SLOT,
    LONGLLAVA_TEMPLATE,
    ChatTemplate,
    ImageGroup,
    ImageSlot,
    PromptError,
    TiledGroup,
    VideoGroup,
    VisualGroup,
    build_prompt_layout,
    compose_user_content,
    tokenize_layout,
)

if TYPE_CHECKING:
    from model.longllava import LongLLaVA

# Marks where the question goes while laying out the prompt; never reaches the tokenizer.
_QUESTION = "\ue000"

Segment = tuple[int, ...] | ImageSlot


@dataclass(frozen=True)
class SplitPrompt:
    """The prompt split where the question goes: `shared` segments (text ids and image slots) are
    prefilled once; each question then adds `encode(question + tail)`."""

    shared: tuple[Segment, ...]
    tail: str | None  # None: the question is inside `shared` (placed by <image> placeholders)
    num_tokens_per_group: tuple[int, ...]


@dataclass(frozen=True)
class PlannedRequest:
    """Everything decided before a pixel is decoded: the plans (and the sampling options they were
    made with, the image size set to the model's), the prompt split at the question, and each
    question's own tokens."""

    plans: tuple[InputPlan, ...]
    sampling: SamplingOptions
    prompt: SplitPrompt
    questions: tuple[str, ...]
    suffixes: tuple[tuple[int, ...], ...]

    @property
    def num_shared_tokens(self) -> int:
        return sum(len(s) if isinstance(s, tuple) else s.num_tokens for s in self.prompt.shared)

    @property
    def num_visual_tokens(self) -> int:
        return sum(s.num_tokens for s in self.prompt.shared if isinstance(s, ImageSlot))

    def num_tokens(self, max_new_tokens: int) -> int:
        """Cache positions the longest question can need, its answer included."""
        return self.num_shared_tokens + max(map(len, self.suffixes), default=0) + max_new_tokens


def group_of(plan: InputPlan) -> VisualGroup:
    """The prompt group of a sampling plan: a folder's image sequence is laid out like a video."""
    if plan.kind == "image":
        return ImageGroup()
    if plan.kind == "tiled":
        assert plan.grid is not None
        return TiledGroup(*plan.grid)
    timestamps = tuple(f.timestamp for f in plan.frames)
    return VideoGroup(len(plan.frames), timestamps if None not in timestamps else None)


def plan_request(model: LongLLaVA, request: AskRequest) -> PlannedRequest:
    """Plan the inputs (probing media, no decoding) and lay out and tokenize the prompt. With
    `request.history`, each question's own tokens follow the earlier turns (`conversation_ids`)."""
    return _plan(
        model, request.inputs, request.sampling, request.run.show_timestamps, request.questions, request.history
    )


def plan_chat(model: LongLLaVA, request: ChatRequest) -> PlannedRequest:
    """The plan of a conversation before its first question: the shared part (everything before
    the first question) alone; `questions` and `suffixes` are empty."""
    return _plan(model, request.inputs, request.sampling, request.run.show_timestamps, (), ())


def _plan(
    model: LongLLaVA,
    inputs: Sequence[str],
    sampling: SamplingOptions,
    show_timestamps: bool,
    questions: tuple[str, ...],
    history: tuple[tuple[str, str], ...],
) -> PlannedRequest:
    if model.vision is not None:
        sampling = dataclasses.replace(sampling, image_size=model.image_size)
    plans = tuple(plan_inputs(list(inputs), sampling)) if inputs else ()
    if plans and model.vision is None:
        raise InputError(f"{model.name} is a text-only model; it cannot look at {plans[0].source}")
    if history and any(IMAGE_SLOT in q for q in (*questions, *(q for q, _ in history))):
        raise PromptError(f"{IMAGE_SLOT} placeholders cannot be used with earlier turns: the inputs go in the first")
    groups = [group_of(p) for p in plans]
    per_image = model.tokens_per_image if groups else 1  # a text-only model has no images to size
    encode = model.tokenizer.encode
    prompt = split_prompt(groups, questions, encode, per_image, show_timestamps)
    if prompt.tail is None:
        suffixes = tuple(() for _ in questions)
    else:
        suffixes = tuple(conversation_ids(history, q, prompt.tail, encode) for q in questions)
    return PlannedRequest(plans, sampling, prompt, questions, suffixes)


def turn_ids(
    question: str,
    tail: str,
    encode: Callable[[str], Sequence[int]],
    *,
    follow_up: bool,
    template: ChatTemplate = LONGLLAVA_TEMPLATE,
) -> tuple[int, ...]:
    """A user turn's own tokens after the shared part or an earlier answer: `question + tail` for
    the first question, `template.follow_up_prefix + question + tail` after an answer. Encoded on
    their own, so they never merge with the tokens before them (an answer is kept as generated)."""
    return tuple(encode((template.follow_up_prefix if follow_up else "") + question + tail))


def conversation_ids(
    history: Sequence[tuple[str, str]], question: str, tail: str, encode: Callable[[str], Sequence[int]]
) -> tuple[int, ...]:
    """The tokens after the shared part for `question` asked after the turns `history`: each
    earlier turn (`turn_ids`) and its answer's tokens (`encode(answer)`), then the question's turn."""
    ids: list[int] = []
    for number, (earlier, answer) in enumerate(history):
        ids += turn_ids(earlier, tail, encode, follow_up=number > 0)
        ids += encode(answer)
    return (*ids, *turn_ids(question, tail, encode, follow_up=bool(history)))


def split_prompt(
    groups: Sequence[VisualGroup],
    questions: Sequence[str],
    encode: Callable[[str], list[int]],
    tokens_per_image: int,
    show_timestamps: bool = False,
) -> SplitPrompt:
    """The prompt of `groups` and `questions`, tokenised by `encode` and split at the question."""
    if any(IMAGE_SLOT in q for q in questions):
        if len(questions) > 1:
            raise ValueError(f"{IMAGE_SLOT} placeholders place inputs within one question; ask one at a time")
        # The question is part of the layout: nothing follows it, nothing is shared.
        layout = build_prompt_layout(
            compose_user_content(questions[0], list(groups)),
            tokens_per_image=tokens_per_image,
            show_timestamps=show_timestamps,
        )
        tokenized = tokenize_layout(layout, encode)
        return SplitPrompt(tokenized.segments, None, tokenized.num_tokens_per_group)
    content = compose_user_content(_QUESTION, list(groups))
    layout = build_prompt_layout(content, tokens_per_image=tokens_per_image, show_timestamps=show_timestamps)
    # Everything before the question is shared. The last text chunk holds the question; it is
    # re-encoded as the text before it (shared) and, per question, question + tail, so the
    # question's tokens never merge with the shared text's (the same split for one or many).
    tokenized = tokenize_layout(layout, encode)
    before, tail = layout.text_chunks()[-1].split(_QUESTION)
    shared = tokenized.segments[:-1] + ((tuple(encode(before)),) if before else ())
    return SplitPrompt(shared, tail, tokenized.num_tokens_per_group)


def count_tokens_per_input(
    plans: Sequence[InputPlan], *, encode: Callable[[str], list[int]], tokens_per_image: int
) -> tuple[int, ...]:
    """LM positions each input takes in the prompt, its markup text included."""
    layout = build_prompt_layout(
        compose_user_content("", [group_of(p) for p in plans]), tokens_per_image=tokens_per_image
    )
    return tokenize_layout(layout, encode).num_tokens_per_group
