"""`longllava chat`'s call and write steps: load the model, read the inputs once
(`model.chat.open_chat`), then answer questions one line at a time, each after the conversation
so far.

- On a terminal (stdin a TTY): a `> ` prompt with line editing and history (readline), each
  answer streamed to stdout as it is generated, then a blank line. Ctrl-C at the prompt clears
  the line; Ctrl-D or `/exit` leaves (exit 0); Ctrl-C while answering stops the program (130).
- Piped: one question per line, blank lines skipped; one answer per line on stdout, with `\\`,
  newlines and carriage returns inside an answer written as `\\\\`, `\\n` and `\\r` (undo with
  `printf '%b'`), or with `--json` one JSON object per line: question, answer, tokens,
  finish_reason, turn, cache. A question that cannot be answered (the conversation is full, an
  `<image>` placeholder) prints one `error:` line on stderr and the next line is read, so a
  `/reset` line recovers; the exit status is then 1.

Lines starting with `/` are commands, in both modes: `/reset` (back to the state after the
inputs), `/frames` (what was sampled: the `frames` table; on stderr when piped, so stdout keeps
one line per answer), `/save FILE` (the transcript as JSON, `transcript.py`), `/help`, `/exit`.
Start a question with `//` to begin it with a `/`.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any

from longllava_cli import backend as library
from longllava_cli import interrupt
from longllava_cli.answer import SpinnerText
from longllava_cli.clickcompat import UsageError
from longllava_cli.errors import EXIT_FAILURE, EXIT_OK, describe_error
from longllava_cli.output import note, status, stderr_console, stdout_console, to_json, write_text

if TYPE_CHECKING:
    from model.chat import ChatSession
    from model.request import ChatRequest, ModelSpec

PROMPT = "> "
COMMANDS = "/reset (start again from the inputs), /frames (what was sampled), /save FILE (the transcript), /exit"


def run_chat(spec: ModelSpec, request: ChatRequest, *, json: bool) -> int:
    """Load, read the inputs, answer each line of stdin (module docstring); the exit code."""
    with status(f"loading {spec.path}"):
        loaded = library.load_model(spec)
    with status("reading the inputs") as update:
        session = library.open_chat(loaded, request, on_progress=SpinnerText(update, 1))
    interactive = sys.stdin is not None and sys.stdin.isatty()
    chat = Chat(session, str(spec.path), request.inputs, json=json, interactive=interactive)
    if interactive:
        note(f"{len(session.plans)} input(s) read, {session.num_input_tokens:,} tokens. Ask away; {COMMANDS}.")
    for line in prompt_lines() if interactive else piped_lines(sys.stdin):
        if not chat.handle(line):
            break
    return EXIT_FAILURE if chat.failed and not interactive else EXIT_OK


class Chat:
    """One line at a time: a question answered and written, or a command run."""

    def __init__(self, session: ChatSession, model: str, inputs: tuple[str, ...], *, json: bool, interactive: bool):
        self.session, self.model, self.inputs = session, model, inputs
        self.json, self.interactive = json, interactive
        self.failed = False

    def handle(self, line: str) -> bool:
        """Answer or run `line`; False when the conversation is over (`/exit`)."""
        text = line.strip()
        if not text:
            return True
        if text.startswith("/") and not text.startswith("//"):
            return self.command(text)
        self.answer(text.removeprefix("/") if text.startswith("//") else text)
        return True

    def answer(self, question: str) -> None:
        from model.chat import ConversationFullError
        from sampling.prompt import PromptError

        streamed = self.interactive and not self.json
        try:
            answer = self.session.ask(question, on_text=write_text if streamed else None)
        except (ConversationFullError, PromptError) as error:
            self.fail(error)
            return
        if self.json:
            turn = self.session.turns[-1]
            record = {"question": question, "answer": answer.text, "tokens": answer.num_tokens}
            record |= {"finish_reason": answer.finish_reason, "turn": turn.turn, "cache": self.session.cache}
            write_text(to_json(record) + "\n")
        elif streamed:
            write_text("\n\n")
        else:
            write_text(escape_line(answer.text) + "\n")

    def command(self, text: str) -> bool:
        name, _, argument = text.partition(" ")
        argument = argument.strip()
        if name == "/exit":
            return False
        if name == "/reset":
            self.session.reset()
            note("back to the state after the inputs: a new conversation")
        elif name == "/frames":
            self.show_frames()
        elif name == "/save" and argument:
            self.save(argument)
        elif name == "/help":
            print(f"commands: {COMMANDS}", file=sys.stderr, flush=True)
        else:
            usage = "/save takes a file name: /save chat.json" if name == "/save" else f"unknown command {name}"
            self.fail(UsageError(f"{usage}; commands: {COMMANDS}"))
        return True

    def show_frames(self) -> None:
        from longllava_cli.frames_table import describe_plans, print_plans

        description = describe_plans(self.session.plans, tokens_per_image=self.session.model.tokens_per_image)
        for item, info in zip(description["inputs"], self.session.frames, strict=True):
            item["num_tokens"] = info.num_tokens
        description["num_tokens"] = sum(info.num_tokens for info in self.session.frames)
        print_plans(description, console=stdout_console() if self.interactive else stderr_console())

    def save(self, name: str) -> None:
        import dataclasses
        from pathlib import Path

        from longllava_cli.failures import OutputPathError
        from longllava_cli.transcript import save_transcript, transcript_document

        path = Path(name).expanduser()
        inputs = [dataclasses.asdict(info) for info in self.session.frames]
        document = transcript_document(self.model, inputs, self.session.transcript)
        try:
            save_transcript(path, document, self.inputs)
        except (OutputPathError, OSError) as error:
            self.fail(error)
            return
        note(f"saved {len(self.session.turns)} turn(s) to {path}")

    def fail(self, error: BaseException) -> None:
        message = error.format_message() if isinstance(error, UsageError) else describe_error(error)[0]
        print(f"error: {message}", file=sys.stderr, flush=True)
        self.failed = True


def escape_line(text: str) -> str:
    """`text` on one line: backslash, newline and carriage return as `\\\\`, `\\n`, `\\r`."""
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def piped_lines(stream: IO[Any] | None) -> Iterator[str]:
    """The lines of `stream` (UTF-8, undecodable bytes replaced), without their line ends."""
    if stream is None:
        return
    for data in getattr(stream, "buffer", stream):
        data = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
        if b"\0" in data:
            raise UsageError("stdin holds binary data, not questions; give chat one question per line")
        yield data.decode("utf-8", "replace").rstrip("\r\n")


def prompt_lines() -> Iterator[str]:
    """Lines typed at a `> ` prompt with readline's editing and history, until Ctrl-D; Ctrl-C
    clears the line being typed."""
    with contextlib.suppress(ImportError):  # not on every platform; input() works without it
        import readline  # noqa: F401 -- loading it gives input() line editing and history
    while True:
        try:
            if sys.stdout.isatty():
                line = input(PROMPT)
            else:  # the prompt must not mix with answers written to a file or pipe
                print(PROMPT, end="", file=sys.stderr, flush=True)
                line = input()
        except EOFError:
            print(file=sys.stderr, flush=True)
            return
        except KeyboardInterrupt:
            interrupt.clear()
            print(file=sys.stderr, flush=True)
            continue
        yield line
