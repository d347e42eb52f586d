"""The demo model's mixer layouts, exported and loaded back."""

from __future__ import annotations

import pytest

from model import load_model
from model.training.architecture import build_model
from model.training.export import export


@pytest.mark.parametrize(
    ("layout", "types"), [("hybrid", "MMAMMA"), ("mamba", "MMMMMM"), ("attention", "AAAAAA")]
)
def test_layouts(built, layout, types):
    directory, _ = built
    model = build_model(directory / "tokenizer", seed=0, layout=layout)
    assert "".join(t[0].upper() for t in model.config.lm.layer_types) == types
    out = export(model.eval(), directory / "tokenizer", directory / f"model_{layout}", layout)
    assert load_model(out).config.lm.layer_types == model.config.lm.layer_types
