"""`longllava chat`: the installed entry point fed questions on a pipe and on a pseudo-terminal,
and the line handling (commands, `/save`'s rules, one-line answers) in process, on the built-in
demo model and generated videos."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import select
import subprocess
import termios
import time
from pathlib import Path

import pytest

from longllava_cli.chat import Chat, escape_line, piped_lines
from longllava_cli.clickcompat import UsageError
from longllava_cli.transcript import TRANSCRIPT_FORMAT
from model.demo import DEMO_MODEL_DIR

FIELDS = {"question", "answer", "tokens", "finish_reason", "turn", "cache"}


def test_chat_builds_the_request_from_ask_options(runner, monkeypatch, video):
    from longllava_cli import chat
    from longllava_cli.app import app

    calls = []
    monkeypatch.setattr(chat, "run_chat", lambda spec, request, *, json: calls.append((spec, request, json)) or 0)
    args = ["chat", str(video), "--model", "ckpt", "--frames", "16", "--start", "1", "--max-new-tokens", "20"]
    result = runner.invoke(app, [*args, "--temperature", "0.5", "--seed", "3", "--chunk-tokens", "64", "--json"])
    assert result.exit_code == 0, result.output
    ((spec, request, json_lines),) = calls
    assert spec.path == Path("ckpt") and json_lines
    assert request.inputs == (str(video),)
    assert (request.sampling.num_frames, request.sampling.start) == (16, 1.0)
    g = request.generation
    assert (g.max_new_tokens, g.temperature, g.seed, request.run.chunk_tokens) == (20, 0.5, 3, 64)


def test_piped_json_one_object_per_answer_and_the_state_cache(run_cli, video):
    questions = "What happens?\n\nDescribe the scene.\n/reset\nWhat happens?\n"
    args = ("chat", str(video), "--frames", "8", "--model", str(DEMO_MODEL_DIR), "--json")
    runs = [run_cli(*args, input=questions) for _ in range(2)]  # the same state folder (conftest)
    assert all(result.returncode == 0 for result in runs), runs[0].stderr + runs[1].stderr
    first, again = ([json.loads(line) for line in result.stdout.splitlines()] for result in runs)
    assert [set(r) for r in first] == [FIELDS] * 3  # the blank line skipped, /reset answered nothing
    assert [(r["question"], r["turn"], r["cache"]) for r in first] == [
        ("What happens?", 1, "miss"),
        ("Describe the scene.", 2, "miss"),
        ("What happens?", 1, "miss"),
    ]
    assert first[2] == first[0]  # after /reset: the first turn again, exactly
    assert all(r["tokens"] >= 1 and r["finish_reason"] == "eos" for r in first)
    # The next chat on the same video starts from the saved state, and says the same.
    assert [r["cache"] for r in again] == ["hit"] * 3
    assert [{**r, "cache": "miss"} for r in again] == first
    off = run_cli(*args, "--no-cache", input="What happens?\n")
    assert off.returncode == 0 and json.loads(off.stdout) == {**first[0], "cache": "off"}


def test_chat_starts_from_the_state_an_ask_saved(run_cli, video):
    common = (str(video), "--frames", "8", "--model", str(DEMO_MODEL_DIR))
    asked = run_cli("ask", *common, "What happens?", "--json")
    chat = run_cli("chat", *common, "--json", input="What happens?\n")
    assert asked.returncode == chat.returncode == 0, asked.stderr + chat.stderr
    (answer,), record = json.loads(asked.stdout)["answers"], json.loads(chat.stdout)
    assert json.loads(asked.stdout)["cache"] == "miss" and record["cache"] == "hit"
    assert record["answer"] == answer["text"]


def test_piped_text_one_line_per_answer_and_a_full_conversation(run_cli, video):
    # 16,300 new tokens fit the demo model's 16,384 positions once: no follow-up fits.
    args = ("chat", str(video), "--frames", "8", "--model", str(DEMO_MODEL_DIR), "--max-new-tokens", "16300")
    result = run_cli(*args, input="What happens?\nDescribe the scene.\n/reset\nWhat happens?\n")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and lines[0] == lines[1] and lines[0].strip()
    (error,) = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith("error: the conversation is full") and "/reset" in error


def test_chat_refuses_stdin_paths_and_binary_questions(run_cli, video):
    refused = run_cli("chat", "-", input=f"{video}\n")
    assert refused.returncode == 2 and "reads its questions from stdin" in refused.stderr
    assert list(piped_lines(io.BytesIO("Où ?\r\n\nWhy?".encode()))) == ["Où ?", "", "Why?"]
    with pytest.raises(UsageError, match="binary data"):
        list(piped_lines(io.BytesIO(b"a\0b\n")))


def test_terminal_prompt_streams_clears_on_ctrl_c_and_leaves_on_ctrl_d(longllava_exe, video, tmp_path):
    """On a pseudo-terminal that is the process's controlling terminal, as in a shell."""
    master, slave = pty.openpty()

    def own_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    env = {**os.environ, "TERM": "dumb", "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "XDG_CACHE_HOME": str(tmp_path)}
    args = [longllava_exe, "-q", "chat", str(video), "--frames", "8", "--model", str(DEMO_MODEL_DIR)]
    process = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, cwd=tmp_path,
                               preexec_fn=own_terminal)  # fmt: skip
    os.close(slave)
    screen = _Screen(master)
    try:
        screen.wait_for(b"> ")
        os.write(master, b"What happens?\r")
        answer = screen.wait_for(b"\r\n\r\n> ").split(b"What happens?\r\n")[-1].split(b"\r\n")[0]
        assert answer.strip()
        # As a person would, not in the instant between the prompt and readline's wait for keys: a
        # SIGINT there is only noticed at the next key (CPython's readline waits in select() with no
        # timeout, so the signal's flag is set but nothing wakes it).
        time.sleep(0.5)
        os.write(master, b"typed, then Ctrl-C\x03")  # clears the line: no answer (the transcript shows), a new prompt
        screen.wait_for(b"> ")
        os.write(master, b"/save chat.json\r")
        screen.wait_for(b"> ")
        os.write(master, b"\x04")
        assert process.wait(timeout=120) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(master)
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert saved["format"] == TRANSCRIPT_FORMAT and [t["question"] for t in saved["turns"]] == ["What happens?"]
    assert saved["turns"][0]["answer"] == answer.decode().strip()


