"""The built-in model cards: the released models' config.json values give the published sizes, and
an estimate from a card matches a hand computation from those published facts."""

from __future__ import annotations

import pytest

from model.cards import card_for, card_repos
from model.summary import estimate_request, summarize_card

GiB = 2**30
LONGLLAVA_9B = "FreedomIntelligence/LongLLaVA-9B"
LONGLLAVA_53B = "FreedomIntelligence/LongLLaVA-53B-A13B"
JAMBA_9B = "FreedomIntelligence/Jamba-9B-Instruct"


def test_every_released_model_has_a_card():
    assert card_repos() == sorted([LONGLLAVA_9B, LONGLLAVA_53B, JAMBA_9B])
    assert card_for("freedomintelligence/longllava-9b@main").repo_id == LONGLLAVA_9B  # case and revision
    assert card_for("someone/else") is None


@pytest.mark.parametrize(
    ("repo", "parameters", "tokens_per_image", "experts"),
    [
        # 19.23 GB of bfloat16 safetensors on the model page: 9.615 B parameters.
        (LONGLLAVA_9B, 19.23e9 / 2, 144, 1),
        # "51.9B" on the model page (paper Table 1: 13 B active).
        (LONGLLAVA_53B, 51.9e9, 144, 16),
        # The LM alone: LongLLaVA-9B less its CLIP tower and projector.
        (JAMBA_9B, 9.29e9, None, 1),
    ],
)
def test_cards_give_the_published_sizes(repo, parameters, tokens_per_image, experts):
    summary = summarize_card(card_for(repo))
    assert summary.num_parameters == pytest.approx(parameters, rel=0.005)
    assert summary.tokens_per_image == tokens_per_image
    assert summary.lm.num_experts == experts and summary.layer_pattern.count("A") == 4
    assert summary.weights == "absent" and summary.card.startswith("built-in card, from https://huggingface.co/")
    assert summary.to_dict()["card"] == summary.card


def test_estimate_from_the_9b_card_matches_a_hand_computation():
    """1000 frames on a 24 GB card, bfloat16, from the published facts alone (docs/format.md)."""
    summary = summarize_card(card_for(LONGLLAVA_9B))
    result = estimate_request(
        summary, num_frames=1000, budget=24 * GiB, dtype="bfloat16", chunk_tokens=2048, max_new_tokens=768,
        device="cuda",
    )  # fmt: skip
    weights = 19.23e9  # the safetensors files' size
    tokens = 1000 * (144 + 7) + 64 + 768  # 151 positions a frame, a question, the answer
    kv = tokens * 4 * 2 * 8 * 128 * 2  # 4 attention layers, K and V, 8 heads of 128, 2 bytes
    chunk = 2048 * 14336 * 2 * 2 + 2048 * 8192 * 4 * 5  # one chunk's FFN and Mamba intermediates
    by_hand = weights + kv + chunk
    assert result["memory_bytes"]["total"] == pytest.approx(by_hand, rel=0.10)
    assert result["fits"] and result["num_tokens"] == tokens
