"""`longllava frames`: the sampling plans as a JSON-ready description and as a table on stdout.

Token counts: `num_visual_tokens` = images × tokens per image, always; with `--model` whose
folder has a tokenizer, `num_tokens` adds each input's markup text (`<img>`, `</img>`, `<t>`...)
as the prompt layout tokenises it: the LM positions the input will take.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table

from longllava_cli.output import note, stdout_console

if TYPE_CHECKING:
    from longllava_cli.checkpoint import CheckpointSummary
    from sampling import InputPlan


def describe_plans(
    plans: Sequence[InputPlan], *, tokens_per_image: int, model: CheckpointSummary | None = None
) -> dict[str, Any]:
    """{"tokens_per_image", "num_images", "num_visual_tokens", ["num_tokens"], "inputs": [...]}:
    each input is `InputPlan.to_dict()` plus its token counts."""
    per_group = _tokens_per_group(plans, tokens_per_image, model) if model is not None else None
    inputs = []
    for number, plan in enumerate(plans):
        item = plan.to_dict()
        item["num_visual_tokens"] = plan.num_images * tokens_per_image
        if per_group is not None:
            item["num_tokens"] = per_group[number]
        inputs.append(item)
    description: dict[str, Any] = {
        "model": str(model.path) if model is not None else None,
        "tokens_per_image": tokens_per_image,
        "num_images": sum(p.num_images for p in plans),
        "num_visual_tokens": sum(i["num_visual_tokens"] for i in inputs),
    }
    if per_group is not None:
        description["num_tokens"] = sum(per_group)
    description["inputs"] = inputs
    return description


def _tokens_per_group(
    plans: Sequence[InputPlan], tokens_per_image: int, model: CheckpointSummary
) -> tuple[int, ...] | None:
    """LM positions of each input with the checkpoint's tokenizer; None without a tokenizer.json."""
    from model.api import group_of
    from model.tokenizer import TOKENIZER_FILE, load_tokenizer
    from sampling.prompt import build_prompt_layout, compose_user_content, tokenize_layout

    if not (model.path / TOKENIZER_FILE).is_file():
        return None
    tokenizer = load_tokenizer(model.path)
    layout = build_prompt_layout(
        compose_user_content("", [group_of(p) for p in plans]), tokens_per_image=tokens_per_image
    )
    return tokenize_layout(layout, tokenizer.encode).num_tokens_per_group


def print_plans(description: dict[str, Any]) -> None:
    """The description as a table on stdout; files a folder left out as warnings on stderr."""
    with_tokens = "num_tokens" in description
    table = Table(show_lines=False, pad_edge=False, box=None, header_style="bold")
    for name in ("#", "input", "kind", "size", "available", "images", "visual tokens"):
        table.add_column(name, justify="right" if name in ("#", "available", "images", "visual tokens") else "left")
    if with_tokens:
        table.add_column("LM tokens", justify="right")
    table.add_column("frames")
    for number, item in enumerate(description["inputs"], 1):
        size = "x".join(map(str, item["size"])) if item["size"] else ""
        kind = item["kind"] + (f" {item['grid'][0]}x{item['grid'][1]}" if item["grid"] else "")
        if item.get("scaled_size"):  # a picture scaled down to fit --max-tiles
            kind += f" (scaled to {item['scaled_size'][0]}x{item['scaled_size'][1]})"
        row = [str(number), item["source"], kind, size, str(item["num_available"]), str(item["num_images"])]
        row.append(f"{item['num_visual_tokens']:,}")
        if with_tokens:
            row.append(f"{item['num_tokens']:,}")
        row.append(_frame_list(item))
        table.add_row(*row)
        for skipped in item["skipped"]:
            note(f"warning: skipped {skipped['path']}: {skipped['reason']}")
    console = stdout_console()
    console.print(table)
    total = f"{description['num_images']} images, {description['num_visual_tokens']:,} visual tokens"
    if with_tokens:
        total += f", {description['num_tokens']:,} LM tokens"
    console.print(f"total: {total} ({description['tokens_per_image']} tokens per image)")


def _frame_list(item: dict[str, Any]) -> str:
    """Timestamps of a video's frames (s), indices of a folder's images."""
    frames = item["frames"]
    if item["kind"] == "video":
        return " ".join(f"{f['timestamp']:.2f}" for f in frames)
    if item["kind"] == "sequence":
        return " ".join(str(f["index"]) for f in frames)
    return ""
