"""A conversation about inputs: read and prefill them once, then answer one question after another,
each turn appended to the conversation so that follow-ups can refer to earlier answers.

    from model.chat import open_chat
    from model.request import ChatRequest

    session = open_chat(model, ChatRequest(inputs=("talk.mp4",)))
    session.ask("Who speaks first?")
    session.ask("What does she hold?")     # sees the first question and its answer
    session.reset()                        # back to the state right after the video

Layout: the inputs and the first question form the first user turn (`model.prompting`, exactly as
`ask` lays them out); each answer is followed by the template's turn separator and the next user
turn (`sampling.prompt.ChatTemplate`: LongLLaVA's Jamba format, upstream
FreedomIntelligence/LongLLaVA:llava/conversation.py `conv_jambaInput`). A turn after answers
(q₁, a₁), (q₂, a₂) is the same token sequence as a one-shot `ask` with `history=((q₁, a₁),
(q₂, a₂))`, provided the answers re-tokenise to the ids generated: the session keeps each answer's
tokens as generated (what the model said), while `ask` encodes the history's text.

State: the engine's cache after the inputs is kept as a `ChunkedPrefill.mark` (attention lengths
and Mamba states, a few MB), not a copy of the KV cache; `reset` rewinds to it exactly. Turns
then grow the same cache: the conversation is bounded by the model's context
(`tokenizer_model_max_length`, else `max_position_embeddings`): a follow-up whose question and
longest answer (`max_new_tokens`) would pass it raises ConversationFullError and changes nothing.

Dimension letters: docs/glossary.md.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from model.api import ProgressCallback, SharedPrefill
from model.engine import generate
from model.errors import ConversationFullError
from model.longllava import LongLLaVA
from model.prompting import PlannedRequest, plan_chat, turn_ids
from model.request import ChatRequest
from model.results import Answer, InputInfo, describe_inputs
from model.shared_state import checked_shared_state
from sampling.prompt import IMAGE_SLOT, PromptError

__all__ = ["ChatSession", "ChatTurn", "ConversationFullError", "context_tokens", "open_chat"]


@dataclass(frozen=True)
class ChatTurn:
    """One answered question. conversation: how many resets came before it; turn: its number in
    its conversation (1, 2, ...); token_ids: the answer's tokens as generated (EOS excluded)."""

    conversation: int
    turn: int
    question: str
    answer: str
    token_ids: tuple[int, ...]
    finish_reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "conversation": self.conversation,
            "turn": self.turn,
            "question": self.question,
            "answer": self.answer,
            "tokens": len(self.token_ids),
            "finish_reason": self.finish_reason,
        }


def context_tokens(model: LongLLaVA) -> int:
    """The positions a conversation may reach: `tokenizer_model_max_length` (the length the model
    was trained with) when config.json states it, else `max_position_embeddings`."""
    return model.max_context_tokens or model.config.lm.max_position_embeddings


def open_chat(
    model: LongLLaVA,
    request: ChatRequest,
    *,
    on_progress: ProgressCallback | None = None,
    max_tokens: int | None = None,
) -> ChatSession:
    """Read, encode and prefill `request.inputs` once (as `ask` does, its checks included), or load
    that state from the state cache when `request.run.cache_dir` holds it (`model.shared_state`),
    and return the session that answers questions about them. max_tokens: bound the conversation
    below the model's context (`context_tokens`), e.g. to cap its memory."""
    planned = plan_chat(model, request)
    shared, cache = checked_shared_state(
        model, planned, request.run, max_new_tokens=request.generation.max_new_tokens, on_progress=on_progress
    )
    limit = context_tokens(model) if max_tokens is None else max_tokens
    return ChatSession(model, request, planned, shared, max_tokens=limit, cache=cache)


