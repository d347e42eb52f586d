"""A resumable JSON Lines results file: one record per input, never torn, never duplicated, and
never a file it did not write.

    with ResultsFile("captions.jsonl", key="path") as results:
        for path in inputs:
            if normalise_path(path) not in results.done:
                results.append({"path": path, "caption": ...})

Guarantees (usable without the CLI):
- Only a results file is touched. FILE may be missing, empty, or a regular file whose first
  lines are mostly JSON objects with a string `key` (`check_results_path`; a few damaged lines
  are fine). Anything else (a video, a CSV, a folder, a FIFO, a terminal, /dev/zero) raises
  ResultsFileError before anything is created, opened for writing or changed. Special files are
  never opened in a way that blocks. A symlink is followed: its target is the results file, and
  the link stays a link.
- One writer at a time: an exclusive `flock` on the side file `FILE.lock` (next to the target;
  created once and left in place, since removing it would let two writers lock two different
  files), held from `open` to `close`. Everything below (repair, rewrite, appends) happens under
  it; a second writer gets OutputLockedError.
- Each record is one line written by a single `write()` of the whole line and its newline on a
  file opened with O_APPEND, then fsync'ed: a crash loses at most the line being written. A
  failed write (ENOSPC, EIO, ...) truncates the file back to its last whole line and raises
  ResultsWriteError.
- On open, a torn last line (no trailing newline: the process was killed during the write) is
  truncated away. Lines that cannot be read (not a JSON object with a string `key`) are never
  dropped: they are appended to `FILE.rejected`, with one warning.
- Records `keep(record)` rejects (by default: error records, so failed inputs are retried) and
  repeated keys (the first record wins) are dropped on open by an atomic rewrite (temporary file
  next to the target with the target's mode, fsync, rename); a temporary left behind by a kill
  during an earlier rewrite is removed. After `open` the file holds exactly one line per key.
- Keys are compared by `normalise(key)` (default `normalise_path`: `./a.mp4`, `a.mp4` and
  `dir//a.mp4` are one key); `done` and `failed` hold normalised keys.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePath
from typing import Any, Protocol, TextIO

from sampling.errors import LongLLaVAError

log = logging.getLogger(__name__)

Record = dict[str, Any]

HEAD_BYTES = 1 << 20  # how much of an existing file `check_results_path` reads: a huge video costs no more
HEAD_LINES = 100


class ResultsFileError(LongLLaVAError, ValueError):
    """This path cannot be a results file (it exists and is not one, is special, or is an input);
    nothing was changed."""


class OutputLockedError(LongLLaVAError, OSError):
    """Another process holds the results file."""


class ResultsWriteError(LongLLaVAError, OSError):
    """A record could not be written (disk full, I/O error); the file ends at its last whole line."""


def is_success(record: Record) -> bool:
    """A record that does not need redoing: anything without an "error" field."""
    return "error" not in record


def normalise_path(path: str) -> str:
    """The lexical normal form of a path: `./a.mp4`, `dir//a.mp4`, `dir/./a.mp4` → `a.mp4`,
    `dir/a.mp4`. Relative stays relative; `..` and symlinks are kept as they are (`link/..` need
    not be `.`), like pathlib."""
    return str(PurePath(path))


def encode_record(record: Record) -> bytes:
    """One line: compact JSON (ASCII, so no encoding can split it) and a newline."""
    return (json.dumps(record, ensure_ascii=True, allow_nan=False, separators=(",", ":")) + "\n").encode("ascii")


def parse_record(line: bytes, key: str = "path") -> Record | None:
    """The record on one line (without its newline), or None when it is not a JSON object with a
    string `key` (or holds NaN/Infinity, which `encode_record` could not write back)."""
    value = parse_object(line)
    return value if value is not None and isinstance(value.get(key), str) else None


def parse_object(line: bytes) -> Record | None:
    """The JSON object on one line, or None (not JSON, not an object, NaN/Infinity inside)."""
    try:
        value = json.loads(line, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return value if isinstance(value, dict) else None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def looks_like_results(head: bytes, key: str = "path") -> bool:
    """Whether the first bytes of a non-empty file are those of a results file: most of its first
    complete lines are records (so a few damaged lines do not matter), or, with no complete line
    yet (a torn only line, or one record longer than `head`), it starts as a record does."""
    end = head.rfind(b"\n")
    if end < 0:
        return re.match(rb'\s*\{\s*"' + re.escape(json.dumps(key)[1:-1].encode()) + rb'"\s*:', head) is not None
    lines = [line for line in head[:end].split(b"\n") if line.strip()][:HEAD_LINES]
    if not lines:  # only blank lines: nothing there to lose
        return True
    records = sum(parse_record(line, key) is not None for line in lines)
    return records > 0 and 2 * records >= len(lines)


def check_results_path(path: str | os.PathLike[str], *, key: str = "path") -> Path:
    """The file (symlinks followed) that results for `path` go to; ResultsFileError unless it is
    missing, empty or a results file (`looks_like_results` on its first HEAD_BYTES). Changes nothing."""
    try:
        info = os.stat(path)  # before realpath, which cannot follow /dev/stdout to a pipe
    except FileNotFoundError:
        return Path(os.path.realpath(path))
    except OSError as e:
        raise ResultsFileError(f"{path}: cannot be used as a results file ({e.strerror})") from e
    if not stat.S_ISREG(info.st_mode):
        raise ResultsFileError(_special_file_message(path, info.st_mode))
    target = Path(os.path.realpath(path))
    if info.st_size:
        fd = open_regular(target, os.O_RDONLY, display=path)
        try:  # the file read, not the one stat saw: a writer's rewrite may have replaced it since
            head = os.pread(fd, HEAD_BYTES, 0)
        finally:
            os.close(fd)
        if head and not looks_like_results(head, key):
            raise ResultsFileError(
                f'{path} exists and is not a longllava results file (JSON Lines with a "{key}" per record)'
            )
    return target


def open_regular(path: str | os.PathLike[str], flags: int, mode: int = 0o644, *, display: object = None) -> int:
    """`os.open` that never blocks on a FIFO or device and returns only a regular file's fd
    (ResultsFileError otherwise): open non-blocking, then check what was opened with fstat."""
    display = path if display is None else display
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as e:
        if e.errno == getattr(os, "ENXIO", 6):  # a FIFO with no reader, opened for writing
            raise ResultsFileError(_special_file_message(display, stat.S_IFIFO)) from e
        raise
    try:
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            raise ResultsFileError(_special_file_message(display, kind))
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _special_file_message(path: object, mode: int) -> str:
    kinds = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a pipe", stat.S_IFCHR: "a device", stat.S_IFSOCK: "a socket"}
    kind = kinds.get(stat.S_IFMT(mode), "a special file")
    return f"{path} is {kind}, not a regular file: it cannot hold results"


def repair_torn_tail(path: str | os.PathLike[str]) -> int:
    """Truncate `path` after its last newline; returns the bytes removed (0 if none or no file)."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        return _truncate_torn_tail(fd)
    finally:
        os.close(fd)


