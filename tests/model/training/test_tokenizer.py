"""The demo tokenizer keeps the prompt's separators whole."""

from __future__ import annotations


def test_separators_are_single_tokens(built):
    _, model = built
    encode = model.tokenizer.encode
    assert [len(encode(s)) for s in ("<img>", "</img>", "<t>", "<vid>", "</vid>")] == [1] * 5
    assert len(encode("</img><t><img>")) == 3
    assert model.tokenizer.decode(encode("<vid><img>red circle</img></vid>")) == "<vid><img>red circle</img></vid>"
