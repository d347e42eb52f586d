"""`longllava caption --ray` on a real local Ray cluster (2 logical CPUs, no GPU), started once for
the module, with the built-in demo model: the same records as a local run, exactly one record per
input when an actor or the driver is killed, Ctrl-C, and `--shard`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longllava_cli.app import app
from longllava_cli.caption import expand_inputs, select_shard
from longllava_cli.errors import EXIT_INTERRUPTED, EXIT_PARTIAL

from .conftest import write_broken, write_image, write_video

ray = pytest.importorskip("ray")

ARGS = ["--frames", "4", "--max-new-tokens", "8"]
NUM_INPUTS = 20


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A local Ray cluster in this process (its address, for drivers in other processes)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 inputs: 12 short clips, 6 pictures, 2 broken files."""
    folder = tmp_path_factory.mktemp("ray") / "batch"
    folder.mkdir()
    for i in range(12):
        write_video(folder / f"clip{i:02}.mp4", 10 + i)
    for i in range(6):
        write_image(folder / f"pic{i}.png", seed=i)
    write_broken(folder / "broken.mp4")
    write_broken(folder / "broken.png")
    return folder


@pytest.fixture(scope="module")
def local_records(batch: Path) -> dict[str, dict]:
    """The records of a local `caption` run over the batch."""
    out = batch.parent / "local.jsonl"
    result = CliRunner().invoke(app, ["caption", str(batch), "-o", str(out), *ARGS])
    assert result.exit_code == EXIT_PARTIAL, result.output
    return by_path(out)


def by_path(out: Path) -> dict[str, dict]:
    """Path → record without its timings; asserts one record per path."""
    records = [json.loads(line) for line in out.read_text().splitlines()]
    paths = [r["path"] for r in records]
    assert len(paths) == len(set(paths)), "an input has two records"
    return {r["path"]: {k: v for k, v in r.items() if k != "timings"} for r in records}


def line_count(out: Path) -> int:
    return out.read_bytes().count(b"\n") if out.exists() else 0


