"""The checkpoint's tokenizer (`tokenizer.json`) through the `tokenizers` library, without
transformers at run time.

LongLLaVA's `tokenizer_config.json` (upstream `llava/model/language_model/Jamba/`) declares
four special added tokens, pad `<|pad|>` 0, bos `<|startoftext|>` 1, eos `<|endoftext|>` 2,
unk `<|unk|>` 3, and `add_bos_token: true`. Everything else in the prompt (`<|User|>`,
`<|Assistant|>`, `<img>`, `</img>`, `<vid>`, `</vid>`, `<t>`) is plain text split into ordinary
tokens. The chat template writes `<|startoftext|>` itself, and upstream tokenises every piece
of the prompt with `add_special_tokens=False` (`llava/mm_utils.py`, `tokenizer_image_token`),
so `encode` never adds a BOS or EOS: the post-processor that `add_bos_token` configures is
bypassed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer as HFTokenizer

from model.checkpoint_files import JSON_LIMIT, checkpoint_file
from model.errors import CheckpointError

TOKENIZER_FILE = "tokenizer.json"
# Files that may name the special tokens, most authoritative first.
_SPECIAL_TOKEN_FILES = ("tokenizer_config.json", "special_tokens_map.json")
# Jamba / LongLLaVA values, used when no file names a role: (key, token text, id).
_DEFAULT_SPECIALS = {
    "bos": ("bos_token", "<|startoftext|>", 1),
    "eos": ("eos_token", "<|endoftext|>", 2),
    "pad": ("pad_token", "<|pad|>", 0),
    "unk": ("unk_token", "<|unk|>", 3),
}


@dataclass(frozen=True, kw_only=True)
class SpecialTokenIds:
    bos: int
    eos: int
    pad: int
    unk: int


class Tokenizer:
    """Text <-> token ids. `encode` adds no special tokens; `decode` drops them."""

    def __init__(self, tokenizer: HFTokenizer, special: SpecialTokenIds):
        self.tokenizer = tokenizer
        self.special = special

    @property
    def bos_token_id(self) -> int:
        return self.special.bos

    @property
    def eos_token_id(self) -> int:
        return self.special.eos

    @property
    def pad_token_id(self) -> int:
        return self.special.pad

    @property
    def vocab_size(self) -> int:
        """Entries in the vocabulary, added tokens included (the LM's vocab_size may be larger)."""
        return self.tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, added tokens written in it (`<|startoftext|>`) included, nothing added."""
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    __call__ = encode  # a tokenizer-like callable, as `sampling.prompt.tokenize_layout` takes

    def decode(self, ids: Sequence[int]) -> str:
        """Text of `ids` without special tokens (those marked special in tokenizer.json, and the
        bos / eos / pad ids even when the file does not mark them)."""
        skip = {self.special.bos, self.special.eos, self.special.pad}
        return self.tokenizer.decode([i for i in ids if i not in skip], skip_special_tokens=True)


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """The tokenizer of a checkpoint directory: `tokenizer.json`, with special ids from
    `tokenizer_config.json` / `special_tokens_map.json` when they name them, else from the
    Jamba token texts in the vocabulary, else Jamba's ids (bos 1, eos 2, pad 0, unk 3)."""
    directory = Path(directory)
    missing = (
        f"{directory}: no {TOKENIZER_FILE}; copy it from the model's Hugging Face repository "
        f"(LongLLaVA-9B ships one) into the checkpoint directory"
    )
    path = checkpoint_file(directory, TOKENIZER_FILE, missing=missing)  # inside the folder, a plain file
    if path.stat().st_size > JSON_LIMIT:
        raise CheckpointError(f"{path}: over {JSON_LIMIT // 2**20} MiB, not a tokenizer file; re-download it")
    try:
        tokenizer = HFTokenizer.from_file(str(path))
    except Exception as e:  # the Rust library raises a bare Exception on a malformed file
        raise CheckpointError(f"{path}: cannot be read as a tokenizers file ({e}); re-download it") from e
    return Tokenizer(tokenizer, read_special_token_ids(directory, tokenizer))


def read_special_token_ids(directory: Path, tokenizer: HFTokenizer) -> SpecialTokenIds:
    """Special ids by role, resolved as `load_tokenizer` documents."""
    declared = _read_declared_tokens(directory)
    ids = {}
    for role, (key, default_text, default_id) in _DEFAULT_SPECIALS.items():
        candidates = [declared[key]] if key in declared else []
        resolved = next(
            (i for text in [*candidates, default_text] if (i := tokenizer.token_to_id(text)) is not None), None
        )
        ids[role] = default_id if resolved is None else resolved
    return SpecialTokenIds(**ids)


def _read_declared_tokens(directory: Path) -> dict[str, str]:
    """{"bos_token": "<|startoftext|>", ...} from the first file that names each role."""
    declared: dict[str, str] = {}
    for name in _SPECIAL_TOKEN_FILES:
        if not (directory / name).exists():
            continue
        path = checkpoint_file(directory, name, missing=f"{directory / name}: missing")
        try:
            with open(path, "rb") as f:
                data = json.loads(f.read(JSON_LIMIT + 1).decode("utf-8"))
        except (OSError, ValueError, RecursionError) as e:
            detail = " ".join(str(e).split())[:200]
            raise CheckpointError(f"{path}: not valid JSON ({detail}); fix or delete the file") from e
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: not a JSON object; fix or delete the file")
        for key, _, _ in _DEFAULT_SPECIALS.values():
            text = _token_text(data.get(key))
            if text is not None:
                declared.setdefault(key, text)
    return declared


def _token_text(value: Any) -> str | None:
    """A special token entry is a string or an AddedToken dict {"content": ...}."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None
