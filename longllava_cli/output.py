"""Where things are written: results to stdout (text, one JSON object), everything else to
stderr (status, progress, notes, warnings, logs), rich when stderr is a terminal and plain lines
otherwise.

Verbosity is one setting per process (`configure`): `-v` adds info logs, `-vv` debug logs (FFmpeg's
own lines among them), `--quiet` leaves errors alone on stderr (no notes, warnings, spinners or
progress). Results never depend on it.

stdout may be gone: closed before we started (`>&-`: `sys.stdout` is None), which `require_stdout`
reports before any work, or closed by its reader (`| head`), which surfaces as BrokenPipeError
(exit 141 in the error table), also from rich, whose own handler would exit 1.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger("longllava")
_WRITE_BLOCK = 1 << 14  # characters per write to stdout (see write_text)


class _Settings:
    verbose = 0
    quiet = False


def configure(*, verbose: int = 0, quiet: bool = False) -> None:
    """Set this process's verbosity (raised, never lowered: the group's `-v`/`-q` and a command's
    own combine) and route log records to stderr accordingly."""
    _Settings.verbose = max(_Settings.verbose, verbose)
    _Settings.quiet = _Settings.quiet or quiet
    setup_logging(_Settings.verbose, quiet=_Settings.quiet)


def reset() -> None:
    """Back to the defaults (each CLI invocation starts from them)."""
    _Settings.verbose, _Settings.quiet = 0, False


def is_quiet() -> bool:
    return _Settings.quiet


def require_stdout() -> None:
    """Fail before any work when there is no stdout to write results to."""
    if sys.stdout is None:
        from longllava_cli.failures import StdoutClosedError

        raise StdoutClosedError(
            "standard output is closed, so the results have nowhere to go; redirect it to a file or /dev/null"
        )


class _StdoutConsole(Console):
    """rich's Console, except that a reader going away raises BrokenPipeError (→ exit 141) instead
    of rich's own `SystemExit(1)`."""

    def on_broken_pipe(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def stdout_console() -> Console:
    require_stdout()
    return _StdoutConsole(highlight=False, soft_wrap=False)


def to_json(data: Any, *, indent: int | None = None) -> str:
    """JSON text; ASCII-escaped so any path or answer survives any terminal or file encoding."""
    return json.dumps(data, indent=indent, ensure_ascii=True, allow_nan=False)


def write_json(data: Any) -> None:
    """One JSON object on stdout."""
    write_text(to_json(data, indent=2) + "\n")


def write_text(text: str) -> None:
    """`text` on stdout, flushed. Written in blocks: when the reader goes away during one big
    write, the kernel reports the part it took as written and the rest is lost without an error;
    the next block's write then raises BrokenPipeError, as it must (exit 141)."""
    require_stdout()
    for start in range(0, len(text), _WRITE_BLOCK):
        sys.stdout.write(text[start : start + _WRITE_BLOCK])
        sys.stdout.flush()


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def setup_logging(verbose: int, *, quiet: bool = False) -> None:
    """Library logs to stderr: warnings by default, info with -v, debug with -vv, errors only when quiet."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    level = logging.ERROR if quiet else level
    handler: logging.Handler
    if stderr_is_tty():
        handler = RichHandler(console=stderr_console(), show_path=False, show_time=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def note(message: str) -> None:
    """One informational line on stderr (none when quiet)."""
    if not _Settings.quiet:
        print(message, file=sys.stderr, flush=True)


@contextmanager
def status(message: str) -> Iterator[Callable[[str], None]]:
    """A spinner on a terminal (gone when done); elsewhere an info log line, shown with -v, so
    scripts see nothing on stderr but errors and warnings. Yields `update(text)`, which replaces
    the spinner's text (a new stage: an info line off a terminal)."""
    if _Settings.quiet:
        yield lambda text: None
    elif stderr_is_tty():
        with stderr_console().status(message) as spinner:
            yield lambda text: spinner.update(text)
    else:
        log.info(message)
        yield lambda text: None


class ItemProgress:
    """Progress over a list of items on stderr: a rich bar with rate and ETA on a terminal, else
    one plain line per finished item (`[3/10] name: ok (1.2 s/item, ETA 0:00:08)`). `status`
    (e.g. workers alive) follows the ETA when set."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.description = total, description
        self.status = ""
        self.done = 0
        self.started = time.monotonic()
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> ItemProgress:
        if stderr_is_tty() and not _Settings.quiet:
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=stderr_console(),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, rate="", status=self.status)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def set_status(self, text: str) -> None:
        if text != self.status:
            self.status = text
            if self._bar is not None:
                self._bar.update(self._task, status=text)

    def advance(self, label: str, outcome: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        per_item = elapsed / self.done
        eta = timedelta(seconds=round(per_item * (self.total - self.done)))
        rate = f"{per_item:.1f} s/item" if per_item >= 1 else f"{1 / max(per_item, 1e-9):.1f} items/s"
        if self._bar is not None:
            self._bar.update(self._task, advance=1, rate=rate)
            if outcome != "ok":
                self._bar.console.print(f"{label}: {outcome}", markup=False, highlight=False)
        else:
            status = f"; {self.status}" if self.status else ""
            note(f"[{self.done}/{self.total}] {label}: {outcome} ({rate}, ETA {eta}{status})")


def format_size(num_bytes: int) -> str:
    """Bytes in binary units, as the rest of the CLI counts memory: "412 B", "3.2 KiB", "17.94 GiB"."""
    for unit, scale, digits in (("GiB", 2**30, 2), ("MiB", 2**20, 1), ("KiB", 2**10, 1)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.{digits}f} {unit}"
    return f"{num_bytes} B"
