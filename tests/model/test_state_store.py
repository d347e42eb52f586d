"""The state store on its own: round trips into preallocated memory, LRU eviction under the cap,
`clear` deleting only what the store wrote, and two processes saving one key at once."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import torch

from model.state_file import StateTensor
from model.state_store import StateStore, default_state_dir

KEY = "ab" * 32


def state(seed: int, rows: int = 64, length: int = 40, capacity: int = 50) -> list[StateTensor]:
    """A state shaped like a cache's: K [1, 2, length, 8] read through per-head views of a
    [1, 2, capacity, 8] buffer, an SSM state and pending rows."""
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(1, 2, capacity, 8, generator=g)
    ssm = torch.randn(1, 16, 4, generator=g)
    rows_ = torch.randn(rows, 8, generator=g).to(torch.bfloat16)
    return [
        StateTensor("layers.0.k", (1, 2, length, 8), tuple(k[0, h, :length] for h in range(2))),
        StateTensor("layers.1.ssm", (1, 16, 4), (ssm,)),
        StateTensor("pending", (rows, 8), (rows_,)),
    ]


def empty_like(tensors: list[StateTensor]) -> list[StateTensor]:
    """Same shapes, zeroed memory: the preallocated cache a hit reads into."""
    out = []
    for t in tensors:
        pieces = tuple(torch.zeros_like(p) for p in t.pieces)
        out.append(StateTensor(t.name, t.shape, pieces))
    return out


def test_round_trip_into_preallocated_memory(tmp_path):
    store = StateStore(tmp_path)
    saved = state(1)
    store.put(KEY, {"note": "x"}, saved)
    target = empty_like(saved)
    header = store.get(KEY, lambda header: target)
    assert header["note"] == "x" and header["key"] == KEY
    for a, b in zip(saved, target, strict=True):
        assert all(torch.equal(p, q) for p, q in zip(a.pieces, b.pieces, strict=True))
    assert store.get("cd" * 32, lambda header: target) is None  # absent: a silent miss


def test_least_recently_used_states_are_evicted_past_the_cap(tmp_path):
    one = StateStore(tmp_path).put("01" * 32, {}, state(1)).stat().st_size
    store = StateStore(tmp_path, max_bytes=2 * one + one // 2)
    store.put("02" * 32, {}, state(2))
    past = time.time() - 100
    os.utime(store.path_of("01" * 32), (past, past))
    os.utime(store.path_of("02" * 32), (past - 10, past - 10))
    assert store.get("02" * 32, lambda header: empty_like(state(2))) is not None  # used now: kept
    store.put("03" * 32, {}, state(3))
    assert {e.key for e in store.ls()} == {"02" * 32, "03" * 32}


def test_a_state_over_the_cap_is_not_saved(tmp_path):
    store = StateStore(tmp_path, max_bytes=100)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert store.put(KEY, {}, state(1)) is None
    assert len(caught) == 1 and "over the cache's size cap" in str(caught[0].message)
    assert list(tmp_path.iterdir()) == []


def test_clear_deletes_only_what_the_store_wrote(tmp_path):
    store = StateStore(tmp_path)
    store.put(KEY, {}, state(1))
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "model.safetensors").write_bytes(b"user weights")
    lookalike = tmp_path / f"state-{'ef' * 32}.safetensors"  # our name, not our content
    lookalike.write_bytes(b"\x00" * 64)
    (tmp_path / "content-hashes.json").unlink(missing_ok=True)
    removed, freed = store.clear()
    assert removed == 1 and freed > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["notes.txt", "model.safetensors", lookalike.name])


def test_the_default_folder_honours_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_state_dir() == tmp_path / "longllava" / "states"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_state_dir() == Path.home() / ".cache" / "longllava" / "states"


# Each writer saves and reads one key in a loop; a read must never see a partial or mixed file.
WRITER = textwrap.dedent(
    """
    import sys, time, warnings
    import torch
    from model.state_file import StateTensor
    from model.state_store import StateStore
    from pathlib import Path
    folder, seed, ready = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    key = "ab" * 32
    data = torch.arange(1 << 20, dtype=torch.float32) * seed  # 4 MiB: writes take long enough to overlap
    store = StateStore(folder)
    warnings.simplefilter("error")
    (ready / str(seed)).touch()
    while len(list(ready.iterdir())) < 2:  # both have imported torch: start together
        time.sleep(0.002)
    seen = set()
    for _ in range(25):
        store.put(key, {"writer": seed}, [StateTensor("x", (1 << 20,), (data,))])
        target = torch.empty(1 << 20)
        header = store.get(key, lambda header: [StateTensor("x", (1 << 20,), (target,))])
        assert header is not None
        assert torch.equal(target, torch.arange(1 << 20, dtype=torch.float32) * header["writer"])
        seen.add(header["writer"])
    print(sorted(seen))
    """
)


def test_processes_saving_one_key_at_once_leave_one_valid_state(tmp_path):
    """Each writer saves 4 MiB under the same key 25 times and reads it back after each save."""
    folder, ready = tmp_path / "states", tmp_path / "ready"
    ready.mkdir()
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(folder), str(seed), str(ready)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for seed in (1, 2)
    ]
    outputs = [w.communicate(timeout=120) for w in writers]
    for writer, (out, err) in zip(writers, outputs, strict=True):
        assert writer.returncode == 0, err
        assert out.strip().startswith("[")  # every read it made was whole (the writers' ids it saw)
    names = [p.name for p in folder.iterdir()]
    assert names == [f"state-{KEY}.safetensors"]  # no temporary file left behind
    target = torch.empty(1 << 20)
    header = StateStore(folder).get(KEY, lambda header: [StateTensor("x", (1 << 20,), (target,))])
    assert header is not None and torch.equal(target, torch.arange(1 << 20, dtype=torch.float32) * header["writer"])
