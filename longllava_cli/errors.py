"""The one table from library errors to what the user sees: a one-line message and an exit code.

Exit codes (documented in the README):
  0    success
  1    runtime failure: bad media, bad checkpoint, model not downloaded, download failed (`pull`: no
       network, unknown or gated repo, disk full), request too long, out of memory, I/O error
  2    usage error (Click's: unknown option, bad value, conflicting options, bad config file)
  3    `caption` only: some inputs failed (their error records are in the output), others were written
  130  interrupted (Ctrl-C / SIGINT)
  141  stdout closed early (e.g. piped into `head`)

`report_errors()` wraps every command: an error becomes `error: <message> (hint: <fix>)` on
stderr, one line, no traceback; `LONGLLAVA_DEBUG=1` prints the traceback first. The classes are
matched with `isinstance` (`error_rules`, most specific first; every error the tool raises on
purpose derives from `sampling.errors.LongLLaVAError`); the library's classes are imported only
when an error is described, so `--help` stays instant. `exit_with_code()` wraps the whole run,
parsing included: Click's usage errors become one `error: ... (see 'longllava CMD --help')` line
with exit 2, and an interrupt at any moment (`interrupt.was_interrupted()`) exits 130, whatever it
broke on the way.
→ huggingface_hub `cli/_errors.py`, simonw/llm `llm/errors.py`.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import typer

from longllava_cli import interrupt
from longllava_cli.clickcompat import ClickException, UsageError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141

DEBUG_ENV = "LONGLLAVA_DEBUG"

_FEWER_FRAMES = "use fewer --frames (or a lower --fps / --max-frames), a smaller --chunk-tokens or --dtype bfloat16"
_CONVERSATION_FULL = "/reset starts again from the inputs; a lower --max-new-tokens leaves more room"
_OTHER_OUTPUT = "choose another --output: a new file, a results file to resume, or - for stdout"
_CHECKPOINT_FOLDER = (
    "--model takes a LongLLaVA checkpoint folder (config.json, *.safetensors, tokenizer.json) or a Hugging Face "
    "repo id ORG/NAME[@REVISION] downloaded with `longllava pull`"
)


@dataclass(frozen=True)
class ErrorRule:
    """How one error class is shown: its exit code and a hint appended to the message (may be empty)."""

    exit_code: int
    hint: str = ""


_OUT_OF_MEMORY = ErrorRule(EXIT_FAILURE, f"{_FEWER_FRAMES}; `longllava estimate` shows what fits")


def error_rules() -> list[tuple[type[BaseException], ErrorRule]]:
    """(class, rule) pairs, most specific first: the first class the error is an instance of wins.
    The library's classes are imported here, when an error is described, never at start-up."""
    from longllava_cli.failures import OutputPathError
    from longllava_cli.jsonl import ResultsFileError
    from model.errors import (
        CheckpointError,
        ContextTooLongError,
        ConversationFullError,
        DownloadError,
        MemoryBudgetError,
        ModelError,
        ModelNotDownloadedError,
    )
    from sampling.errors import InputError, LongLLaVAError

    return [
        (ResultsFileError, ErrorRule(EXIT_USAGE, _OTHER_OUTPUT)),
        (OutputPathError, ErrorRule(EXIT_USAGE)),
        (InputError, ErrorRule(EXIT_FAILURE)),
        (ModelNotDownloadedError, ErrorRule(EXIT_FAILURE)),  # the message names the `pull` to run
        (DownloadError, ErrorRule(EXIT_FAILURE)),
        (CheckpointError, ErrorRule(EXIT_FAILURE, _CHECKPOINT_FOLDER)),
        (ConversationFullError, ErrorRule(EXIT_FAILURE, _CONVERSATION_FULL)),
        (ContextTooLongError, ErrorRule(EXIT_FAILURE, _FEWER_FRAMES)),
        (MemoryBudgetError, _OUT_OF_MEMORY),
        (ModelError, ErrorRule(EXIT_FAILURE)),
        (LongLLaVAError, ErrorRule(EXIT_FAILURE)),
        (MemoryError, ErrorRule(EXIT_FAILURE, _FEWER_FRAMES)),
        (ValueError, ErrorRule(EXIT_FAILURE)),
        (OSError, ErrorRule(EXIT_FAILURE)),
    ]


_UNEXPECTED = ErrorRule(EXIT_FAILURE, f"this is a bug; rerun with {DEBUG_ENV}=1 and report the traceback")


def is_out_of_memory(error: BaseException) -> bool:
    """torch.OutOfMemoryError, or the older RuntimeError("CUDA out of memory ...") forms. torch's
    class is recognised by its name: the table must not import torch to describe an error."""
    if type(error).__name__ == "OutOfMemoryError":
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def describe_error(error: BaseException) -> tuple[str, int]:
    """(one-line message, exit code) for a library error; the message has no "error:" prefix
    (caption's error records hold it as is)."""
    message = " ".join(str(error).split()) or type(error).__name__
    if is_out_of_memory(error):
        rule = _OUT_OF_MEMORY
        message = message if "out of memory" in message.lower() else f"out of memory: {message}"
    else:
        rule = next((r for cls, r in error_rules() if isinstance(error, cls)), None)
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
        raise _interrupted() from None
    except BrokenPipeError:
        # The reader went away (`longllava ... | head`): quiet, and no second error at exit.
        _silence_stdout()
        raise typer.Exit(EXIT_BROKEN_PIPE) from None
    except Exception as error:
        if interrupt.was_interrupted():  # e.g. an import that Ctrl-C cut short, failing later
            raise _interrupted() from None
        _print_traceback()
        message, code = describe_error(error)
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise typer.Exit(code) from None


def _interrupted() -> typer.Exit:
    _print_traceback()
    interrupt.report()
    return typer.Exit(EXIT_INTERRUPTED)


def format_usage_error(error: ClickException) -> str:
    """Click's usage error as one line: the message and where the options are described."""
    message = " ".join(error.format_message().split())
    context = getattr(error, "ctx", None)
    if isinstance(error, UsageError) and context is not None:
        message += f" (see '{context.command_path} --help')"
    return f"error: {message}"


def exit_with_code(run: Callable[[], object]) -> NoReturn:
    """Run the whole CLI (`run` in Click's non-standalone mode) and exit with the documented code:
    usage errors as one line (exit 2), an interrupt during start-up or parsing as 130, a reader
    gone at any point as 141."""
    try:
        with report_errors():
            result = run()
    except typer.Exit as e:
        result = e.exit_code
    except ClickException as e:
        if type(e).__name__ == "NoArgsIsHelpError":  # `longllava ask` alone: the help, as Click shows it
            e.show()
        else:
            print(format_usage_error(e), file=sys.stderr, flush=True)
        result = e.exit_code
    except typer.Abort:
        print("error: aborted", file=sys.stderr, flush=True)
        result = EXIT_FAILURE
    if result == EXIT_INTERRUPTED and interrupt.was_interrupted():  # e.g. during parsing
        interrupt.report()
    sys.exit(result if isinstance(result, int) else EXIT_OK)


def _print_traceback() -> None:
    if debug_enabled():
        traceback.print_exc(file=sys.stderr)


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
