"""Typed errors of the sampling package, and the base class of every error longllava raises.

`LongLLaVAError` is the one base: the model package's errors, the sampling package's and the
CLI's own derive from it (sampling is the package every other one may import), so a caller can
catch everything the tool raises on purpose in one clause, and the CLI's error table matches
classes with `isinstance`.

`InputError` is the one error users see: a one-line message that names the file, says what is
wrong with it and what to do, chained (`raise ... from e`) to the library error behind it.
`BackendError` never leaves the package: a reader raises it to say "not this file, try the next
backend", and `readers.read_video_frames` turns an exhausted fallback chain into an `InputError`.

Warnings say what a plan leaves out or changes, one line each, naming the file: `SamplingNotice`
for what the options imply (128 of 300 images taken, a rate capped, a picture scaled to fit its
tiles), `DamagedMediaWarning` for media used only in part because the rest does not decode.
"""

from __future__ import annotations

import os
from pathlib import Path


class LongLLaVAError(Exception):
    """An error longllava raises on purpose: a one-line message naming what is wrong (the file, the
    option, the limit) and what to do. Subclasses say which kind."""


class InputError(LongLLaVAError):
    """A path given to sampling is missing, unreadable, not media, or asks for the impossible."""


class SamplingNotice(UserWarning):
    """Informational: the plan takes less than the input holds, or changes it, as the options ask."""


class DamagedMediaWarning(SamplingNotice):
    """A damaged or truncated file is used as far as it decodes."""


class BackendError(LongLLaVAError):
    """A video backend cannot serve this file (internal: triggers the fallback to the next one)."""


def display_path(path: str | os.PathLike[str]) -> str:
    """The path as printable text. File names that are not UTF-8 arrive from `os.listdir` with
    surrogate escapes, which would make `print` itself raise; show their raw bytes as `\\xNN`."""
    raw = os.fsencode(Path(path))
    return raw.decode("utf-8", errors="backslashreplace")
