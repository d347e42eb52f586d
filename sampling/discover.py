"""Listing a folder's files in the order a person would read them.

Natural sort ("img2" before "img10"), case-insensitive, directories walked only when recursive
(each file then ordered by its path relative to the folder, so a subfolder's files stay together).
Hidden entries (".DS_Store", ".git") are not inputs and are left out silently.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sampling.errors import InputError, display_path

_DIGITS = re.compile(r"(\d+)")


def natural_key(relative: Path) -> tuple[tuple[str | int, ...], ...]:
    """Sort key: each path part split into text and numbers, text compared case-insensitively.
    `re.split` with a group alternates text (even slots) and digits (odd slots), so ints are only
    ever compared with ints."""
    return tuple(
        tuple(int(piece) if i % 2 else piece.casefold() for i, piece in enumerate(_DIGITS.split(part)))
        for part in relative.parts
    )


def list_folder_files(folder: Path, *, recursive: bool = False) -> list[Path]:
    """Regular, non-hidden files of `folder` (and its subfolders if `recursive`), naturally sorted.

    Symbolic links to files count as files; links to folders are never followed, so a link loop
    cannot trap the walk. The walk keeps its own stack (os.walk recurses once per level and a
    folder 1000 levels deep would overflow Python's stack)."""
    found: list[Path] = []
    pending = [folder]
    try:
        while pending:
            current = pending.pop()
            with os.scandir(current) as entries:
                for entry in entries:
                    if entry.name.startswith("."):
                        continue
                    if entry.is_dir(follow_symlinks=False):
                        if recursive:
                            pending.append(Path(entry.path))
                    elif entry.is_file():
                        found.append(Path(entry.path))
    except OSError as e:
        where = Path(e.filename) if isinstance(e.filename, (str, os.PathLike)) and e.filename else folder
        raise InputError(f"{display_path(where)}: cannot list the folder ({e.strerror or e})") from e
    return sorted(found, key=lambda p: natural_key(p.relative_to(folder)))
