"""--decode-workers: reaches the request (flag, config key, default), and changes nothing but speed:
through the installed entry point, `frames` draws the same contact sheet and `ask` (slow) gives the
same answer with 2 decoding threads as with 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from longllava_cli.app import app
from sampling.parallel import default_decode_workers

from .conftest import write_image, write_video


@pytest.fixture
def inputs(tmp_path: Path) -> list[str]:
    """A video of 3 GOPs, a folder of 3 pictures and a picture tiled 2×2 at the tiny model's 28 px."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for seed in range(3):
        write_image(folder / f"p{seed}.png", seed=seed)
    video = write_video(tmp_path / "clip.mp4", 30)
    return [str(video), str(folder), str(write_image(tmp_path / "big.png", size=(50, 40), seed=7))]


def test_the_flag_and_the_config_key_reach_the_request(runner, fake, video, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("decode_workers: 3\n")
    for args in (["--decode-workers", "2"], ["--config", str(config)], []):
        result = runner.invoke(app, ["ask", str(video), "q", "--model", "m", *args])
        assert result.exit_code == 0, result.output
    assert [r.run.decode_workers for r in fake.requests] == [2, 3, default_decode_workers()]
    assert runner.invoke(app, ["ask", str(video), "q", "--model", "m", "--decode-workers", "0"]).exit_code == 2


@pytest.mark.slow  # two model runs, ~4 s each
def test_ask_answers_the_same_with_two_decoding_threads(run_cli, tiny_model, inputs):
    outputs = []
    for workers in ("1", "2"):
        result = run_cli("ask", *inputs, "What is shown?", "--model", str(tiny_model), "--frames", "12",
                         "--tiles", "--tile-size", "28", "--max-new-tokens", "6", "--json",
                         "--decode-workers", workers)  # fmt: skip
        assert result.returncode == 0, result.stderr
        output = json.loads(result.stdout)
        del output["timings"], output["peak_memory_bytes"]
        outputs.append(output)
    assert outputs[1] == outputs[0]
    assert [len(item["frames"]) for item in outputs[0]["inputs"]] == [12, 3, 5]


def test_frames_draws_the_same_contact_sheet_with_two_decoding_threads(run_cli, inputs, tmp_path):
    outputs = []
    for workers in ("1", "2"):
        sheet = tmp_path / f"sheet{workers}.png"
        result = run_cli("frames", *inputs, "--frames", "12", "--tiles", "--tile-size", "28", "--json",
                         "--contact-sheet", str(sheet), "--decode-workers", workers)  # fmt: skip
        assert result.returncode == 0, result.stderr
        description = json.loads(result.stdout)
        assert description.pop("contact_sheet")["path"] == str(sheet)
        outputs.append((description, Image.open(sheet).tobytes()))
    assert outputs[1] == outputs[0]
