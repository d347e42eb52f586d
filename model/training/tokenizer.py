"""The demo model's tokenizer: a byte-level BPE learnt from the prompt template and the tasks'
questions and answers, with the prompt's markup as single added tokens."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from model.tokenizer_training import train_byte_level_bpe, write_tokenizer_files
from model.training import synthetic
from model.training.architecture import LM_CONFIG

MARKUP_TOKENS = ("<img>", "</img>", "<t>", "<vid>", "</vid>", "<|User|>", "<|Assistant|>")
MARKUP_LINES = (
    "<|startoftext|><|User|>\n<img><image></img>\n",
    "<vid><img><image></img><t><img><image></img><t><img><image></img></vid>",
    "<img><image>\n<img><image></img><img><image></img>\n<img><image></img><img><image></img></img>\n",
    "\n<|startoftext|><|Assistant|>\n",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def train_tokenizer(lines: Sequence[str], vocab_size: int) -> HFTokenizer:
    """Byte-level BPE on the template and task text, Jamba's special ids (pad 0, bos 1, eos 2, unk 3)."""
    tokenizer = train_byte_level_bpe([line for line in MARKUP_LINES for _ in range(50)] + list(lines), vocab_size)
    # One token per separator, so a frame costs 4 image + 3 markup tokens (`<img>`, `</img>`,
    # `<t>`) rather than the ~8 pieces BPE makes of them.
    tokenizer.add_tokens(list(MARKUP_TOKENS))
    return tokenizer


def write_tokenizer(directory: Path) -> None:
    """Train the tokenizer on `synthetic.template_text()` and write its files into `directory`."""
    write_tokenizer_files(directory, train_tokenizer(synthetic.template_text(), LM_CONFIG["vocab_size"]))
