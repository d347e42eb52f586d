"""The recipe's command line (model/training/recipe.py), as the README runs it through the thin
script `examples/train_demo_model.py` and as `python -m model.training` runs it."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from model.training.recipe import build_parser

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _help(prog: str) -> str:
    parser = build_parser()
    parser.prog = prog
    return parser.format_help()


def test_example_script_is_the_recipes_command_line(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    script = EXAMPLES / "train_demo_model.py"
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, env=dict(os.environ), timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == _help("train_demo_model.py")
    assert "--out" in done.stdout and "--count-steps" in done.stdout


def test_package_runs_as_a_module(monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setattr(sys, "argv", ["model.training", "--help"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_module("model.training", run_name="__main__")
    assert exit_.value.code == 0 and capsys.readouterr().out == _help("model.training")
