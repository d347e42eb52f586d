"""Input paths as the user gives them: arguments, or `-` for paths on stdin, one per line.

Everything here is a usage check (exit 2), done before any model loads:
- stdin must hold paths: empty or blank stdin is a usage error, and so is binary data (a NUL byte,
  or a "line" longer than any path can be: someone piped a video in). The bytes are never echoed.
- a URL is not a path: the tool reads local files only, so the user is told to download it first.
File names that are not UTF-8 are kept as the OS gives them (`os.fsdecode`'s surrogate escapes).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, BinaryIO, TextIO

from longllava_cli.clickcompat import UsageError

# Longest path Linux accepts (PATH_MAX); a longer line on stdin is not a path.
MAX_PATH_BYTES = 4096
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_READ_SIZE = 1 << 16


def read_stdin_paths(stream: TextIO | BinaryIO | None = None) -> list[str]:
    """Non-blank lines of `stream` (default: stdin) without their line endings; leading and trailing
    spaces are kept, as file names may have them. UsageError for no paths or for binary data."""
    stream = sys.stdin if stream is None else stream
    if stream is None:
        raise UsageError("'-' reads paths from stdin, but stdin is closed")
    raw = getattr(stream, "buffer", stream)
    data = _read_text_lines(raw)
    paths = [line.rstrip("\r") for line in data if line.strip()]
    if not paths:
        raise UsageError("'-' reads paths from stdin (one per line), but stdin held none")
    return paths


def _read_text_lines(stream: TextIO | BinaryIO) -> list[str]:
    """All lines, read in blocks so that binary data is refused at its first block."""
    chunks: list[bytes] = []
    line = 0  # bytes of the line being read so far
    while block := stream.read(_READ_SIZE):
        data = block.encode("utf-8", "surrogateescape") if isinstance(block, str) else block
        first, *rest = data.split(b"\n")
        lengths = [line + len(first), *map(len, rest)]
        if b"\0" in data or max(lengths) > MAX_PATH_BYTES:
            raise UsageError(
                "stdin holds binary data, not paths; give '-' a list of file paths, one per line "
                "(to ask about one file, pass its path as an argument)"
            )
        line = lengths[-1]
        chunks.append(data)
    return os.fsdecode(b"".join(chunks)).split("\n")


def expand_dash(args: Sequence[str], stdin: TextIO | BinaryIO | None = None) -> list[str]:
    """`args` with each `-` replaced by the paths on stdin (read once)."""
    paths: list[str] = []
    for arg in args:
        paths.extend(read_stdin_paths(stdin) if arg == "-" else [arg])
    return paths


def check_not_urls(paths: Sequence[str]) -> None:
    """UsageError for the first argument that is a URL and not a local file of that name."""
    for path in paths:
        if _URL.match(path) and not Path(path).exists():
            raise UsageError(
                f"{path}: a URL, not a local file; download it first (e.g. `yt-dlp URL` for a video page) "
                "and pass the file's path"
            )


def check_replaceable(
    path: Path, inputs: Sequence[str], *, what: str, example: str, ours: Callable[[Path], bool], shown: str = ""
) -> None:
    """OutputPathError unless `path` may be written as `what` ("contact sheet", "chat transcript"): not
    a folder, not one of `inputs` (by file identity), and absent or a file `ours` recognises as one
    longllava wrote. Creates its folder. shown: how to name `path` in the message."""
    from longllava_cli.failures import OutputPathError

    shown = shown or str(path)
    if path.is_dir():
        raise OutputPathError(f"{shown} is a folder; give the {what} a file name such as {example}")
    if path.exists() or path.is_symlink():
        if any(_same_file(path, Path(p)) for p in inputs):
            raise OutputPathError(f"{shown} is one of the inputs; write the {what} to another file")
        if not ours(path):
            raise OutputPathError(
                f"{shown} exists and is not a {what} written by longllava; remove it or choose another name"
            )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputPathError(f"{shown}: cannot create its folder ({e.strerror or e})") from e


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def replace_atomically(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write a new `path` through `write(file)` into a temporary file beside it, flushed to disk,
    then renamed over `path`: a reader sees the old file or the whole new one, never a part.
    The temporary file is removed if anything fails."""
    import contextlib
    import tempfile

    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
