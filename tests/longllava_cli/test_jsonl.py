"""The resumable results file: torn-line repair, resume without duplicates, retried errors, lock."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from longllava_cli.jsonl import OutputLockedError, ResultsFile, read_records, repair_torn_tail


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
        assert results.num_dropped == 3  # the error (retried), the duplicate, the garbage line
        results.append({"path": "b", "caption": "fixed"})
        results.append({"path": "d", "caption": "4"})
    assert [r["path"] for r in lines(path)] == ["a", "c", "b", "d"]
    assert lines(path)[0]["caption"] == "1"  # the first record of a key wins


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
