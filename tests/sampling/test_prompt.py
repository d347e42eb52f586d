"""Golden LongLLaVA prompts with token counts per visual input, and layout invariants.

Counts use tokenizers whose cost of each string is obvious: one token per character, or a
tag-aware fake where each `<...>` tag costs a chosen number of tokens."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sampling.prompt import (
    IMAGE_SLOT,
    ChatTemplate,
    ImageGroup,
    ImageSlot,
    Markup,
    PromptError,
    TiledGroup,
    VideoGroup,
    build_prompt_layout,
    compose_user_content,
    tokenize_layout,
)

USER = "<|startoftext|><|User|>\n"
ASSISTANT = "\n<|startoftext|><|Assistant|>\n"
IMG = "<img><image></img>"
T = 144  # tokens per image


def chars(text: str) -> list[int]:
    return [ord(c) for c in text]


def tagged(costs: dict[str, int]):
    """A fake tokenizer: each `<...>` tag costs costs.get(tag, 1) tokens, any other character 1."""

    def encode(text: str) -> list[int]:
        ids = []
        for part in re.findall(r"<[^<>]*>|.", text, flags=re.DOTALL):
            ids += [len(part)] * costs.get(part, 1)
        return ids

    return encode


def layout_for(question, groups, **kwargs):
    return build_prompt_layout(compose_user_content(question, groups), **kwargs)


def other_tokens(text_outside_groups: str) -> int:
    return len(USER) + len(text_outside_groups) + len(ASSISTANT)


# One image in characters: 144 + len("<img>") + len("</img>").
IMAGE_CHARS = T + 5 + 6


def test_one_image():
    layout = layout_for("What is shown?", [ImageGroup()])
    assert layout.text == USER + IMG + "\nWhat is shown?" + ASSISTANT
    assert layout.slots == (ImageSlot(image=0, group=0, index=0, num_tokens=T),)
    tokens = tokenize_layout(layout, chars)
    assert tokens.num_tokens_per_group == (IMAGE_CHARS,)
    assert tokens.num_other_tokens == other_tokens("\nWhat is shown?")


def test_three_images_interleaved_with_text():
    question = "Image 1: <image>\nImage 2: <image>\nImage 3: <image>\nWhich image is different?"
    layout = layout_for(question, [ImageGroup()] * 3)
    assert layout.text == (
        USER + f"Image 1: {IMG}\nImage 2: {IMG}\nImage 3: {IMG}\nWhich image is different?" + ASSISTANT
    )
    assert [(s.image, s.group, s.index) for s in layout.slots] == [(0, 0, 0), (1, 1, 0), (2, 2, 0)]
    tokens = tokenize_layout(layout, chars)
    assert tokens.num_tokens_per_group == (IMAGE_CHARS,) * 3
    assert tokens.num_other_tokens == other_tokens("Image 1: \nImage 2: \nImage 3: \nWhich image is different?")


def test_three_images_without_placeholders_come_first_one_per_line():
    layout = layout_for("Which is different?", [ImageGroup()] * 3)
    assert layout.text == USER + f"{IMG}\n{IMG}\n{IMG}\nWhich is different?" + ASSISTANT


def test_eight_frame_video():
    layout = layout_for("What happens?", [VideoGroup(8)])
    frames = "<t>".join([IMG] * 8)
    assert layout.text == USER + f"<vid>{frames}</vid>What happens?" + ASSISTANT
    assert not layout.text.count("</img</vid>") and layout.text.count("<t>") == 7
    assert [s.index for s in layout.slots] == list(range(8))
    tokens = tokenize_layout(layout, chars)
    # 8 frames × (144 + <img> 5 + </img> 6) + 7 × <t> 3 + <vid> 5 + </vid> 6
    assert tokens.num_tokens_per_group == (8 * IMAGE_CHARS + 7 * 3 + 11,) == (1272,)
    assert tokens.num_other_tokens == other_tokens("What happens?")


def test_video_frame_costs_151_tokens_when_its_tags_cost_7():
    # docs/format.md, Prompt: with the real Jamba tokenizer, <img> + </img> + <t> are 7 tokens.
    encode = tagged({"<img>": 2, "</img>": 3, "<t>": 2, "<vid>": 2, "</vid>": 3})
    group = tokenize_layout(layout_for("Q", [VideoGroup(8)]), encode).num_tokens_per_group[0]
    assert group == 8 * 151 - 2 + 2 + 3  # the last frame has no <t>; plus <vid>, </vid>


def test_two_by_three_tiles_upstream_nesting():
    layout = layout_for("Describe the image.", [TiledGroup(rows=2, cols=3)])
    rows = "\n".join([IMG * 3] * 2)
    assert layout.text == USER + f"<img><image>\n{rows}</img>\nDescribe the image." + ASSISTANT
    assert [s.index for s in layout.slots] == list(range(7))  # 0 global, then raster order
    tokens = tokenize_layout(layout, chars)
    # 7 images × (144 + 5 + 6) + 2 row newlines
    assert tokens.num_tokens_per_group == (7 * IMAGE_CHARS + 2,) == (1087,)


def test_two_by_three_tiles_flat():
    layout = layout_for("Describe.", [TiledGroup(2, 3)], markup=Markup(nest_tiles_in_global=False))
    assert layout.text == USER + f"{IMG}\n{IMG * 3}\n{IMG * 3}\nDescribe." + ASSISTANT
    assert tokenize_layout(layout, chars).num_tokens_per_group == (1087,)


def test_video_plus_image():
    layout = layout_for("Is the pictured cup in the video?", [VideoGroup(4), ImageGroup()])
    video = "<vid>" + "<t>".join([IMG] * 4) + "</vid>"
    assert layout.text == USER + video + IMG + "\nIs the pictured cup in the video?" + ASSISTANT
    assert [(s.image, s.group, s.index) for s in layout.slots] == [
        (0, 0, 0),
        (1, 0, 1),
        (2, 0, 2),
        (3, 0, 3),
        (4, 1, 0),
    ]
    tokens = tokenize_layout(layout, chars)
    assert tokens.num_tokens_per_group == (4 * IMAGE_CHARS + 3 * 3 + 11, IMAGE_CHARS)
    assert tokens.num_tokens == len(layout.text) - 5 * len(IMAGE_SLOT) + 5 * T


def test_timestamps_are_off_by_default_and_shown_on_request():
    video = VideoGroup(3, timestamps=(0.0, 1.5, 3.0))
    assert "s<img>" not in layout_for("Q", [video]).text
    shown = layout_for("Q", [video], show_timestamps=True).text
    assert shown == USER + f"<vid>0.0s{IMG}<t>1.5s{IMG}<t>3.0s{IMG}</vid>Q" + ASSISTANT
    with pytest.raises(PromptError, match="without frame timestamps"):
        layout_for("Q", [VideoGroup(2)], show_timestamps=True)


def test_text_only_and_custom_template():
    template = ChatTemplate(text="USER: {user}\nASSISTANT:")
    layout = layout_for("Hello {name}", [], template=template)
    assert layout.text == "USER: Hello {name}\nASSISTANT:" and layout.slots == ()


def test_segments_alternate_text_runs_and_slots():
    layout = layout_for("Q", [VideoGroup(2)], tokens_per_image=3)
    tokens = tokenize_layout(layout, chars)
    assert [type(s).__name__ for s in tokens.segments] == ["tuple", "ImageSlot", "tuple", "ImageSlot", "tuple"]
    assert tokens.segments[2] == tuple(chars("</img><t><img>"))  # one chunk, tokenised whole


@pytest.mark.parametrize(
    ("question", "groups", "message"),
    [
        ("<image> and <image>", [ImageGroup()], "2 <image> placeholder"),
        ("<image>", [], "1 <image> placeholder"),
    ],
)
def test_placeholder_count_must_match(question, groups, message):
    with pytest.raises(PromptError, match=message):
        compose_user_content(question, groups)


def test_invalid_inputs_are_rejected():
    with pytest.raises(PromptError, match="may not contain"):
        build_prompt_layout(["look: <image>"])
    with pytest.raises(PromptError, match="not text or a visual group"):
        build_prompt_layout([3])
    with pytest.raises(PromptError, match="exactly one"):
        ChatTemplate(text="no slot")
    with pytest.raises(PromptError, match="at least one frame"):
        VideoGroup(0)
    with pytest.raises(PromptError, match="2 timestamps for 3 frames"):
        VideoGroup(3, timestamps=(0.0, 1.0))
    with pytest.raises(PromptError, match="1×1"):
        TiledGroup(0, 2)
    with pytest.raises(PromptError, match="tokens_per_image"):
        build_prompt_layout([], tokens_per_image=0)


groups_strategy = st.lists(
    st.one_of(
        st.just(ImageGroup()),
        st.builds(VideoGroup, st.integers(1, 6)),
        st.builds(TiledGroup, st.integers(1, 3), st.integers(1, 3)),
    ),
    max_size=4,
)
question_strategy = st.text(max_size=30).filter(lambda q: IMAGE_SLOT not in q)


def group_chars(group, tokens_per_image: int) -> int:
    """A group's cost in characters, from its definition."""
    frame = tokens_per_image + 11
    if isinstance(group, ImageGroup):
        return frame
    if isinstance(group, VideoGroup):
        return group.num_frames * frame + (group.num_frames - 1) * 3 + 11
    return group.num_images * frame + group.rows


