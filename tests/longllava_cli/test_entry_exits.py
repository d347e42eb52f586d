"""Exit codes and output paths as a user meets them: the installed `longllava` in a subprocess, on
real media. A reader that goes away (141), a closed stdout, Ctrl-C during start-up (130), the
contact sheet's output path, and `frames` planning for the model `ask` would use."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from longllava_cli.contact_sheet import SOFTWARE
from longllava_cli.errors import EXIT_BROKEN_PIPE, EXIT_INTERRUPTED
from model.demo import DEMO_MODEL_DIR as DEMO


def _script(longllava_exe: str) -> list[str]:
    """The console script itself, run by this Python (not a shell shim that a signal could hit first)."""
    beside = Path(sys.executable).with_name("longllava")
    return [sys.executable, str(beside)] if beside.is_file() else [longllava_exe]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg"), "COLUMNS": "200", **extra}
    for name in ("LONGLLAVA_CONFIG", "LONGLLAVA_MODEL", "LONGLLAVA_DEBUG"):
        if name not in extra:
            env.pop(name, None)
    return env


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_a_reader_that_goes_away_exits_141(longllava_exe, make_video, tmp_path, as_json):
    """`longllava frames ... | head -c 100`: far more output than a pipe buffers (64 KiB), reader gone."""
    video = make_video("long.mp4", 300)
    names = []
    for i in range(60):  # a table row lists 300 timestamps: ~100 KB in all
        link = tmp_path / f"v{i}.mp4"
        link.symlink_to(video)
        names.append(str(link))
    args = [*_script(longllava_exe), "frames", *names, "--frames", "300", "--quiet", *(["--json"] if as_json else [])]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path))
    assert process.stdout.read(100)
    process.stdout.close()
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == EXIT_BROKEN_PIPE, stderr
    assert b"Traceback" not in stderr and b"error" not in stderr


def test_a_closed_stdout_is_a_clean_error_before_any_work(longllava_exe, video, tmp_path):
    result = subprocess.run(
        [*_script(longllava_exe), "frames", str(video), "--json"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
        close_fds=True,
        preexec_fn=lambda: os.close(1),
    )
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("error: standard output is closed") and "bug" not in result.stderr


def test_ctrl_c_during_start_up_exits_130(longllava_exe, video, tiny_model, tmp_path):
    """SIGINT at random moments of start-up (imports, model loading, planning): always 130 and
    the one line, never a traceback, an ImportError or a run to completion."""
    rng = random.Random(14)
    command = [*_script(longllava_exe), "ask", str(video), "q", "--model", str(tiny_model), "--max-new-tokens", "2"]
    for _ in range(4):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(tmp_path))
        time.sleep(rng.uniform(0.15, 1.2))
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
        if process.returncode == 0:  # finished before the signal: nothing to check this round
            continue
        assert process.returncode == EXIT_INTERRUPTED, stderr
        assert stderr.decode().strip().splitlines()[-1] == "error: interrupted", stderr
        assert b"Traceback" not in stderr and stdout == b""


# --- the contact sheet's output path -----------------------------------------------------------


def test_contact_sheet_path_is_checked_before_decoding(run_cli, tmp_path):
    # The input does not even exist: the sheet's name is refused first, before anything is read.
    result = run_cli("frames", "missing.mp4", "--contact-sheet", "sheet.txt", "--quiet")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: sheet.txt:") and ".png" in line


def test_contact_sheet_folder_created_and_own_sheet_replaced(run_cli, video, tmp_path):
    sheet = tmp_path / "out" / "sub" / "sheet.png"
    args = ["frames", str(video), "--frames", "4", "--contact-sheet", str(sheet), "--quiet", "--json"]
    assert run_cli(*args).returncode == 0
    with Image.open(sheet) as picture:
        assert picture.getexif().get(0x0131) == SOFTWARE
    before = sheet.stat().st_mtime_ns
    time.sleep(0.01)
    again = run_cli(*args)  # our own sheet: replaced
    assert again.returncode == 0, again.stderr
    assert sheet.stat().st_mtime_ns != before
    assert not [p for p in sheet.parent.iterdir() if p.name.endswith(".tmp")]


def test_contact_sheet_never_replaces_an_input_or_a_file_it_did_not_write(runner, video, image, tmp_path):
    from longllava_cli.app import app

    theirs = tmp_path / "holiday.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(theirs)
    kept = {path: path.read_bytes() for path in (theirs, image)}
    for target in (theirs, image):  # a picture of the user's, and one of the inputs
        result = runner.invoke(app, ["frames", str(video), str(image), "--contact-sheet", str(target), "--quiet"])
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith("error: ") and str(target) in line
    assert {path: path.read_bytes() for path in kept} == kept


# --- frames plans for the model ask would use ----------------------------------------------------


def test_frames_plans_for_the_configured_model(run_cli, video, tiny_model, tmp_path):
    config = json.loads((tiny_model / "config.json").read_text())
    vision = config["vision_config"]
    per_image = (vision["image_size"] // vision["patch_size"] // 2) ** 2  # 2d pooling halves each side
    by_env = run_cli("frames", str(video), "--frames", "3", "--json", env={"LONGLLAVA_MODEL": str(tiny_model)})
    assert by_env.returncode == 0, by_env.stderr
    assert json.loads(by_env.stdout)["tokens_per_image"] == per_image
    assert by_env.stderr == ""  # a configured model: no demo note


def test_frames_takes_the_model_from_the_config_file(runner, video, tiny_model, tmp_path):
    from longllava_cli.app import app

    config = tmp_path / "config.yaml"
    config.write_text(f"model: {tiny_model}\n")
    result = runner.invoke(app, ["frames", str(video), "--frames", "3", "--json", "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"] == str(tiny_model) and result.stderr == ""


def test_quiet_silences_notices_and_warnings(run_cli, tmp_path):
    """A folder with more images than --frames and a cut video: a note and a warning, unless --quiet."""
    album = tmp_path / "album"
    album.mkdir()
    for i in range(5):
        Image.new("RGB", (16, 12), (40 * i, 0, 0)).save(album / f"p{i}.png")
    cut = _faststart_video(tmp_path / "cut.mp4", 60)  # index first, so the cut leaves it whole
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 6 // 10])
    args, env = ["frames", str(album), str(cut), "--frames", "2", "--json"], {"LONGLLAVA_MODEL": str(DEMO)}
    loud, quiet = run_cli(*args, env=env), run_cli(*args, "-q", env=env)
    assert loud.returncode == quiet.returncode == 0, loud.stderr
    assert loud.stdout == quiet.stdout  # the same results either way
    lines = loud.stderr.splitlines()
    assert any(line.startswith("note: ") and "2 of 5 images" in line for line in lines), loud.stderr
    assert any(line.startswith("warning: ") and "decodable" in line for line in lines), loud.stderr
    assert quiet.stderr == ""


def _faststart_video(path: Path, num_frames: int) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        noise = np.random.default_rng(0)
        for _ in range(num_frames):
            pixels = noise.integers(0, 256, (48, 64, 3), dtype=np.uint8)  # data outweigh the index
            container.mux(stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")))
        container.mux(stream.encode())
    return path
