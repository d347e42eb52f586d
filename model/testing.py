"""Tiny stand-ins for released LongLLaVA files, for tests and for trying the plumbing without
downloading 19 GB. Nothing here is used by inference itself."""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

# ---------------------------------------------------------------------------------------------
# Tokenizer: a small byte-level BPE whose vocabulary covers the LongLLaVA prompt strings.
# ---------------------------------------------------------------------------------------------

# Jamba's special tokens, in id order: pad 0, bos 1, eos 2, unk 3 (LongLLaVA tokenizer_config.json).
SPECIAL_TOKENS = ("<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>")
# Plain text in the real tokenizer (not added tokens); the BPE learns them from the corpus.
TEMPLATE_STRINGS = ("<|User|>", "<|Assistant|>", "<img>", "</img>", "<vid>", "</vid>", "<t>", "<image>", "\n")
_CORPUS_LINES = (
    "<|startoftext|><|User|>\n<img><image></img>\nWhat is shown in this image?\n<|startoftext|><|Assistant|>\n",
    "<vid><img><image></img><t><img><image></img><t><img><image></img></vid>What happens in the video?",
    "<img><image>\n<img><image></img><img><image></img>\n<img><image></img><img><image></img></img>\n",
    "A cat sits on a red mat next to the window. The dog runs across the green field.",
    "Describe the scene in detail. How many people are there? What colour is the car?",
    "The quick brown fox jumps over the lazy dog. 0 1 2 3 4 5 6 7 8 9 10 seconds, frames.",
)


def train_tiny_tokenizer(vocab_size: int = 512) -> Tokenizer:
    """A deterministic byte-level BPE of at most `vocab_size` entries (>= 260: 4 specials + 256
    bytes), so any text encodes without unknowns and decodes back exactly. Special ids are
    Jamba's; like Jamba's `add_bos_token`, its post-processor would add `<|startoftext|>` if a
    caller asked for special tokens (our `model.tokenizer.Tokenizer` never does)."""
    if vocab_size < len(SPECIAL_TOKENS) + 256:
        raise ValueError(f"vocab_size {vocab_size} < 260 (4 special tokens + 256 bytes)")
    tokenizer = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([line for line in _CORPUS_LINES for _ in range(20)], trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A", special_tokens=[("<|startoftext|>", 1)]
    )
    return tokenizer


def write_tiny_tokenizer(directory: str | Path, *, vocab_size: int = 512) -> Path:
    """Write `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` in the
    layout of LongLLaVA-9B's into `directory` (created if needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    train_tiny_tokenizer(vocab_size).save(str(directory / "tokenizer.json"))
    roles = dict(zip(("pad_token", "bos_token", "eos_token", "unk_token"), SPECIAL_TOKENS, strict=True))
    added = {
        str(i): {"content": text, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}
        | {"special": True}
        for i, text in enumerate(SPECIAL_TOKENS)
    }
    config = {"add_bos_token": True, "add_eos_token": False, "added_tokens_decoder": added, **roles}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(roles, indent=2) + "\n", encoding="utf-8")
    return directory
