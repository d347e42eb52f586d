"""What a file holds, as a digest of its bytes (BLAKE3, read in large blocks: about 3 GB/s on one
core here, faster than the disk), and a memo that skips rereading a file that has not changed.

The state cache keys a video by its content, never by its path or mtime: the same path with other
bytes must miss, and the same bytes anywhere must hit. Hashing a 2 GB video at every `ask` would
cost about a second, so `ContentHashes` remembers each digest under the file's identity on disk,
(real path, device, inode, size, mtime_ns, ctime_ns), and serves it only when all six are equal.
A rewrite, even one that keeps the size and sets the mtime back (`os.utime`), changes the ctime,
which no unprivileged call can set. Like git's "racily clean" rule, a file changed within
`RACY_SECONDS` of hashing is not remembered: a second write in the same timestamp tick could keep
all six equal. The residual: a filesystem that does not update ctime (some FUSE or network
mounts), or a clock moved back by root. The memo is a JSON file in the cache folder, untrusted:
anything unreadable in it is ignored, and a lost update only costs a rehash.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import blake3

# Bytes per read: large enough that the per-call overhead is nothing next to the disk.
READ_BLOCK = 8 << 20
# A file whose mtime or ctime is this close to the moment it was hashed is not remembered.
RACY_SECONDS = 2.0
MEMO_FORMAT = "longllava-content-hashes"
MEMO_VERSION = 1
MEMO_FILE = "content-hashes.json"
MAX_MEMO_ENTRIES = 4096
MAX_MEMO_BYTES = 8 << 20


def hash_file(path: str | os.PathLike[str]) -> str:
    """BLAKE3 hex digest (64 characters) of the file's bytes."""
    hasher = blake3.blake3()
    buffer = bytearray(READ_BLOCK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            hasher.update(view[:n])
    return hasher.hexdigest()


@dataclass(frozen=True)
class FileIdentity:
    """Where a file's bytes live on disk and when they last changed (module docstring)."""

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike[str]) -> FileIdentity:
        real = os.path.realpath(path)
        st = os.stat(real)
        return cls(real, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    @property
    def memo_key(self) -> str:
        return json.dumps([self.path, self.device, self.inode, self.size, self.mtime_ns, self.ctime_ns])

    def is_racy(self, hashed_at_ns: int) -> bool:
        """Changed so shortly before `hashed_at_ns` that a same-tick rewrite could go unseen."""
        return hashed_at_ns - max(self.mtime_ns, self.ctime_ns) < RACY_SECONDS * 1e9


class ContentHashes:
    """`digest(path)`: the file's BLAKE3 digest, from the memo file in `folder` when the file's
    identity is unchanged (module docstring); `save()` writes new entries back (atomically)."""

    def __init__(self, folder: Path | None) -> None:
        self.file = folder / MEMO_FILE if folder is not None else None
        self.entries = _read_memo(self.file) if self.file is not None else {}
        self.changed = False

    def digest(self, path: str | os.PathLike[str]) -> str:
        before = FileIdentity.of(path)
        remembered = self.entries.get(before.memo_key)
        if remembered is not None:
            return remembered
        started = time.time_ns()
        digest = hash_file(before.path)
        if FileIdentity.of(path) == before and not before.is_racy(started):
            self.entries[before.memo_key] = digest
            self.changed = True
        return digest

    def save(self) -> None:
        """Write the memo back (the newest `MAX_MEMO_ENTRIES`); a failure only costs rehashing."""
        if self.file is None or not self.changed:
            return
        entries = dict(list(self.entries.items())[-MAX_MEMO_ENTRIES:])
        text = json.dumps({"format": MEMO_FORMAT, "version": MEMO_VERSION, "entries": entries})
        try:
            fd, tmp = tempfile.mkstemp(dir=self.file.parent, prefix=f".{MEMO_FILE}.", suffix=".tmp")
        except OSError:
            return
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self.file)
            self.changed = False
        except OSError:
            with contextlib.suppress(OSError):
                os.remove(tmp)


def is_memo_file(file: Path) -> bool:
    """`file` is a memo this module wrote (the state cache's `clear` deletes nothing else)."""
    data = _read_json(file)
    return isinstance(data, dict) and data.get("format") == MEMO_FORMAT


def _read_json(file: Path) -> object:
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_MEMO_BYTES + 1)
        return json.loads(raw) if len(raw) <= MAX_MEMO_BYTES else None
    except (OSError, ValueError, RecursionError):
        return None


def _read_memo(file: Path) -> dict[str, str]:
    """The memo's entries; {} for a missing, oversized, malformed or foreign file."""
    data = _read_json(file)
    if not isinstance(data, dict) or data.get("format") != MEMO_FORMAT or data.get("version") != MEMO_VERSION:
        return {}
    entries = data.get("entries")
    if not isinstance(entries, dict):
        return {}
    return {
        k: v
        for k, v in entries.items()
        if isinstance(k, str) and isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
    }
