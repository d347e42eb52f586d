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
    """Regular, non-hidden files of `folder` (and its subfolders if `recursive`), naturally sorted."""
    found: list[Path] = []
    try:
        if recursive:
            for root, dirs, files in os.walk(folder, onerror=_raise):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                found.extend(Path(root, name) for name in files if not name.startswith("."))
        else:
            with os.scandir(folder) as entries:
                found = [Path(e.path) for e in entries if e.is_file() and not e.name.startswith(".")]
    except OSError as e:
        raise InputError(f"{display_path(folder)}: cannot list the folder ({e.strerror or e})") from e
    return sorted((p for p in found if p.is_file()), key=lambda p: natural_key(p.relative_to(folder)))


def _raise(error: OSError) -> None:
    raise error
