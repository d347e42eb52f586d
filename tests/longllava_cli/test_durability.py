"""Caption writers killed at random moments (SIGKILL) while a second writer keeps trying to get in:
at the end every input is in the results file exactly once, every line is a valid record, no
temporary is left behind, and the user's files next to it are untouched.

The default test drives the real library loop (`ResultsFile` + `run_captions`, a captioner that
sleeps a few ms) in subprocesses that do not import torch; the slow one kills the installed
`longllava caption` on the tiny model."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from longllava_cli.errors import EXIT_PARTIAL
from longllava_cli.jsonl import normalise_path

NUM_KILLS = 20

# argv: results file, inputs file (one path per line), then "once" (retry the lock until in, then
# caption everything) or the path of a stop file ("eager": get in, caption a few, let go, again).
WRITER = r"""
import os, sys, time
from longllava_cli.caption import run_captions
from longllava_cli.jsonl import OutputLockedError, ResultsFile

out, inputs_file, mode = sys.argv[1:4]
inputs = open(inputs_file).read().splitlines()

def caption_one(path):
    time.sleep(0.003)
    if "bad" in path:
        raise ValueError(f"{path}: not a video")
    return {"path": path, "caption": "a caption of " + path, "frames": [{"index": 0, "timestamp": 0.0}]}

print("ready", flush=True)
start = 0
while mode == "once" or not os.path.exists(mode):
    try:
        with ResultsFile(out) as results:
            batch = inputs if mode == "once" else inputs[start : start + 5]
            run_captions(batch, results, caption_one, describe_failure=str)
        if mode == "once":
            break
        start = (start + 5) % len(inputs)
    except OutputLockedError:
        pass
    time.sleep(0.002)
"""


def start_writer(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def plant_decoys(folder: Path) -> dict[Path, tuple[bytes, int]]:
    """Files of the user's next to the results, some with names close to ours."""
    decoys = {"notes.csv": b"name,score\nalice,3\n", "captions.jsonl.tmp": b"mine", ".captions.jsonl.mine.tmp": b"x"}
    for name, data in decoys.items():
        (folder / name).write_bytes(data)
    return {folder / name: ((folder / name).read_bytes(), (folder / name).stat().st_mtime_ns) for name in decoys}


def check_results(out: Path, inputs: list[str], decoys: dict[Path, tuple[bytes, int]]) -> None:
    data = out.read_bytes()
    assert data.endswith(b"\n")
    records = [json.loads(line) for line in data.decode("ascii").splitlines()]  # every line valid JSON
    paths = [r["path"] for r in records]
    wanted = {normalise_path(p) for p in inputs}
    assert len(paths) == len(set(paths)) == len(wanted) and set(paths) == wanted  # each input exactly once
    for record in records:
        assert set(record) == ({"path", "error"} if "bad" in record["path"] else {"path", "caption", "frames"})
    leftovers = [p.name for p in out.parent.iterdir() if re.fullmatch(r"\.captions\.jsonl\.[a-z0-9_]{8}\.tmp", p.name)]
    assert leftovers == []
    assert not out.with_name("captions.jsonl.rejected").exists()  # a kill never leaves an unreadable whole line
    for path, (content, mtime) in decoys.items():
        assert (path.read_bytes(), path.stat().st_mtime_ns) == (content, mtime), path


def kill_at_random_moments(start, rng: random.Random) -> None:
    """Start a writer NUM_KILLS times and SIGKILL it at a random moment after it is ready: half
    the kills early (opening, repairing, rewriting), half anywhere in the run."""
    for number in range(NUM_KILLS):
        process = start()
        try:
            assert process.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0, 0.01) if number % 2 else rng.uniform(0, 0.15))
            process.send_signal(signal.SIGKILL)
        finally:
            process.wait(30)
            process.stdout.close()


def test_killed_writers_lose_nothing_and_duplicate_nothing(tmp_path):
    out = tmp_path / "captions.jsonl"
    inputs = [f"videos/{'bad' if i % 10 == 3 else 'clip'}{i:03d}.mp4" for i in range(120)]
    (tmp_path / "inputs.txt").write_text("\n".join(inputs) + "\n")
    # The second writer spells the same inputs differently: they are still the same inputs.
    (tmp_path / "inputs2.txt").write_text("\n".join(f"./{p}".replace("/", "//", 1) for p in inputs) + "\n")
    decoys = plant_decoys(tmp_path)
    stop = tmp_path / "stop"

    def writer(inputs_file: str, mode: str) -> subprocess.Popen:
        return start_writer([sys.executable, "-c", WRITER, str(out), inputs_file, mode], tmp_path)

    second = writer("inputs2.txt", str(stop))
    try:
        kill_at_random_moments(lambda: writer("inputs.txt", "once"), random.Random(20260514))
    finally:
        stop.touch()
        second.wait(60)
        second.stdout.close()
    assert second.returncode == 0
    final = writer("inputs.txt", "once")
    final.communicate(timeout=60)
    assert final.returncode == 0
    check_results(out, inputs, decoys)


@pytest.mark.slow
def test_killed_caption_commands_lose_nothing(tmp_path, longllava_exe, tiny_model, make_image, make_video):
    folder = tmp_path / "batch"
    folder.mkdir()
    for i in range(48):  # enough work that the kills land all along the run
        make_image(f"batch/img{i:02d}.png", seed=i)
    make_video("batch/clip.mp4", 20)
    (folder / "bad.mp4").write_bytes(b"\x00garbage" * 20)
    out = tmp_path / "captions.jsonl"
    decoys = plant_decoys(tmp_path)
    args = [longllava_exe, "caption", "batch", "-o", out.name, "--model", str(tiny_model), "--frames", "2",
            "--max-new-tokens", "4"]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGLLAVA_")}
    env["XDG_CONFIG_HOME"] = str(tmp_path / "xdg")
    stop = tmp_path / "stop"
    # The second writer: `longllava caption` again and again (refused while the file is held).
    eager = f"while [ ! -e {stop} ]; do {' '.join(args)} >/dev/null 2>&1; sleep 0.5; done"
    second = subprocess.Popen(["bash", "-c", eager], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL)

    def killed() -> subprocess.Popen:
        script = f"echo ready; exec {' '.join(args)} >/dev/null 2>&1"
        return subprocess.Popen(["bash", "-c", script], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True)

    rng = random.Random(14)
    try:
        for _ in range(NUM_KILLS):
            process = killed()
            try:
                assert process.stdout.readline().strip() == "ready"
                time.sleep(rng.uniform(1.0, 5.0))  # start-up, model load, captioning
                process.send_signal(signal.SIGKILL)
            finally:
                process.wait(60)
                process.stdout.close()
    finally:
        stop.touch()
        second.wait(300)
    final = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == EXIT_PARTIAL, final.stderr
    inputs = [f"batch/img{i:02d}.png" for i in range(48)] + ["batch/clip.mp4", "batch/bad.mp4"]
    data = out.read_bytes()
    records = [json.loads(line) for line in data.decode("ascii").splitlines()]
    assert data.endswith(b"\n") and sorted(r["path"] for r in records) == sorted(inputs)
    assert [r["path"] for r in records if "error" in r] == ["batch/bad.mp4"]
    assert not [p for p in tmp_path.iterdir() if re.fullmatch(r"\.captions\.jsonl\.[a-z0-9_]{8}\.tmp", p.name)]
    for path, (content, mtime) in decoys.items():
        assert (path.read_bytes(), path.stat().st_mtime_ns) == (content, mtime), path
