"""LongLLaVA prompt text and layout: which positions of the token sequence take which image.

Pure: plain data in, plain data out (no torch, no model, no media I/O).

Terms: group, one visual input of a question (an image, a video's frames, a tiled large
image); slot, one `<image>` position that takes one image's `tokens_per_image` embeddings (144
for LongLLaVA: 24×24 CLIP patches pooled 2×2); chunk, the text between two slots, which is
tokenised as one string, exactly as upstream's `tokenizer_image_token` (`llava/mm_utils.py`)
splits the prompt on `<image>`.

Format (docs/format.md, Prompt; upstream `cli.py` / `llava/eval/chatbot.py`, `llava/conversation.py`):
- chat template `<|startoftext|><|User|>\\n{user}\\n<|startoftext|><|Assistant|>\\n`;
- image `<img><image></img>`, then `\\n` before what follows (upstream eval scripts write
  `<image>\\n` + question);
- video `<vid><img><image></img><t><img><image></img>…<img><image></img></vid>`, followed
  directly by what follows (upstream: `result + question`). No `<t>` after the last frame:
  upstream's `.rstrip('<t>')` strips characters and also ate that frame's `>` (`</img` + `</vid>`);
- tiled image, upstream's exact string for `patchStrategy bestFit`: the global view's
  `<img><image>`, `\\n`, rows of `<img><image></img>` tiles joined by `\\n`, then the global
  view's `</img>`: upstream wraps `<image>` in `<img>…</img>` first and then replaces that
  `<image>` by `<image>\\n` + rows, so the tiles sit inside the global image's tags.
  `Markup(nest_tiles_in_global=False)` closes the global view before the rows instead.
Optional per-frame timestamps (`show_timestamps`) are our addition; the released models were
not trained with them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sampling.errors import LongLLaVAError

IMAGE_SLOT = "<image>"


class PromptError(LongLLaVAError, ValueError):
    """The question and the visual inputs cannot be laid out as asked."""


@dataclass(frozen=True)
class ImageGroup:
    """One image."""

    @property
    def num_images(self) -> int:
        return 1


@dataclass(frozen=True)
class VideoGroup:
    """Frames of one video, in time order; `timestamps` in seconds, one per frame, if known."""

    num_frames: int
    timestamps: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise PromptError(f"a video needs at least one frame, got {self.num_frames}")
        if self.timestamps is not None and len(self.timestamps) != self.num_frames:
            raise PromptError(f"{len(self.timestamps)} timestamps for {self.num_frames} frames")

    @property
    def num_images(self) -> int:
        return self.num_frames


@dataclass(frozen=True)
class TiledGroup:
    """A large image as a global view plus rows × cols tiles in raster order."""

    rows: int
    cols: int

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise PromptError(f"a tiled image needs at least 1×1 tiles, got {self.rows}×{self.cols}")

    @property
    def num_images(self) -> int:
        return 1 + self.rows * self.cols


VisualGroup = ImageGroup | VideoGroup | TiledGroup


@dataclass(frozen=True, kw_only=True)
class ChatTemplate:
    """A chat template: `text` with exactly one `{user}` where the user turn goes, and
    `turn_separator`, written after an answer before the next user turn.

    A conversation is `prefix + user₁ + suffix + answer₁ + turn_separator + prefix + user₂ + suffix
    + answer₂ …`: LongLLaVA's Jamba format, FreedomIntelligence/LongLLaVA:llava/conversation.py
    (`conv_jambaInput`, `SeparatorStyle.Jamba`: roles `<|startoftext|><|User|>\\n` and
    `<|startoftext|><|Assistant|>\\n`, `sep` and `sep2` both `\\n`), which is also the input side
    of its training data (`llava/train/train.py`, `preprocess_jamba`): an earlier answer is followed
    by `\\n`, not by `<|endoftext|>`, which only ends the answer being generated."""

    text: str = "<|startoftext|><|User|>\n{user}\n<|startoftext|><|Assistant|>\n"
    turn_separator: str = "\n"

    def __post_init__(self) -> None:
        if self.text.count("{user}") != 1 or IMAGE_SLOT in self.text:
            raise PromptError(f"a chat template needs exactly one '{{user}}' and no {IMAGE_SLOT}: {self.text!r}")

    @property
    def prefix(self) -> str:
        return self.text.partition("{user}")[0]

    @property
    def suffix(self) -> str:
        return self.text.partition("{user}")[2]

    @property
    def follow_up_prefix(self) -> str:
        """What comes between an answer and the next user turn's text."""
        return self.turn_separator + self.prefix


@dataclass(frozen=True, kw_only=True)
class Markup:
    """The text around image slots (LongLLaVA's by default, see the module docstring)."""

    image_open: str = "<img>"
    image_close: str = "</img>"
    video_open: str = "<vid>"
    video_close: str = "</vid>"
    frame_separator: str = "<t>"
    row_separator: str = "\n"
    after_image: str = "\n"  # after an image or tiled group, when the question is not placed by `<image>`
    after_video: str = ""
    nest_tiles_in_global: bool = True
    timestamp_format: str = "{seconds:.1f}s"  # before each frame's image_open, with show_timestamps


