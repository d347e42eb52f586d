"""The resumable results file: torn-line repair, resume without duplicates, retried errors, lock."""

from __future__ import annotations

import errno
import io
import json
import multiprocessing
import os
import random
import stat
import sys
import time
from pathlib import Path

import pytest

from longllava_cli.jsonl import (
    HEAD_BYTES,
    OutputLockedError,
    ResultsFile,
    ResultsFileError,
    ResultsStream,
    ResultsWriteError,
    check_results_path,
    encode_record,
    normalise_path,
    open_regular,
    read_records,
    repair_torn_tail,
)


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_append_writes_whole_lines(tmp_path):
    path = tmp_path / "out.jsonl"
    with ResultsFile(path) as results:
        results.append({"path": "a", "caption": "x\ny"})
        results.append({"path": "b", "error": "bad"})
    assert path.read_bytes().count(b"\n") == 2 and path.read_bytes().endswith(b"\n")
    assert lines(path) == [{"path": "a", "caption": "x\ny"}, {"path": "b", "error": "bad"}]


@pytest.mark.parametrize("tail", [b'{"path": "c", "capt', b"{", b'{"path": "c"}'])
def test_torn_last_line_is_removed(tmp_path, tail):
    path = tmp_path / "out.jsonl"
    good = b'{"path": "a", "caption": "x"}\n{"path": "b", "caption": "y"}\n'
    path.write_bytes(good + tail)
    assert repair_torn_tail(path) == len(tail)
    assert path.read_bytes() == good
    assert repair_torn_tail(path) == 0


def test_torn_only_line(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"path": "a", "cap')
    with ResultsFile(path) as results:
        assert results.done == set()
        results.append({"path": "a", "caption": "z"})
    assert lines(path) == [{"path": "a", "caption": "z"}]


def test_resume_skips_done_and_keeps_one_line_per_key(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_bytes(
        b'{"path": "a", "caption": "1"}\n'
        b'{"path": "b", "error": "broken"}\n'
        b'{"path": "a", "caption": "again"}\n'
        b"not json\n"
        b'{"path": "c", "caption": "3"}\n'
        b'{"path": "d", "capt'
    )
    with ResultsFile(path) as results:
        assert results.done == {"a", "c"}
        assert results.num_dropped == 2  # the error (retried) and the duplicate
        assert results.num_rejected == 1  # the garbage line, set aside
        results.append({"path": "b", "caption": "fixed"})
        results.append({"path": "d", "caption": "4"})
    assert [r["path"] for r in lines(path)] == ["a", "c", "b", "d"]
    assert lines(path)[0]["caption"] == "1"  # the first record of a key wins
    assert path.with_name("out.jsonl.rejected").read_bytes() == b"not json\n"


def test_keep_errors(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"path": "b", "error": "broken"}\n')
    with ResultsFile(path, keep=lambda record: True) as results:
        assert results.done == {"b"} and results.failed == {"b"}
    assert lines(path) == [{"path": "b", "error": "broken"}]


def test_failed_tracks_latest_record(tmp_path):
    with ResultsFile(tmp_path / "out.jsonl") as results:
        results.append({"path": "a", "error": "x"})
        assert results.failed == {"a"} and results.done == set()
        results.append({"path": "a", "caption": "ok"})
        assert results.failed == set() and results.done == {"a"}


def _hold(path: str, ready, release) -> None:
    with ResultsFile(path):
        ready.set()
        release.wait(10)


def test_second_writer_is_refused(tmp_path):
    path = tmp_path / "out.jsonl"
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(str(path), ready, release))
    holder.start()
    try:
        assert ready.wait(10)
        with pytest.raises(OutputLockedError, match="another process"):
            ResultsFile(path).open()
    finally:
        release.set()
        holder.join(10)


def test_read_records_missing_file(tmp_path):
    assert read_records(tmp_path / "none.jsonl") == ([], 0)


# --- only results files are touched ----------------------------------------------------------


def snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), path.stat().st_mtime_ns


@pytest.mark.parametrize(
    "content",
    [
        b"name,score\nalice,3\nbob,4\n",  # a CSV
        b'{"a": 1}',  # minified JSON, no newline: the torn-tail repair must not empty it
        b'{\n  "path": "a.mp4",\n  "caption": "x"\n}\n',  # pretty JSON: lines are not records
        b'{"path": "a"}\nnotes\nmore notes\nstill notes\n',  # mostly not records
        b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(range(256)) * 8,  # an mp4 head
    ],
)
def test_refuses_a_file_it_did_not_write(tmp_path, content):
    path = tmp_path / "notes.csv"
    path.write_bytes(content)
    before = snapshot(path)
    with pytest.raises(ResultsFileError, match=r"notes\.csv exists and is not a longllava results file") as error:
        ResultsFile(path).open()
    assert "\n" not in str(error.value)
    assert snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.csv"]  # no .lock, no .rejected


