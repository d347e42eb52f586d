"""`longllava cache ls` and `cache clear`: the state cache's folder (`model.state_store`) as a table
or one JSON object on stdout, and emptied of the states it holds (nothing else in it is touched).
Neither loads torch."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from longllava_cli.output import format_size, write_json, write_text

KEY_PREFIX = 12  # hex digits of a key shown in the table


def describe_states(folder: Path) -> dict[str, Any]:
    """{"cache_dir", "total_bytes", "states": one entry per state file, most recently used first}."""
    from model.state_store import StateStore

    states = [
        {
            "key": e.key,
            "size_bytes": e.size,
            "last_used": e.last_used,
            "model": e.model,
            "inputs": e.inputs,
            "readable": e.header is not None,
        }
        for e in StateStore(folder).ls()
    ]
    return {"cache_dir": str(folder), "total_bytes": sum(s["size_bytes"] for s in states), "states": states}


def show_states(folder: Path, *, json: bool) -> None:
    data = describe_states(folder)
    if json:
        write_json(data)
    else:
        write_text(format_states(data, now=time.time()))


def format_states(data: dict[str, Any], *, now: float) -> str:
    """An aligned table, one row per state, then the folder and the total."""
    rows = [("KEY", "SIZE", "LAST USED", "MODEL", "INPUTS")]
    for s in data["states"]:
        inputs = ", ".join(s["inputs"]) if s["readable"] else "(not a readable state file)"
        rows.append(
            (s["key"][:KEY_PREFIX], format_size(s["size_bytes"]), _ago(now - s["last_used"]), s["model"], inputs)
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[4]]) for row in rows]
    if not data["states"]:
        lines = ["(no saved states)"]
    count = len(data["states"])
    lines.append(f"{count} state{'s'[: count != 1]}, {format_size(data['total_bytes'])} in {data['cache_dir']}")
    return "\n".join(lines) + "\n"


def clear_states(folder: Path) -> None:
    from model.state_store import StateStore

    removed, freed = StateStore(folder).clear()
    write_text(f"removed {removed} files ({format_size(freed)} of states) from {folder}\n")


def _ago(seconds: float) -> str:
    """ "just now", "5 min ago", "3 h ago", "2 days ago"."""
    seconds = max(0.0, seconds)
    for unit, scale in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= scale:
            return f"{int(seconds // scale)} {unit} ago"
    return "just now"
