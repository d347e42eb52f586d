"""Config file: where it is found, precedence (flag > env > file > default), unknown keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from longllava_cli.app import app
from longllava_cli.config import user_config_path


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_file_sets_defaults(runner, fake, video, tmp_path):
    config = write(tmp_path / "c.yaml", "model: /models/cfg\nframes: 7\nchunk-tokens: 99\ndtype: float16\n")
    result = runner.invoke(app, ["ask", str(video), "q", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert fake.loads[0].path == Path("/models/cfg") and fake.loads[0].dtype == "float16"
    assert fake.requests[0].sampling.num_frames == 7 and fake.requests[0].run.chunk_tokens == 99


def test_flags_then_environment_then_config(runner, fake, video, tmp_path):
    config = write(tmp_path / "c.yaml", "model: /models/cfg\nframes: 7\n")
    args = ["ask", str(video), "q", "--config", str(config)]
    runner.invoke(app, [*args, "--frames", "9", "--model", "/models/flag"], env={"LONGLLAVA_MODEL": "/models/env"})
    runner.invoke(app, args, env={"LONGLLAVA_MODEL": "/models/env"})
    assert [r.path for r in fake.loads] == [Path("/models/flag"), Path("/models/env")]
    assert [r.sampling.num_frames for r in fake.requests] == [9, 7]


def test_config_from_env_and_user_dir(runner, fake, video, tmp_path, monkeypatch):
    write(user_config_path(), "frames: 5\nmodel: /models/user\n")
    assert user_config_path() == tmp_path / "xdg" / "longllava" / "config.yaml"
    runner.invoke(app, ["ask", str(video), "q"])
    env_config = write(tmp_path / "env.yaml", "frames: 6\nmodel: /models/envcfg\n")
    runner.invoke(app, ["ask", str(video), "q"], env={"LONGLLAVA_CONFIG": str(env_config)})
    assert [r.sampling.num_frames for r in fake.requests] == [5, 6]
    assert [r.path for r in fake.loads] == [Path("/models/user"), Path("/models/envcfg")]


def test_one_file_serves_every_command(runner, fake, video, tmp_path):
    # `output` is a caption key, `columns` a frames key: both valid in a file given to `ask`.
    config = write(tmp_path / "c.yaml", "model: m\ncolumns: 4\noutput: out.jsonl\ngpu_memory: 24GB\n")
    result = runner.invoke(app, ["ask", str(video), "q", "--config", str(config)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("framez: 3\n", "unknown key 'framez'"),
        ("frames: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
        ("frames: lots\n", "frames"),
        ("config: other.yaml\n", "unknown key 'config'"),
    ],
)
def test_bad_config_is_a_usage_error(runner, fake, video, tmp_path, text, message):
    config = write(tmp_path / "c.yaml", text)
    result = runner.invoke(app, ["ask", str(video), "q", "--model", "m", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.replace("│", " ").split())
    assert not fake.loads


def test_yaml_is_loaded_safely(runner, fake, video, tmp_path):
    config = write(tmp_path / "c.yaml", "model: !!python/object/apply:os.getcwd []\n")
    result = runner.invoke(app, ["ask", str(video), "q", "--config", str(config)])
    assert result.exit_code == 2
    assert not fake.loads
