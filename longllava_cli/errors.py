"""The one table from library errors to what the user sees: a one-line message and an exit code.

Exit codes (documented in the README):
  0    success
  1    runtime failure: bad media, bad checkpoint, request too long, out of memory, I/O error
  2    usage error (Click's: unknown option, bad value, conflicting options, bad config file)
  3    `caption` only: some inputs failed (their error records are in the output), others were written
  130  interrupted (Ctrl-C / SIGINT)
  141  stdout closed early (e.g. piped into `head`)

`report_errors()` wraps every command: an error becomes `error: <message> (hint: <fix>)` on
stderr, one line, no traceback; `LONGLLAVA_DEBUG=1` prints the traceback first. The classes are
matched by name along the exception's MRO so this module imports neither torch nor the library
(`--help` stays instant). → huggingface_hub `cli/_errors.py`, simonw/llm `llm/errors.py`.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import typer

from longllava_cli.clickcompat import ClickException

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

DEBUG_ENV = "LONGLLAVA_DEBUG"

_FEWER_FRAMES = "use fewer --frames (or a lower --fps / --max-frames), a smaller --chunk-tokens or --dtype bfloat16"


@dataclass(frozen=True)
class ErrorRule:
    """How one error class is shown: its exit code and a hint appended to the message (may be empty)."""

    exit_code: int
    hint: str = ""


# Most specific first: the first class name found in the exception's MRO wins.
ERROR_TABLE: dict[str, ErrorRule] = {
    "ResultsFileError": ErrorRule(
        EXIT_USAGE, "choose another --output: a new file, a results file to resume, or - for stdout"
    ),
    "InputError": ErrorRule(EXIT_FAILURE),
    "CheckpointError": ErrorRule(
        EXIT_FAILURE, "--model takes a LongLLaVA checkpoint folder (config.json, *.safetensors, tokenizer.json)"
    ),
    "ContextTooLongError": ErrorRule(EXIT_FAILURE, _FEWER_FRAMES),
    "MemoryBudgetError": ErrorRule(EXIT_FAILURE, f"{_FEWER_FRAMES}; `longllava estimate` shows what fits"),
    "OutOfMemoryError": ErrorRule(EXIT_FAILURE, f"{_FEWER_FRAMES}; `longllava estimate` shows what fits"),
    "ModelError": ErrorRule(EXIT_FAILURE),
    "MemoryError": ErrorRule(EXIT_FAILURE, _FEWER_FRAMES),
    "ValueError": ErrorRule(EXIT_FAILURE),
    "OSError": ErrorRule(EXIT_FAILURE),
}
_UNEXPECTED = ErrorRule(EXIT_FAILURE, f"this is a bug; rerun with {DEBUG_ENV}=1 and report the traceback")


def is_out_of_memory(error: BaseException) -> bool:
    """torch.OutOfMemoryError, or the older RuntimeError("CUDA out of memory ...") forms."""
    if type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def describe_error(error: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for a library error; the message has no "error:" prefix
    (caption's error records hold it as is)."""
    message = " ".join(str(error).split()) or type(error).__name__
    if is_out_of_memory(error):
        rule = ERROR_TABLE["OutOfMemoryError"]
        message = message if "out of memory" in message.lower() else f"out of memory: {message}"
    else:
        names = {cls.__name__ for cls in type(error).__mro__}
        rule = next((r for name, r in ERROR_TABLE.items() if name in names), None)
        if rule is None:
            rule, message = _UNEXPECTED, f"unexpected {type(error).__name__}: {message}"
    if rule.hint:
        message = f"{message} (hint: {rule.hint})"
    return message, rule.exit_code


def debug_enabled() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")


@contextmanager
def report_errors() -> Iterator[None]:
    """Turn errors escaping a command into a one-line message and exit code (Click's own
    exceptions, usage errors and `Exit`, pass through untouched)."""
    try:
        yield
    except (ClickException, typer.Exit, typer.Abort):
        raise
    except KeyboardInterrupt:
        _print_traceback()
        print("error: interrupted", file=sys.stderr, flush=True)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except BrokenPipeError:
        # The reader went away (`longllava ... | head`): quiet, and no second error at exit.
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except Exception as error:
        _print_traceback()
        message, code = describe_error(error)
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise typer.Exit(code) from None


def _print_traceback() -> None:
    if debug_enabled():
        traceback.print_exc(file=sys.stderr)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
