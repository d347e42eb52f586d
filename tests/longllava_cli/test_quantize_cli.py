"""--quantize on ask, caption and estimate (and as the `quantize` config key): the model spec carries
it, estimate shows the weights by module kind, a missing library is one line and exit 1, `info`
says which methods work here, and the demo model's README answers hold under int8."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from longllava_cli.app import app
from model.module_kinds import MODULE_KINDS
from model.training import demo_media

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_ask_and_caption_pass_the_quantisation_to_the_model_spec(runner, fake, video, tmp_path):
    result = runner.invoke(app, ["ask", str(video), "q", "--model", "m", "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "captions.jsonl"
    result = runner.invoke(app, ["caption", str(video), "-o", str(out), "--model", "m", "--quantize", "nf4"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["ask", str(video), "q", "--model", "m"])
    assert [spec.quantize for spec in fake.loads] == ["int8", "nf4", "none"]


def test_quantize_is_a_config_key_and_the_flag_wins(runner, fake, video, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("model: m\nquantize: nf4\n")
    assert runner.invoke(app, ["ask", str(video), "q", "--config", str(config)]).exit_code == 0
    assert runner.invoke(app, ["ask", str(video), "q", "--config", str(config), "--quantize", "int8"]).exit_code == 0
    assert [spec.quantize for spec in fake.loads] == ["nf4", "int8"]
    bad = runner.invoke(app, ["ask", str(video), "q", "--model", "m", "--quantize", "int4"])
    assert bad.exit_code == 2 and "int4" in bad.output


def test_estimate_shows_the_weights_by_kind_quantised(runner, tiny_model):
    base = ["estimate", "--model", str(tiny_model), "--frames", "8", "--gpu-memory", "1GB", "--json"]
    plain = json.loads(runner.invoke(app, base).stdout)
    int8 = json.loads(runner.invoke(app, [*base, "--quantize", "int8"]).stdout)
    assert (plain["quantize"], int8["quantize"]) == ("none", "int8")
    assert sum(int8["weights_by_kind"].values()) == int8["memory_bytes"]["weights"] < plain["memory_bytes"]["weights"]
    assert int8["weights_by_kind"]["mamba"] == plain["weights_by_kind"]["mamba"]
    assert int8["weights_by_kind"]["attention"] < plain["weights_by_kind"]["attention"]
    text = runner.invoke(app, [*base[:-1], "--quantize", "nf4"]).stdout
    assert "weights by kind" in text
    assert all(MODULE_KINDS[kind].label in text for kind in plain["weights_by_kind"])
    assert "attention" in text and " nf4\n" in text  # the quantised kinds say how they are stored


def test_a_missing_quantisation_library_is_one_line_and_exit_1(runner, tiny_model, image, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # `import torchao` then fails as if not installed
    result = runner.invoke(app, ["ask", str(image), "What is it?", "--model", str(tiny_model), "--quantize", "int8"])
    assert result.exit_code == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and "torchao" in line and 'pip install -e ".[quant]"' in line


def test_info_says_which_quantisations_work_here(runner):
    data = json.loads(runner.invoke(app, ["info", "--json"]).stdout)
    support = data["environment"]["quantization"]
    assert {method: row["package"] for method, row in support.items()} == {"int8": "torchao", "nf4": "bitsandbytes"}
    assert all(row["cpu"].startswith("yes") for row in support.values())  # both are installed with [dev]
    text = runner.invoke(app, ["info"]).stdout
    assert "--quantize int8" in text and "--quantize nf4" in text


def test_the_demo_models_readme_answers_hold_under_int8(run_cli):
    """The README's shapes.mp4 command with --quantize int8, several questions in one run."""
    item = demo_media.demo_items()["shapes.mp4"]
    questions = ["-q", item.question, "-q", "What shape and colour is shown in one frame?"]
    result = run_cli("ask", str(EXAMPLES / "shapes.mp4"), *questions, "--quantize", "int8", "--json")
    assert result.returncode == 0, result.stderr
    assert [answer["text"] for answer in json.loads(result.stdout)["answers"]] == [item.answer, item.answer]


@pytest.mark.slow
@pytest.mark.parametrize("quantize", ["int8", "nf4"])
def test_every_readme_answer_holds_when_quantised(quantize):
    from model.api import AskRequest, ask, load
    from model.demo import DEMO_MODEL_DIR
    from model.request import ModelSpec

    model = load(ModelSpec(path=DEMO_MODEL_DIR, quantize=quantize))
    for name, item in demo_media.demo_items().items():
        result = ask(model, AskRequest(inputs=(str(EXAMPLES / name),), questions=(item.question,)))
        assert result.answers[0].text == item.answer, name
