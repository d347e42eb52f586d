"""`longllava frames`: the sampling plans as a JSON-ready description and as a table on stdout,
and the contact sheet beside them (`show_frames`, the command's call and write steps).

Token counts: `num_visual_tokens` = images × tokens per image, always; with `--model` whose
folder has a tokenizer, `num_tokens` adds each input's markup text (`<img>`, `</img>`, `<t>`...)
as the prompt layout tokenises it: the LM positions the input will take.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table

from longllava_cli.output import note, status, stdout_console, write_json

if TYPE_CHECKING:
    from model.summary import CheckpointSummary
    from sampling import InputPlan, SamplingOptions


@dataclass(frozen=True)
class SheetRequest:
    """Where (checked before any decoding: `contact_sheet.check_sheet_path`) and how to draw the
    contact sheet."""

    path: Path
    image_format: str
    columns: int
    thumb_width: int


def show_frames(
    inputs: list[str],
    options: SamplingOptions,
    summary: CheckpointSummary,
    sheet: SheetRequest | None,
    *,
    json: bool,
    decode_workers: int = 1,
) -> None:
    """Plan the inputs, draw the contact sheet if asked (decoded by `decode_workers` threads), and
    write the plans (table or JSON)."""
    from sampling import plan_inputs

    plans = plan_inputs(inputs, options)
    assert summary.tokens_per_image is not None, "a multimodal model (checked by the command)"
    description = describe_plans(plans, tokens_per_image=summary.tokens_per_image, model=summary)
    if sheet is not None:
        from longllava_cli.contact_sheet import render_contact_sheet, save_sheet

        with status(f"writing {sheet.path}"):
            picture = render_contact_sheet(
                plans, options, columns=sheet.columns, thumb_width=sheet.thumb_width, workers=decode_workers
            )
            save_sheet(picture, sheet.path, sheet.image_format)
        description["contact_sheet"] = {"path": str(sheet.path), "width": picture.width, "height": picture.height}
    if json:
        write_json(description)
    else:
        print_plans(description)


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
    from model.prompting import count_tokens_per_input
    from model.tokenizer import TOKENIZER_FILE, load_tokenizer

    if not (model.path / TOKENIZER_FILE).is_file():
        return None
    encode = load_tokenizer(model.path).encode
    return count_tokens_per_input(plans, encode=encode, tokens_per_image=tokens_per_image)


def print_plans(description: dict[str, Any], *, console: Console | None = None) -> None:
    """The description as a table on `console` (default stdout); files a folder left out as
    warnings on stderr."""
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
    console = console or stdout_console()
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
