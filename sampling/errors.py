"""Typed errors of the sampling package.

`InputError` is the one error users see: a one-line message that names the file, says what is
wrong with it and what to do, chained (`raise ... from e`) to the library error behind it.
`BackendError` never leaves the package: a reader raises it to say "not this file, try the next
backend", and `readers.read_video_frames` turns an exhausted fallback chain into an `InputError`.
"""

from __future__ import annotations

import os
from pathlib import Path


class InputError(Exception):
    """A path given to sampling is missing, unreadable, not media, or asks for the impossible."""


class BackendError(Exception):
    """A video backend cannot serve this file (internal: triggers the fallback to the next one)."""


def display_path(path: str | os.PathLike[str]) -> str:
    """The path as printable text. File names that are not UTF-8 arrive from `os.listdir` with
    surrogate escapes, which would make `print` itself raise; show their raw bytes as `\\xNN`."""
    raw = os.fsencode(Path(path))
    return raw.decode("utf-8", errors="backslashreplace")
