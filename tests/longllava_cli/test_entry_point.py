"""The installed `longllava` entry point as a subprocess, on generated media and a tiny random
checkpoint: what users actually run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from PIL import Image

from longllava_cli.contact_sheet import sheet_size
from longllava_cli.errors import EXIT_INTERRUPTED, EXIT_PARTIAL
from model.demo import DEMO_MODEL_DIR


def test_frames_json(run_cli, video):
    result = run_cli("frames", str(video), "--frames", "6", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    (item,) = data["inputs"]
    assert item["kind"] == "video" and item["num_available"] == 30 and item["num_images"] == 6
    stamps = [f["timestamp"] for f in item["frames"]]
    assert stamps == sorted(stamps) and stamps[0] == 0.0 and stamps[-1] == pytest.approx(29 / 25)
    demo = json.loads((DEMO_MODEL_DIR / "config.json").read_text())  # no --model: planned for the demo model
    per_image = (demo["vision_config"]["image_size"] // demo["vision_config"]["patch_size"] // 2) ** 2
    assert data["tokens_per_image"] == per_image and data["num_visual_tokens"] == 6 * per_image


def test_frames_table(run_cli, video, image):
    result = run_cli("frames", str(video), str(image), "--frames", "4")
    assert result.returncode == 0, result.stderr
    assert "video" in result.stdout and "image" in result.stdout and "total: 5 images" in result.stdout


def test_contact_sheet(run_cli, video, image, tmp_path):
    sheet = tmp_path / "sheet.png"
    args = ["frames", str(video), str(image), "--frames", "10", "--contact-sheet", str(sheet), "--columns", "4"]
    result = run_cli(*args, "--thumb-width", "80", "--json")
    assert result.returncode == 0, result.stderr
    with Image.open(sheet) as picture:
        picture.load()
        assert picture.format == "PNG"
        assert picture.size == sheet_size(11, columns=4, thumb_width=80) == (320, 3 * (60 + 16))
    assert json.loads(result.stdout)["contact_sheet"]["width"] == 320


def test_info(run_cli):
    result = run_cli("info")
    assert result.returncode == 0, result.stderr
    for key in ("torch", "cuda", "mamba kernels", "cpu kernels", "video backends"):
        assert key in result.stdout


def test_info_and_estimate_with_model(run_cli, tiny_model):
    info = run_cli("info", "--model", str(tiny_model))
    assert info.returncode == 0, info.stderr
    assert "layers" in info.stdout and "KV bytes per token" in info.stdout
    estimate = run_cli("estimate", "--model", str(tiny_model), "--frames", "32", "--gpu-memory", "2GB")
    assert estimate.returncode == 0, estimate.stderr
    assert "fits" in estimate.stdout and "recommended" in estimate.stdout


def test_usage_error_exit_code(run_cli):
    result = run_cli("ask", "--frames", "0", "x.mp4", "q")
    assert result.returncode == 2


def test_missing_file_is_one_line(run_cli, tiny_model):
    result = run_cli("ask", "missing.mp4", "What?", "--model", str(tiny_model))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: missing.mp4: no such file or folder; check the path"]


# --- ask with the tiny model -----------------------------------------------------------------

ANSWER_KEYS = {"question": str, "text": str, "num_tokens": int, "finish_reason": str}
INPUT_KEYS = {"path": str, "kind": str, "num_available": int, "num_tokens": int, "frames": list}
FRAME_KEYS = {"kind": str, "index": (int, type(None)), "timestamp": (float, type(None)), "tile": (list, type(None))}


def check_schema(data: dict, keys: dict) -> None:
    for key, kind in keys.items():
        assert key in data, f"missing {key}"
        assert isinstance(data[key], kind), f"{key}: {data[key]!r} is not {kind}"


def test_ask_text(run_cli, tiny_model, video):
    result = run_cli("ask", str(video), "What happens?", "--model", str(tiny_model), "--frames", "4",
                     "--max-new-tokens", "6")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n") and result.stdout.strip()
    assert result.stderr == ""


def test_ask_over_memory_budget_fails_before_work_with_one_line(run_cli, tiny_model, video):
    result = run_cli("ask", str(video), "What happens?", "--model", str(tiny_model), "--memory-budget", "1MB")
    assert result.returncode == 1 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "budget is 0.0 GiB" in lines[0] and "--frames" in lines[0], result.stderr
    assert run_cli("ask", str(video), "q", "--model", str(tiny_model), "--memory-budget", "lots").returncode == 2


def test_ask_json_several_questions_stdin_paths(run_cli, tiny_model, video, image):
    result = run_cli(
        "ask", "-", "-q", "What happens?", "-q", "What colour?", "--model", str(tiny_model), "--frames", "3",
        "--max-new-tokens", "5", "--json", input=f"{video}\n{image}\n",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    check_schema(data, {"model": str, "answers": list, "inputs": list, "num_prompt_tokens": int,
                        "num_visual_tokens": int, "timings": dict, "peak_memory_bytes": int})  # fmt: skip
    assert [a["question"] for a in data["answers"]] == ["What happens?", "What colour?"]
    for answer in data["answers"]:
        check_schema(answer, ANSWER_KEYS)
        assert 1 <= answer["num_tokens"] <= 5
    assert [i["path"] for i in data["inputs"]] == [str(video), str(image)]
    for item in data["inputs"]:
        check_schema(item, INPUT_KEYS)
        for frame in item["frames"]:
            check_schema(frame, FRAME_KEYS)
    assert [f["index"] for f in data["inputs"][0]["frames"]] == [0, 15, 29]
    assert set(data["timings"]) >= {"vision", "prefill", "generate", "total"}


# --- caption with the tiny model -------------------------------------------------------------


@pytest.fixture
def caption_folder(tmp_path, make_image, make_video) -> Path:
    """14 inputs: 10 pictures, 2 videos, 2 broken files (plus a text file, not an input)."""
    folder = tmp_path / "batch"
    folder.mkdir()
    for i in range(10):
        make_image(f"batch/img{i}.png", seed=i)
    make_video("batch/clip1.mp4", 20)
    make_video("batch/clip2.mp4", 25)
    (folder / "broken.mp4").write_bytes(b"\x00garbage" * 20)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "readme.txt").write_text("not an input")
    return folder


def caption_args(folder: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return ["caption", str(folder), "-o", str(out), "--model", str(model), "--frames", "3",
            "--max-new-tokens", "24", *extra]  # fmt: skip


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def start_and_signal(exe: str, args: list[str], out: Path, cwd: Path, sig: int, after_lines: int) -> int:
    """Run `longllava args`, send `sig` once `out` has `after_lines` lines; returns the exit code."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGLLAVA_")}
    env["XDG_CONFIG_HOME"] = str(cwd / "xdg")
    process = subprocess.Popen([exe, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
        if out.exists() and out.read_bytes().count(b"\n") >= after_lines:
            process.send_signal(sig)
            break
        time.sleep(0.02)
    try:
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode


def test_caption_interrupted_and_killed_then_resumed(run_cli, longllava_exe, tiny_model, caption_folder, tmp_path):
    out = tmp_path / "captions.jsonl"
    args = caption_args(caption_folder, out, tiny_model)

    # Ctrl-C: the current input completes, its line is written, exit 130.
    code = start_and_signal(longllava_exe, args, out, tmp_path, signal.SIGINT, after_lines=2)
    assert code == EXIT_INTERRUPTED
    after_sigint = read_lines(out)
    assert 2 <= len(after_sigint) < 14
    assert out.read_bytes().endswith(b"\n")

    # SIGKILL: no cleanup at all; then a torn line as a kill during a write would leave.
    code = start_and_signal(longllava_exe, args, out, tmp_path, signal.SIGKILL, after_lines=len(after_sigint) + 2)
    assert code == -signal.SIGKILL
    with open(out, "ab") as f:
        f.write(b'{"path": "' + str(caption_folder / "img9.png").encode() + b'", "capt')

    result = run_cli(*args)
    assert result.returncode == EXIT_PARTIAL, result.stderr
    records = read_lines(out)
    paths = [r["path"] for r in records]
    assert len(paths) == len(set(paths)) == 14  # exactly one line per input
    assert sorted(Path(p).name for p in paths if "error" in records[paths.index(p)]) == ["broken.jpg", "broken.mp4"]
    # Earlier captions are kept as written (error records were retried, and fail again).
    assert all(r in records for r in after_sigint if "error" not in r)
    for record in records:
        assert set(record) == {"path", "error"} or {"path", "caption", "frames", "timings"} <= set(record)


def test_caption_shards_no_overlap_no_gap(run_cli, tiny_model, caption_folder, tmp_path):
    outs = [tmp_path / f"part{k}.jsonl" for k in (1, 2, 3)]
    for k, out in enumerate(outs, 1):
        result = run_cli(*caption_args(caption_folder, out, tiny_model, "--shard", f"{k}/3", "--max-new-tokens", "2"))
        assert result.returncode in (0, EXIT_PARTIAL), result.stderr
    shards = [{r["path"] for r in read_lines(out)} for out in outs]
    assert sum(len(s) for s in shards) == len(set().union(*shards)) == 14
