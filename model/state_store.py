"""A folder of saved engine states, shared by processes: get, put, list, clear, least recently used
evicted past a size cap.

Each state is one file, `state-<key>.safetensors` (`model.state_file`), written to a temporary
file in the same folder and renamed over the final name, so a reader sees a whole file or none,
and two processes saving the same key at once leave one valid state (the last rename wins; both
wrote the same bits). A reader keeps its open file whatever is renamed over or evicted meanwhile.
Last use is the file's mtime, set on every hit; past `max_bytes` the least recently used states
are deleted after each put (never the one just written).

The folder may be one the user chose, holding other files: the store only ever deletes files
whose name it gives (`state-<64 hex>.safetensors`, `.state-<64 hex>.*.tmp`, the content-hash memo)
and, for states, whose header says a longllava state. Anything unusable in a state file is a
miss with one `StateCacheWarning` line, never an exception: the answer is computed afresh.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.content_hash import MEMO_FILE, is_memo_file
from model.errors import StateCacheWarning
from model.request import DEFAULT_CACHE_SIZE
from model.state_file import StateFileError, StateTensor, file_size, read_header, read_tensors, write_state

DEFAULT_MAX_BYTES = DEFAULT_CACHE_SIZE
APP_DIR = "longllava"
STATES_DIR = "states"
_STATE_NAME = re.compile(r"^state-([0-9a-f]{64})\.safetensors$")
_TMP_NAME = re.compile(r"^\.state-[0-9a-f]{64}\..+\.tmp$|^\." + re.escape(MEMO_FILE) + r"\..+\.tmp$")
# A temporary file older than this belongs to a writer that died: eviction and clear remove it.
STALE_TMP_SECONDS = 3600


def default_state_dir() -> Path:
    """`$XDG_CACHE_HOME/longllava/states`, `~/.cache/longllava/states` by default."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_DIR / STATES_DIR


@dataclass(frozen=True)
class StateEntry:
    """One saved state as `ls` shows it. header: the file's own header (None when unreadable)."""

    key: str
    path: Path
    size: int
    last_used: float  # seconds since the epoch
    header: dict[str, Any] | None

    @property
    def model(self) -> str:
        return str(self.header.get("model", "?")) if self.header else "?"

    @property
    def inputs(self) -> list[str]:
        inputs = self.header.get("inputs") if self.header else None
        return [str(i) for i in inputs] if isinstance(inputs, list) else []


class StateStore:
    """The states in `folder` (created on the first put), at most `max_bytes` of them."""

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.folder = Path(folder).expanduser()
        self.max_bytes = max_bytes

    def path_of(self, key: str) -> Path:
        return self.folder / f"state-{key}.safetensors"

    def get(self, key: str, tensors_for: Callable[[dict[str, Any]], Sequence[StateTensor]]) -> dict[str, Any] | None:
        """Read the state saved under `key` into the tensors `tensors_for(header)` gives (raising
        StateFileError when the header does not fit them); its header, or None for a miss."""
        path = self.path_of(key)
        try:
            with open(path, "rb", buffering=0) as f:
                size = file_size(f)
                header, entries, data_start = read_header(f, size)
                if header.get("key") != key:
                    raise StateFileError("it holds another key's state")
                read_tensors(f, entries, data_start, size, header.get("checksum"), tensors_for(header))
        except FileNotFoundError:
            return None
        except (StateFileError, OSError) as e:
            _warn(f"ignoring the saved state {path}: {_reason(e)}; computing it afresh")
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # last used: now
        return header

    def put(self, key: str, header: dict[str, Any], tensors: Sequence[StateTensor]) -> Path | None:
        """Save a state under `key` (atomically), then evict past the cap; None when not saved."""
        size = sum(t.nbytes for t in tensors)
        if size > self.max_bytes:
            _warn(
                f"not saving the state: its {_size(size)} are over the cache's size cap, {_size(self.max_bytes)}"
            )
            return None
        path = self.path_of(key)
        tmp = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".state-{key}.", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                write_state(f, {**header, "key": key}, tensors)
            os.replace(tmp, path)
        except OSError as e:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.remove(tmp)
            _warn(f"could not save the state in {self.folder}: {_reason(e)}")
            return None
        self.evict(keep=path)
        return path

    def ls(self) -> list[StateEntry]:
        """The saved states, most recently used first (files of other names are not listed)."""
        entries = [self._entry(p, k) for p, k in self._state_files()]
        return sorted((e for e in entries if e is not None), key=lambda e: e.last_used, reverse=True)

    def clear(self) -> tuple[int, int]:
        """Delete every state this store wrote (and its memo and stale temporary files); returns
        (files deleted, bytes freed). Files it did not write are left alone."""
        removed = freed = 0
        for entry in self.ls():
            if entry.header is not None and _remove(entry.path):
                removed, freed = removed + 1, freed + entry.size
        for path in self._stale_tmp_files(max_age=60.0):
            removed += _remove(path)
        memo = self.folder / MEMO_FILE
        if is_memo_file(memo):
            removed += _remove(memo)
        return removed, freed

    def evict(self, *, keep: Path | None = None) -> int:
        """Delete least recently used states until the rest fit `max_bytes`; returns bytes freed."""
        entries = [e for e in self.ls() if e.header is not None]
        total, freed = sum(e.size for e in entries), 0
        for entry in reversed(entries):  # oldest first
            if total <= self.max_bytes:
                break
            if entry.path != keep and _remove(entry.path):
                total, freed = total - entry.size, freed + entry.size
        for path in self._stale_tmp_files(max_age=STALE_TMP_SECONDS):
            _remove(path)
        return freed

    def _state_files(self) -> list[tuple[Path, str]]:
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        return [(self.folder / n, m[1]) for n in names if (m := _STATE_NAME.match(n))]

    def _entry(self, path: Path, key: str) -> StateEntry | None:
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                try:
                    header = read_header(f, st.st_size)[0]
                except StateFileError:
                    header = None
        except OSError:
            return None
        if header is not None and header.get("key") != key:
            header = None
        return StateEntry(key, path, st.st_size, st.st_mtime, header)

    def _stale_tmp_files(self, *, max_age: float) -> list[Path]:
        try:
            names = os.listdir(self.folder)
        except OSError:
            return []
        now, stale = time.time(), []
        for name in names:
            if _TMP_NAME.match(name):
                with contextlib.suppress(OSError):
                    if now - os.stat(self.folder / name).st_mtime > max_age:
                        stale.append(self.folder / name)
        return stale


def _remove(path: Path) -> bool:
    try:
        os.remove(path)
        return True
    except OSError:  # another process got there first, or no permission
        return False


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return " ".join(str(error).split())


def _warn(message: str) -> None:
    warnings.warn(StateCacheWarning(message), stacklevel=3)


def _size(num_bytes: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if num_bytes >= scale:
            return f"{num_bytes / scale:.2f} {unit}"
    return f"{num_bytes} B"
