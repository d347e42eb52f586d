"""Where things are written: results to stdout (text, one JSON object), everything else to
stderr (status, progress, logs), rich when stderr is a terminal and plain lines otherwise."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

log = logging.getLogger("longllava")


def to_json(data: Any, *, indent: int | None = None) -> str:
    """JSON text; ASCII-escaped so any path or answer survives any terminal or file encoding."""
    return json.dumps(data, indent=indent, ensure_ascii=True, allow_nan=False)


def write_json(data: Any) -> None:
    """One JSON object on stdout."""
    sys.stdout.write(to_json(data, indent=2) + "\n")
    sys.stdout.flush()


def write_text(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def stderr_is_tty() -> bool:
    return sys.stderr.isatty()


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False)


def setup_logging(verbose: int) -> None:
    """Library logs to stderr: warnings by default, info with -v, debug with -vv."""
    level = logging.WARNING if verbose <= 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler: logging.Handler
    if stderr_is_tty():
        handler = RichHandler(console=stderr_console(), show_path=False, show_time=False)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def note(message: str) -> None:
    """One informational line on stderr."""
    print(message, file=sys.stderr, flush=True)


@contextmanager
def status(message: str) -> Iterator[None]:
    """A spinner on a terminal (gone when done); elsewhere an info log line, shown with -v, so
    scripts see nothing on stderr but errors and warnings."""
    if stderr_is_tty():
        with stderr_console().status(message):
            yield
    else:
        log.info(message)
        yield


class ItemProgress:
    """Progress over a list of items on stderr: a rich bar with rate and ETA on a terminal, else
    one plain line per finished item (`[3/10] name: ok (1.2 s/item, ETA 0:00:08)`)."""

    def __init__(self, total: int, description: str) -> None:
        self.total, self.description = total, description
        self.done = 0
        self.started = time.monotonic()
        self._bar: Progress | None = None
        self._task = None

    def __enter__(self) -> ItemProgress:
        if stderr_is_tty():
            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=stderr_console(),
                transient=False,
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(self.description, total=self.total, rate="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def advance(self, label: str, outcome: str) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        per_item = elapsed / self.done
        eta = timedelta(seconds=round(per_item * (self.total - self.done)))
        rate = f"{per_item:.1f} s/item" if per_item >= 1 else f"{1 / max(per_item, 1e-9):.1f} items/s"
        if self._bar is not None:
            self._bar.update(self._task, advance=1, rate=rate)
            if outcome != "ok":
                self._bar.console.print(f"{label}: {outcome}")
        else:
            note(f"[{self.done}/{self.total}] {label}: {outcome} ({rate}, ETA {eta})")