@settings(max_examples=150, deadline=None)
@given(groups_strategy, question_strategy, st.integers(1, 200), st.booleans(), st.booleans())
def test_layout_invariants(groups, question, tokens_per_image, nest, use_placeholders):
    if use_placeholders:
        question = " ".join([IMAGE_SLOT] * len(groups)) + question
    markup = Markup(nest_tiles_in_global=nest)
    layout = build_prompt_layout(
        compose_user_content(question, groups, markup=markup), tokens_per_image=tokens_per_image, markup=markup
    )
    slots = layout.slots
    assert len(slots) == sum(g.num_images for g in groups) == layout.text.count(IMAGE_SLOT)
    assert [s.image for s in slots] == list(range(len(slots)))
    assert [(s.group, s.index) for s in slots] == [
        (g, i) for g, group in enumerate(groups) for i in range(group.num_images)
    ]
    assert IMAGE_SLOT.join(layout.text_chunks()) == layout.text
    assert layout.groups == tuple(groups)

    tokens = tokenize_layout(layout, chars)
    text_ids = [i for seg in tokens.segments if isinstance(seg, tuple) for i in seg]
    assert text_ids == chars(layout.text.replace(IMAGE_SLOT, ""))
    assert [s for s in tokens.segments if isinstance(s, ImageSlot)] == list(slots)
    assert all(len(s) > 0 for s in tokens.segments if isinstance(s, tuple))
    assert tokens.num_tokens == len(text_ids) + len(slots) * tokens_per_image
    assert tokens.num_tokens_per_group == tuple(group_chars(g, tokens_per_image) for g in groups)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 10), st.integers(1, 4), st.integers(1, 4), st.integers(1, 4))
def test_frame_cost_is_image_tokens_plus_its_tags(num_frames, img, end_img, t):
    encode = tagged({"<img>": img, "</img>": end_img, "<t>": t})
    count = tokenize_layout(layout_for("Q", [VideoGroup(num_frames)]), encode).num_tokens_per_group[0]
    assert count == num_frames * (T + img + end_img + t) - t + 2  # + <vid>, </vid> at 1 each