LONGLLAVA_TEMPLATE = ChatTemplate()
LONGLLAVA_MARKUP = Markup()


@dataclass(frozen=True)
class ImageSlot:
    """One `<image>` position. image: index among all images of the prompt (the order their
    features must be supplied in); group: index of its visual group; index: position within the
    group (frame number; for a tiled group 0 is the global view, 1 + row·cols + col tile (row, col))."""

    image: int
    group: int
    index: int
    num_tokens: int


@dataclass(frozen=True)
class TextPiece:
    """Text of the prompt; `group` is the visual group whose markup it is, None for the template
    and the user's own text."""

    text: str
    group: int | None


@dataclass(frozen=True)
class PromptLayout:
    """The prompt as text pieces and image slots in order."""

    pieces: tuple[TextPiece | ImageSlot, ...]
    groups: tuple[VisualGroup, ...]

    @property
    def text(self) -> str:
        """The full prompt with `<image>` at each slot."""
        return "".join(p.text if isinstance(p, TextPiece) else IMAGE_SLOT for p in self.pieces)

    @property
    def slots(self) -> tuple[ImageSlot, ...]:
        return tuple(p for p in self.pieces if isinstance(p, ImageSlot))

    @property
    def num_image_tokens(self) -> int:
        return sum(s.num_tokens for s in self.slots)

    def text_chunks(self) -> tuple[str, ...]:
        """The text between slots (one more than slots): `text.split("<image>")`."""
        chunks, current = [], []
        for piece in self.pieces:
            if isinstance(piece, ImageSlot):
                chunks.append("".join(current))
                current = []
            else:
                current.append(piece.text)
        return (*chunks, "".join(current))


def compose_user_content(
    question: str, groups: Sequence[VisualGroup], *, markup: Markup = LONGLLAVA_MARKUP
) -> tuple[str | VisualGroup, ...]:
    """The user turn as text and groups in order. Without `<image>` in `question`, the groups
    come first, each followed by `markup.after_image` / `after_video`, then the question. With
    `<image>` placeholders, there must be one per group and each is replaced by the next group,
    in order, with nothing added (the text around them is the user's)."""
    num_placeholders = question.count(IMAGE_SLOT)
    if num_placeholders == 0:
        content: list[str | VisualGroup] = []
        for group in groups:
            content += [group, markup.after_video if isinstance(group, VideoGroup) else markup.after_image]
        return (*content, question)
    if num_placeholders != len(groups):
        raise PromptError(
            f"the question has {num_placeholders} {IMAGE_SLOT} placeholder(s) for {len(groups)} visual "
            f"input(s); use one per input, in order, or none to put the inputs before the question"
        )
    texts = question.split(IMAGE_SLOT)
    content = [texts[0]]
    for group, text in zip(groups, texts[1:], strict=True):
        content += [group, text]
    return tuple(content)


def build_prompt_layout(
    content: Sequence[str | VisualGroup],
    *,
    tokens_per_image: int = 144,
    template: ChatTemplate = LONGLLAVA_TEMPLATE,
    markup: Markup = LONGLLAVA_MARKUP,
    show_timestamps: bool = False,
) -> PromptLayout:
    """Lay out one user turn (text and groups in order, see `compose_user_content`) in `template`.
    Groups are numbered in order of appearance; slots number the images 0.. in the same order."""
    if tokens_per_image < 1:
        raise PromptError(f"tokens_per_image must be >= 1, got {tokens_per_image}")
    pieces: list[TextPiece | ImageSlot] = [TextPiece(template.prefix, None)]
    groups: list[VisualGroup] = []
    for item in content:
        if isinstance(item, str):
            if IMAGE_SLOT in item:
                raise PromptError(f"text may not contain {IMAGE_SLOT}; place images with compose_user_content")
            pieces.append(TextPiece(item, None))
            continue
        render = _RENDERERS.get(type(item))
        if render is None:
            raise PromptError(f"not text or a visual group: {item!r}")
        pieces += render(item, len(groups), _count_images(pieces), tokens_per_image, markup, show_timestamps)
        groups.append(item)
    pieces.append(TextPiece(template.suffix, None))
    return PromptLayout(_coalesce(pieces), tuple(groups))


def _count_images(pieces: Sequence[TextPiece | ImageSlot]) -> int:
    return sum(isinstance(p, ImageSlot) for p in pieces)


def _framed_image(text_open: str, slot: ImageSlot, text_close: str) -> list[TextPiece | ImageSlot]:
    return [TextPiece(text_open, slot.group), slot, TextPiece(text_close, slot.group)]


def _render_image(group: ImageGroup, g: int, first: int, t: int, m: Markup, _ts: bool) -> list:
    return _framed_image(m.image_open, ImageSlot(first, g, 0, t), m.image_close)


