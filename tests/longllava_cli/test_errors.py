"""Every documented error class ends in its exit code and one `error:` line on stderr, without a
traceback unless LONGLLAVA_DEBUG=1."""

from __future__ import annotations

import pytest

from longllava_cli.app import app
from longllava_cli.errors import describe_error, is_out_of_memory
from model.errors import CheckpointError, ContextTooLongError, MemoryBudgetError
from sampling import InputError


class OutOfMemoryError(RuntimeError):
    """Stands for torch.OutOfMemoryError (matched by name, as the real one)."""


CASES = [
    (InputError("clip.mp4: the video stream cannot be decoded; re-encode it"), 1, "re-encode it"),
    (CheckpointError("ckpt/config.json: missing config file"), 1, "checkpoint folder"),
    (ContextTooLongError("the prompt needs 50000 tokens"), 1, "fewer --frames"),
    (MemoryBudgetError("20000 tokens need 30 GiB"), 1, "longllava estimate"),
    (OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"), 1, "fewer --frames"),
    (RuntimeError("[enforce fail] DefaultCPUAllocator: can't allocate memory: out of memory"), 1, "fewer --frames"),
    (MemoryError(), 1, "fewer --frames"),
    (PermissionError(13, "Permission denied"), 1, "Permission denied"),
    (ZeroDivisionError("boom"), 1, "LONGLLAVA_DEBUG=1"),
]


@pytest.mark.parametrize(("error", "code", "text"), CASES, ids=[type(c[0]).__name__ for c in CASES])
def test_error_table(runner, fake, video, error, code, text):
    fake.fail = lambda path: error
    result = runner.invoke(app, ["ask", str(video), "q", "--model", "m"])
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert text in lines[0]
    assert "Traceback" not in result.output
    assert result.stdout == ""


def test_debug_shows_traceback(runner, fake, video):
    fake.fail = lambda path: InputError("clip.mp4: broken")
    result = runner.invoke(app, ["ask", str(video), "q", "--model", "m"], env={"LONGLLAVA_DEBUG": "1"})
    assert result.exit_code == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.strip().splitlines()[-1] == "error: clip.mp4: broken"


def test_keyboard_interrupt_exits_130(runner, fake, video):
    fake.fail = lambda path: KeyboardInterrupt()
    result = runner.invoke(app, ["ask", str(video), "q", "--model", "m"])
    assert result.exit_code == 130
    assert result.stderr.strip() == "error: interrupted"


def test_checkpoint_error_from_load(runner, video, tmp_path):
    result = runner.invoke(app, ["ask", str(video), "q", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "missing" in line


def test_unknown_option_is_usage_error(runner):
    result = runner.invoke(app, ["ask", "--nope"])
    assert result.exit_code == 2


def test_out_of_memory_detection():
    assert is_out_of_memory(OutOfMemoryError("x"))
    assert is_out_of_memory(RuntimeError("CUDA out of memory. Tried to allocate"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    message, code = describe_error(OutOfMemoryError("Tried to allocate 2 GiB"))
    assert message.startswith("out of memory: ") and code == 1
