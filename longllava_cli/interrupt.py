"""Ctrl-C at any moment exits 130 with one line, start-up included.

Python turns SIGINT into KeyboardInterrupt wherever the main thread happens to be. During start-up
that is often inside an import (torch, PyAV), and a module whose import was cut short can fail
later with an ImportError or an AttributeError that has nothing to do with the user's input. So
the entry point installs this module's handler first thing: it records that the user interrupted,
then raises KeyboardInterrupt as Python's own handler does, and the error table treats any
failure after an interrupt as the interrupt (exit 130), never as a bug.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from typing import Any


class _State:
    interrupted = False
    reported = False


def _handle(signum: int, frame: Any) -> None:
    _State.interrupted = True
    raise KeyboardInterrupt


def install() -> None:
    """Make SIGINT recorded and raised (main thread only; elsewhere a no-op)."""
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, _handle)


def was_interrupted() -> bool:
    return _State.interrupted


def report() -> None:
    """Print `error: interrupted` on stderr, once per process."""
    if not _State.reported:
        _State.reported = True
        print("error: interrupted", file=sys.stderr, flush=True)


def clear() -> None:
    """Forget an interrupt that was handled (Ctrl-C at the chat prompt only clears the line)."""
    _State.interrupted = False
