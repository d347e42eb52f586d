"""The checkpoint tokenizer wrapper on a tiny trained BPE in LongLLaVA's file layout."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

from model.errors import CheckpointError
from model.testing import SPECIAL_TOKENS, TEMPLATE_STRINGS, train_tiny_tokenizer, write_tiny_tokenizer
from model.tokenizer import SpecialTokenIds, Tokenizer, load_tokenizer
from sampling.prompt import ImageGroup, VideoGroup, build_prompt_layout, compose_user_content, tokenize_layout

PROMPT = "<|startoftext|><|User|>\n<vid><img>"


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    return write_tiny_tokenizer(tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tok(tokenizer_dir) -> Tokenizer:
    return load_tokenizer(tokenizer_dir)


def test_special_ids_are_jambas(tok):
    assert tok.special == SpecialTokenIds(bos=1, eos=2, pad=0, unk=3)
    assert (tok.bos_token_id, tok.eos_token_id, tok.pad_token_id) == (1, 2, 0)


def test_encode_adds_no_bos_although_the_file_would(tok):
    # The file's post-processor adds <|startoftext|> (like Jamba's add_bos_token) when asked to.
    assert tok.tokenizer.encode("hi").ids[0] == 1
    assert 1 not in tok.encode("hi")
    ids = tok.encode(PROMPT)
    assert ids[0] == 1 and ids.count(1) == 1  # only the template's own <|startoftext|>
    assert tok(PROMPT) == ids


def test_template_strings_are_plain_text_and_round_trip(tok):
    added = {t.content for t in tok.tokenizer.get_added_tokens_decoder().values()}
    assert added == set(SPECIAL_TOKENS)
    for text in TEMPLATE_STRINGS:
        ids = tok.encode(text)
        assert ids and 3 not in ids  # no unknowns
        assert tok.decode(ids) == text


def test_decode_skips_special_tokens(tok):
    ids = [*tok.encode("<|startoftext|><|Assistant|>\nA cat.<|endoftext|>"), tok.pad_token_id]
    assert tok.decode(ids) == "<|Assistant|>\nA cat."


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=40).filter(lambda s: not any(t in s for t in SPECIAL_TOKENS)))
def test_any_text_round_trips(text):
    tok = Tokenizer(_TRAINED, SpecialTokenIds(bos=1, eos=2, pad=0, unk=3))
    assert tok.decode(tok.encode(text)) == text


_TRAINED = train_tiny_tokenizer()


def test_training_is_deterministic_and_bounded():
    again = train_tiny_tokenizer()
    assert again.to_str() == _TRAINED.to_str()
    assert 260 <= again.get_vocab_size() <= 512
    assert train_tiny_tokenizer(300).get_vocab_size() <= 300
    with pytest.raises(ValueError, match="260"):
        train_tiny_tokenizer(100)


def test_missing_tokenizer_json_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(CheckpointError, match=r"no tokenizer\.json; copy it"):
        load_tokenizer(tmp_path)


def test_corrupt_tokenizer_json_is_a_checkpoint_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"tokenizer\.json"):
        load_tokenizer(tmp_path)


def test_corrupt_tokenizer_config_is_a_checkpoint_error(tmp_path):
    write_tiny_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"tokenizer_config\.json"):
        load_tokenizer(tmp_path)


def test_special_ids_come_from_the_checkpoint_files(tmp_path):
    write_tiny_tokenizer(tmp_path)
    # tokenizer_config.json wins over special_tokens_map.json; entries may be AddedToken dicts.
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"eos_token": {"content": "<|pad|>"}}))
    (tmp_path / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": "<|unk|>", "bos_token": "<|endoftext|>", "pad_token": "not in vocab"})
    )
    assert load_tokenizer(tmp_path).special == SpecialTokenIds(bos=2, eos=0, pad=0, unk=3)


def test_without_config_files_ids_come_from_the_vocabulary_then_jambas_defaults(tmp_path):
    write_tiny_tokenizer(tmp_path)
    (tmp_path / "tokenizer_config.json").unlink()
    (tmp_path / "special_tokens_map.json").unlink()
    assert load_tokenizer(tmp_path).special == SpecialTokenIds(bos=1, eos=2, pad=0, unk=3)

    vocab = {"<s>": 0, "</s>": 1, "<|endoftext|>": 5, "hi": 6}
    HFTokenizer(models.WordLevel(vocab, unk_token="<s>")).save(str(tmp_path / "tokenizer.json"))
    assert load_tokenizer(tmp_path).special == SpecialTokenIds(bos=1, eos=5, pad=0, unk=3)


def test_prompt_tokenisation_matches_upstreams_split_on_image(tok):
    """`tokenize_layout` with our tokenizer gives upstream's ids: `tokenizer_image_token` splits
    the prompt on <image> and encodes each chunk with add_special_tokens=False."""
    layout = build_prompt_layout(compose_user_content("What happens?", [VideoGroup(3), ImageGroup()]))
    tokens = tokenize_layout(layout, tok)
    upstream = [tok.tokenizer.encode(chunk, add_special_tokens=False).ids for chunk in layout.text.split("<image>")]
    ours = [list(s) if isinstance(s, tuple) else "slot" for s in tokens.segments]
    expected = [x for chunk in upstream for x in (chunk, "slot")][:-1]
    assert ours == [x for x in expected if x != []]
    assert tokens.num_tokens == sum(map(len, upstream)) + 4 * 144