class ChatSession:
    """The state after the inputs and the conversation so far (see the module docstring).

    frames: each input and what was sampled from it; turns: every answered question since the
    session opened, resets included (`transcript`: the same as JSON-ready dicts); logits: the
    last-position logits [V] (float32) the latest answer was generated from; cache: "hit", "miss"
    or "off", how the state after the inputs was obtained."""

    def __init__(
        self,
        model: LongLLaVA,
        request: ChatRequest,
        planned: PlannedRequest,
        shared: SharedPrefill,
        *,
        max_tokens: int,
        cache: str = "off",
    ) -> None:
        self.model, self.request, self.plans = model, request, planned.plans
        self.frames: tuple[InputInfo, ...] = describe_inputs(
            planned.plans, shared.frames, planned.prompt.num_tokens_per_group
        )
        self.num_input_tokens = planned.num_shared_tokens
        self.max_tokens, self.cache = max_tokens, cache
        self.logits: torch.Tensor | None = None
        self.turns: list[ChatTurn] = []
        assert planned.prompt.tail is not None, "a chat plan has no question inside its inputs"
        self._tail = planned.prompt.tail
        self._prefill = shared.prefill
        self._start = self._prefill.mark()
        self._conversation = 0
        self._pending: tuple[int, ...] = ()  # answer tokens generated but not yet in the cache

    @property
    def history(self) -> tuple[tuple[str, str], ...]:
        """(question, answer) of each turn of the current conversation."""
        return tuple((t.question, t.answer) for t in self.turns if t.conversation == self._conversation)

    @property
    def num_tokens(self) -> int:
        """Positions the conversation holds: the inputs, the turns, the latest answer."""
        return self._prefill.cache.length + self._prefill.filled + len(self._pending)

    @property
    def transcript(self) -> list[dict[str, Any]]:
        return [t.to_dict() for t in self.turns]

    def ask(self, question: str, *, on_text: Callable[[str], None] | None = None) -> Answer:
        """Answer `question` after the conversation so far; on_text receives the answer's text as
        it is generated. Raises PromptError for an empty question or one with `<image>`, and
        ConversationFullError when the turn cannot fit (the session is then unchanged)."""
        if not question.strip():
            raise PromptError('a question is empty: ask something, e.g. "What happens in the video?"')
        if IMAGE_SLOT in question:
            raise PromptError(f"a chat puts the inputs before the first question; {IMAGE_SLOT} cannot place them")
        number = len(self.history) + 1
        ids = self._pending + turn_ids(question, self._tail, self.model.tokenizer.encode, follow_up=number > 1)
        self._check_room(len(ids))
        self._prefill.push(_embed(self.model, ids))
        self._pending = ()
        self.logits = self._prefill.finish()
        fed_before = self._prefill.cache.length
        out = generate(
            self.model.lm,
            self._prefill.cache,
            self.logits,
            decode=self.model.tokenizer.decode,
            eos_token_ids=self.model.eos_token_ids,
            options=self.request.generation,
            on_text=on_text,
        )
        # The last token is fed only when another follows it; the next turn feeds what was not.
        self._pending = out.token_ids[self._prefill.cache.length - fed_before :]
        answer = Answer(question, out.text.strip(), len(out.token_ids), out.finish_reason)
        self.turns.append(ChatTurn(self._conversation, number, question, answer.text, out.token_ids, out.finish_reason))
        return answer

    def reset(self) -> None:
        """Back to the state right after the inputs: the next question is a first question again
        and gets exactly the answer (and logits) it would have got as the first."""
        self._prefill.rewind(self._start)
        self._pending = ()
        self._conversation += 1

    def _check_room(self, num_new: int) -> None:
        needed = self.num_tokens + num_new + self.request.generation.max_new_tokens
        if self.history and needed > self.max_tokens:
            raise ConversationFullError(
                f"the conversation is full: it holds {self.num_tokens:,} of the model's {self.max_tokens:,} positions, "
                f"and this question with an answer of up to {self.request.generation.max_new_tokens} tokens needs "
                f"{needed - self.num_tokens:,} more; reset the conversation to go on"
            )


def _embed(model: LongLLaVA, ids: Sequence[int]) -> torch.Tensor:
    """Text embeddings [len(ids), e]."""
    return model.embed_tokens(torch.tensor([list(ids)], dtype=torch.long, device=model.device))[0]
