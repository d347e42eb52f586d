"""The README's table of the released models' memory: for each model and precision, the weights,
the KV cache per frame, the predicted peak at 128 and 1000 frames on a GPU, and the smallest common
card each fits. Computed by `longllava estimate`'s own code from the built-in model cards (nothing
downloaded). tests/test_readme.py checks that README.md holds exactly this table.

    python benchmarks/estimate_table.py
"""

from __future__ import annotations

from model.cards import card_for
from model.summary import estimate_request, summarize_card

MODELS = ("FreedomIntelligence/LongLLaVA-9B", "FreedomIntelligence/LongLLaVA-53B-A13B")
PRECISIONS = (("bfloat16", "none"), ("bfloat16", "int8"), ("bfloat16", "nf4"))
CARDS_GB = (12, 16, 24, 48, 80)  # common GPU memory sizes, GiB as the cards are sold
FRAMES = (128, 1000)
GiB = 2**30


def _estimate(summary, num_frames: int, dtype: str, quantize: str) -> dict:
    return estimate_request(
        summary, num_frames=num_frames, budget=80 * GiB, dtype=dtype, chunk_tokens=2048, max_new_tokens=768,
        device="cuda", quantize=quantize,
    )  # fmt: skip


def _smallest_card(total: int) -> str:
    return next((f"{size} GB" for size in CARDS_GB if total <= size * GiB), "none of these")


def table_rows() -> list[str]:
    rows = [
        "| model | weights as | weights | KV per frame | 128 frames | 1000 frames | smallest card, 128 / 1000 |",
        "|---|---|---|---|---|---|---|",
    ]
    for repo in MODELS:
        summary = summarize_card(card_for(repo))
        kv_per_frame = summary.kv_bytes_per_token("bfloat16") * (summary.tokens_per_image + 7)
        for dtype, quantize in PRECISIONS:
            small, large = (_estimate(summary, n, dtype, quantize) for n in FRAMES)
            totals = [e["memory_bytes"]["total"] for e in (small, large)]
            name = repo.split("/")[1]
            precision = dtype if quantize == "none" else f"{quantize} (rest {dtype})"
            rows.append(
                f"| {name} | {precision} | {small['memory_bytes']['weights'] / GiB:.1f} GiB | "
                f"{kv_per_frame / 2**20:.2f} MiB | {totals[0] / GiB:.1f} GiB | {totals[1] / GiB:.1f} GiB | "
                f"{_smallest_card(totals[0])} / {_smallest_card(totals[1])} |"
            )
    return rows


if __name__ == "__main__":
    print("\n".join(table_rows()))
