"""`/save FILE` of `longllava chat`: the conversation as one JSON file, written only where that
loses nothing.

The file is a JSON object `{"format": "longllava chat transcript", "version": 1, "model": ...,
"inputs": [...], "turns": [...]}`. FILE may be new (its folder is created) or a transcript this
tool wrote earlier (recognised by its `format`), which is replaced; anything else (another file,
a folder, one of the inputs) is refused with one line and left untouched. The JSON goes to a
temporary file beside FILE, then is renamed over it: a failure never leaves half a transcript.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from longllava_cli.output import to_json
from longllava_cli.paths import check_replaceable, replace_atomically

TRANSCRIPT_FORMAT = "longllava chat transcript"
TRANSCRIPT_VERSION = 1
# A transcript larger than this is not one we wrote in any conversation that fits a context.
_MAX_TRANSCRIPT_BYTES = 64 * 2**20


def transcript_document(model: str, inputs: Sequence[dict[str, Any]], turns: Sequence[dict[str, Any]]) -> dict:
    return {
        "format": TRANSCRIPT_FORMAT,
        "version": TRANSCRIPT_VERSION,
        "model": model,
        "inputs": list(inputs),
        "turns": list(turns),
    }


def check_transcript_path(path: Path, inputs: Sequence[str]) -> None:
    """OutputPathError unless `path` may be written (module docstring); creates its folder."""
    check_replaceable(path, inputs, what="chat transcript", example="chat.json", ours=is_transcript)


def is_transcript(path: Path) -> bool:
    """Whether `path` is a regular file holding a transcript this tool wrote."""
    try:
        if not path.is_file() or path.stat().st_size > _MAX_TRANSCRIPT_BYTES:
            return False
        data = json.loads(path.read_bytes())
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and data.get("format") == TRANSCRIPT_FORMAT


def save_transcript(path: Path, document: dict[str, Any], inputs: Sequence[str]) -> None:
    """Check `path` (`check_transcript_path`) and write `document` there atomically."""
    check_transcript_path(path, inputs)
    text = to_json(document, indent=2) + "\n"
    replace_atomically(path, lambda f: f.write(text.encode("utf-8")))