def _truncate_torn_tail(fd: int) -> int:
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


def _lines(fd: int) -> Iterator[bytes]:
    """The non-blank lines of an open file, from its start, without their newlines."""
    with os.fdopen(os.dup(fd), "rb") as f:
        f.seek(0)
        for raw in f:
            if raw.strip():
                yield raw.rstrip(b"\n")


def read_records(path: str | os.PathLike[str], key: str | None = None) -> tuple[list[Record], int]:
    """The JSON-object lines of `path` in order (with `key`: those with a string `key`), and how
    many non-blank lines were not."""
    records: list[Record] = []
    bad = 0
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return records, bad
    try:
        for line in _lines(fd):
            record = parse_record(line, key) if key else parse_object(line)
            if record is None:
                bad += 1
            else:
                records.append(record)
    finally:
        os.close(fd)
    return records, bad


def rewrite_records(path: str | os.PathLike[str], records: list[Record]) -> None:
    """Replace the file `path` names (symlinks followed) by exactly `records`, atomically (a crash
    leaves the old or the new file), keeping its mode (and owner where allowed)."""
    target = Path(os.path.realpath(path))
    info = os.stat(target)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), stat.S_IMODE(info.st_mode))
            with contextlib.suppress(OSError):  # another owner's file: we keep at least the mode
                os.fchown(f.fileno(), info.st_uid, info.st_gid)
            f.writelines(encode_record(r) for r in records)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(target.parent)


