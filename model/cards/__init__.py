"""Built-in model cards: the public config.json values of the released models, keyed by repo id,
so that `longllava estimate`, `info` and `frames --model` work for them before anything is
downloaded (the figures then come from the card, and the output says so).

Facts only: each card holds the released config.json's keys (LM, multimodal, and the CLIP tower's
`vision_config`) with a note saying which file each part was read from. A downloaded checkpoint
always wins over its card. Sources: the config.json files on the Hugging Face pages of
FreedomIntelligence/LongLLaVA-9B, LongLLaVA-53B-A13B and Jamba-9B-Instruct, and
openai/clip-vit-large-patch14-336 for the tower (docs/format.md, Checkpoints).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CARDS_DIR = Path(__file__).resolve().parent


@dataclass(frozen=True)
class ModelCard:
    """repo_id: "ORG/NAME"; config: the released config.json's keys; source and notes: where they
    come from."""

    repo_id: str
    config: dict[str, Any]
    source: str
    notes: str


def _file_of(repo_id: str) -> Path:
    return CARDS_DIR / (repo_id.replace("/", "--") + ".json")


def card_repos() -> list[str]:
    """The repo ids that have a built-in card."""
    return sorted(json.loads(p.read_text(encoding="utf-8"))["repo_id"] for p in CARDS_DIR.glob("*.json"))


def card_for(repo_id: str) -> ModelCard | None:
    """The built-in card of `repo_id` (case as on the Hub, revision ignored), or None."""
    repo_id = repo_id.split("@", 1)[0]
    matches = [name for name in card_repos() if name.lower() == repo_id.lower()]
    if not matches:
        return None
    data = json.loads(_file_of(matches[0]).read_text(encoding="utf-8"))
    return ModelCard(data["repo_id"], data["config"], data["source"], data["notes"])
