"""`longllava caption --output` through the installed entry point: files the tool did not write and
special paths are refused before any work (exit 2, one line, nothing changed, no hang), and
`--output -` streams JSON Lines to stdout."""

from __future__ import annotations

import json
import os
import stat
import subprocess

from longllava_cli.errors import EXIT_PARTIAL, EXIT_USAGE


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_refuses_a_file_it_did_not_write(run_cli, video, tmp_path):
    notes = tmp_path / "notes.csv"
    notes.write_text("name,score\nalice,3\n")
    before = (notes.read_bytes(), notes.stat().st_mtime_ns)
    # No --model: the refusal comes before anything else is looked at, the model included.
    result = run_cli("caption", str(video), "--output", "notes.csv", timeout=60)
    assert result.returncode == EXIT_USAGE, result.stderr
    [line] = error_lines(result.stderr)
    assert line.startswith('error: notes.csv exists and is not a longllava results file (JSON Lines with a "path"')
    assert "choose another --output" in line
    assert (notes.read_bytes(), notes.stat().st_mtime_ns) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("notes")) == ["notes.csv"]


def test_refuses_a_fifo_without_hanging(run_cli, video, tmp_path):
    fifo = tmp_path / "results.fifo"
    os.mkfifo(fifo)  # opening it for writing would wait for a reader forever
    result = run_cli("caption", str(video), "-o", str(fifo), timeout=60)
    assert result.returncode == EXIT_USAGE, result.stderr
    [line] = error_lines(result.stderr)
    assert "results.fifo is a pipe, not a regular file" in line and "- for stdout" in line
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_refuses_dev_stdout_piped_and_dev_zero(longllava_exe, video, tmp_path):
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    for output, kind in (("/dev/stdout", "a pipe"), ("/dev/zero", "a device")):
        # `| cat`: /dev/stdout is the pipe to cat, which used to block; /dev/zero grew without end.
        script = f"{longllava_exe} caption {video} -o {output} | cat; exit ${{PIPESTATUS[0]}}"
        result = subprocess.run(
            ["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60
        )
        assert result.returncode == EXIT_USAGE, result.stderr
        [line] = error_lines(result.stderr)
        assert f"error: {output} is {kind}, not a regular file" in line and "- for stdout" in line
        assert result.stdout == ""


def test_output_dash_streams_one_line_per_input(run_cli, tiny_model, video, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a jpeg")
    result = run_cli(
        "caption", "./clip.mp4", "clip.mp4", "broken.jpg", "-o", "-",
        "--model", str(tiny_model), "--frames", "2", "--max-new-tokens", "3",
    )  # fmt: skip
    assert result.returncode == EXIT_PARTIAL, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["path"] for r in records] == ["clip.mp4", "broken.jpg"]  # ./clip.mp4 and clip.mp4: one input
    assert "caption" in records[0] and set(records[1]) == {"path", "error"}
    assert "1 with errors in stdout" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".lock", ".jsonl", ".rejected")) == []