class _Screen:
    """What a pseudo-terminal's program wrote, read until an expected ending."""

    def __init__(self, fd: int) -> None:
        self.fd, self.seen = fd, b""

    def wait_for(self, ending: bytes, timeout: float = 120) -> bytes:
        self.seen, deadline = b"", time.monotonic() + timeout
        while not self.seen.endswith(ending):
            assert time.monotonic() < deadline, f"no {ending!r} on the terminal; it shows {self.seen!r}"
            if select.select([self.fd], [], [], 0.2)[0]:
                self.seen += os.read(self.fd, 4096)
        return self.seen


# --- the line handling, in process ---------------------------------------------------------------


@pytest.fixture
def session(video):
    from model import load_model
    from model.chat import open_chat
    from model.request import ChatRequest, GenerationOptions
    from sampling import SamplingOptions

    request = ChatRequest(
        inputs=(str(video),), sampling=SamplingOptions(num_frames=4), generation=GenerationOptions(max_new_tokens=8)
    )
    return open_chat(load_model(DEMO_MODEL_DIR), request)


def _chat(session, **mode) -> Chat:
    session.reset()
    return Chat(session, "demo", session.request.inputs, **({"json": False, "interactive": False} | mode))


def test_save_writes_a_transcript_and_replaces_only_its_own(session, tmp_path, capsys):
    chat = _chat(session)
    assert chat.handle("What happens?") and chat.handle("//slash first")
    assert session.turns[-1].question == "/slash first"
    target = tmp_path / "out" / "chat.json"
    chat.handle(f"/save {target}")
    first = json.loads(target.read_text())
    assert first["format"] == TRANSCRIPT_FORMAT and first["inputs"][0]["kind"] == "video"
    assert first["turns"][-2:] == session.transcript[-2:]
    chat.handle("Describe the scene.")
    chat.handle(f"/save {target}")  # its own transcript: replaced
    assert json.loads(target.read_text())["turns"] == session.transcript
    assert not chat.failed
    notes = tmp_path / "notes.json"
    notes.write_text('{"mine": true}\n')
    for name in (notes, tmp_path, session.request.inputs[0]):
        chat.handle(f"/save {name}")
    assert notes.read_text() == '{"mine": true}\n' and chat.failed
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 3
    assert "not a chat transcript written by longllava" in errors[0] and "folder" in errors[1]
    assert "one of the inputs" in errors[2]


def test_commands_and_one_line_answers(session, capsys):
    chat = _chat(session)
    assert chat.handle("   ") and chat.handle("What happens?")
    answer = capsys.readouterr().out
    assert answer == escape_line(session.turns[-1].answer) + "\n"
    chat.handle("/frames")  # piped: the table goes to stderr, stdout keeps one line per answer
    shown = capsys.readouterr()
    assert shown.out == "" and "LM tokens" in shown.err and "video" in shown.err
    for line in ("/save", "/nope", "What is in <image>?"):
        chat.handle(line)
    errors = capsys.readouterr().err.strip().splitlines()
    assert [e.split()[1] for e in errors] == ["/save", "unknown", "a"] and chat.failed
    assert chat.handle("/exit") is False


def test_escape_line_keeps_an_answer_on_one_line():
    text = "two\nlines \\n and a\r\n"
    assert escape_line(text) == "two\\nlines \\\\n and a\\r\\n"
    assert "\n" not in escape_line(text)
    assert escape_line(text).encode().decode("unicode_escape") == text
