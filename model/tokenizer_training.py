"""Tokenizers for small models built here (the tiny test checkpoints of `model/testing.py` and the
demo model of `model/training/`): a byte-level BPE trained on a corpus, with Jamba's special tokens,
written in the file layout of LongLLaVA's tokenizer folder (read back by `model/tokenizer.py`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

# Jamba's special tokens, in id order: pad 0, bos 1, eos 2, unk 3 (LongLLaVA tokenizer_config.json).
SPECIAL_TOKENS = ("<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>")
SPECIAL_TOKEN_ROLES = ("pad_token", "bos_token", "eos_token", "unk_token")


def train_byte_level_bpe(corpus: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE of at most `vocab_size` entries learnt from `corpus` (deterministic for a
    given corpus). Ids 0-3 are `SPECIAL_TOKENS`; the 256 byte symbols are always in the vocabulary,
    so any text encodes without unknowns and decodes back exactly."""
    tokenizer = Tokenizer(models.BPE(unk_token="<|unk|>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    return tokenizer


def write_tokenizer_files(
    directory: str | Path, tokenizer: Tokenizer, *, config_extra: Mapping[str, Any] | None = None
) -> Path:
    """Write `tokenizer.json`, `tokenizer_config.json` (Jamba's `add_bos_token: true`, the special
    tokens' roles and `config_extra`) and `special_tokens_map.json` into `directory` (created if
    needed); returns the directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(directory / "tokenizer.json"))
    roles = dict(zip(SPECIAL_TOKEN_ROLES, SPECIAL_TOKENS, strict=True))
    config = {"add_bos_token": True, "add_eos_token": False, **dict(config_extra or {}), **roles}
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    (directory / "special_tokens_map.json").write_text(json.dumps(roles, indent=2) + "\n", encoding="utf-8")
    return directory
