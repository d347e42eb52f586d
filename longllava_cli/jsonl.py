"""A resumable JSON Lines results file: one record per input, never torn, never duplicated.

    with ResultsFile("captions.jsonl", key="path") as results:
        for path in inputs:
            if path not in results.done:
                results.append({"path": path, "caption": ...})

Guarantees (usable without the CLI):
- Each record is one line written by a single `write()` of the whole line and its newline on a
  file opened with O_APPEND, then fsync'ed: a crash loses at most the line being written.
- On open, a torn last line (no trailing newline: the process was killed during the write) is
  truncated away, and so is any complete line that is not a JSON object.
- Records `keep(record)` rejects (by default: error records, so failed inputs are retried) and
  repeated keys are dropped on open by an atomic rewrite (temporary file, fsync, rename), so the
  file ends with exactly one line per key. `done` holds the keys kept.
- An exclusive `flock` keeps a second writer off the same file while it is open.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

Record = dict[str, Any]


def is_success(record: Record) -> bool:
    """A record that does not need redoing: anything without an "error" field."""
    return "error" not in record


def encode_record(record: Record) -> bytes:
    """One line: compact JSON (ASCII, so no encoding can split it) and a newline."""
    return (json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":")) + "\n").encode("ascii")


def repair_torn_tail(path: str | os.PathLike[str]) -> int:
    """Truncate `path` after its last newline; returns the bytes removed (0 if none or no file)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        size = os.fstat(fd).st_size
        end = size
        block = 1 << 16
        while end > 0:
            start = max(0, end - block)
            chunk = os.pread(fd, end - start, start)
            newline = chunk.rfind(b"\n")
            if newline >= 0:
                end = start + newline + 1
                break
            end = start
        if end < size:
            os.ftruncate(fd, end)
            os.fsync(fd)
        return size - end
    finally:
        os.close(fd)


def read_records(path: str | os.PathLike[str]) -> tuple[list[Record], int]:
    """The JSON-object lines of `path` in order, and how many lines were not JSON objects."""
    records: list[Record] = []
    bad = 0
    try:
        with open(path, "rb") as f:
            for raw in f:
                line = raw.strip()
                if not line:
                    continue
                try:
                    value = json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    bad += 1
                    continue
                if isinstance(value, dict):
                    records.append(value)
                else:
                    bad += 1
    except FileNotFoundError:
        pass
    return records, bad


def rewrite_records(path: Path, records: list[Record]) -> None:
    """Replace `path` by exactly `records`, atomically (a crash leaves the old or the new file)."""
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.writelines(encode_record(r) for r in records)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(path.parent)


class OutputLockedError(OSError):
    """Another process holds the results file."""


class ResultsFile:
    """An open results file (see the module docstring). `key` names the field identifying an input."""

    def __init__(self, path: str | os.PathLike[str], *, key: str = "path", keep: Callable[[Record], bool] = is_success):
        self.path = Path(path)
        self.key = key
        self.keep = keep
        self.done: set[str] = set()
        self.failed: set[str] = set()  # keys whose latest record (kept or just written) is an error
        self.num_dropped = 0  # records dropped on open (retried errors, duplicates, garbage)
        self._fd: int | None = None

    def open(self) -> ResultsFile:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            self.close()
            raise OutputLockedError(
                f"{self.path}: another process is writing this file; give each run its own output"
            ) from e
        torn = repair_torn_tail(self.path)
        if torn:
            log.warning("%s: removed a torn last line (%d bytes) left by an interrupted run", self.path, torn)
        records, bad = read_records(self.path)
        kept: dict[str, Record] = {}
        for record in records:
            name = record.get(self.key)
            if isinstance(name, str) and self.keep(record) and name not in kept:
                kept[name] = record
        self.num_dropped = len(records) + bad - len(kept)
        if self.num_dropped:
            # Keep the file in step with `done`: exactly one line per finished input.
            rewrite_records(self.path, list(kept.values()))
            self._reopen_locked()
        self.done = set(kept)
        self.failed = {name for name, record in kept.items() if not is_success(record)}
        return self

    def append(self, record: Record) -> None:
        """Write one record durably: a single write of the full line, then fsync."""
        if self._fd is None:
            raise ValueError(f"{self.path} is not open")
        data = encode_record(record)
        written = 0
        while written < len(data):  # regular files write whole; a short write would still finish here
            written += os.write(self._fd, data[written:])
        os.fsync(self._fd)
        name = record.get(self.key)
        if not isinstance(name, str):
            return
        if self.keep(record):
            self.done.add(name)
        if is_success(record):
            self.failed.discard(name)
        else:
            self.failed.add(name)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also releases the lock
            self._fd = None

    def __enter__(self) -> ResultsFile:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reopen_locked(self) -> None:
        """After the atomic rewrite the path names a new file: lock that one, then let go of the old."""
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        fcntl.flock(fd, fcntl.LOCK_EX)
        old, self._fd = self._fd, fd
        if old is not None:
            os.close(old)


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
