"""The README's main commands, as a user on a fresh install runs them: no --model, no config, so
the built-in demo model answers, and says once on stderr what it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.demo import DEMO_NOTICE
from model.training import demo_media

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.mark.parametrize(
    "name", ["shapes.mp4", "order.mp4", "count.mp4", "pictures/1.png", "pictures/2.png", "pictures/3.png"]
)
def test_ask_about_a_demo_file(run_cli, name):
    item = demo_media.demo_items()[name]
    result = run_cli("ask", str(EXAMPLES / name), item.question)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == item.answer
    assert result.stderr.strip() == DEMO_NOTICE


def test_several_questions_as_json(run_cli):
    item = demo_media.demo_items()["shapes.mp4"]
    questions = ["Which object appears in the video?", "What shape and colour is shown in one frame?"]
    result = run_cli("ask", str(EXAMPLES / "shapes.mp4"), "-q", questions[0], "-q", questions[1], "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert [a["question"] for a in data["answers"]] == questions
    assert [a["text"] for a in data["answers"]] == [item.answer, item.answer]
    assert data["model"].endswith("demo") and data["inputs"][0]["num_available"] == 64


def test_a_configured_model_is_used_without_the_notice(run_cli, tiny_model):
    picture = str(EXAMPLES / "pictures" / "1.png")
    result = run_cli("ask", picture, "What is it?", "--max-new-tokens", "2", env={"LONGLLAVA_MODEL": str(tiny_model)})
    assert result.returncode == 0, result.stderr
    assert DEMO_NOTICE not in result.stderr
