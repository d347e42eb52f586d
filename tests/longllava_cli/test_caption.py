"""`longllava caption` with the library patched: input expansion, shards, records, resume, exit codes."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from longllava_cli.app import app
from longllava_cli.caption import expand_inputs, parse_shard, select_shard, shard_of
from longllava_cli.errors import EXIT_PARTIAL
from longllava_cli.options import DEFAULT_CAPTION_PROMPT
from sampling import InputError


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def fail_broken(path: str):
    return InputError(f"{path}: not a video") if "bad" in Path(path).name else None


# --- shards ----------------------------------------------------------------------------------


@given(
    paths=st.lists(st.text(min_size=1, max_size=30), max_size=60, unique=True),
    count=st.integers(min_value=1, max_value=9),
)
def test_shards_partition_the_inputs(paths, count):
    shards = [select_shard(paths, k, count) for k in range(1, count + 1)]
    assert sorted(p for shard in shards for p in shard) == sorted(paths)  # no gap
    assert sum(len(s) for s in shards) == len(paths)  # no overlap
    for shard in shards:  # order kept
        assert shard == [p for p in paths if p in set(shard)]


def test_shard_membership_is_stable():
    # Fixed values: a change of hash would silently re-split running jobs.
    assert [shard_of(p, 4) for p in ("a.mp4", "videos/b.mp4", "c/d/e.png")] == [
        shard_of("a.mp4", 4),
        shard_of("videos/b.mp4", 4),
        shard_of("c/d/e.png", 4),
    ]
    assert shard_of("a.mp4", 1) == 1
    assert {shard_of(f"clip{i}.mp4", 3) for i in range(50)} == {1, 2, 3}


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0", "-1/2", ""])
def test_bad_shard(text):
    with pytest.raises(ValueError, match="K/N"):
        parse_shard(text)


def test_parse_shard():
    assert parse_shard("2/8") == (2, 8)


# --- inputs ----------------------------------------------------------------------------------


def test_expand_inputs(media_folder, video, tmp_path):
    sub = media_folder / "sub"
    sub.mkdir()
    (sub / "deep.png").write_bytes((media_folder / "p1.png").read_bytes())
    flat = expand_inputs([str(media_folder), str(video), str(video)], recursive=False)
    names = [Path(p).name for p in flat]
    assert names == ["bad1.mp4", "bad2.png", "p1.png", "p2.jpg", "v1.mp4", "v2.mp4", "v10.mp4", "clip.mp4"]
    deep = expand_inputs([str(media_folder)], recursive=True)
    assert str(sub / "deep.png") in deep and len(deep) == 8


def test_expand_stdin(video, image):
    import io

    assert expand_inputs(["-"], recursive=False, stdin=io.StringIO(f"{video}\n\n{image}\n")) == [str(video), str(image)]


# --- the command -----------------------------------------------------------------------------


def test_caption_folder_with_broken_files(runner, fake, media_folder, tmp_path):
    fake.fail = fail_broken
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["caption", str(media_folder), "-o", str(out), "--model", "m", "--frames", "4"])
    assert result.exit_code == EXIT_PARTIAL, result.output
    got = records(out)
    assert len(got) == 7 and len({r["path"] for r in got}) == 7
    errors = [r for r in got if "error" in r]
    assert sorted(Path(r["path"]).name for r in errors) == ["bad1.mp4", "bad2.png"]
    assert all(set(r) == {"path", "error"} for r in errors)
    ok = next(r for r in got if r["path"].endswith("v1.mp4"))
    assert ok["caption"] == f"answer to {DEFAULT_CAPTION_PROMPT}"
    assert ok["frames"] == [{"index": 0, "timestamp": 0.0}, {"index": 5, "timestamp": 0.2}]
    assert set(ok["timings"]) >= {"total"}
    assert len(fake.loads) == 1  # the model loads once
    assert all(r.sampling.num_frames == 4 and len(r.inputs) == 1 for r in fake.requests)


def test_caption_resume_retries_errors_only(runner, fake, media_folder, tmp_path):
    fake.fail = fail_broken
    out = tmp_path / "out.jsonl"
    args = ["caption", str(media_folder), "-o", str(out), "--model", "m"]
    runner.invoke(app, args)
    fake.requests.clear()
    fake.fail = lambda path: None  # the broken files got "fixed"
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert sorted(Path(r.inputs[0]).name for r in fake.requests) == ["bad1.mp4", "bad2.png"]
    got = records(out)
    assert len(got) == 7 and not [r for r in got if "error" in r]
    fake.requests.clear()
    assert runner.invoke(app, args).exit_code == 0
    assert fake.requests == [] and len(fake.loads) == 2  # nothing to do: no model load either


def test_caption_keep_errors(runner, fake, media_folder, tmp_path):
    fake.fail = fail_broken
    out = tmp_path / "out.jsonl"
    args = ["caption", str(media_folder), "-o", str(out), "--model", "m"]
    runner.invoke(app, args)
    fake.requests.clear()
    result = runner.invoke(app, [*args, "--keep-errors"])
    assert result.exit_code == EXIT_PARTIAL  # the kept errors still count
    assert fake.requests == []


def test_caption_shards_cover_everything_once(runner, fake, media_folder, tmp_path):
    fake.fail = fail_broken
    outs = [tmp_path / f"out{k}.jsonl" for k in (1, 2, 3)]
    for k, out in enumerate(outs, 1):
        runner.invoke(app, ["caption", str(media_folder), "-o", str(out), "--model", "m", "--shard", f"{k}/3"])
    paths = [r["path"] for out in outs if out.exists() for r in records(out)]
    assert sorted(paths) == sorted(expand_inputs([str(media_folder)], recursive=False))


def test_caption_prompt_and_stdin(runner, fake, video, image, tmp_path):
    out = tmp_path / "out.jsonl"
    result = runner.invoke(
        app, ["caption", "-", "-o", str(out), "--model", "m", "-p", "Summarise."], input=f"{video}\n{image}\n"
    )
    assert result.exit_code == 0, result.output
    assert [r.questions for r in fake.requests] == [("Summarise.",), ("Summarise.",)]
    assert [r["path"] for r in records(out)] == [str(video), str(image)]


def test_caption_sigint_stops_after_current_item(runner, fake, media_folder, tmp_path):
    out = tmp_path / "out.jsonl"

    def interrupt_on_second(path):
        if len(fake.requests) == 2:
            signal.raise_signal(signal.SIGINT)  # the handler only sets a flag: this item completes
        return None

    fake.fail = interrupt_on_second
    before = signal.getsignal(signal.SIGINT)  # not always Python's default in a pytest-xdist worker
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = runner.invoke(app, ["caption", str(media_folder), "-o", str(out), "--model", "m"])
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler it replaced, restored
    finally:
        signal.signal(signal.SIGINT, before)
    assert result.exit_code == 130
    assert len(records(out)) == 2


def test_caption_bad_shard_is_usage_error(runner, fake, media_folder, tmp_path):
    result = runner.invoke(
        app, ["caption", str(media_folder), "-o", str(tmp_path / "o"), "--model", "m", "--shard", "5/4"]
    )
    assert result.exit_code == 2
    assert not fake.loads


# --- the results file: never an input, never a file we did not write; stdout; normalised paths ----


@pytest.mark.parametrize("spelling", ["./out.jsonl", "hard.mp4", "sym.mp4", "dir/../out.jsonl", "empty.mp4", "new"])
def test_caption_refuses_an_output_that_is_an_input(runner, fake, tmp_path, monkeypatch, spelling):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_text('{"path": "a.mp4", "caption": "x"}\n')
    os.link(out, "hard.mp4")
    os.symlink("out.jsonl", "sym.mp4")
    (tmp_path / "dir").mkdir()
    (tmp_path / "empty.mp4").touch()
    output = {"empty.mp4": "empty.mp4", "new": "./new.mp4"}.get(spelling, "out.jsonl")
    argument = {"new": "new.mp4"}.get(spelling, spelling)
    before = (out.read_bytes(), out.stat().st_mtime_ns)
    result = runner.invoke(app, ["caption", argument, "-o", output, "--model", "m"])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: {output} is one of the inputs")
    assert not fake.loads and (out.read_bytes(), out.stat().st_mtime_ns) == before
    assert not list(tmp_path.glob("*.lock")) and not (tmp_path / "new.mp4").exists()


def test_caption_to_stdout(runner, fake, media_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(media_folder)
    fake.fail = fail_broken
    args = ["caption", "v1.mp4", "./v1.mp4", "bad1.mp4", "p1.png", "-o", "-", "--model", "m"]
    for _ in range(2):  # nothing is resumed: every run answers every input
        result = runner.invoke(app, args)
        assert result.exit_code == EXIT_PARTIAL, result.output
        got = [json.loads(line) for line in result.stdout.splitlines()]
        assert [r["path"] for r in got] == ["v1.mp4", "bad1.mp4", "p1.png"]  # ./v1.mp4 is v1.mp4
        assert "error" in got[1] and got[0]["caption"] == f"answer to {DEFAULT_CAPTION_PROMPT}"
        assert "1 with errors in stdout" in result.stderr
    assert sorted(p.name for p in media_folder.iterdir() if p.suffix in (".jsonl", ".lock", ".rejected")) == []


def test_caption_identifies_inputs_by_normalised_path(runner, fake, media_folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    out.write_text('{"path": "./media/v1.mp4", "caption": "earlier"}\n')
    args = ["caption", "media//v1.mp4", "media/./v2.mp4", "./media/v2.mp4", "media/v2.mp4", "-o", "out.jsonl"]
    result = runner.invoke(app, [*args, "--model", "m"])
    assert result.exit_code == 0, result.output
    assert [r.inputs for r in fake.requests] == [("media/v2.mp4",)]  # v1 was done, v2 is one input
    assert records(out) == [{"path": "./media/v1.mp4", "caption": "earlier"}, records(out)[1]]
    assert records(out)[1]["path"] == "media/v2.mp4"
    assert shard_of("./media/v2.mp4", 7) == shard_of("media//v2.mp4", 7) == shard_of("media/v2.mp4", 7)