def _render_video(group: VideoGroup, g: int, first: int, t: int, m: Markup, show_timestamps: bool) -> list:
    if show_timestamps and group.timestamps is None:
        raise PromptError(f"visual input {g} is a video without frame timestamps; cannot show timestamps")
    pieces: list[TextPiece | ImageSlot] = [TextPiece(m.video_open, g)]
    for f in range(group.num_frames):
        if f:
            pieces.append(TextPiece(m.frame_separator, g))
        if show_timestamps:
            pieces.append(TextPiece(m.timestamp_format.format(seconds=group.timestamps[f]), g))
        pieces += _framed_image(m.image_open, ImageSlot(first + f, g, f, t), m.image_close)
    return [*pieces, TextPiece(m.video_close, g)]


def _render_tiled(group: TiledGroup, g: int, first: int, t: int, m: Markup, _ts: bool) -> list:
    pieces: list[TextPiece | ImageSlot] = [TextPiece(m.image_open, g), ImageSlot(first, g, 0, t)]
    if not m.nest_tiles_in_global:
        pieces.append(TextPiece(m.image_close, g))
    for r in range(group.rows):
        pieces.append(TextPiece(m.row_separator, g))
        for c in range(group.cols):
            index = 1 + r * group.cols + c
            pieces += _framed_image(m.image_open, ImageSlot(first + index, g, index, t), m.image_close)
    if m.nest_tiles_in_global:
        pieces.append(TextPiece(m.image_close, g))
    return pieces


_RENDERERS: dict[type, Callable[..., list]] = {
    ImageGroup: _render_image,
    VideoGroup: _render_video,
    TiledGroup: _render_tiled,
}


def _coalesce(pieces: Sequence[TextPiece | ImageSlot]) -> tuple[TextPiece | ImageSlot, ...]:
    """Merge neighbouring text of the same owner; drop empty text."""
    out: list[TextPiece | ImageSlot] = []
    for piece in pieces:
        if isinstance(piece, TextPiece):
            if not piece.text:
                continue
            if out and isinstance(out[-1], TextPiece) and out[-1].group == piece.group:
                piece = TextPiece(out.pop().text + piece.text, piece.group)
        out.append(piece)
    return tuple(out)


@dataclass(frozen=True)
class TokenizedPrompt:
    """segments: runs of text token ids and image slots, in prompt order (empty runs omitted).
    num_tokens_per_group: LM positions of each visual group: its slots' tokens plus its markup's
    text tokens. num_other_tokens: positions of the template and the user's text."""

    segments: tuple[tuple[int, ...] | ImageSlot, ...]
    num_tokens_per_group: tuple[int, ...]
    num_other_tokens: int

    @property
    def num_tokens(self) -> int:
        return sum(self.num_tokens_per_group) + self.num_other_tokens


def tokenize_layout(layout: PromptLayout, encode: Callable[[str], Sequence[int]]) -> TokenizedPrompt:
    """Tokenise each text chunk (the text between two slots) as one string, as upstream does,
    with `encode` (text -> ids, adding no special tokens, e.g. `model.tokenizer.Tokenizer`).

    A chunk such as `</img></vid>What happens?\\n<|startoftext|>…` holds text of several owners;
    its tokens are attributed by prefix: an owner's count is len(encode(text up to its end)) -
    len(encode(text up to its start)), so counts always sum to the true total. A video frame costs
    tokens_per_image + the tokens of `<img>`, `</img>` and `<t>` in context: 144 + 7 = 151 with
    LongLLaVA's Jamba tokenizer (docs/format.md, Prompt; not checkable offline), more with other vocabularies.
    """
    segments: list[tuple[int, ...] | ImageSlot] = []
    per_group = [0] * len(layout.groups)
    other = 0
    chunk: list[TextPiece] = []
    for piece in (*layout.pieces, None):
        if isinstance(piece, TextPiece):
            chunk.append(piece)
            continue
        if chunk:
            ids, counts = _tokenize_chunk(chunk, encode)
            if ids:
                segments.append(ids)
            for owner, count in counts:
                if owner is None:
                    other += count
                else:
                    per_group[owner] += count
            chunk = []
        if piece is not None:
            segments.append(piece)
            per_group[piece.group] += piece.num_tokens
    return TokenizedPrompt(tuple(segments), tuple(per_group), other)


def _tokenize_chunk(
    chunk: Sequence[TextPiece], encode: Callable[[str], Sequence[int]]
) -> tuple[tuple[int, ...], list[tuple[int | None, int]]]:
    """(ids of the joined chunk, [(owner, token count)] attributed by prefix)."""
    ids = tuple(encode("".join(p.text for p in chunk)))
    if len(chunk) == 1:
        return ids, [(chunk[0].group, len(ids))]
    counts, text, previous = [], "", 0
    for i, piece in enumerate(chunk):
        text += piece.text
        total = len(ids) if i == len(chunk) - 1 else len(encode(text))
        counts.append((piece.group, total - previous))
        previous = total
    return ids, counts