def test_huge_file_is_judged_by_its_head(tmp_path, monkeypatch):
    path = tmp_path / "movie.mp4"
    with open(path, "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypisom" + b"\x00\n" * 1000)
        f.truncate(3 << 30)  # 3 GB, sparse
    requested = []
    real_pread = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, n, offset: requested.append(n) or real_pread(fd, n, offset))
    with pytest.raises(ResultsFileError, match=r"movie\.mp4 exists and is not"):
        check_results_path(path)
    assert sum(requested) <= HEAD_BYTES


def test_accepts_results_with_damaged_lines_and_sets_them_aside(tmp_path, caplog):
    path = tmp_path / "out.jsonl"
    good = [{"path": f"v{i}.mp4", "caption": str(i)} for i in range(8)]
    damaged = [b"\x00\x00\x00\x00", b'{"path": "v9.mp4", "caption": NaN}', b"[1, 2]", b'{"caption": "no path"}']
    body = [json.dumps(r).encode() for r in good]
    body[0:0] = [damaged[0]]  # even the first line may be damaged
    body[4:4] = damaged[1:]
    path.write_bytes(b"\n".join(body) + b"\n")
    rejected = tmp_path / "out.jsonl.rejected"
    rejected.write_bytes(b"from an earlier run\n")
    with ResultsFile(path) as results:
        assert results.done == {f"v{i}.mp4" for i in range(8)} and results.num_rejected == 4
    assert lines(path) == good
    assert rejected.read_bytes() == b"from an earlier run\n" + b"".join(line + b"\n" for line in damaged)
    warnings = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(warnings) == 1 and "moved 4 unreadable lines to" in warnings[0] and "\n" not in warnings[0]