def remove_stale_temporaries(target: Path) -> int:
    """Remove the temporaries `rewrite_records(target)` names (`.NAME.XXXXXXXX.tmp` next to it)
    that a kill during a rewrite left behind; only regular files, only those names. Call it under
    the lock. Returns how many were removed."""
    ours = re.compile(re.escape(f".{target.name}.") + r"[a-z0-9_]{8}\.tmp")
    removed = 0
    with os.scandir(target.parent) as entries:
        for entry in entries:
            if ours.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(entry.path)
                    removed += 1
    return removed


class Results(Protocol):
    """What the caption loop writes to: a `ResultsFile`, or a `ResultsStream` (stdout)."""

    path: Any
    done: set[str]
    failed: set[str]

    def append(self, record: Record) -> None: ...


class ResultsFile:
    """An open results file (see the module docstring). `key` names the field identifying an
    input; keys are compared as `normalise(key)` (pass `normalise=str` for keys that are not paths)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        key: str = "path",
        keep: Callable[[Record], bool] = is_success,
        normalise: Callable[[str], str] = normalise_path,
    ):
        self.path = Path(path)
        self.key = key
        self.keep = keep
        self.normalise = normalise
        self.done: set[str] = set()
        self.failed: set[str] = set()  # keys whose latest record (kept or just written) is an error
        self.num_dropped = 0  # records dropped on open (retried errors, duplicates)
        self.num_rejected = 0  # unreadable lines moved to `rejected_path` on open
        self.target = Path(os.path.realpath(self.path))
        self.lock_path = self.target.with_name(self.target.name + ".lock")
        self.rejected_path = self.target.with_name(self.target.name + ".rejected")
        self._fd: int | None = None
        self._lock_fd: int | None = None

    def open(self) -> ResultsFile:
        """Check, lock, repair and read the file (see the module docstring). Raises
        ResultsFileError (not a results file, special, lock file not creatable), OutputLockedError
        (another writer), OSError (I/O)."""
        self.target = check_results_path(self.path, key=self.key)
        self.lock_path = self.target.with_name(self.target.name + ".lock")
        self.rejected_path = self.target.with_name(self.target.name + ".rejected")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock()
            remove_stale_temporaries(self.target)
            check_results_path(self.target, key=self.key)  # again, now that no writer of ours can change it
            self._fd = open_regular(self.target, os.O_RDWR | os.O_APPEND | os.O_CREAT, display=self.path)
            self._load()
        except BaseException:
            self.close()
            raise
        return self

    def _lock(self) -> None:
        try:  # read-only: the lock file's content is never written, whoever made it
            self._lock_fd = open_regular(self.lock_path, os.O_RDONLY | os.O_CREAT, display=self.lock_path)
        except ResultsFileError:
            raise
        except OSError as e:
            raise ResultsFileError(f"{self.path}: cannot create its lock file {self.lock_path} ({e.strerror})") from e
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            raise OutputLockedError(
                f"{self.path}: another process is writing this file; give each run its own output"
            ) from e

    def _load(self) -> None:
        """Repair, read, set aside unreadable lines, drop retried and repeated records (under the lock)."""
        assert self._fd is not None
        torn = _truncate_torn_tail(self._fd)
        if torn:
            log.warning("%s: removed a torn last line (%d bytes) left by an interrupted run", self.path, torn)
        kept: dict[str, Record] = {}
        rejected: list[bytes] = []
        num_records = 0
        for line in _lines(self._fd):
            record = parse_record(line, self.key)
            if record is None:
                rejected.append(line)
                continue
            num_records += 1
            name = self.normalise(record[self.key])
            if name not in kept and self.keep(record):
                kept[name] = record
        if rejected:
            self._set_aside(rejected)
        self.num_rejected = len(rejected)
        self.num_dropped = num_records - len(kept)
        if rejected or self.num_dropped:
            # Keep the file in step with `done`: exactly one line per finished input.
            rewrite_records(self.target, list(kept.values()))
            old, self._fd = self._fd, open_regular(self.target, os.O_RDWR | os.O_APPEND, display=self.path)
            os.close(old)
        self.done = set(kept)
        self.failed = {name for name, record in kept.items() if not is_success(record)}

    def _set_aside(self, lines: list[bytes]) -> None:
        """Append unreadable lines to FILE.rejected, durably, before the rewrite drops them here."""
        fd = open_regular(self.rejected_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            _write_all(fd, b"".join(line + b"\n" for line in lines))
            os.fsync(fd)
        finally:
            os.close(fd)
        log.warning(
            "%s: moved %d unreadable line%s to %s", self.path, len(lines), "s"[: len(lines) > 1], self.rejected_path
        )

    def append(self, record: Record) -> None:
        """Write one record durably: a single write of the full line, then fsync. On failure the
        file is truncated back to where it ended, and ResultsWriteError says why."""
        if self._fd is None:
            raise ValueError(f"{self.path} is not open")
        data = encode_record(record)
        end = os.fstat(self._fd).st_size  # under the lock nobody else appends
        try:
            _write_all(self._fd, data)  # one write() for a regular file
            os.fsync(self._fd)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, end)
                os.fsync(self._fd)
            raise ResultsWriteError(
                f"{self.path}: could not write a record ({e.strerror or e}); the file ends at its last whole line"
            ) from e
        self._track(record)

    def _track(self, record: Record) -> None:
        name = record.get(self.key)
        if not isinstance(name, str):
            return
        name = self.normalise(name)
        if self.keep(record):
            self.done.add(name)
        if is_success(record):
            self.failed.discard(name)
        else:
            self.failed.add(name)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock, after the data is closed
            self._lock_fd = None

    def __enter__(self) -> ResultsFile:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


class ResultsStream:
    """Records as JSON Lines on a text stream (default: stdout), one flushed line each, for
    pipelines. Nothing is read back: `done` stays empty, every input is answered."""

    def __init__(self, stream: TextIO | None = None, *, key: str = "path", name: str = "stdout"):
        self.stream = stream
        self.key = key
        self.path = name
        self.done: set[str] = set()
        self.failed: set[str] = set()

    def open(self) -> ResultsStream:
        if self.stream is None:
            self.stream = sys.stdout
        if self.stream is None:
            raise ResultsFileError(f"{self.path} is closed; give a file to write the results to")
        return self

    def append(self, record: Record) -> None:
        if self.stream is None:
            raise ValueError(f"{self.path} is not open")
        self.stream.write(encode_record(record).decode("ascii"))
        self.stream.flush()
        name = record.get(self.key)
        if isinstance(name, str):
            (self.failed.discard if is_success(record) else self.failed.add)(normalise_path(name))

    def close(self) -> None:
        return None

    def __enter__(self) -> ResultsStream:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    """`os.write` until all of `data` is written: regular files take it whole, a short write
    would still finish here."""
    written = 0
    while written < len(data):
        count = os.write(fd, data[written:])
        if count <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written += count


def _fsync_directory(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
