"""Conversations (`model.chat`): a chat of three turns equals one `ask` holding the first two
turns as history; `reset` returns exactly to the state after the inputs; the conversation is
bounded by the context, and a full one is refused without damage. The built-in demo model answers
in words that re-tokenise to the ids it generated, which the history comparison needs."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from model import load_model
from model.api import ask, plan_request, prefill_shared
from model.chat import ConversationFullError, open_chat
from model.demo import DEMO_MODEL_DIR
from model.prompting import conversation_ids
from model.request import AskRequest, ChatRequest, GenerationOptions, RunOptions
from sampling import SamplingOptions
from sampling.prompt import LONGLLAVA_TEMPLATE, PromptError

QUESTIONS = ("What happens?", "Describe the scene.", "How many frames are there?")
# The chat feeds each answer token in its own decode step, the one-shot ask prefills them in a
# chunk: the same sums in another order, so float32 logits agree to rounding, not bit for bit.
LOGITS_ATOL = 1e-4


def write_video(path: Path, num_frames: int, size: int = 32) -> Path:
    """Frame i: grey level 15·i, so every frame differs."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(num_frames):
            pixels = np.full((size, size, 3), (15 * i) % 256, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def demo():
    return load_model(DEMO_MODEL_DIR)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("chat") / "clip.mp4", 16)


def _request(clip, chunk_tokens=2048, max_new_tokens=24) -> ChatRequest:
    return ChatRequest(
        inputs=(str(clip),),
        sampling=SamplingOptions(num_frames=8),
        generation=GenerationOptions(max_new_tokens=max_new_tokens),
        run=RunOptions(chunk_tokens=chunk_tokens),
    )


def _one_shot_logits(model, request: AskRequest) -> torch.Tensor:
    """The last logits of `request`'s prompt, shared part and history prefilled in one stream."""
    planned = plan_request(model, request)
    shared = prefill_shared(model, planned, request.run, capacity=planned.num_tokens(1))
    shared.prefill.push(model.embed_tokens(torch.tensor([planned.suffixes[0]]))[0])
    return shared.prefill.finish()


@pytest.mark.parametrize("chunk_tokens", [7, 2048])
def test_three_turns_equal_one_ask_with_the_first_two_as_history(demo, clip, chunk_tokens):
    request = _request(clip, chunk_tokens)
    session = open_chat(demo, request)
    answers = [session.ask(q) for q in QUESTIONS]
    chat_logits = session.logits
    assert all(turn.token_ids for turn in session.turns)  # real answers, not empty ones
    for turn in session.turns[:2]:  # the history's text must stand for the same tokens
        assert demo.tokenizer.encode(turn.answer) == list(turn.token_ids)
    one_shot = request.ask_request(QUESTIONS[2], session.history[:2])
    assert one_shot.history == tuple(zip(QUESTIONS[:2], [a.text for a in answers[:2]], strict=True))
    torch.testing.assert_close(_one_shot_logits(demo, one_shot), chat_logits, atol=LOGITS_ATOL, rtol=0)
    (answer,) = ask(demo, one_shot).answers
    assert answer == answers[2]
    assert session.num_tokens == session.num_input_tokens + len(
        conversation_ids(session.history[:2], QUESTIONS[2], LONGLLAVA_TEMPLATE.suffix, demo.tokenizer.encode)
    ) + len(session.turns[2].token_ids)


def test_reset_returns_exactly_to_the_state_after_the_inputs(demo, clip):
    session = open_chat(demo, _request(clip, chunk_tokens=7))  # the mark holds buffered rows
    first = session.ask(QUESTIONS[0])
    first_logits = session.logits.clone()
    second = session.ask(QUESTIONS[1])
    second_logits = session.logits.clone()
    session.reset()
    assert session.num_tokens == session.num_input_tokens and session.history == ()
    assert session.ask(QUESTIONS[0]) == first
    assert torch.equal(session.logits, first_logits)
    assert session.ask(QUESTIONS[1]) == second
    assert torch.equal(session.logits, second_logits)
    # A fresh session (the inputs read again) agrees bit for bit with the rewound one.
    fresh = open_chat(demo, _request(clip, chunk_tokens=7))
    assert fresh.ask(QUESTIONS[0]) == first and torch.equal(fresh.logits, first_logits)
    assert [(t.conversation, t.turn) for t in session.turns] == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert session.transcript[2] == {
        "conversation": 1,
        "turn": 1,
        "question": QUESTIONS[0],
        "answer": first.text,
        "tokens": first.num_tokens,
        "finish_reason": first.finish_reason,
    }


def test_a_full_conversation_is_refused_unchanged_and_usable_after_reset(demo, clip):
    probe = open_chat(demo, _request(clip, max_new_tokens=8))
    probe.ask(QUESTIONS[0])
    room = probe.num_tokens + 8  # the first turn fits, no follow-up does
    session = open_chat(demo, _request(clip, max_new_tokens=8), max_tokens=room)
    first = session.ask(QUESTIONS[0])
    held = session.num_tokens
    with pytest.raises(ConversationFullError, match="conversation is full"):
        session.ask(QUESTIONS[1])
    assert session.num_tokens == held and len(session.turns) == 1
    session.reset()
    assert session.ask(QUESTIONS[0]) == first


def test_questions_a_chat_cannot_take(demo, clip):
    session = open_chat(demo, _request(clip))
    with pytest.raises(PromptError, match="empty"):
        session.ask("  ")
    with pytest.raises(PromptError, match="<image>"):
        session.ask("What is in <image>?")
    assert session.num_tokens == session.num_input_tokens


def test_history_is_laid_out_in_the_multi_turn_template():
    encode = lambda text: [ord(c) for c in text]  # one id per character: ids spell the text
    tail = LONGLLAVA_TEMPLATE.suffix
    ids = conversation_ids((("Q1", "A1"), ("Q2", "A2")), "Q3", tail, encode)
    assert "".join(map(chr, ids)) == (
        "Q1\n<|startoftext|><|Assistant|>\nA1"
        "\n<|startoftext|><|User|>\nQ2\n<|startoftext|><|Assistant|>\nA2"
        "\n<|startoftext|><|User|>\nQ3\n<|startoftext|><|Assistant|>\n"
    )
    assert conversation_ids((), "Q", tail, encode) == tuple(encode("Q" + tail))


def test_history_is_checked(demo, clip):
    with pytest.raises(ValueError, match="pairs"):
        AskRequest(questions="q", history=(("only a question",),))
    request = AskRequest(inputs=(str(clip),), questions="What is in <image>?", history=(("Q1", "A1"),))
    with pytest.raises(PromptError, match="earlier turns"):
        plan_request(demo, request)
