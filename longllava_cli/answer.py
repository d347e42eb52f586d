"""`ask`'s call and write steps: load the model, answer the request, write the answers to stdout
as text, streamed text, or one JSON object; a spinner on stderr says the stage and a count."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from longllava_cli import backend as library
from longllava_cli.output import status, write_json, write_text

if TYPE_CHECKING:
    from model.request import AskRequest, ModelSpec
    from model.results import AskResult


def answer(spec: ModelSpec, request: AskRequest, *, json: bool, stream: bool) -> None:
    """Load, answer, write (see the module docstring)."""
    with status(f"loading {spec.path}"):
        loaded = library.load_model(spec)
    streamer = AnswerStreamer(request.questions) if stream else None
    with status("reading the inputs") if streamer is None else contextlib.nullcontext() as update:
        progress = SpinnerText(update, len(request.questions)) if update is not None else None
        result = library.ask(loaded, request, on_text=streamer, on_progress=progress)
    write_result(result, spec, json=json, streamer=streamer)


def write_result(result: AskResult, spec: ModelSpec, *, json: bool, streamer: AnswerStreamer | None) -> None:
    if json:
        write_json({"model": str(spec.path), **result.to_dict()})
    elif streamer is not None:
        streamer.finish()
    else:
        write_text(format_answers([(a.question, a.text) for a in result.answers]))


def format_answers(answers: list[tuple[str, str]]) -> str:
    """One question: the answer alone. Several: each under a `Q: question` line, blank-separated."""
    if len(answers) == 1:
        return answers[0][1] + "\n"
    return "\n".join(f"Q: {q}\n{a}\n" for q, a in answers)


class SpinnerText:
    """`on_progress` for the spinner: the stage and a count, e.g. "vision 312/1000 frames"."""

    def __init__(self, update: Callable[[str], None], num_questions: int) -> None:
        self.update, self.num_questions = update, num_questions

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage == "vision":
            self.update(f"vision {done}/{total} frames")
        elif stage == "state":
            self.update("looking up the saved state")
        elif stage == "answer":
            self.update("answering" if self.num_questions == 1 else f"answering {done + 1}/{total}")
        else:
            self.update(stage)


class AnswerStreamer:
    """`on_text` for --stream: pieces to stdout as they come, a `Q:` header per question when several."""

    def __init__(self, questions: tuple[str, ...]) -> None:
        self.questions = questions
        self.current: int | None = None

    def __call__(self, number: int, text: str) -> None:
        self._start(number)
        write_text(text)

    def _start(self, number: int) -> None:
        if self.current == number:
            return
        if self.current is not None:
            write_text("\n\n" if len(self.questions) > 1 else "\n")
        self.current = number
        if len(self.questions) > 1:
            write_text(f"Q: {self.questions[number]}\n")

    def finish(self) -> None:
        if self.current is not None:
            write_text("\n")
