"""The process's RSS (model/memory_usage.py): the peak is at least the current RSS, a reset makes
the peak measure from there (Linux), and without /proc the peak falls back to getrusage."""

from __future__ import annotations

from pathlib import Path

import pytest

import model.memory_usage as memory_usage
from model.memory_usage import current_rss_bytes, peak_rss_bytes, reset_peak_rss

MIB = 1 << 20


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc (Linux)")
def test_peak_covers_the_current_rss_and_restarts_at_a_reset():
    assert 0 < current_rss_bytes() <= peak_rss_bytes()
    if not reset_peak_rss():
        pytest.skip("this kernel cannot reset the peak RSS")
    start = current_rss_bytes()
    assert peak_rss_bytes() < start + 32 * MIB  # the peak now starts at the current RSS
    block = b"\x01" * (64 * MIB)  # every page written
    del block
    assert peak_rss_bytes() >= start + 60 * MIB  # freed, but the peak keeps it


def test_without_proc_the_peak_comes_from_getrusage_and_the_current_rss_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setattr(memory_usage, "_STATUS", tmp_path / "no-status")
    monkeypatch.setattr(memory_usage, "_CLEAR_REFS", tmp_path / "no-such-folder" / "clear_refs")
    assert peak_rss_bytes() > MIB
    with pytest.raises(OSError, match="no VmRSS"):
        current_rss_bytes()
    assert reset_peak_rss() is False
