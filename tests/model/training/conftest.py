"""The demo model's training recipe: an untrained demo model and its tokenizer, built once per test module."""

from __future__ import annotations

import pytest

from model.training.architecture import build_model
from model.training.tokenizer import write_tokenizer


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    write_tokenizer(directory / "tokenizer")
    return directory, build_model(directory / "tokenizer", seed=0)
