"""A user's mistake is a usage error: exit 2 and one `error:` line that says what to do, decided
before any model loads (library patched: `fake.loads` stays empty)."""

from __future__ import annotations

import pytest

from longllava_cli.app import app


def invoke(runner, *args, input=None):
    return runner.invoke(app, [str(a) for a in args], input=input)


def one_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and "this is a bug" not in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["ask", "-", "q"], "", "stdin held none"),
        (["ask", "-", "q"], "  \n\n \n", "stdin held none"),
        (["caption", "-", "-o", "out.jsonl"], "", "stdin held none"),
        (["ask", "{video}", ""], None, "question is empty"),
        (["ask", "{video}", "-q", "ok", "-q", "  "], None, "question is empty"),
        (["ask", "{video}", "q", "--device", "cuda"], None, "no CUDA device is available here; devices here: auto"),
        (["ask", "{video}", "q", "--device", "cuda:3"], None, "devices here: auto, cpu"),
        (["ask", "{video}", "q", "--device", "xpu"], None, "xpu devices are not supported"),
        (["ask", "{video}", "q", "--device", "mps"], None, "mps devices are not supported"),
        (["ask", "{video}", "q", "--device", ""], None, "'' is not a device name"),
        (["ask", "{video}", "q", "--device", "gpu"], None, "'gpu' is not a device name"),
        (["ask", "{video}", "q", "--fps", "inf"], None, "fps"),
        (["ask", "{video}", "q", "--fps", "nan"], None, "fps"),
        (["ask", "{video}", "q", "--temperature", "1e-45"], None, "temperature must be 0 (greedy) or in 0.01..100"),
        (["ask", "{video}", "q", "--seed", str(2**70)], None, "seed must be in 0..2^64-1"),
        (["ask", "{video}", "q", "--chunk-tokens", str(10**9)], None, "--chunk-tokens"),
        (["ask", "https://www.youtube.com/watch?v=x", "q"], None, "a URL, not a local file; download it first"),
        (["caption", "http://example.com/a.mp4", "-o", "out.jsonl"], None, "download it first"),
        (["ask", "-", "q"], "https://example.com/clip.mp4\n", "download it first"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(runner, fake, video, monkeypatch, tmp_path, args, stdin, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("model.devices.available_devices", lambda: ["cpu"])  # the same on a GPU machine
    args = [a.replace("{video}", str(video)) for a in args]
    result = invoke(runner, *args, "--model", "m", input=stdin)
    assert result.exit_code == 2, result.output
    assert message in one_line(result)
    assert not fake.loads


def test_binary_stdin_is_refused_without_echoing_it(runner, fake, video):
    data = video.read_bytes()
    result = runner.invoke(app, ["ask", "-", "q", "--model", "m"], input=data)
    assert result.exit_code == 2
    line = one_line(result)
    assert "stdin holds binary data, not paths" in line
    assert "ftyp" not in result.stderr and len(result.stderr) < 300  # the bytes are never shown
    assert not fake.loads


def test_a_path_named_like_a_url_that_exists_is_a_file(runner, fake, video, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    odd = tmp_path / "http:" / "" / "clip.mp4"  # "http://clip.mp4" relative to the cwd
    odd.parent.mkdir()
    odd.write_bytes(video.read_bytes())
    result = invoke(runner, "ask", "http://clip.mp4", "q", "--model", "m")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        (b"frames: 3\nmodel: caf\xe9\n", "is not UTF-8 text"),
    ],
)
def test_config_files_that_are_not_configs(runner, fake, video, tmp_path, content, message):
    config = tmp_path / "c.yaml"
    config.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = invoke(runner, "ask", video, "q", "--model", "m", "--config", config)
    assert result.exit_code == 2
    line = one_line(result)
    assert message in line and str(config) in line


def test_device_that_exists_passes(runner, fake, video):
    result = invoke(runner, "ask", video, "q", "--model", "m", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert fake.loads[0].device == "cpu"


def test_parser_errors_are_one_line_too(runner):
    result = invoke(runner, "ask", "--nope")
    assert result.exit_code == 2
    assert "No such option: --nope" in one_line(result) and "longllava ask --help" in result.stderr


# --- flags override the config file ------------------------------------------------------------


def write_config(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_a_flag_replaces_the_config_value_it_conflicts_with(runner, fake, video, tmp_path):
    config = write_config(tmp_path, "fps: 1\njson: true\nend: 2\n")
    result = invoke(runner, "ask", video, "q", "--model", "m", "--config", config, "--frames", "4", "--stream")
    assert result.exit_code == 0, result.output
    sampling = fake.requests[0].sampling
    assert sampling.fps is None and sampling.num_frames == 4  # --frames replaced the config's fps
    assert not result.stdout.lstrip().startswith("{")  # --stream replaced the config's json
    result = invoke(runner, "ask", video, "q", "--model", "m", "--config", config, "--start", "5")
    assert result.exit_code == 0, result.output
    assert (fake.requests[-1].sampling.start, fake.requests[-1].sampling.end) == (5, None)
    result = invoke(runner, "ask", video, "q", "--model", "m", "--config", config)  # config alone: its fps
    assert result.exit_code == 0 and fake.requests[-1].sampling.fps == 1


def test_both_alternatives_in_one_place_are_still_an_error(runner, fake, video, tmp_path):
    config = write_config(tmp_path, "fps: 1\nframes: 8\n")
    result = invoke(runner, "ask", video, "q", "--model", "m", "--config", config)
    assert result.exit_code == 2 and "alternatives" in one_line(result) and "sets both" in result.stderr
    result = invoke(runner, "ask", video, "q", "--model", "m", "--frames", "8", "--fps", "1")
    assert result.exit_code == 2 and "alternatives" in one_line(result)


def test_tiling_keys_in_the_config_are_ignored_without_tiles(runner, fake, video, image, tmp_path):
    config = write_config(tmp_path, "tile_size: 200\nmax_tiles: 4\n")
    result = invoke(runner, "ask", video, "q", "--model", "m", "--config", config)
    assert result.exit_code == 0, result.output
    sampling = fake.requests[0].sampling
    assert sampling.tiles is False and sampling.tile_size is None
    result = invoke(runner, "ask", image, "q", "--model", "m", "--config", config, "--tiles")
    assert result.exit_code == 0, result.output
    assert (fake.requests[-1].sampling.tile_size, fake.requests[-1].sampling.max_tiles) == (200, 4)
    result = invoke(runner, "ask", video, "q", "--model", "m", "--tile-size", "200")  # typed: still an error
    assert result.exit_code == 2 and "apply with --tiles" in one_line(result)


# --- quiet and verbose -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "where",
    [["--quiet", "ask"], ["-q", "ask"], ["ask", "--quiet"], ["ask", "--config", "{config}"]],
    ids=["before", "short-before", "after", "config"],
)
def test_quiet_silences_the_demo_note(runner, fake, video, tmp_path, where):
    config = write_config(tmp_path, "quiet: true\n")
    args = [a.replace("{config}", str(config)) for a in where]
    result = invoke(runner, *args, video, "q")
    assert result.exit_code == 0, result.output
    assert result.stderr == "" and result.stdout == "answer to q\n"


def test_quiet_keeps_errors(runner, fake, video):
    result = invoke(runner, "ask", "--quiet", video, "--model", "m", "--top-p", "0", "q")
    assert result.exit_code == 2 and "top_p" in one_line(result)


def test_verbose_after_the_subcommand(runner, fake, video):
    result = invoke(runner, "frames", video, "-vv", "--json")
    assert result.exit_code == 0, result.output
    import logging

    assert logging.getLogger().level == logging.DEBUG


def test_caption_and_frames_take_short_quiet(runner, fake, video, tmp_path):
    result = invoke(runner, "frames", video, "-q")
    assert result.exit_code == 0 and result.stderr == ""  # no demo note
    result = invoke(runner, "caption", video, "-o", tmp_path / "out.jsonl", "-q")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no demo note, no progress lines, no summary
