"""The commands build the right requests from their options (library patched), and write results
to stdout in the documented shapes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from longllava_cli.app import app
from model.request import ModelSpec as ModelRequest


def invoke(runner, *args, input=None, env=None):
    return runner.invoke(app, [str(a) for a in args], input=input, env=env)


# --- help ------------------------------------------------------------------------------------


def test_help_does_not_import_torch():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from longllava_cli.app import app\n"
        "for command in ([], ['ask'], ['caption'], ['frames'], ['info'], ['estimate']):\n"
        "    result = CliRunner().invoke(app, [*command, '--help'])\n"
        "    assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('torch', 'model', 'sampling', 'av', 'cv2') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("ask", ["--model", "--frames", "[default: 128]", "--fps", "--chunk-tokens", "[default: 2048]", "--json",
                 "--stream", "--question", "--max-new-tokens", "[default: 768]", "--top-p", "--seed", "--dtype",
                 "LONGLLAVA_MODEL", "--tiles", "--max-tiles", "[default: 100]", "--start", "--end", "--config"]),
        ("caption", ["--output", "--prompt", "--shard", "--retry-errors", "--model"]),
        ("frames", ["--contact-sheet", "--json", "--columns", "[default: 8]"]),
        ("info", ["--model", "--json"]),
        ("estimate", ["--gpu-memory", "--frames", "--dtype"]),
    ],
)  # fmt: skip
def test_help_lists_options_with_defaults(runner, command, expected):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0
    for text in expected:
        assert text in result.output, f"{text} missing from `{command} --help`"


def test_help_defaults_match_the_library():
    from longllava_cli import options
    from model.api import RunOptions
    from model.engine import GenerationOptions
    from sampling import options as sampling_options

    assert options.DEFAULT_FRAMES == sampling_options.DEFAULT_NUM_FRAMES
    assert options.MAX_FRAMES == sampling_options.MAX_FRAMES
    assert options.DEFAULT_MAX_TILES == sampling_options.DEFAULT_MAX_TILES
    assert RunOptions().chunk_tokens == options.DEFAULT_CHUNK_TOKENS
    from longllava_cli.build import parse_size

    assert RunOptions().cache_size == parse_size(options.DEFAULT_CACHE_SIZE)
    assert GenerationOptions().max_new_tokens == options.DEFAULT_MAX_NEW_TOKENS


# --- ask: requests ---------------------------------------------------------------------------


def test_ask_builds_the_request(runner, fake, video, image):
    result = invoke(
        runner, "ask", video, image, "What happens?", "--model", "ckpt", "--frames", "16", "--start", "1",
        "--end", "2.5", "--chunk-tokens", "512", "--device", "cpu", "--dtype", "bfloat16", "--temperature",
        "0.7", "--top-p", "0.9", "--top-k", "5", "--seed", "3", "--max-new-tokens", "20", "--backend", "opencv",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "answer to What happens?\n"
    assert fake.loads == [ModelRequest(path=Path("ckpt"), device="cpu", dtype="bfloat16", vision_tower=None)]
    (request,) = fake.requests
    assert request.inputs == (str(video), str(image))
    assert request.questions == ("What happens?",)
    s, g = request.sampling, request.generation
    assert (s.num_frames, s.fps, s.start, s.end, s.backend, s.tiles) == (16, None, 1.0, 2.5, "opencv", False)
    assert (g.temperature, g.top_p, g.top_k, g.seed, g.max_new_tokens) == (0.7, 0.9, 5, 3, 20)
    assert request.run.chunk_tokens == 512


def test_ask_several_questions_and_stdin_paths(runner, fake, video, image):
    result = invoke(runner, "ask", "-", "-q", "First?", "-q", "Second?", "--model", "m", input=f"{video}\n\n{image}\n")
    assert result.exit_code == 0, result.output
    assert fake.requests[0].inputs == (str(video), str(image))
    assert fake.requests[0].questions == ("First?", "Second?")
    assert result.stdout == "Q: First?\nanswer to First?\n\nQ: Second?\nanswer to Second?\n"


def test_ask_defaults_and_tiles(runner, fake, image):
    result = invoke(runner, "ask", image, "q", "--model", "m", "--tiles", "--tile-size", "100", "--max-tiles", "4")
    assert result.exit_code == 0, result.output
    s = fake.requests[0].sampling
    assert (s.tiles, s.tile_size, s.max_tiles, s.num_frames, s.fps) == (True, 100, 4, 128, None)
    assert fake.loads[0].device == "auto" and fake.loads[0].dtype is None


def test_ask_fps(runner, fake, video):
    result = invoke(runner, "ask", video, "q", "--model", "m", "--fps", "0.5", "--max-frames", "64")
    assert result.exit_code == 0, result.output
    s = fake.requests[0].sampling
    assert (s.fps, s.max_frames) == (0.5, 64)


def test_ask_model_from_environment(runner, fake, video):
    result = invoke(runner, "ask", video, "q", env={"LONGLLAVA_MODEL": "/models/env"})
    assert result.exit_code == 0, result.output
    assert fake.loads[0].path == Path("/models/env")


def test_ask_json_schema(runner, fake, video):
    result = invoke(runner, "ask", video, "-q", "a?", "-q", "b?", "--model", "m", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) >= {"model", "answers", "inputs", "num_prompt_tokens", "num_visual_tokens", "timings"}
    assert [a["question"] for a in data["answers"]] == ["a?", "b?"]
    assert set(data["answers"][0]) == {"question", "text", "num_tokens", "finish_reason"}
    assert data["inputs"][0]["frames"][1] == {"kind": "frame", "index": 5, "timestamp": 0.2, "tile": None}
    assert data["peak_memory_bytes"] == 123 and data["model"] in ("m", "the-model")


def test_ask_stream(runner, fake, video):
    result = invoke(runner, "ask", video, "q", "--model", "m", "--stream")
    assert result.exit_code == 0, result.output
    assert result.stdout == "answer\n"
    result = invoke(runner, "ask", video, "-q", "a", "-q", "b", "--model", "m", "--stream")
    assert result.stdout == "Q: a\nanswer\n\nQ: b\nanswer\n"


# --- ask: usage errors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--json", "--stream"], "cannot be combined"),
        (["--frames", "8", "--fps", "1"], "alternatives"),
        (["--tile-size", "200"], "apply with --tiles"),
        (["--start", "5", "--end", "2"], "before end"),
        (["--frames", "0"], "--frames"),
        (["--top-p", "0"], "top_p"),
        (["--dtype", "int4"], "--dtype"),
    ],
)
def test_ask_usage_errors_exit_2(runner, fake, video, args, message):
    result = invoke(runner, "ask", video, "q", "--model", "m", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not fake.loads


def test_ask_without_model_uses_the_demo_model(runner, fake, video):
    from model.demo import DEMO_MODEL_DIR, DEMO_NOTICE

    result = invoke(runner, "ask", video, "q")
    assert result.exit_code == 0, result.output
    assert [r.path for r in fake.loads] == [DEMO_MODEL_DIR]
    assert result.stderr.strip().splitlines() == [DEMO_NOTICE]


def test_ask_without_model_or_demo_is_a_usage_error(runner, fake, video, monkeypatch):
    monkeypatch.setattr("model.demo.demo_model_dir", lambda: None)  # an install without it
    result = invoke(runner, "ask", video, "q")
    assert result.exit_code == 2
    assert "--model" in result.output and "LONGLLAVA_MODEL" in result.output


def test_ask_without_question_is_a_usage_error(runner, fake, video):
    result = invoke(runner, "ask", video, "--model", "m")
    assert result.exit_code == 2
    assert "QUESTION" in result.output


def test_ask_missing_path_fails_before_loading(runner, fake, tmp_path):
    result = invoke(runner, "ask", tmp_path / "nope.mp4", "q", "--model", "m")
    assert result.exit_code == 1
    expected = f"error: {tmp_path / 'nope.mp4'}: no such file or folder; check the path"
    assert result.stderr.strip().splitlines() == [expected]
    assert not fake.loads
