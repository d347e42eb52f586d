"""Fixtures shared by every test folder."""

from __future__ import annotations

import logging

import pytest


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
