"""Where the compiled CPU kernels live: a directory that only the current user can write.

A shared library is code: `ctypes.CDLL` runs whatever it finds. So a kernel is loaded only from a
directory that no other user could have put a file in, checked the way OpenSSH checks the files
it trusts (`StrictModes`): the directory and every directory above it is owned by the current user
or by root, and none is writable by others, except an ancestor with the sticky bit (such as `/tmp`),
where others cannot rename or replace our entries. Group write is harmless when the group is the
user's own private group with no other member (the user-private-group layout many distributions
give a umask of 002; Debian's OpenSSH accepts it for the same reason). The directory itself must
not be a symbolic link.

The cache is `$XDG_CACHE_HOME/longllava/kernels` (else `~/.cache/longllava/kernels`), created 0700.
When it cannot be made private (another owner, a group- or world-writable folder on the way, a
read-only home), kernels are built into a fresh `tempfile.mkdtemp` directory for this process
(unpredictable name, mode 0700, removed at exit) and a warning says why; a predictable shared path
such as `/tmp/longllava-kernels-<uid>` is never used.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

APP_DIR = "longllava"
KERNELS_DIR = "kernels"


def user_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/longllava/kernels`, `~/.cache/longllava/kernels` by default."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / APP_DIR / KERNELS_DIR


def _trusted_owner(info: os.stat_result) -> bool:
    return info.st_uid in (0, os.geteuid())


@functools.lru_cache(maxsize=8)
def _private_group(gid: int) -> bool:
    """The user's primary group with no member but the user (a user-private group)."""
    if gid != os.getegid():
        return False
    try:
        import grp
        import pwd

        members = set(grp.getgrgid(gid).gr_mem)
        return members <= {pwd.getpwuid(os.geteuid()).pw_name}
    except (ImportError, KeyError):
        return False


def _writable_by_others(info: os.stat_result) -> bool:
    if info.st_mode & stat.S_IWOTH:
        return True
    return bool(info.st_mode & stat.S_IWGRP) and not _private_group(info.st_gid)


def untrusted_reason(path: Path) -> str | None:
    """None when only the current user (or root) can change what `path` holds; else why not.

    `path` must be an existing real directory (not a symbolic link) owned by the user and writable
    by no one else; each ancestor must be owned by the user or root and not writable by others
    unless it has the sticky bit (group write counts only for a group shared with other users)."""
    try:
        info = os.lstat(path)
    except OSError as e:
        return f"{path}: {e.strerror or e}"
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        return f"{path} is not a real directory"
    if info.st_uid != os.geteuid():
        return f"{path} belongs to another user (uid {info.st_uid})"
    if _writable_by_others(info):
        return f"{path} is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    for parent in Path(os.path.abspath(path)).parents:
        try:
            info = os.stat(parent)
        except OSError as e:
            return f"{parent}: {e.strerror or e}"
        if not _trusted_owner(info):
            return f"{parent} belongs to another user (uid {info.st_uid})"
        if _writable_by_others(info) and not info.st_mode & stat.S_ISVTX:
            return f"{parent} is writable by other users (mode {stat.S_IMODE(info.st_mode):o})"
    return None


def is_trusted_file(path: Path) -> bool:
    """A regular file (not a link) owned by the user or root and writable by no one else."""
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(info.st_mode) and _trusted_owner(info) and not _writable_by_others(info)


def _make_private(path: Path) -> str | None:
    """Create `path` (0700) if needed; None when it is then private, else why not."""
    try:
        path.parent.parent.mkdir(parents=True, exist_ok=True)
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.mkdir(mode=0o700, exist_ok=True)
    except OSError as e:
        return f"cannot create {path} ({e.strerror or e})"
    return untrusted_reason(path)


@functools.lru_cache(maxsize=1)
def kernel_cache_dir() -> Path:
    """The private directory to build and load kernels in (see the module docstring); decided once
    per process."""
    cache = user_cache_dir()
    reason = _make_private(cache)
    if reason is None:
        return cache
    temporary = Path(tempfile.mkdtemp(prefix="longllava-kernels-"))  # 0700, unpredictable name
    atexit.register(shutil.rmtree, temporary, ignore_errors=True)
    log.warning(
        "not using the kernel cache: %s; building the CPU kernels in a private temporary folder for this run "
        "(fix: chmod go-w that folder, or set XDG_CACHE_HOME to a folder only you can write)",
        reason,
    )
    return temporary
