"""Fixtures shared by every test folder: the example scripts, which are not a package, loaded by
file path (registered under their module names, so `train_demo_model`'s and
`make_demo_media`'s `import synthetic` find the same module)."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load_example(name: str) -> ModuleType:
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def synthetic() -> ModuleType:
    return load_example("synthetic")


@pytest.fixture(scope="session")
def trainer(synthetic) -> ModuleType:
    return load_example("train_demo_model")


@pytest.fixture(scope="session")
def demo_media(synthetic) -> ModuleType:
    """examples/make_demo_media.py: the committed demo files' questions and answers."""
    return load_example("make_demo_media")


@pytest.fixture(autouse=True)
def _restore_logging():
    """The CLI configures the root logger for its process (`-vv`: DEBUG, its own handler); in-process
    CLI tests must not leave that to the tests after them."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    root.setLevel(level)
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