def test_accepts_empty_and_a_first_record_longer_than_the_head(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    with ResultsFile(empty) as results:
        results.append({"path": "a"})
    big = tmp_path / "big.jsonl"
    record = {"path": "long.mp4", "frames": [{"index": i, "timestamp": i / 25} for i in range(60000)]}
    big.write_bytes(encode_record(record) + b'{"path": "b", "caption": "y"}\n')
    assert big.stat().st_size > HEAD_BYTES
    with ResultsFile(big) as results:
        assert results.done == {"long.mp4", "b"}


@pytest.mark.parametrize("kind", ["fifo", "folder", "/dev/zero", "/dev/null", "fifo lock"])
def test_special_paths_are_refused_without_blocking(tmp_path, kind):
    path = tmp_path / "out.jsonl"
    if kind == "fifo":
        os.mkfifo(path)  # opening it for writing would block until a reader came
    elif kind == "folder":
        path.mkdir()
    elif kind == "fifo lock":
        os.mkfifo(tmp_path / "out.jsonl.lock")
    else:
        path = Path(kind)
    with pytest.raises(ResultsFileError, match="not a regular file"):
        ResultsFile(path).open()
    if kind == "fifo":
        assert stat.S_ISFIFO(path.lstat().st_mode) and not (tmp_path / "out.jsonl.lock").exists()


def test_open_regular_never_blocks_on_a_fifo(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for flags in (os.O_RDONLY, os.O_WRONLY | os.O_APPEND | os.O_CREAT):  # stat said "missing", then a FIFO appeared
        with pytest.raises(ResultsFileError, match="is a pipe"):
            open_regular(fifo, flags)


# --- the rewrite keeps what it found -----------------------------------------------------------


def test_rewrite_keeps_mode_and_symlink(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    target = real / "out.jsonl"
    target.write_text('{"path": "a", "caption": "1"}\n{"path": "b", "error": "x"}\n')
    target.chmod(0o640)
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    with ResultsFile(link) as results:  # the error record is retried: the file is rewritten
        assert results.num_dropped == 1
        results.append({"path": "b", "caption": "2"})
    assert link.is_symlink() and link.resolve() == target
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert lines(target) == [{"path": "a", "caption": "1"}, {"path": "b", "caption": "2"}]
    assert sorted(p.name for p in real.iterdir()) == ["out.jsonl", "out.jsonl.lock"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.jsonl", "real"]


def test_stale_temporary_of_a_killed_rewrite_is_removed(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text('{"path": "a", "caption": "1"}\n')
    ours = tmp_path / ".out.jsonl.k3_x9q0z.tmp"
    ours.write_text('{"path": "a", "capt')
    decoys = [".out.jsonl.short.tmp", "out.jsonl.tmp", ".other.jsonl.k3_x9q0z.tmp", ".out.jsonl.k3_x9q0z.tmp.bak"]
    for name in decoys:
        (tmp_path / name).write_text("the user's")
    with ResultsFile(path) as results:
        assert results.done == {"a"}
    assert not ours.exists()
    assert all((tmp_path / name).read_text() == "the user's" for name in decoys)


def test_failed_append_truncates_to_the_last_whole_line(tmp_path, monkeypatch):
    path = tmp_path / "out.jsonl"
    with ResultsFile(path) as results:
        results.append({"path": "a", "caption": "1"})
        before = path.read_bytes()
        real_write = os.write

        def disk_full(fd, data):  # half the line lands, then the disk is full
            real_write(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(os, "write", disk_full)
        with pytest.raises(ResultsWriteError, match="No space left on device") as error:
            results.append({"path": "b", "caption": "2" * 100})
        assert "\n" not in str(error.value) and str(path) in str(error.value)
        assert path.read_bytes() == before and results.done == {"a"}
        monkeypatch.setattr(os, "write", real_write)
        results.append({"path": "c", "caption": "3"})
    assert [r["path"] for r in lines(path)] == ["a", "c"]


# --- keys, streams -----------------------------------------------------------------------------


def test_keys_are_compared_normalised(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text(
        '{"path": "./a.mp4", "caption": "1"}\n{"path": "a.mp4", "caption": "dup"}\n'
        '{"path": "d//./b.mp4", "caption": "2"}\n{"path": "../c.mp4", "caption": "3"}\n'
    )
    with ResultsFile(path) as results:
        assert results.done == {"a.mp4", "d/b.mp4", "../c.mp4"} and results.num_dropped == 1
        results.append({"path": "./e.mp4", "error": "x"})
        assert results.failed == {"e.mp4"}
    assert lines(path) == [
        {"path": "./a.mp4", "caption": "1"},  # kept as written, the first of its key
        {"path": "d//./b.mp4", "caption": "2"},
        {"path": "../c.mp4", "caption": "3"},
        {"path": "./e.mp4", "error": "x"},
    ]
    assert normalise_path("./a.mp4") == normalise_path("a.mp4") == "a.mp4"
    assert normalise_path("dir//./a.mp4") == "dir/a.mp4" and normalise_path("link/../a.mp4") == "link/../a.mp4"
    assert normalise_path("/abs//a.mp4") == "/abs/a.mp4"


def test_stream_writes_flushed_lines_and_tracks_failures():
    stream = io.StringIO()
    with ResultsStream(stream) as results:
        results.append({"path": "./a.mp4", "caption": "x\ny"})
        results.append({"path": "b.mp4", "error": "broken"})
        assert results.done == set() and results.failed == {"b.mp4"}
    assert [json.loads(line) for line in stream.getvalue().splitlines()] == [
        {"path": "./a.mp4", "caption": "x\ny"},
        {"path": "b.mp4", "error": "broken"},
    ]


# --- two writers ---------------------------------------------------------------------------------


def _eager_writer(path: str, names: list[str], start, delay: float) -> None:
    """Keeps trying to get in (for up to 10 s), then writes every name it does not find done.
    `os.replace` is slowed as on a busy disk: the rewrite's rename is where a second writer used
    to slip in, between the rename and the first writer's lock on the new file."""
    real_replace = os.replace

    def slow_replace(*args, **kwargs):
        real_replace(*args, **kwargs)
        time.sleep(0.005)

    os.replace = slow_replace
    start.wait(10)
    time.sleep(delay)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with ResultsFile(path) as results:
                for name in names:
                    if name not in results.done:
                        results.append({"path": name, "caption": str(os.getpid())})
            return
        except OutputLockedError:
            time.sleep(0.0002)


def test_two_writers_never_duplicate_or_lose_a_record(tmp_path):
    context = multiprocessing.get_context("fork")
    path = tmp_path / "out.jsonl"
    names = [f"v{i}.mp4" for i in range(20)]
    rng = random.Random(14)
    for _ in range(25):
        # Error records to retry: every open rewrites the file.
        path.write_bytes(b"".join(encode_record({"path": n, "error": "x"}) for n in names[:10]))
        start = context.Event()
        writers = [
            context.Process(target=_eager_writer, args=(str(path), names, start, delay))
            for delay in (0.0, rng.uniform(0, 0.003))
        ]
        for writer in writers:
            writer.start()
        start.set()
        for writer in writers:
            writer.join(30)
        assert [w.exitcode for w in writers] == [0, 0]
        assert sorted(r["path"] for r in lines(path)) == sorted(names)  # each exactly once


def test_stream_to_a_closed_stdout_is_refused(monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)  # what Python sets when started with fd 1 closed (`>&-`)
    with pytest.raises(ResultsFileError, match="stdout is closed"):
        ResultsStream().open()
