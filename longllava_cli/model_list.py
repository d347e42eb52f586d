"""`longllava models`: the LongLLaVA and Jamba models on this machine, as a table or one JSON object
on stdout: each revision downloaded into the Hugging Face cache (`model.hub_list`), with its
refs, size on disk and whether it is complete, and the built-in demo model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from longllava_cli.output import format_size, write_json, write_text

DEMO_NAME = "demo"


def describe_models() -> dict[str, Any]:
    """{"cache_dir": the Hugging Face cache searched, "models": one entry per model, the demo last}."""
    from model.demo import demo_model_dir
    from model.hub import hub_cache_dir, is_pulled_file
    from model.hub_list import list_cached_models

    cache = hub_cache_dir()
    models: list[dict[str, Any]] = [
        {
            "name": m.repo_id,
            "source": "hub",
            "repo_id": m.repo_id,
            "commit": m.commit,
            "refs": list(m.refs),
            "model_type": m.model_type,
            "path": str(m.path),
            "size_bytes": m.size_bytes,
            "complete": m.complete,
            "missing": list(m.missing),
        }
        for m in list_cached_models(cache)
    ]
    demo = demo_model_dir()
    if demo is not None:
        size = sum(p.stat().st_size for p in Path(demo).iterdir() if p.is_file() and is_pulled_file(p.name))
        model_type = json.loads((Path(demo) / "config.json").read_text()).get("model_type")
        models.append({
            "name": DEMO_NAME, "source": "built-in", "repo_id": None, "commit": None, "refs": [],
            "model_type": model_type, "path": str(demo), "size_bytes": size, "complete": True, "missing": [],
        })  # fmt: skip
    return {"cache_dir": str(cache), "models": models}


def show_models(*, json: bool) -> None:
    data = describe_models()
    if json:
        write_json(data)
    else:
        write_text(format_models(data))


def format_models(data: dict[str, Any]) -> str:
    """An aligned table, one row per model, and the cache folder on a last line."""
    rows = [("MODEL", "REVISION", "SIZE", "STATUS")]
    for m in data["models"]:
        status = "complete" if m["complete"] else f"incomplete: lacks {', '.join(m['missing'])}"
        rows.append((m["name"], _revision(m), format_size(m["size_bytes"]), status))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = ["  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[3]]) for row in rows]
    if not any(m["source"] == "hub" for m in data["models"]):
        lines.append("(no LongLLaVA or Jamba model in the Hugging Face cache: `longllava pull ORG/NAME` downloads one)")
    lines.append(f"Hugging Face cache: {data['cache_dir']}")
    return "\n".join(lines) + "\n"


def _revision(model: dict[str, Any]) -> str:
    """ "main,v1.0 (0123456789ab)": the refs that point to the commit, and the commit's start."""
    if model["source"] == "built-in":
        return "built-in"
    commit = model["commit"][:12]
    return f"{','.join(model['refs'])} ({commit})" if model["refs"] else commit