def wait_for_lines(out: Path, count: int, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while line_count(out) < count:
        assert time.monotonic() < deadline, f"{out} never reached {count} lines"
        time.sleep(0.02)


def descendants_named(prefix: str) -> list[int]:
    """Processes under this one (the cluster's raylet and its workers) whose title starts with `prefix`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            title = (entry / "cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        if title.startswith(prefix) and _is_descendant(int(entry.name)):
            found.append(int(entry.name))
    return found


def _is_descendant(pid: int) -> bool:
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
        if pid == os.getpid():
            return True
    return False


def test_ray_gives_the_records_of_a_local_run(cluster, batch, local_records, tmp_path):
    out = tmp_path / "ray.jsonl"
    result = CliRunner().invoke(app, ["caption", str(batch), "-o", str(out), "--ray", "--actors", "2", *ARGS])
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "ray: 2 actors, each with 1 CPU and 1 torch thread" in result.stderr
    got = by_path(out)
    assert len(got) == NUM_INPUTS and got == local_records  # same paths, greedy captions, frames, errors
    assert sorted(Path(p).name for p, r in got.items() if "error" in r) == ["broken.mp4", "broken.png"]


def test_killed_actor_loses_and_repeats_nothing(cluster, batch, local_records, tmp_path):
    out = tmp_path / "ray.jsonl"
    killed: list[int] = []

    def kill_a_busy_actor() -> None:
        wait_for_lines(out, 3)
        deadline = time.monotonic() + 30
        while not killed and time.monotonic() < deadline:
            busy = descendants_named("ray::Captioner.caption")
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.01)

    killer = threading.Thread(target=kill_a_busy_actor)
    killer.start()
    result = CliRunner().invoke(app, ["caption", str(batch), "-o", str(out), "--ray", "--actors", "2", *ARGS])
    killer.join()
    assert killed, "no busy actor was found to kill"
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "lost (" in result.stderr and "1 restarted" in result.stderr
    assert by_path(out) == local_records  # every input once, the lost one's included


def test_interrupted_and_killed_driver_then_rerun(cluster, batch, local_records, longllava_exe, tmp_path):
    out = tmp_path / "ray.jsonl"
    args = ["caption", str(batch), "-o", str(out), *ARGS]  # one actor (the default on 2 CPUs) until the rerun

    # Ctrl-C (SIGINT to this process, the driver): the inputs in flight finish and are written, exit 130.
    interrupter = threading.Thread(target=lambda: wait_for_lines(out, 2) or os.kill(os.getpid(), signal.SIGINT))
    interrupter.start()
    result = CliRunner().invoke(app, [*args, "--ray"])
    interrupter.join()
    assert result.exit_code == EXIT_INTERRUPTED, result.output
    assert "stopping after the inputs in flight" in result.stderr
    after_sigint = line_count(out)
    assert 2 <= after_sigint < NUM_INPUTS and out.read_bytes().endswith(b"\n")

    # SIGKILL of a driver in another process, joined to the cluster: no cleanup at all; its actors go with it.
    env = {k: v for k, v in os.environ.items() if not k.startswith("LONGLLAVA_")}
    driver = subprocess.Popen([longllava_exe, *args, "--ray", cluster], env=env, stdout=subprocess.DEVNULL)
    wait_for_lines(out, after_sigint + 2)
    driver.kill()
    driver.wait(timeout=30)

    result = CliRunner().invoke(app, [*args, "--ray", "--actors", "2"])
    assert result.exit_code == EXIT_PARTIAL, result.output
    assert "resuming:" in result.stderr
    assert by_path(out) == local_records  # exactly one record per input
    deadline = time.monotonic() + 20
    while descendants_named("ray::Captioner") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not descendants_named("ray::Captioner"), "actors outlived their drivers"


@pytest.mark.slow  # one more actor start-up; test_ray_plan.py checks the job --shard gives --ray
def test_ray_composes_with_shard(cluster, batch, local_records, tmp_path):
    """--shard picks the inputs, --ray captions them: shard 1/2 on Ray is shard 1/2 of a local run."""
    out = tmp_path / "part1.jsonl"
    result = CliRunner().invoke(app, ["caption", str(batch), "-o", str(out), "--shard", "1/2", "--ray", *ARGS])
    assert result.exit_code in (0, EXIT_PARTIAL), result.output
    assert "ray: 1 actor, each with 2 CPU and 2 torch threads" in result.stderr  # the default on 2 CPUs
    mine = select_shard(expand_inputs([str(batch)], recursive=False), 1, 2)
    assert 0 < len(mine) < NUM_INPUTS
    assert by_path(out) == {path: local_records[path] for path in mine}


# --- the driver's answer to a lost call, without a cluster ------------------------------------


class _LostCalls:
    """Stands in for the pool: counts replacements; its actor's calls are all lost."""

    def __init__(self) -> None:
        self.replaced: list[str] = []

    def replace(self, slot, reason: str) -> None:
        self.replaced.append(reason)


def _lose(monkeypatch, attempt: int, *, stopping: bool = False) -> tuple[list, list, _LostCalls]:
    from longllava_cli import caption_ray

    def lost(ref):
        raise ray.exceptions.ActorDiedError()

    monkeypatch.setattr(caption_ray.ray, "get", lost)
    slot = caption_ray._Slot(1, actor=None, ready=None, alive=True, busy=("a.mp4", attempt), call=object())
    queue: list = []
    written: list = []
    pool = _LostCalls()
    caption_ray._answered_caption(pool, slot, queue, written.append, stopping)
    assert slot.busy is None and slot.call is None
    return queue, written, pool


def test_a_lost_input_is_retried_then_gets_an_error_record(monkeypatch):
    from longllava_cli.caption_ray import MAX_ATTEMPTS

    queue, written, pool = _lose(monkeypatch, 1)
    assert queue == [("a.mp4", 2)] and written == [] and len(pool.replaced) == 1
    queue, written, pool = _lose(monkeypatch, MAX_ATTEMPTS)
    assert queue == [] and len(pool.replaced) == 1
    [record] = written
    assert set(record) == {"path", "error"} and record["path"] == "a.mp4"
    expected = f"a.mp4: no Ray actor could caption it ({MAX_ATTEMPTS} attempts; last: ActorDiedError"
    assert record["error"].startswith(expected)


def test_after_ctrl_c_a_lost_input_is_left_for_the_next_run(monkeypatch):
    queue, written, pool = _lose(monkeypatch, 1, stopping=True)
    assert queue == [] and written == [] and pool.replaced == []
